"""``commbox-async get``: one identity's page as JSON, on the terminal, a pipe or a file."""

from __future__ import annotations

import argparse
import os
import sys

import msgspec
from rich.console import Console

from .._client import AsyncCommbox
from .._errors import AuthenticationError, CommboxError, InvalidArgumentError
from ._args import client_options, filters_from_args, require_token
from ._errors import EXIT_FAILED, EXIT_OK, CliExit
from ._paging import check_filters, every_page, is_full
from ._retries import show_retries

__all__ = ["get_command"]


async def get_command(args: argparse.Namespace) -> int:
    filters = filters_from_args(args)
    check_filters(filters)
    if args.output:
        _refuse_existing(args.output)  # before the request, not after it
    async with AsyncCommbox(require_token(args), **client_options(args)) as client:
        try:
            with show_retries(_say, stream=sys.stderr):
                if args.all_pages:
                    page = await every_page(client, args.identity_id, filters)
                else:
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
        _write_new_file(args.output, data + b"\n")
    elif sys.stdout.isatty():
        Console(highlight=False).print_json(data.decode())
    else:
        sys.stdout.buffer.write(data + b"\n")
        sys.stdout.flush()
    if not args.all_pages and is_full(page, filters):
        print(
            f"commbox-async: the page is full ({len(page.data)} conversations): there may be "
            "more; --all-pages fetches every page",
            file=sys.stderr,
        )
    return EXIT_OK


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
