"""``commbox-async fetch``: ids in, one NDJSON line per identity out, a progress bar, a summary.

The job loop (``run_job``) is shared with ``demo``. Output lines are written whole and flushed
as results arrive, so Ctrl-C (which cancels the job) leaves only complete lines, and
``--resume`` continues from them.
"""

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
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any, BinaryIO, TextIO

from ._cli_args import client_options, filters_from_args
from ._cli_errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, CliExit
from ._cli_input import IdSource, Previous, iter_records, scan_output
from ._cli_output import JobReport, LineWriter, result_line, summary_rows
from ._cli_progress import JobView, print_summary
from ._client import AsyncCommbox
from ._errors import AuthenticationError
from ._protocol import Query

__all__ = ["fetch_command", "require_token", "run_job"]

_END = object()


def require_token(args: argparse.Namespace) -> str:
    """The token from ``--token`` or ``COMMBOX_TOKEN``; a usage error when neither is set."""
    token: str | None = args.token if args.token is not None else os.environ.get("COMMBOX_TOKEN")
    if token is None:
        raise CliExit("no token: set COMMBOX_TOKEN (or pass --token)")
    return token


async def run_job(
    client: AsyncCommbox,
    ids: Iterable[int] | AsyncIterator[int],
    *,
    concurrency: int,
    filters: dict[str, Any],
    writer: LineWriter | None,
    view: JobView,
    report: JobReport,
) -> None:
    """Fan out over ``ids``, writing each result as it completes; fills ``report``."""
    started = time.monotonic()
    try:
        # fetch_many returns an async generator; aclosing stops its workers on every way out.
        fan_out = client.fetch_many(ids, concurrency=concurrency, **filters)
        async with contextlib.aclosing(fan_out) as results:
            async for result in results:
                if isinstance(result.error, AuthenticationError):
                    # Every other identity would fail the same way: stop, and leave this id
                    # out of the output so that a resumed run fetches it.
                    raise CliExit(
                        f"the server refused the token ({result.error.message}); check "
                        f"COMMBOX_TOKEN. Stopped after {report.fetched:,} results."
                    )
                if writer is not None:
                    writer.write(result_line(result))
                report.add(result)
                view.advance(lambda: client.stats)
    finally:
        report.elapsed = time.monotonic() - started
        report.stats = client.stats


async def _in_thread(source: Iterable[int], buffer: int = 256) -> AsyncIterator[int]:
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


def _open_input(args: argparse.Namespace) -> tuple[Iterable[str], int | None, bool]:
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


def _open_output(args: argparse.Namespace) -> tuple[BinaryIO, Previous]:
    """The output stream, and what an earlier run left in it (with --resume)."""
    if not args.output:
        return sys.stdout.buffer, Previous()
    path = args.output
    try:
        if args.resume:
            previous = scan_output(path, retry_failed=args.retry_failed)
            return open(path, "ab", buffering=0), previous
        if os.path.exists(path) and os.path.getsize(path) > 0:
            raise CliExit(
                f"{path} already exists: add --resume to continue that job, or remove the file"
            )
        return open(path, "wb", buffering=0), Previous()
    except OSError as exc:
        raise CliExit(f"cannot write {path}: {exc.strerror or exc}") from None


def _check_options(args: argparse.Namespace) -> dict[str, Any]:
    filters = filters_from_args(args)
    Query.from_filters(filters)  # a bad filter is a usage error before anything starts
    if args.resume and not args.output:
        raise CliExit("--resume needs -o/--output FILE: the ids to skip are read from it")
    if args.retry_failed and not args.resume:
        raise CliExit("--retry-failed goes with --resume")
    if len(args.delimiter) != 1:
        raise CliExit("--delimiter must be one character")
    return filters


async def fetch_command(args: argparse.Namespace) -> int:
    filters = _check_options(args)
    client = AsyncCommbox(require_token(args), **client_options(args))
    report = JobReport()
    interrupted = False
    with contextlib.ExitStack() as files:
        lines, total, blocking = _open_input(args)
        if isinstance(lines, io.TextIOBase):
            files.callback(lines.close)  # a pipe's descriptor is closed by its reader thread
        out, previous = _open_output(args)
        if out is not sys.stdout.buffer:
            files.callback(out.close)
        view = JobView(total=total, label="fetch")
        _announce(view, args.output, previous)
        records = iter_records(lines, column=args.column, delimiter=args.delimiter)
        source = IdSource(records, done=previous.done, on_bad=view.bad_line, on_skip=view.skip)
        # A pipe is read, and its records checked, in a thread; a bad --column or any other
        # input error then ends the job from inside fetch_many, which re-raises it here.
        ids: Iterable[int] | AsyncIterator[int] = _in_thread(source) if blocking else source
        writer = LineWriter(out)
        try:
            async with client:
                with view:
                    await run_job(
                        client,
                        ids,
                        concurrency=args.concurrency,
                        filters=filters,
                        writer=writer,
                        view=view,
                        report=report,
                    )
        except asyncio.CancelledError:
            interrupted = True
        finally:
            report.bad_lines, report.duplicates = source.bad, source.duplicates
            report.resumed = source.resumed
    title = "fetch interrupted" if interrupted else "fetch done"
    print_summary(summary_rows(report), title=title, stream=sys.stderr)
    if interrupted:
        where = f" to {args.output}" if args.output else ""
        hint = "; run the same command with --resume to continue" if args.output else ""
        raise CliExit(
            f"interrupted: {writer.lines:,} complete lines written{where}{hint}", EXIT_INTERRUPTED
        )
    return EXIT_FAILED if report.failed or report.bad_lines else EXIT_OK


def _announce(view: JobView, path: str | None, previous: Previous) -> None:
    if previous.dropped_bytes:
        view.warn(
            f"{path}: dropped an incomplete last line ({previous.dropped_bytes} bytes) left by an "
            "interrupted run; that identity is fetched again"
        )
    if previous.removed_failed:
        view.warn(f"{path}: removed {previous.removed_failed:,} failed results to fetch again")
    if previous.lines:
        view.warn(f"resuming: {previous.lines:,} identities already in {path} are skipped")
