"""``commbox-async mock``: the fake CommBox server (``commbox_async.testing``) until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import shlex
import socket
import sys

from ..testing import DEFAULT_FAULT_KINDS, FAULT_KINDS, FakeCommbox, Faults, Throttling
from ._errors import EXIT_OK, CliExit

__all__ = ["banner", "fault_kinds", "mock_command", "server_from_args"]


def server_from_args(args: argparse.Namespace) -> FakeCommbox:
    """The server the ``mock`` arguments describe (``ValueError`` for a bad setting)."""
    throttling = (
        Throttling(rate=args.throttle_rate, burst=args.throttle_burst, retry_after=args.retry_after)
        if args.throttle_rate
        else None
    )
    faults = Faults(rate=args.fault_rate, kinds=fault_kinds(args.fault_kinds))
    return FakeCommbox(
        token=args.token,
        conversations=args.conversations,
        childs=args.childs,
        not_found=args.not_found,
        throttling=throttling,
        faults=faults if args.fault_rate else None,
        latency=args.latency,
        host=args.host,
        port=args.port,
        record=False,
    )


def fault_kinds(text: str) -> tuple[str, ...]:
    """``--fault-kinds``: 'default', 'all', or names; an unknown name lists the valid ones."""
    if text == "all":
        return FAULT_KINDS
    if text == "default":
        return DEFAULT_FAULT_KINDS
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in FAULT_KINDS]
    if unknown or not kinds:
        raise CliExit(
            f"--fault-kinds: unknown kind {', '.join(unknown) or repr(text)}; use 'default', "
            f"'all', or a comma-separated list of: {', '.join(FAULT_KINDS)}"
        )
    return kinds


#: Listening on every interface: no client can connect to these addresses as such.
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}


def banner(server: FakeCommbox) -> str:
    """What ``mock`` prints at start: where it is (first a URL a client on this machine accepts
    as it is), and the lines a client needs."""
    local = _WILDCARDS.get(server.host)
    url = server.url if local is None else f"http://{local}:{server.port}"
    elsewhere = ""
    if local is not None:
        # A wildcard address is where the server listens, not a URL to give a client: name this
        # machine's loopback for local clients, and its host name for the others (plain http to
        # another host needs the client's explicit opt-in).
        remote = f"http://{socket.gethostname()}:{server.port}"
        elsewhere = (
            f"; from another machine or container: COMMBOX_BASE_URL={remote} with "
            "--allow-insecure-http (allow_insecure_http=True in Python)"
        )
    exports = (
        f"export COMMBOX_BASE_URL={shlex.quote(url)} COMMBOX_TOKEN={shlex.quote(server.token)}"
    )
    return (
        f"fake CommBox serving on {url} with token {server.token!r}{elsewhere}; Ctrl-C stops\n"
        f"in another shell:\n  {exports}\n  commbox-async get 558355"
    )


async def serve_forever(server: FakeCommbox) -> None:
    async with server:
        print(banner(server), flush=True)
        await asyncio.Event().wait()


async def mock_command(args: argparse.Namespace) -> int:
    if args.fault_kinds == "list":
        print("\n".join(FAULT_KINDS))
        return EXIT_OK
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
