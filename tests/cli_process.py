"""Start the ``commbox-async`` command as a user runs it: ``python -m commbox_async`` in a
subprocess, with the caller's environment (the tests pass one without the user's COMMBOX_*)."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import IO, Any

PIPE = asyncio.subprocess.PIPE

# What a child's stdin, stdout or stderr may be: PIPE, DEVNULL, a file descriptor, a file, or
# None (the test process's own).
Stream = int | IO[Any] | None


async def start_cli(
    *args: str,
    env: dict[str, str],
    stdin: Stream = PIPE,
    stdout: Stream = PIPE,
    stderr: Stream = PIPE,
) -> asyncio.subprocess.Process:
    """The command with ``args`` started in a subprocess; its streams piped unless given."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "commbox_async",
        *args,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        env=env,
    )


def read_pty(fd: int) -> str:
    """Everything written to a pty until its last writer closes it."""
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except OSError:  # EIO: the other side is closed
        pass
    finally:
        os.close(fd)
    return b"".join(chunks).decode(errors="replace")
