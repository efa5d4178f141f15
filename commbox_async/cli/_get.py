"""``commbox-async get``: one identity's page as JSON, on the terminal, a pipe or a file.

It draws nothing but the page, so it runs without the ``cli`` extra: on a terminal the page is
coloured with rich when rich is installed, indented plain JSON otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from urllib.parse import urlsplit

import msgspec

from .._client import AsyncCommbox
from .._config import DEFAULT_TIMEOUT
from .._errors import AuthenticationError, CommboxError, InvalidArgumentError
from ._args import filters_from_args
from ._connection import client_options, connection
from ._errors import EXIT_FAILED, EXIT_OK, CliExit, explain
from ._paging import check_filters, every_page, is_full
from ._retries import show_log, verbosity

__all__ = ["get_command"]


async def get_command(args: argparse.Namespace) -> int:
    filters = filters_from_args(args)
    check_filters(filters)
    if args.output:
        _refuse_existing(args.output)  # before the request, not after it
    conn = connection(args)
    timeout = args.timeout if args.timeout is not None else DEFAULT_TIMEOUT.total
    async with AsyncCommbox(conn.token, **client_options(args, conn.base_url)) as client:
        try:
            with show_log(_say, stream=sys.stderr, verbosity=verbosity(args)):
                if args.all_pages:
                    page = await every_page(client, args.identity_id, filters)
                else:
                    page = await client.get_user_objects(args.identity_id, **filters)
        except AuthenticationError as exc:
            raise CliExit(
                f"the server refused the token ({exc.message}); check {conn.token_from}"
            ) from None
        except InvalidArgumentError:
            raise  # a bad filter: a usage error
        except CommboxError as exc:
            host = urlsplit(conn.base_url).netloc
            raise CliExit(explain(exc, host=host, timeout=timeout), EXIT_FAILED) from None
    data = msgspec.json.encode(page)
    if args.output:
        _write_new_file(args.output, data + b"\n")
    elif sys.stdout.isatty():
        _print_pretty(data)
    else:
        sys.stdout.buffer.write(data + b"\n")
        sys.stdout.flush()
    if not args.all_pages and is_full(page, filters) and verbosity(args) >= 0:
        count = len(page.data)
        print(
            f"commbox-async: the page is full ({count} conversation{'' if count == 1 else 's'}): "
            "there may be more; --all-pages fetches every page",
            file=sys.stderr,
        )
    return EXIT_OK


def _print_pretty(data: bytes) -> None:
    """The page on a terminal: coloured by rich when it is installed, indented otherwise."""
    try:
        from rich.console import Console
    except ImportError:
        print(json.dumps(json.loads(data), indent=2, ensure_ascii=False), flush=True)
        return
    Console(highlight=False).print_json(data.decode())


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _refuse_existing(path: str) -> None:
    if os.path.exists(path):
        raise CliExit(f"{path} already exists: remove it, or choose another file")


def _write_new_file(path: str, data: bytes) -> None:
    try:
        # "x": never overwrite, even a file created since the check above.
        with open(path, "xb") as out:
            out.write(data)
    except FileExistsError:
        raise CliExit(f"{path} already exists: remove it, or choose another file") from None
    except OSError as exc:
        raise CliExit(f"cannot write {path}: {exc.strerror or exc}") from None
