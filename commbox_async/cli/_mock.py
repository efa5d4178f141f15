"""``commbox-async mock``: the fake CommBox server (``commbox_async.testing``) until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import socket
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


#: Listening on every interface: no client can connect to these addresses as such.
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}


def banner(server: FakeCommbox) -> str:
    """The line ``mock`` prints: first a URL a client on this machine accepts as it is."""
    local = _WILDCARDS.get(server.host)
    if local is None:
        return f"fake CommBox serving on {server.url} (token from --token); Ctrl-C stops"
    # A wildcard address is where the server listens, not a URL to give a client: name this
    # machine's loopback for local clients, and its host name for the others (plain http to
    # another host needs the client's explicit opt-in).
    remote = f"http://{socket.gethostname()}:{server.port}"
    return (
        f"fake CommBox serving on http://{local}:{server.port} (token from --token); from "
        f"another machine or container: COMMBOX_BASE_URL={remote} with --allow-insecure-http "
        "(allow_insecure_http=True in Python); Ctrl-C stops"
    )


async def serve_forever(server: FakeCommbox) -> None:
    async with server:
        print(banner(server), flush=True)
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
