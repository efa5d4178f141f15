"""What the fixtures that run a real server (redis-server, tinyproxy) share: finding its binary,
waiting until it is ready, and stopping it by its own pid.

Without the binary a test skips with the command that installs it, except under ``CI=true``,
where it fails: CI installs every server and must never skip the tests that make the claims.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def find_binary(name: str, install_hint: str, *, path: str | None = None) -> str:
    """The path of ``name`` (on ``PATH``, else on ``path``); skips without it, fails under
    ``CI=true``."""
    binary = shutil.which(name) or (shutil.which(name, path=path) if path else None)
    if binary is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(install_hint + " (CI=true: these tests must run)")
        pytest.skip(install_hint)
    return binary


def wait_until_ready(
    process: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    *,
    timeout: float,
    name: str,
    log: object,
    stop: Callable[[], None],
) -> None:
    """Return once ``ready()`` is true; raise if ``process`` exits first or ``timeout`` passes
    (a hang guard, not a timing). ``ready`` connecting to a port that nobody serves yet raises
    OSError, which counts as not ready."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if ready():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            stop()
            raise RuntimeError(f"{name} was not ready in time: see {log}")
        try:  # wait a little for it to listen, or notice that it exited
            process.wait(timeout=0.02)
        except subprocess.TimeoutExpired:
            continue
        raise RuntimeError(f"{name} exited: see {log}")


def stop_process(process: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    """``sig`` to the process's own pid, then wait for it (SIGKILL after 5 s)."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
