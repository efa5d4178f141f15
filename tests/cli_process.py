"""Start the ``commbox-async`` command as a user runs it: ``python -m commbox_async`` in a
subprocess, with the caller's environment (the tests pass one without the user's COMMBOX_*)."""

from __future__ import annotations

import asyncio
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
