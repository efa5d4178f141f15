"""``commbox-async fetch``: ids in, one NDJSON line per identity out, a progress bar, a summary.

Output lines are written whole and flushed
as results arrive, so Ctrl-C (which cancels the job) leaves only complete lines, and
``--resume`` continues from them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import sys
from collections.abc import AsyncIterator, Iterable
from typing import Any, BinaryIO

from .._client import AsyncCommbox
from .._protocol import Query
from ._args import client_options, filters_from_args, require_token
from ._errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, CliExit
from ._input import IdSource, iter_records
from ._job import run_job
from ._output import JobReport, LineWriter, summary_rows
from ._progress import JobView, print_summary
from ._resume import Previous, scan_output
from ._sources import in_thread, open_input

__all__ = ["fetch_command"]


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
        lines, total, blocking = open_input(args)
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
        ids: Iterable[int] | AsyncIterator[int] = in_thread(source) if blocking else source
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
