"""A loopback API gateway: a real aiohttp server that serves the API under ``/commbox`` by
forwarding each request to an upstream (the fake CommBox server), as a corporate proxy does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from aiohttp import web


@asynccontextmanager
async def serve_gateway(upstream: str) -> AsyncIterator[tuple[str, list[str]]]:
    """Serve ``upstream`` under /commbox on 127.0.0.1; yields the base URL and the paths seen."""
    seen: list[str] = []

    async def forward(request: web.Request) -> web.Response:
        seen.append(request.path)
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"{upstream}/{request.match_info['tail']}",
                params=request.query,
                headers=request.headers,
            ) as answer,
        ):
            body = await answer.read()
            return web.Response(status=answer.status, body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/commbox/{tail:.*}", forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/commbox", seen
    finally:
        await runner.cleanup()
