"""Where ``fetch`` reads its ids: a file, a file on stdin, or a pipe read in a thread."""

from __future__ import annotations

import argparse
import asyncio
import codecs
import contextlib
import io
import os
import stat
import sys
import threading
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import BinaryIO, TextIO

from ._errors import CliExit
from ._input import iter_records

__all__ = ["in_thread", "open_input"]

_END = object()


async def in_thread(source: Iterable[int], buffer: int = 256) -> AsyncIterator[int]:
    """Read a blocking source (a pipe on stdin) in a daemon thread, ``buffer`` ids ahead.

    A daemon thread, not the default executor: a read that never returns (a producer that
    ignores Ctrl-C) must not keep the process from exiting.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue(maxsize=buffer)

    def put(item: object) -> None:
        asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()

    def pump() -> None:
        try:
            for ident in source:
                put(ident)
            put(_END)
        except RuntimeError:
            pass  # the loop is gone: the job ended
        except BaseException as exc:  # the reader failed: end the job with it
            with contextlib.suppress(RuntimeError):
                put(exc)

    threading.Thread(target=pump, name="commbox-async-input", daemon=True).start()
    while True:
        item = await queue.get()
        if item is _END:
            return
        if isinstance(item, BaseException):
            raise item
        assert isinstance(item, int)
        yield item


def _text(binary: BinaryIO) -> TextIO:
    # utf-8-sig drops the BOM spreadsheet exports start with; newline="" is what csv wants.
    return io.TextIOWrapper(binary, encoding="utf-8-sig", errors="replace", newline="")


def _fd_lines(fd: int) -> Iterator[str]:
    """Lines of a pipe, read with ``os.read`` and closed at its end.

    Not ``sys.stdin``: a thread blocked reading a buffered stream holds its lock, and closing
    the stream at Ctrl-C (or at interpreter exit) would then wait for the writer forever.
    """
    decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
    pending = ""
    try:
        while True:
            chunk = os.read(fd, 65536)
            pending += decoder.decode(chunk, final=not chunk)
            *lines, pending = pending.split("\n")
            for line in lines:
                yield line + "\n"
            if not chunk:
                if pending:
                    yield pending
                return
    finally:
        os.close(fd)


def _is_regular(fileno: int) -> bool:
    try:
        return stat.S_ISREG(os.fstat(fileno).st_mode)
    except OSError:
        return False


def open_input(args: argparse.Namespace) -> tuple[Iterable[str], int | None, bool]:
    """The input's lines, its number of records when known, and whether reads can block."""
    if args.ids_file == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise CliExit("give an ids file, or pipe ids on stdin (see 'commbox-async fetch -h')")
        fileno = sys.stdin.fileno()
        if _is_regular(fileno):  # '< ids.txt': reads never block
            return _text(os.fdopen(os.dup(fileno), "rb")), None, False
        return _fd_lines(os.dup(fileno)), None, True
    try:
        with _text(open(args.ids_file, "rb")) as counting:
            records = iter_records(counting, column=args.column, delimiter=args.delimiter)
            total = sum(1 for _ in records)
        return _text(open(args.ids_file, "rb")), total, False
    except OSError as exc:
        raise CliExit(f"cannot read {args.ids_file}: {exc.strerror or exc}") from None
