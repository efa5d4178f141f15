"""A loopback HTTP server for the throughput benchmark, shown not to be the bottleneck.

nginx serves each payload as a static file, one port per payload, with one worker process
(``master_process off``: the process we start is the one that serves, so its CPU time can be
read from /proc). When nginx is missing the benchmark installs it (``apt-get install -y
nginx-light``, as root only) or falls back to a raw asyncio server in another process that
answers every request with a pre-encoded response.

Both answer any path with the payload and ignore the Authorization header. ``capacity()``
measures what the server itself can do: with wrk when it is installed, else with a raw
multi-connection asyncio loop (a lower bound, since that loop is Python too).

Run alone: ``python -m benchmarks.servers`` starts the server, prints its capacity and stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import multiprocessing
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .payloads import Payload, serve_payloads

PATH = "/v2/users/identities/1/objects"
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_listening(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the benchmark server did not listen on port {port}") from None
            time.sleep(0.02)


def process_cpu(pid: int) -> float | None:
    """User + system CPU seconds of a process, from /proc (None where there is no /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS


@dataclass
class Server:
    """A started server: its kind, one URL per payload name, and the process that serves."""

    kind: str
    urls: dict[str, str]
    pid: int
    note: str = ""

    def cpu(self) -> float | None:
        return process_cpu(self.pid)


# --- nginx ---------------------------------------------------------------------------------
def find_nginx() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )


def install_nginx() -> str | None:
    """Install nginx-light with apt-get when we are root; None when that is not possible."""
    if os.name != "posix" or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print("nginx not found: installing nginx-light with apt-get", flush=True)
    cmd = ["apt-get", "install", "-y", "-q", "nginx-light"]
    for attempt in range(2):
        if attempt:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=300)
        done = subprocess.run(cmd, env=env, capture_output=True, timeout=300)
        if done.returncode == 0:
            return find_nginx()
    return None


_NGINX_CONF = """\
worker_processes 1;
master_process off;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    open_file_cache max=64;
    default_type application/json;
    client_body_temp_path {dir}/tmp;
    proxy_temp_path {dir}/tmp;
    fastcgi_temp_path {dir}/tmp;
    uwsgi_temp_path {dir}/tmp;
    scgi_temp_path {dir}/tmp;
{servers}
}}
"""
_NGINX_SERVER = """\
    server {{
        listen 127.0.0.1:{port};
        root {dir};
        location / {{ try_files /{file} =404; }}
    }}"""


@contextlib.contextmanager
def nginx(payloads: Sequence[Payload], binary: str) -> Iterator[Server]:
    """nginx serving each payload as a static file on its own loopback port."""
    with tempfile.TemporaryDirectory(prefix="commbox-bench-nginx-") as tmp:
        (Path(tmp) / "tmp").mkdir()
        ports, blocks = {}, []
        for i, payload in enumerate(payloads):
            name = f"payload{i}.json"
            (Path(tmp) / name).write_bytes(payload.body)
            ports[payload.name] = port = _free_port()
            blocks.append(_NGINX_SERVER.format(port=port, dir=tmp, file=name))
        conf = Path(tmp) / "nginx.conf"
        conf.write_text(_NGINX_CONF.format(dir=tmp, servers="\n".join(blocks)))
        proc = subprocess.Popen(
            [binary, "-p", tmp, "-e", f"{tmp}/error.log", "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            for port in ports.values():
                try:
                    _wait_listening(port)
                except RuntimeError:
                    proc.kill()
                    err = proc.communicate()[1].decode(errors="replace")
                    log = (Path(tmp) / "error.log").read_text(errors="replace")
                    raise RuntimeError(f"nginx did not start: {err} {log}".strip()) from None
            version = subprocess.run([binary, "-v"], capture_output=True, text=True).stderr
            version = version.strip().removeprefix("nginx version: ") or "nginx"
            yield Server(
                kind="nginx",
                urls={name: f"http://127.0.0.1:{port}" for name, port in ports.items()},
                pid=proc.pid,
                note=f"{version}, one worker process serving static files (sendfile)",
            )
        finally:
            proc.send_signal(signal.SIGQUIT)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stderr is not None:
                proc.stderr.close()


# --- the raw asyncio fallback --------------------------------------------------------------
def _response(body: bytes) -> bytes:
    head = (
        "HTTP/1.1 200 OK\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: keep-alive\r\n\r\n"
    )
    return head.encode() + body


class _RawProtocol(asyncio.Protocol):
    """Answers every request head on the connection with one pre-encoded response."""

    def __init__(self, response: bytes) -> None:
        self.response = response
        self.buffer = b""
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport instances, so no isinstance check.
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        count = self.buffer.count(b"\r\n\r\n")
        if count and self.transport is not None:
            # GET requests carry no body: each head is one request.
            self.buffer = self.buffer[self.buffer.rfind(b"\r\n\r\n") + 4 :]
            self.transport.write(self.response * count)


def _serve_raw(ports: dict[str, int], bodies: dict[str, bytes]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        servers = []
        for name, port in ports.items():
            factory = functools.partial(_RawProtocol, _response(bodies[name]))
            servers.append(await loop.create_server(factory, "127.0.0.1", port, backlog=1024))
        await asyncio.Event().wait()

    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())


@contextlib.contextmanager
def raw_server(payloads: Sequence[Payload]) -> Iterator[Server]:
    """A pre-encoded raw asyncio server (uvloop when installed) in another process."""
    ports = {p.name: _free_port() for p in payloads}
    bodies = {p.name: p.body for p in payloads}
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=_serve_raw, args=(ports, bodies), daemon=True)
    proc.start()
    try:
        for port in ports.values():
            _wait_listening(port)
        assert proc.pid is not None
        yield Server(
            kind="raw asyncio",
            urls={name: f"http://127.0.0.1:{port}" for name, port in ports.items()},
            pid=proc.pid,
            note="a raw asyncio server in its own process, answering with pre-encoded responses",
        )
    finally:
        proc.terminate()
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join()


@contextlib.contextmanager
def start(
    payloads: Sequence[Payload], kind: str = "auto", install: bool = True
) -> Iterator[Server]:
    """The best server available: nginx (installed when missing, if allowed), else raw asyncio."""
    binary = None
    if kind in ("auto", "nginx"):
        binary = find_nginx() or (install_nginx() if install else None)
        if binary is None and kind == "nginx":
            raise RuntimeError("nginx is not installed and could not be installed")
    if binary is not None:
        with contextlib.ExitStack() as stack:
            # Only nginx's start-up is guarded: an error of the benchmark that runs while the
            # server is up must surface as itself, not as "nginx failed".
            try:
                server = stack.enter_context(nginx(payloads, binary))
            except RuntimeError as exc:
                if kind == "nginx":
                    raise
                print(f"nginx failed ({exc}); using the raw asyncio server", flush=True)
            else:
                yield server
                return
    with raw_server(payloads) as server:
        yield server


# --- the server's own capacity -------------------------------------------------------------
@dataclass
class Capacity:
    requests_per_s: float
    tool: str
    server_cpu: float | None  # the server's CPU use during the measurement, in cores


def capacity(server: Server, name: str, seconds: float = 2.0, connections: int = 32) -> Capacity:
    """Requests per second the server answers for one payload, measured without our client."""
    url = server.urls[name] + PATH
    cpu0, t0 = server.cpu(), time.perf_counter()
    wrk = shutil.which("wrk")
    if wrk is not None:
        out = subprocess.run(
            [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", url],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
        ).stdout
        match = re.search(r"Requests/sec:\s*([\d.]+)", out)
        if match is None:
            raise RuntimeError(f"could not read wrk's output: {out}")
        rate, tool = float(match.group(1)), f"wrk -t1 -c{connections}"
    else:
        rate = asyncio.run(_raw_client(url, seconds, connections))
        tool = f"raw asyncio client, {connections} connections (a lower bound)"
    cpu1, t1 = server.cpu(), time.perf_counter()
    used = (cpu1 - cpu0) / (t1 - t0) if cpu0 is not None and cpu1 is not None else None
    return Capacity(rate, tool, used)


async def _raw_client(url: str, seconds: float, connections: int) -> float:
    """Sequential GETs on many keep-alive connections, framing responses by Content-Length."""
    host_port = url.split("//", 1)[1].split("/", 1)[0]
    host, port = host_port.split(":")
    request = f"GET {PATH} HTTP/1.1\r\nHost: {host_port}\r\n\r\n".encode()
    done = 0
    stop = time.perf_counter() + seconds

    async def one() -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while time.perf_counter() < stop:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
                await reader.readexactly(length)
                done += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(connections)))
    return done / (time.perf_counter() - started)


def main() -> None:
    payloads = serve_payloads()
    for kind in ("nginx", "raw"):
        ctx = start(payloads, "nginx", install=False) if kind == "nginx" else raw_server(payloads)
        try:
            with ctx as server:
                print(f"{server.kind}: {server.note}")
                for p in payloads:
                    cap = capacity(server, p.name)
                    cpu = f"{cap.server_cpu:.2f}" if cap.server_cpu is not None else "n/a"
                    print(
                        f"  {p.label}: {cap.requests_per_s:,.0f} req/s ({cap.tool}); "
                        f"server CPU {cpu} cores"
                    )
        except RuntimeError as exc:
            print(f"{kind}: {exc}")


if __name__ == "__main__":
    main()
