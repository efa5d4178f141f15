"""``commbox-async get``: one identity's page as JSON, on the terminal, a pipe or a file."""

from __future__ import annotations

import argparse
import sys

import msgspec
from rich.console import Console

from .._client import AsyncCommbox
from .._errors import AuthenticationError, CommboxError, InvalidArgumentError
from ._args import client_options, filters_from_args, require_token
from ._errors import EXIT_FAILED, EXIT_OK, CliExit

__all__ = ["get_command"]


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
