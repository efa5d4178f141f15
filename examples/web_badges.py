"""An aiohttp.web app that shows unread badges: the web-app way to use commbox-async.

    COMMBOX_TOKEN=... python examples/web_badges.py --port 8080
    curl 'http://127.0.0.1:8080/badges?ids=558355,558356'
    {"badges": {"558355": 3, "558356": 0}, "unavailable": []}
    open http://127.0.0.1:8080/inbox/558355   (an HTML list, one badge per conversation)

The app owns one ``AsyncCommbox``, opened at start-up and closed at shutdown (``cleanup_ctx``),
so every request shares its connection pool and its rate limit. A failed identity is reported
as unavailable, never shown as zero unread.
"""

from __future__ import annotations

import argparse
import html
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from commbox_async import AsyncCommbox, CommboxError, NotFoundError

COMMBOX = web.AppKey("commbox", AsyncCommbox)
MAX_IDS = 100


def _ids(raw: str) -> list[int]:
    try:
        ids = [int(part) for part in raw.split(",") if part.strip()]
    except ValueError:
        raise web.HTTPBadRequest(text="ids must be comma-separated integers") from None
    if not 0 < len(ids) <= MAX_IDS:
        raise web.HTTPBadRequest(text=f"give 1 to {MAX_IDS} ids")
    return list(dict.fromkeys(ids))  # each identity once


async def badges(request: web.Request) -> web.Response:
    """GET /badges?ids=1,2,3 -> total unread chat messages per identity."""
    ids = _ids(request.query.get("ids", ""))
    commbox = request.app[COMMBOX]
    counts = await commbox.unread_counts(ids, raise_on_error=False, include_childs=False)
    return web.json_response(
        {
            "badges": {str(i): counts[i] for i in ids if i in counts},
            "unavailable": [i for i in ids if i not in counts],
        }
    )


async def inbox(request: web.Request) -> web.Response:
    """GET /inbox/{identity_id} -> the identity's conversations, each with its unread badge."""
    try:
        identity_id = int(request.match_info["identity_id"])
    except ValueError:
        raise web.HTTPBadRequest(text="identity_id must be an integer") from None
    commbox = request.app[COMMBOX]
    try:
        page = await commbox.get_user_objects(identity_id, include_childs=False)
    except NotFoundError:
        raise web.HTTPNotFound(text="no such identity") from None
    except CommboxError:
        raise web.HTTPBadGateway(text="CommBox is unavailable, try again") from None
    rows = "".join(
        f"<li>{html.escape(conversation.message or '')} "
        f'<span class="badge">{conversation.unread_messages}</span></li>'
        for conversation in page.data
    )
    body = (
        f'<h1>Inbox <span class="badge">{page.unread_total}</span></h1>'
        f'<ul class="conversations">{rows}</ul>'
    )
    return web.Response(text=body, content_type="text/html")


def create_app(**client_options: Any) -> web.Application:
    """The app; ``client_options`` go to ``AsyncCommbox`` (token and URL default to the env)."""
    app = web.Application()

    async def commbox_context(app: web.Application) -> AsyncIterator[None]:
        async with AsyncCommbox(**client_options) as commbox:
            app[COMMBOX] = commbox
            yield

    app.cleanup_ctx.append(commbox_context)
    app.router.add_get("/badges", badges)
    app.router.add_get("/inbox/{identity_id}", inbox)
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--rate", type=float, default=10.0, help="CommBox requests per second")
    args = parser.parse_args()
    web.run_app(create_app(rate_limit=args.rate), host=args.host, port=args.port)
