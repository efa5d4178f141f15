"""A real forward proxy, Debian's ``tinyproxy``, on a free loopback port, for the proxy tests.

Not one of ours: the tests of ``proxy=`` and ``trust_env=`` then prove that the client works
with a proxy as deployed (plain http forwarded as ``GET http://host:port/path``, and https
tunnelled with ``CONNECT host:port``, the path of ``HTTPS_PROXY``). Its log (level Info) has one
``Request`` line per request or tunnel, which is what the tests read: with TLS inside the
tunnel it shows ``CONNECT host:port`` and nothing of the path or the headers.

The ``start_tinyproxy`` fixture starts one per call, listening on 127.0.0.1 only and accepting
clients from 127.0.0.1 only, and stops each by its own pid after the test. Without the binary
the tests skip with the command that installs it, except under ``CI=true``, where they fail:
CI installs it (``.ci/run``) and must never skip the tests that make the claims.
"""

from __future__ import annotations

import re
import socket
import subprocess
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest
from server_process import find_binary, free_port, stop_process, wait_until_ready

INSTALL_HINT = "tinyproxy not found; install it with: apt-get install tinyproxy"

#: ``Request (file descriptor 7): CONNECT 127.0.0.1:4433 HTTP/1.1`` -> the method and target.
_REQUEST = re.compile(r"Request \(file descriptor \d+\): (\S+ \S+)")


class TinyProxy:
    """One ``tinyproxy`` process in the foreground (``-d``), with a config file of its own."""

    def __init__(
        self,
        binary: str,
        directory: Path,
        connect_ports: Iterable[int] = (),
        basic_auth: tuple[str, str] | None = None,
    ) -> None:
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        # tinyproxy refuses CONNECT to ports not listed (its default config lists 443 and
        # 563); the test's https server is on a free port, so it is listed here. No line at
        # all would allow every port, which no deployed proxy does.
        self.connect_ports = list(connect_ports)
        # (user, password): tinyproxy then answers 407 to a request or CONNECT without
        # Proxy-Authorization, as a corporate proxy that wants credentials does.
        self.basic_auth = basic_auth
        self.log_path = directory / f"tinyproxy-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """What ``proxy=`` and ``HTTPS_PROXY`` take: a proxy is spoken to in plain http."""
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> str:
        lines = [
            f"Port {self.port}",
            "Listen 127.0.0.1",
            "Timeout 60",
            f'LogFile "{self.log_path}"',
            "LogLevel Info",  # one line per request and tunnel; never the headers
            "MaxClients 20",
            "Allow 127.0.0.1",
            "DisableViaHeader Yes",
            *(f"ConnectPort {port}" for port in self.connect_ports),
            *([f"BasicAuth {self.basic_auth[0]} {self.basic_auth[1]}"] if self.basic_auth else []),
        ]
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 10.0) -> None:
        """Start it and wait until it accepts connections."""
        conf = self.directory / f"tinyproxy-{self.port}.conf"
        conf.write_text(self.config())
        output = (self.directory / f"tinyproxy-{self.port}.out").open("ab")
        self.process = subprocess.Popen(
            [self.binary, "-d", "-c", str(conf)],
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        output.close()

        def listens() -> bool:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True

        wait_until_ready(
            self.process, listens, timeout=timeout, name="tinyproxy", log=self.log_path,
            stop=self.stop,
        )  # fmt: skip

    def stop(self) -> None:
        """SIGTERM to its own pid, then wait for the process."""
        process, self.process = self.process, None
        stop_process(process)

    def log(self) -> str:
        """Everything it logged so far (it writes each line as it happens)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def requests(self) -> list[str]:
        """The requests it was asked to forward, in order: ``"GET http://..."``, or
        ``"CONNECT host:port"`` for a tunnel."""
        return _REQUEST.findall(self.log())


def tinyproxy_binary() -> str:
    """The path of ``tinyproxy``; skips the test without it (fails under CI=true)."""
    return find_binary("tinyproxy", INSTALL_HINT, path="/usr/sbin:/usr/bin")


@pytest.fixture
def start_tinyproxy(tmp_path: Path) -> Iterator[Callable[..., TinyProxy]]:
    """``start_tinyproxy(connect_ports=[server.port], basic_auth=("user", "pass"))``: a
    started ``TinyProxy``; every one started is stopped after the test."""
    binary = tinyproxy_binary()
    started: list[TinyProxy] = []

    def start(
        connect_ports: Iterable[int] = (), basic_auth: tuple[str, str] | None = None
    ) -> TinyProxy:
        proxy = TinyProxy(binary, tmp_path, connect_ports, basic_auth)
        started.append(proxy)
        proxy.start()
        return proxy

    try:
        yield start
    finally:
        for proxy in started:
            proxy.stop()
