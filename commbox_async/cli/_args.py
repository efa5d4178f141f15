"""The command line's arguments (argparse): subcommands, client options, and the API's filters."""

from __future__ import annotations

import argparse
import os
from typing import Any

from .._config import DEFAULT_RATE_LIMIT, DEFAULT_RETRIES, DEFAULT_TIMEOUT
from .._models import ObjectStatus
from .._protocol import MAX_PAGE_SIZE
from .._version import __version__
from ._errors import CliExit
from ._input import parse_identity

__all__ = ["build_parser", "client_options", "filters_from_args", "require_token"]

#: argparse dest -> keyword of ``get_user_objects`` / ``fetch_many``.
_FILTERS = (
    "stream_provider_id",
    "stream_provider_type",
    "stream_id",
    "sub_stream_id",
    "page_number",
    "page_size",
    "statuses",
    "order",
    "object_id",
    "module_id",
    "include_childs",
    "include_activity_log",
)


def _identity(text: str) -> int:
    value = parse_identity(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not an identity id (a positive integer)")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _statuses(text: str) -> tuple[int, ...]:
    """'open,resolved' or '1,2': names of ObjectStatus or numbers."""
    out: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if part.isdigit():
            out.append(int(part))
        elif part.upper() in ObjectStatus.__members__:
            out.append(int(ObjectStatus[part.upper()]))
        else:
            names = ", ".join(m.lower() for m in ObjectStatus.__members__)
            raise argparse.ArgumentTypeError(f"{part!r} is not a status number or name ({names})")
    return tuple(out)


def _add_connection(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--token",
        help="API token (prefer the COMMBOX_TOKEN environment variable: a flag shows in the "
        "process list)",
    )
    group.add_argument(
        "--base-url", help="API base URL (default: COMMBOX_BASE_URL or the production URL)"
    )
    group.add_argument(
        "--rate",
        type=_positive_float,
        help=f"requests per second, retries included (default {DEFAULT_RATE_LIMIT.max_rate:g})",
    )
    group.add_argument(
        "--timeout",
        type=_positive_float,
        help=f"seconds per attempt (default {DEFAULT_TIMEOUT.total:g})",
    )
    group.add_argument(
        "--retries",
        type=_positive_int,
        metavar="TRIES",
        help=f"tries per identity for transient failures (default {DEFAULT_RETRIES.tries})",
    )


def _add_filters(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("filters (sent as the API's query parameters)")
    group.add_argument("--page-size", type=_positive_int, help=f"1 to {MAX_PAGE_SIZE}")
    group.add_argument("--page-number", type=int)
    group.add_argument(
        "--status",
        dest="statuses",
        type=_statuses,
        metavar="LIST",
        help="e.g. open,resolved or 1,2",
    )
    group.add_argument("--order", help="a field name, e.g. 'closedtime desc'")
    group.add_argument("--stream-provider-id")
    group.add_argument("--stream-provider-type", type=int)
    group.add_argument("--stream-id", type=int)
    group.add_argument("--sub-stream-id", type=int)
    group.add_argument("--object-id", type=int)
    group.add_argument("--module-id", type=int)
    group.add_argument("--include-childs", action=argparse.BooleanOptionalAction)
    group.add_argument("--include-activity-log", action=argparse.BooleanOptionalAction)


def _add_mock(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--token", default="test-token")
    parser.add_argument("--conversations", type=int, default=10)
    parser.add_argument("--childs", type=int, default=10)
    parser.add_argument("--throttle-rate", type=float, default=None, help="requests/s (off)")
    parser.add_argument("--throttle-burst", type=float, default=10.0)
    parser.add_argument("--retry-after", default="1")
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument(
        "--fault-kinds",
        default="default",
        help="comma-separated kinds, 'default' or 'all' (see FAULT_KINDS)",
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added per request")


def build_parser(
    parser_class: type[argparse.ArgumentParser] = argparse.ArgumentParser,
) -> argparse.ArgumentParser:
    parser = parser_class(
        prog="commbox-async",
        description="CommBox v2 'Get User Objects' from the shell: one identity, or thousands.",
        epilog="Exit status: 0 all ok; 1 some identities failed (or input lines were bad); "
        "2 usage or configuration error; 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--uvloop",
        action="store_true",
        help="run on uvloop's event loop, which can save some CPU per request (measured in "
        "benchmarks/RESULTS.md; pip install 'commbox-async[uvloop]')",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    get = commands.add_parser("get", help="print one identity's page as JSON")
    get.add_argument("identity_id", type=_identity, metavar="IDENTITY_ID")
    get.add_argument("-o", "--output", help="write the JSON to this file instead of stdout")
    _add_connection(get)
    _add_filters(get)

    fetch = commands.add_parser(
        "fetch",
        help="fetch many identities, one NDJSON line each",
        description="Read identity ids (one per line, or a CSV column) and write one JSON line "
        "per identity: its response, or its error.",
    )
    fetch.add_argument(
        "ids_file", nargs="?", default="-", metavar="IDS_FILE", help="'-' or absent: stdin"
    )
    fetch.add_argument("-o", "--output", help="NDJSON output file (default: stdout)")
    fetch.add_argument(
        "--resume", action="store_true", help="skip the ids already in the output file"
    )
    fetch.add_argument(
        "--retry-failed",
        action="store_true",
        help="with --resume: remove the output's error lines and fetch those ids again",
    )
    fetch.add_argument("--column", help="read ids from this column of a CSV file with a header")
    fetch.add_argument("--delimiter", default=",", help="CSV delimiter (default ',')")
    fetch.add_argument(
        "--concurrency", type=_positive_int, default=32, help="requests in flight (default 32)"
    )
    _add_connection(fetch)
    _add_filters(fetch)

    mock = commands.add_parser(
        "mock",
        help="run the fake CommBox server on a local port",
        description="Run the fake CommBox server (commbox_async.testing) until Ctrl-C. Point a "
        "client at it with COMMBOX_BASE_URL=http://HOST:PORT and COMMBOX_TOKEN=<--token>.",
    )
    _add_mock(mock)

    demo = commands.add_parser(
        "demo",
        help="fetch 2,000 identities from an in-process fake server that throttles",
        description="Start the fake server in-process with throttling on, fetch identities "
        "through it with a progress bar, and print the summary. No token needed.",
    )
    demo.add_argument("--identities", type=_positive_int, default=2000)
    demo.add_argument(
        "--rate", type=_positive_float, default=600.0, help="client requests/s (default 600)"
    )
    demo.add_argument(
        "--server-rate",
        type=_positive_float,
        default=300.0,
        help="the fake server's throttle, requests/s (default 300)",
    )
    demo.add_argument("--server-burst", type=_positive_float, default=20.0)
    demo.add_argument(
        "--fault-rate",
        type=float,
        default=0.02,
        help="share of requests the server fails at random (default 0.02)",
    )
    demo.add_argument("--concurrency", type=_positive_int, default=32)
    demo.add_argument("-o", "--output", help="also write the NDJSON results to this file")
    return parser


def filters_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The filters the user gave (None means not sent)."""
    return {name: getattr(args, name) for name in _FILTERS if getattr(args, name) is not None}


def client_options(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of ``AsyncCommbox`` from the connection options."""
    options: dict[str, Any] = {"base_url": args.base_url}
    if args.rate is not None:
        options["rate_limit"] = args.rate
    if args.timeout is not None:
        options["timeout"] = args.timeout
    if args.retries is not None:
        options["retries"] = args.retries
    return options


def require_token(args: argparse.Namespace) -> str:
    """The token from ``--token`` or ``COMMBOX_TOKEN``; a usage error when neither is set."""
    token: str | None = args.token if args.token is not None else os.environ.get("COMMBOX_TOKEN")
    if token is None:
        raise CliExit("no token: set COMMBOX_TOKEN (or pass --token)")
    return token
