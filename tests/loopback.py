"""A loopback server for one handler: what the tests need when the fake CommBox server's
behaviour is not the point (a server that echoes the token, records headers, answers oddly)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from aiohttp import web

#: The endpoint's path, as the client requests it.
V2_PATH = "/v2/users/identities/{ident}/objects"


@asynccontextmanager
async def serve(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    path: str = V2_PATH,
) -> AsyncIterator[str]:
    """Serve ``handler`` at ``path`` on a free loopback port; yields the base URL."""
    app = web.Application()
    app.router.add_get(path, handler)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()
