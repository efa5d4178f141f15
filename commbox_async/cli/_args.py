"""The command line's arguments (argparse): subcommands, client options, and the API's filters."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from typing import Any

from .._config import DEFAULT_RATE_LIMIT, DEFAULT_RETRIES, DEFAULT_TIMEOUT
from .._errors import InvalidArgumentError
from .._protocol import FILTER_NAMES, MAX_PAGE_SIZE, Query, status_by_name
from .._validate import MAX_CONCURRENCY
from .._version import __version__
from ._input import parse_identity

__all__ = [
    "DEFAULT_MOCK_PORT",
    "DEFAULT_MOCK_TOKEN",
    "PROGRESS_EVERY",
    "build_parser",
    "filters_from_args",
]

#: ``mock``'s port: not 8080, which many dev servers take, nor examples/web_badges.py's 8090.
DEFAULT_MOCK_PORT = 8765
#: The token ``mock`` accepts unless told otherwise (it prints it at start).
DEFAULT_MOCK_TOKEN = "test-token"
#: Seconds between two progress lines of ``fetch`` when stderr is not a terminal.
PROGRESS_EVERY = 30.0


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


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def _non_negative_int(text: str) -> int:
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
    return value


def _between(low: int, high: int) -> Callable[[str], int]:
    """An int flag with a range, worded as the library words its ranges."""

    def parse(text: str) -> int:
        value = _integer(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {value}")
        return value

    return parse


_port = _between(0, 65535)
#: fetch_many's own bound on concurrency, checked here for --all-pages too.
_concurrency = _between(1, MAX_CONCURRENCY)


def _statuses(text: str) -> tuple[int, ...]:
    """'open,resolved' or '1,2': names of ObjectStatus (as the library reads them) or numbers."""
    out: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if part.isdigit():
            out.append(int(part))
            continue
        try:
            number = status_by_name(part)
        except InvalidArgumentError as exc:
            raise argparse.ArgumentTypeError(f"{part!r} is not a status number or name") from exc
        assert isinstance(number, int)  # a str in, its number out
        out.append(number)
    return tuple(out)


def _add_connection(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--token",
        help="API token (prefer the COMMBOX_TOKEN environment variable: a flag shows in the "
        "process list)",
    )
    group.add_argument(
        "--base-url",
        help="API base URL, with a gateway's path prefix if it has one, e.g. "
        "https://gateway.example.com/commbox (default: COMMBOX_BASE_URL or the production URL)",
    )
    group.add_argument(
        "--allow-insecure-http",
        action="store_true",
        help="allow a plain http:// base URL to another host (a fake server in another "
        "container); the token then travels unencrypted, and a warning says so",
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
    _add_uvloop(parser)


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("what is shown on stderr")
    loud = group.add_mutually_exclusive_group()
    loud.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="show the library's log lines: each retry and each change of the send rate, "
        "with its reason (-vv: each attempt too)",
    )
    loud.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="show only errors: no progress, notes, retries or summary",
    )


def _add_uvloop(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: not given after the subcommand, the flag keeps its value from before it.
    parser.add_argument(
        "--uvloop",
        action="store_true",
        default=argparse.SUPPRESS,
        help="run on uvloop's event loop (pip install 'commbox-async[uvloop]')",
    )


#: What a filter's option needs beyond ``--name-with-dashes`` and its field's type. Plain ints
#: (no range here): the range check is the library's, so that 0 and 101 get the same message.
_OPTION_EXTRAS: dict[str, dict[str, Any]] = {
    "stream_provider_id": {"metavar": "ID", "help": "only this stream provider"},
    "stream_provider_type": {"metavar": "N", "help": "only this provider type"},
    "stream_id": {"metavar": "ID", "help": "only this stream"},
    "sub_stream_id": {"metavar": "ID", "help": "only this sub-stream"},
    "page_number": {
        "metavar": "N",
        "help": "the page to fetch (with --all-pages: the first one); the API's default is the "
        "first page",
    },
    "page_size": {
        "metavar": "N",
        "help": f"conversations per page, 1 to {MAX_PAGE_SIZE} (the API's default: "
        f"{MAX_PAGE_SIZE})",
    },
    "statuses": {
        "flag": "--status",
        "type": _statuses,
        "metavar": "LIST",
        "help": "conversation statuses, names or numbers: e.g. open,resolved or 1,2",
    },
    "order": {"help": "sort by a field name, e.g. 'closedtime desc'"},
    "object_id": {"metavar": "ID", "help": "only this conversation"},
    "module_id": {"metavar": "ID", "help": "only this module"},
    "include_childs": {
        "help": "each conversation's messages (childs): ON unless --no-include-childs (the "
        "API's default). They make a page about ten times larger: 119 KB a line against "
        "11 KB without, for the mock's 10 conversations of 10 messages"
    },
    "include_activity_log": {"help": "send each conversation's activity log"},
}


def _add_filters(parser: argparse.ArgumentParser) -> None:
    """One option per field of ``Query``, the one list of the filters (a new filter there is
    an option here): ``--[no-]name`` for a bool, an int or a str otherwise; the argparse dest
    is the keyword of ``get_user_objects`` and ``fetch_many``. Then ``--all-pages``."""
    group = parser.add_argument_group("filters (sent as the API's query parameters)")
    for item in dataclasses.fields(Query):
        options = dict(_OPTION_EXTRAS.get(item.name, {}))
        flag = options.pop("flag", "--" + item.name.replace("_", "-"))
        kind = str(item.type)  # "int | None": the annotation as written
        if kind.startswith("bool"):
            options.setdefault("action", argparse.BooleanOptionalAction)
        elif kind.startswith("int"):
            options.setdefault("type", _integer)
        group.add_argument(flag, dest=item.name, **options)
    # Not a query parameter: how many pages are read (not in Query, so never sent).
    group.add_argument(
        "--all-pages",
        action="store_true",
        help="fetch every page of each identity, not only the first; the output holds them "
        "as one page, its totalUnreadChatMessages summed over the conversations",
    )


def _ids(text: str) -> frozenset[int]:
    ids = [parse_identity(part) for part in text.split(",") if part.strip()]
    if any(ident is None for ident in ids):
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of identity ids")
    return frozenset(ident for ident in ids if ident is not None)


def _rate(text: str) -> float:
    value = _zero_or_more(text)
    if value > 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _zero_or_more(text: str) -> float:
    return 0.0 if text.strip() in ("0", "0.0") else _positive_float(text)


def _add_mock(parser: argparse.ArgumentParser) -> None:
    server = parser.add_argument_group("the server")
    server.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    server.add_argument(
        "--port", type=_port, default=DEFAULT_MOCK_PORT, help="port, 0 for any (%(default)s)"
    )
    server.add_argument(
        "--token",
        default=DEFAULT_MOCK_TOKEN,
        help="the token it accepts (%(default)s); printed at start with an export line",
    )
    data = parser.add_argument_group("its data")
    data.add_argument(
        "--conversations",
        type=_non_negative_int,
        default=10,
        metavar="N",
        help="conversations per identity (%(default)s)",
    )
    data.add_argument(
        "--childs",
        type=_non_negative_int,
        default=10,
        metavar="N",
        help="messages per conversation (%(default)s)",
    )
    data.add_argument(
        "--not-found",
        type=_ids,
        default=frozenset({404_404}),
        metavar="IDS",
        help="identity ids answered 404, comma-separated (default 404404, as in the README)",
    )
    faults = parser.add_argument_group("throttling and faults")
    faults.add_argument(
        "--throttle-rate",
        type=_positive_float,
        metavar="RATE",
        help="answer 429 above this many requests/s (default: no throttling)",
    )
    faults.add_argument(
        "--throttle-burst",
        type=_positive_float,
        default=10.0,
        metavar="N",
        help="requests allowed at once before throttling (%(default)g)",
    )
    faults.add_argument(
        "--retry-after",
        default="1",
        metavar="VALUE",
        help="the Retry-After header of a throttled answer (%(default)s)",
    )
    faults.add_argument(
        "--fault-rate",
        type=_rate,
        default=0.0,
        metavar="SHARE",
        help="share of requests that get a fault, 0 to 1 (%(default)g)",
    )
    faults.add_argument(
        "--fault-kinds",
        default="default",
        metavar="KINDS",
        help="'default' (quick transient faults), 'all', or a comma-separated list of kinds; "
        "'list' prints the kinds",
    )
    faults.add_argument(
        "--latency",
        type=_zero_or_more,
        default=0.0,
        metavar="SECONDS",
        help="added to every answer (%(default)g)",
    )


def build_parser(
    parser_class: type[argparse.ArgumentParser] = argparse.ArgumentParser,
) -> argparse.ArgumentParser:
    parser = parser_class(
        prog="commbox-async",
        description="CommBox v2 'Get User Objects' from the shell: one identity, or thousands.",
        epilog="Exit status: 0 all ok; 1 some identities failed (or input lines were bad, or "
        "the input held no id); 2 usage or configuration error; 129 hung up (SIGHUP); "
        "130 interrupted (Ctrl-C); 143 terminated (SIGTERM).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--uvloop",
        action="store_true",
        help="run on uvloop's event loop, which can save some CPU per request (measured in "
        "benchmarks/RESULTS.md; pip install 'commbox-async[uvloop]')",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    get = commands.add_parser(
        "get",
        help="print one identity's page as JSON",
        description="Fetch one identity's conversations and print the page as the API's JSON "
        "(pretty on a terminal). A full page means there may be more: --all-pages fetches "
        "them all.",
    )
    get.add_argument("identity_id", type=_identity, metavar="IDENTITY_ID")
    get.add_argument(
        "-o", "--output", help="write the JSON to this file instead of stdout (a new file)"
    )
    _add_connection(get)
    _add_output_options(get)
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
        "--concurrency", type=_concurrency, default=32, help="requests in flight (default 32)"
    )
    fetch.add_argument(
        "--allow-empty",
        action="store_true",
        help="exit 0 when the input holds no identity id (by default an empty input, or a CSV "
        "with a header and no rows, is an error: a failed export must not look like success)",
    )
    fetch.add_argument(
        "--fresh",
        action="store_true",
        help="start at --rate, ignoring the limit an earlier run met on this server with this "
        "token (remembered in the state directory); a run that meets a 429 saves the limit it "
        "finds, one that meets none forgets what was remembered",
    )
    fetch.add_argument(
        "--summary-json",
        metavar="FILE",
        help="also write the summary as JSON to FILE (replaced at the end of the job, however "
        "it ends), for monitoring",
    )
    fetch.add_argument(
        "--progress-every",
        type=_positive_float,
        default=PROGRESS_EVERY,
        metavar="SECONDS",
        help="when stderr is not a terminal, one progress line this often "
        f"(default {PROGRESS_EVERY:g})",
    )
    _add_connection(fetch)
    _add_output_options(fetch)
    _add_filters(fetch)

    mock = commands.add_parser(
        "mock",
        help="run the fake CommBox server on a local port",
        description="Run the fake CommBox server (commbox_async.testing) until Ctrl-C. It "
        "prints its URL and token as an export line to paste into another shell.",
    )
    _add_mock(mock)
    _add_uvloop(mock)

    demo = commands.add_parser(
        "demo",
        help="fetch 2,000 identities from an in-process fake server that throttles",
        description="Start the fake server in-process with throttling on, fetch identities "
        "through it with a progress bar, and print the summary. No token needed.",
    )
    demo.add_argument(
        "--identities", type=_positive_int, default=2000, help="how many to fetch (default 2000)"
    )
    demo.add_argument(
        "--rate", type=_positive_float, default=600.0, help="client requests/s (default 600)"
    )
    demo.add_argument(
        "--server-rate",
        type=_positive_float,
        default=300.0,
        help="the fake server's throttle, requests/s (default 300)",
    )
    demo.add_argument(
        "--server-burst",
        type=_positive_float,
        default=20.0,
        help="the fake server's burst, requests (default 20)",
    )
    demo.add_argument(
        "--fault-rate",
        type=_rate,
        default=0.02,
        help="share of requests the server fails at random, 0 to 1 (default 0.02)",
    )
    demo.add_argument(
        "--concurrency", type=_concurrency, default=32, help="requests at once (default 32)"
    )
    demo.add_argument("-o", "--output", help="also write the NDJSON results to this file")
    _add_uvloop(demo)
    return parser


def filters_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The filters the user gave (None means not sent)."""
    return {name: getattr(args, name) for name in FILTER_NAMES if getattr(args, name) is not None}
