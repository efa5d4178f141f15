"""A real ``redis-server`` on a free loopback port, in a temporary directory, for the tests.

The ``redis_server`` fixture starts one per test and stops it after. Without the binary the
tests skip with the command that installs it, except under ``CI=true``, where they fail: CI
installs it (``.ci/install-redis.sh``) and must never skip the tests that make the claims.
"""

from __future__ import annotations

import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from server_process import find_binary, free_port, stop_process, wait_until_ready

INSTALL_HINT = "redis-server not found; install it with: apt-get install redis-server"


class RedisServer:
    """One ``redis-server`` process: no persistence, loopback only; can be killed and restarted."""

    def __init__(self, binary: str, directory: Path, port: int | None = None) -> None:
        self.binary = binary
        self.directory = directory
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start (or restart, on the same port) and wait until it answers PING."""
        log = (self.directory / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()

        def answers_ping() -> bool:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")

        wait_until_ready(
            self.process,
            answers_ping,
            timeout=timeout,
            name="redis-server",
            log=self.directory / "redis.log",
            stop=self.stop,
        )

    def stop(self, *, kill: bool = False) -> None:
        """Stop it: SIGTERM (or SIGKILL, as a crash would), then wait for the process."""
        process, self.process = self.process, None
        stop_process(process, signal.SIGKILL if kill else signal.SIGTERM)


def redis_binary() -> str:
    """The path of ``redis-server``; skips the test without it (fails under CI=true)."""
    return find_binary("redis-server", INSTALL_HINT)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A started ``RedisServer`` on a free loopback port, stopped after the test."""
    server = RedisServer(redis_binary(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
