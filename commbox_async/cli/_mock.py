"""``commbox-async mock``: the fake CommBox server (``commbox_async.testing``) until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import sys

from ..testing import DEFAULT_FAULT_KINDS, FAULT_KINDS, FakeCommbox, Faults, Throttling
from ._errors import EXIT_OK, CliExit

__all__ = ["mock_command", "server_from_args"]


def server_from_args(args: argparse.Namespace) -> FakeCommbox:
    """The server the ``mock`` arguments describe (``ValueError`` for a bad setting)."""
    throttling = (
        Throttling(rate=args.throttle_rate, burst=args.throttle_burst, retry_after=args.retry_after)
        if args.throttle_rate
        else None
    )
    if args.fault_kinds == "all":
        kinds: tuple[str, ...] = FAULT_KINDS
    elif args.fault_kinds == "default":
        kinds = DEFAULT_FAULT_KINDS
    else:
        kinds = tuple(k.strip() for k in args.fault_kinds.split(",") if k.strip())
    faults = Faults(rate=args.fault_rate, kinds=kinds) if args.fault_rate else None
    return FakeCommbox(
        token=args.token,
        conversations=args.conversations,
        childs=args.childs,
        throttling=throttling,
        faults=faults,
        latency=args.latency,
        host=args.host,
        port=args.port,
        record=False,
    )


async def serve_forever(server: FakeCommbox) -> None:
    async with server:
        print(
            f"fake CommBox serving on {server.url} (token from --token); Ctrl-C stops", flush=True
        )
        await asyncio.Event().wait()


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
