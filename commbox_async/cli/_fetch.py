"""``commbox-async fetch``: ids in, one NDJSON line per identity out, a progress bar, a summary.

Output lines are written whole and flushed as results arrive, so Ctrl-C, SIGTERM or SIGHUP
(each cancels the job) leaves only complete lines, and ``--resume`` continues from them. The
job loop is ``_job``'s, shared with ``demo``. An input with no id at all is an error (unless
``--allow-empty``): a cron job fed a failed export must not look healthy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import io
import os
import sys
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from .._client import AsyncCommbox
from .._config import DEFAULT_RATE_LIMIT, DEFAULT_TIMEOUT, RateLimit, as_rate_limit
from . import _memory as memory
from ._args import filters_from_args
from ._connection import Connection, client_options, connection
from ._errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_UNREACHABLE, CliExit, explain
from ._input import InputIds, iter_records
from ._job import run_job
from ._output import JobReport, LineWriter, summary_json, summary_rows, write_summary_json
from ._paging import check_filters
from ._progress import MAX_WARNINGS, JobView, print_summary
from ._resume import Previous, check_job, record_job, scan_output
from ._retries import show_log, verbosity
from ._sources import in_thread, open_input

__all__ = ["fetch_command"]


def _open_output(args: argparse.Namespace, filters: dict[str, Any]) -> tuple[BinaryIO, Previous]:
    """The output stream, and what an earlier run left in it (with --resume).

    A file's job record (its filters) is checked before anything in the file is touched, and
    written for a new job.
    """
    if not args.output:
        return sys.stdout.buffer, Previous()
    path = args.output
    try:
        started = os.path.exists(path) and os.path.getsize(path) > 0
        if started and not args.resume:
            raise CliExit(
                f"{path} already exists: add --resume to continue that job, or remove the file"
            )
        if started:
            check_job(path, filters, all_pages=args.all_pages)
            previous = scan_output(path, retry_failed=args.retry_failed)
            return open(path, "ab", buffering=0), previous
        out = open(path, "wb", buffering=0)  # noqa: SIM115 - the caller closes it
        record_job(path, filters, all_pages=args.all_pages)
        return out, Previous()
    except OSError as exc:
        raise CliExit(f"cannot write {path}: {exc.strerror or exc}") from None


def _check_options(args: argparse.Namespace) -> dict[str, Any]:
    filters = filters_from_args(args)
    check_filters(filters)  # a bad filter is a usage error before anything starts
    if args.resume and not args.output:
        raise CliExit("--resume needs -o/--output FILE: the ids to skip are read from it")
    if args.retry_failed and not args.resume:
        raise CliExit("--retry-failed goes with --resume")
    if len(args.delimiter) != 1:
        raise CliExit("--delimiter must be one character")
    return filters


async def fetch_command(args: argparse.Namespace) -> int:
    filters = _check_options(args)
    conn = connection(args)
    options = client_options(args, conn.base_url)
    report = JobReport()
    options["rate_limit"], report.start = _start_rate(args, conn)
    client = AsyncCommbox(conn.token, **options)
    try:
        return await _fetch(args, filters, conn, client, report, options["rate_limit"])
    except CliExit as exc:
        if args.summary_json:
            outcome = "interrupted" if exc.status == EXIT_INTERRUPTED else "error"
            if isinstance(exc, _NoIds):
                outcome = "empty"
            data = summary_json(report, outcome=outcome, error=exc.message)
            write_summary_json(args.summary_json, data)
        raise


def _start_rate(args: argparse.Namespace, conn: Connection) -> tuple[RateLimit, str]:
    """The client's rate limit, started at the limit an earlier run met here (unless
    ``--fresh``), and where it started, in words for the summary."""
    limit = as_rate_limit(args.rate)
    if args.fresh:
        return limit, f"{limit.max_rate:g}/s (--fresh: any remembered limit ignored)"
    found = memory.recall(conn.base_url, conn.token)
    if found is None or not limit.adaptive:
        return limit, f"{limit.max_rate:g}/s (no limit remembered for this server and token)"
    age = found.age(time.time())
    if found.rate >= limit.max_rate:
        # Nothing to start below: --rate is the lower, and the run says nothing of the limit
        # above it (_save_rate keeps what was remembered).
        text = f"{limit.max_rate:g}/s, --rate (a limit of {found.rate:.4g}/s remembered {age} ago)"
        return limit, text
    text = f"{found.rate:.4g}/s, remembered from a run {age} ago (--fresh starts at --rate)"
    return dataclasses.replace(limit, start_rate=found.rate), text


def _save_rate(
    conn: Connection, report: JobReport, limit: RateLimit, *, fresh: bool, interrupted: bool
) -> None:
    """Remember the rate the job ended at when the job measured the server's limit: it met a
    429 (its pacing read the limit), or it started from a remembered rate and its probes found
    more. Otherwise what was remembered stays as it was, with its time, so that ``MAX_AGE``
    counts from the last measurement (a daily run too short to probe kept a week-old rate
    alive for ever). Not a run that --rate kept below what was remembered, nor a ``--fresh``
    run that met no 429: their rate is the caller's, not the server's (a run at --rate 5 left
    the next full-speed run starting at 5/s). A ``--fresh`` run that met no 429 forgets what
    was remembered instead: it was asked to start over. A run stopped by a signal or an error
    saves nothing: it may have stopped halfway through a search, far below the limit."""
    stats = report.stats
    if interrupted or stats is None or not stats.requests:
        return
    if stats.throttled or (limit.start_rate is not None and stats.current_rate > limit.start_rate):
        memory.remember(conn.base_url, conn.token, stats.current_rate)
    elif fresh:
        memory.forget(conn.base_url, conn.token)


class _NoIds(CliExit):
    """The input held no identity id: a failed export must not look like a job done."""

    def __init__(self, where: str, why: str) -> None:
        super().__init__(
            f"{where} held no identity id ({why}): nothing was fetched; --allow-empty "
            "accepts an empty input",
            EXIT_FAILED,
        )


async def _fetch(
    args: argparse.Namespace,
    filters: dict[str, Any],
    conn: Connection,
    client: AsyncCommbox,
    report: JobReport,
    limit: RateLimit,
) -> int:
    loud = verbosity(args)
    interrupted = False
    ceiling = args.rate if args.rate is not None else DEFAULT_RATE_LIMIT.max_rate
    timeout = args.timeout if args.timeout is not None else DEFAULT_TIMEOUT.total
    host = urlsplit(conn.base_url).netloc
    with contextlib.ExitStack() as files:
        lines, total, blocking = open_input(args)
        if isinstance(lines, io.TextIOBase):
            files.callback(lines.close)  # a pipe's descriptor is closed by its reader thread
        if total == 0 and not args.allow_empty:
            # Before the output is created: a cron job fed a failed export leaves no file.
            raise _NoIds(args.ids_file, "an empty file, or a CSV header with no rows")
        out, previous = _open_output(args, filters)
        if out is not sys.stdout.buffer:
            files.callback(out.close)
        view = JobView(
            total=total, label="fetch", quiet=loud < 0, progress_every=args.progress_every
        )
        _announce(view, args.output, previous)
        records = iter_records(lines, column=args.column, delimiter=args.delimiter)
        source = InputIds(records, done=previous.done, on_bad=view.bad_line, on_skip=view.skip)
        # A pipe is read, and its records checked, in a thread; a bad --column or any other
        # input error then ends the job from inside fetch_many, which re-raises it here.
        ids: Iterable[int] | AsyncIterator[int] = in_thread(source) if blocking else source
        writer = LineWriter(out)
        log = show_log(view.note, stream=sys.stderr, verbosity=loud, limit=MAX_WARNINGS)
        try:
            async with client:
                with view, log:
                    await run_job(
                        client,
                        ids,
                        concurrency=args.concurrency,
                        filters=filters,
                        writer=writer,
                        view=view,
                        report=report,
                        ceiling=ceiling,
                        all_pages=args.all_pages,
                        token_from=conn.token_from,
                        explain=lambda error: explain(
                            error, host=host, timeout=timeout, identity=False
                        ),
                    )
        except asyncio.CancelledError:
            interrupted = True
        finally:
            report.bad_lines, report.duplicates = source.bad, source.duplicates
            report.empty = source.empty
            report.resumed = source.resumed
            # A second Ctrl-C (KeyboardInterrupt) or an error ends the job as abruptly.
            stopped = interrupted or sys.exc_info()[0] is not None
            _save_rate(conn, report, limit, fresh=args.fresh, interrupted=stopped)
    return _finish(args, report, source, writer.lines, interrupted=interrupted, host=host)


def _finish(
    args: argparse.Namespace,
    report: JobReport,
    source: InputIds,
    lines: int,
    *,
    interrupted: bool,
    host: str,
) -> int:
    """The summary, then how the job ends: its exit status, or a CliExit that says why."""
    no_ids = not report.fetched and not source.resumed and not source.duplicates
    if verbosity(args) >= 0:
        title = "fetch interrupted" if interrupted else "fetch done"
        print_summary(summary_rows(report), title=title, stream=sys.stderr)
    if interrupted:
        where = f" to {args.output}" if args.output else ""
        hint = "; run the same command with --resume to continue" if args.output else ""
        raise CliExit(
            f"interrupted: {lines:,} complete lines written{where}{hint}", EXIT_INTERRUPTED
        )
    if no_ids and not args.allow_empty:
        where = "stdin" if args.ids_file == "-" else args.ids_file
        why = f"{_count(source.bad, 'bad line')}" if source.bad else "no line held one"
        raise _NoIds(where, why)
    failed = bool(report.failed or report.bad_lines)
    if args.summary_json:
        outcome = "unreachable" if report.unsent else "failed" if failed else "ok"
        write_summary_json(args.summary_json, summary_json(report, outcome=outcome))
    if report.unsent:
        resume = " --resume --retry-failed" if args.output else ""
        raise CliExit(
            f"stopped sending: nothing could connect to {host} ({report.unsent:,} ids not "
            f"sent); check --base-url, then run the same command{resume} again",
            EXIT_UNREACHABLE,
        )
    return EXIT_FAILED if failed else EXIT_OK


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _announce(view: JobView, path: str | None, previous: Previous) -> None:
    if previous.dropped_bytes:
        view.note(
            f"{path}: dropped an incomplete last line ({previous.dropped_bytes} bytes) left by an "
            "interrupted run; that identity is fetched again"
        )
    if previous.removed_failed:
        view.note(f"{path}: removed {previous.removed_failed:,} failed results to fetch again")
    if previous.lines:
        view.note(f"resuming: {previous.lines:,} identities already in {path} are skipped")
