"""``get``, ``mock`` and ``demo``: one identity, the fake server, and the job against it."""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
from typing import BinaryIO

import msgspec
from rich.console import Console

from ._cli_args import client_options, filters_from_args
from ._cli_errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, CliExit
from ._cli_fetch import require_token, run_job
from ._cli_output import JobReport, LineWriter, summary_rows
from ._cli_progress import JobView, print_summary
from ._client import AsyncCommbox
from ._errors import AuthenticationError, CommboxError, InvalidArgumentError
from .testing import (
    DEFAULT_FAULT_KINDS,
    FakeCommbox,
    Faults,
    Throttling,
    serve_forever,
    server_from_args,
)

__all__ = ["demo_command", "get_command", "mock_command"]

#: The server's random faults: 5xx, resets, cut and empty bodies, slow answers, all retried.
#: Its 429s come from the throttle alone, as a real server's would.
DEMO_FAULTS = tuple(kind for kind in DEFAULT_FAULT_KINDS if kind != "429")
#: The demo's identities: ids that look like the vendor's (six digits).
DEMO_FIRST_ID = 558_000


async def get_command(args: argparse.Namespace) -> int:
    filters = filters_from_args(args)
    async with AsyncCommbox(require_token(args), **client_options(args)) as client:
        try:
            page = await client.get_user_objects(args.identity_id, **filters)
        except AuthenticationError as exc:
            raise CliExit(
                f"the server refused the token ({exc.message}); check COMMBOX_TOKEN"
            ) from None
        except InvalidArgumentError:
            raise  # a bad filter: a usage error
        except CommboxError as exc:
            raise CliExit(str(exc), EXIT_FAILED) from None
    data = msgspec.json.encode(page)
    if args.output:
        _write_file(args.output, data + b"\n")
    elif sys.stdout.isatty():
        Console(highlight=False).print_json(data.decode())
    else:
        sys.stdout.buffer.write(data + b"\n")
        sys.stdout.flush()
    return EXIT_OK


def _write_file(path: str, data: bytes) -> None:
    try:
        with open(path, "wb") as out:
            out.write(data)
    except OSError as exc:
        raise CliExit(f"cannot write {path}: {exc.strerror or exc}") from None


def _open_lines(path: str) -> BinaryIO:
    """An unbuffered file for whole NDJSON lines (see ``LineWriter``)."""
    try:
        return open(path, "wb", buffering=0)
    except OSError as exc:
        raise CliExit(f"cannot write {path}: {exc.strerror or exc}") from None


async def mock_command(args: argparse.Namespace) -> int:
    try:
        server = server_from_args(args)
    except ValueError as exc:
        raise CliExit(f"mock: {exc}") from None
    try:
        await serve_forever(server)
    except OSError as exc:
        raise CliExit(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    except asyncio.CancelledError:
        print("fake CommBox stopped", file=sys.stderr)
    return EXIT_OK


async def demo_command(args: argparse.Namespace) -> int:
    if not 0.0 <= args.fault_rate <= 1.0:
        raise CliExit("--fault-rate must be between 0 and 1")
    token = secrets.token_urlsafe(24)  # the demo's own; never shown
    server = FakeCommbox(
        token=token,
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
                    )
        except OSError as exc:
            raise CliExit(f"cannot write {args.output}: {exc.strerror or exc}") from None
        except asyncio.CancelledError:
            interrupted = True
        finally:
            if out is not None:
                out.close()
    print_summary(
        summary_rows(report),
        title="demo interrupted" if interrupted else "demo done",
        stream=sys.stdout,
    )
    if interrupted:
        raise CliExit("interrupted", EXIT_INTERRUPTED)
    return EXIT_FAILED if report.failed else EXIT_OK
