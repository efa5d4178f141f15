"""``commbox-async demo``: a fetch job against an in-process fake server that throttles."""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
from typing import BinaryIO

from .._client import AsyncCommbox
from ..testing import DEFAULT_FAULT_KINDS, FakeCommbox, Faults, Throttling
from ._errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, CliExit
from ._job import run_job
from ._output import JobReport, LineWriter, summary_rows
from ._progress import JobView, print_summary

__all__ = ["demo_command"]

#: The server's random faults: 5xx, resets, cut and empty bodies, slow answers, all retried.
#: Its 429s come from the throttle alone, as a real server's would.
DEMO_FAULTS = tuple(kind for kind in DEFAULT_FAULT_KINDS if kind != "429")
#: The demo's identities: ids that look like the vendor's (six digits).
DEMO_FIRST_ID = 558_000
#: Conversations per identity and messages per conversation in the demo's pages.
DEMO_CONVERSATIONS = 3
DEMO_CHILDS = 2


def pacing_rows(report: JobReport, args: argparse.Namespace) -> list[tuple[str, str]]:
    """The point of the demo: the time against the ideal, and the rate the client found.

    The ideal is what the server's throttle allows: its burst at once, the rest at its rate.
    """
    ideal = max(0, report.fetched - args.server_burst) / args.server_rate
    share = f" ({ideal / report.elapsed:.0%} of the ideal speed)" if report.elapsed > 0 else ""
    # The rate the client found, and why, is a row of every job's summary ("client rate").
    return [
        (
            "time",
            f"{report.elapsed:.1f} s; ideal {ideal:.1f} s at the server's limit of "
            f"{args.server_rate:g} req/s{share}",
        )
    ]


def _open_lines(path: str) -> BinaryIO:
    """An unbuffered file for whole NDJSON lines (see ``LineWriter``)."""
    try:
        return open(path, "wb", buffering=0)
    except OSError as exc:
        raise CliExit(f"cannot write {path}: {exc.strerror or exc}") from None


async def demo_command(args: argparse.Namespace) -> int:
    token = secrets.token_urlsafe(24)  # the demo's own; never shown
    server = FakeCommbox(
        token=token,
        # Small pages: the server shares this process's CPU with the client, and must not be
        # what limits the job (its throttle should).
        conversations=DEMO_CONVERSATIONS,
        childs=DEMO_CHILDS,
        throttling=Throttling(rate=args.server_rate, burst=args.server_burst),
        faults=Faults(rate=args.fault_rate, kinds=DEMO_FAULTS) if args.fault_rate else None,
        record=False,
    )
    report = JobReport()
    writer: LineWriter | None = None
    interrupted = False
    async with server:
        print(
            f"demo: fake CommBox on {server.url}, throttling at {args.server_rate:g} req/s "
            f"(burst {args.server_burst:g}, Retry-After 1); {args.fault_rate:.0%} of requests "
            "fail at random\n"
            f"demo: fetching {args.identities:,} identities at up to {args.rate:g} req/s, "
            f"{args.concurrency} at a time",
            flush=True,
        )
        out = None
        try:
            if args.output:
                out = _open_lines(args.output)
                writer = LineWriter(out)
            ids = range(DEMO_FIRST_ID, DEMO_FIRST_ID + args.identities)
            view = JobView(total=args.identities, label="demo")
            async with AsyncCommbox(token, base_url=server.url, rate_limit=args.rate) as client:
                with view:
                    await run_job(
                        client,
                        ids,
                        concurrency=args.concurrency,
                        filters={},
                        writer=writer,
                        view=view,
                        report=report,
                        ceiling=args.rate,
                    )
        except OSError as exc:
            raise CliExit(f"cannot write {args.output}: {exc.strerror or exc}") from None
        except asyncio.CancelledError:
            interrupted = True
        finally:
            if out is not None:
                out.close()
    rows = summary_rows(report) + pacing_rows(report, args)
    print_summary(rows, title="demo interrupted" if interrupted else "demo done", stream=sys.stdout)
    if interrupted:
        raise CliExit("interrupted", EXIT_INTERRUPTED)
    return EXIT_FAILED if report.failed else EXIT_OK
