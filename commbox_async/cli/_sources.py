"""Where ``fetch`` reads its ids: a file, a file on stdin, or a pipe read in a thread."""

from __future__ import annotations

import argparse
import asyncio
import codecs
import io
import os
import re
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
    ignores Ctrl-C) must not keep the process from exiting. The thread never creates a
    coroutine: it hands items over with ``call_soon_threadsafe`` and waits for room on a
    semaphore, so a job that ends early (a refused token, ``| head``, a full disk) leaves no
    ``Queue.put`` coroutine un-awaited behind it, whatever the thread is doing at that moment.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue()  # bounded by ``room``
    room = threading.Semaphore(buffer)
    stopped = threading.Event()

    def put(item: object) -> bool:
        """Hand ``item`` to the loop once there is room; False when the job has ended."""
        while not room.acquire(timeout=0.5):  # wakes up to notice a job that ended
            if stopped.is_set():
                return False
        if stopped.is_set():
            return False
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: the job ended
            return False
        return True

    def pump() -> None:
        try:
            for ident in source:
                if not put(ident):
                    return
            put(_END)
        except BaseException as exc:  # the reader failed: end the job with it
            put(exc)

    threading.Thread(target=pump, name="commbox-async-input", daemon=True).start()
    try:
        while True:
            item = await queue.get()
            room.release()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, int)
            yield item
    finally:
        stopped.set()
        room.release()  # a thread waiting for room wakes up and sees the stop


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
            lines, pending = _complete_lines(pending, final=not chunk)
            yield from lines
            if not chunk:
                if pending:
                    yield pending
                return
    finally:
        os.close(fd)


#: Where a line ends, as for a file read with ``newline=""`` (what csv wants): a lone CR too.
_LINE_END = re.compile(r"\r\n|\r|\n")


def _complete_lines(text: str, *, final: bool) -> tuple[list[str], str]:
    """The complete lines of ``text``, each with its end, and the rest. A CR at the very end
    waits for the next chunk (it may be half of a CRLF) unless this is the last."""
    lines: list[str] = []
    start = 0
    for end in _LINE_END.finditer(text):
        if end.group() == "\r" and end.end() == len(text) and not final:
            break
        lines.append(text[start : end.end()])
        start = end.end()
    return lines, text[start:]


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
