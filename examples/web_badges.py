"""An aiohttp.web app that shows unread badges, live: the web-app way to use commbox-async.

    COMMBOX_TOKEN=... python examples/web_badges.py --watch 558355,558356 --port 8090
    open http://127.0.0.1:8090/live          (the badges update by themselves)
    curl 'http://127.0.0.1:8090/badges?ids=558355,558356'
    {"badges": {"558355": 3, "558356": 0}, "unavailable": []}
    open http://127.0.0.1:8090/inbox/558355   (an HTML list, one badge per conversation)

The app owns one ``AsyncCommbox``, opened at start-up and closed at shutdown (``cleanup_ctx``),
so every request shares its connection pool and its rate limit, and a short cache (with the
client's shared in-flight calls) makes a burst of page loads for the same identities cost one
request each. For the live page the app runs ONE ``watch`` over the identities it shows, and
every open browser gets the changes from it as server-sent events: a thousand open tabs cost
no more CommBox requests than one. A failed identity is reported as unavailable, never shown
as zero unread.

A page view waits for CommBox at most ``PAGE_DEADLINE`` seconds, retries and pauses included
(the library's default, 300 s, is a batch job's): past it a badge is listed as unavailable
(the page shows "?") and the inbox answers 503 with a Retry-After when the server gave one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import json
import logging
import math
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from commbox_async import (
    AsyncCommbox,
    Cache,
    CommboxError,
    CommboxTimeoutError,
    InvalidArgumentError,
    NotFoundError,
    PollFailed,
    RateLimitError,
    Retries,
)

COMMBOX = web.AppKey("commbox", AsyncCommbox)
MAX_IDS = 100
#: Seconds a page view waits for CommBox, retries and pauses included. Without it a call may
#: take the library's default of 300 s: retries while CommBox is down, a 429's whole pause.
PAGE_DEADLINE = 3.0
DEADLINE = web.AppKey("deadline", float)
#: Not the fake server's default port (``commbox-async mock`` listens on 8765).
DEFAULT_PORT = 8090


class Hub:
    """The latest badge per watched identity, and a queue per open browser."""

    def __init__(self) -> None:
        self.badges: dict[int, int] = {}
        self.listeners: set[asyncio.Queue[tuple[int, int] | None]] = set()

    def publish(self, identity_id: int, unread: int) -> None:
        self.badges[identity_id] = unread
        for queue in list(self.listeners):
            if queue.full():
                # A browser that stopped reading is not waited for: its stream ends, and
                # the browser reconnects (EventSource does) to the current badges.
                self.listeners.discard(queue)
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(None)
            else:
                queue.put_nowait((identity_id, unread))

    def close(self) -> None:
        """End every event stream (at shutdown: open streams would hold it up)."""
        for queue in self.listeners:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)


HUB = web.AppKey("hub", Hub)
WATCHED = web.AppKey("watched", list)


def _ids(raw: str) -> list[int]:
    try:
        ids = [int(part) for part in raw.split(",") if part.strip()]
    except ValueError:
        raise web.HTTPBadRequest(text="ids must be comma-separated integers") from None
    if not 0 < len(ids) <= MAX_IDS:
        raise web.HTTPBadRequest(text=f"give 1 to {MAX_IDS} ids")
    if any(i <= 0 for i in ids):
        raise web.HTTPBadRequest(text="ids must be positive")
    return list(dict.fromkeys(ids))  # each identity once


async def badges(request: web.Request) -> web.Response:
    """GET /badges?ids=1,2,3 -> total unread chat messages per identity."""
    ids = _ids(request.query.get("ids", ""))
    commbox = request.app[COMMBOX]
    # Bounded by the client's Retries(max_time=deadline): an identity that takes longer is
    # left out of the counts and listed as unavailable.
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
        page = await commbox.get_user_objects(
            identity_id, include_childs=False, deadline=request.app[DEADLINE]
        )
    except InvalidArgumentError:  # not an id CommBox could have (0, negative, too large)
        raise web.HTTPBadRequest(text="identity_id is not a valid identity id") from None
    except NotFoundError:
        raise web.HTTPNotFound(text="no such identity") from None
    except (RateLimitError, CommboxTimeoutError) as exc:
        # Busy or slow past the page's deadline: say when to come back, if CommBox said.
        wait = getattr(exc, "retry_after", None)
        headers = {"Retry-After": str(math.ceil(wait))} if wait else None
        raise web.HTTPServiceUnavailable(
            text="CommBox is busy, try again shortly", headers=headers
        ) from None
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


_LIVE_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Unread badges</title>
<style>
  body {{ font-family: sans-serif; }}
  .badge {{ background: #c00; color: #fff; border-radius: 1em; padding: 0 .5em; }}
  .unavailable .badge {{ background: #999; }}
</style></head>
<body><h1>Unread badges</h1>
<ul>{rows}</ul>
<script>
  const events = new EventSource("/events");
  events.addEventListener("badge", (message) => {{
    const badge = JSON.parse(message.data);
    const item = document.getElementById("identity-" + badge.identity_id);
    if (item) {{
      item.classList.remove("unavailable");
      item.querySelector(".badge").textContent = badge.unread;
    }}
  }});
</script>
</body></html>
"""


async def live(request: web.Request) -> web.Response:
    """GET /live -> one badge per watched identity; the page keeps itself up to date."""
    hub = request.app[HUB]
    rows = "".join(
        f'<li id="identity-{i}" class="{"" if i in hub.badges else "unavailable"}">'
        f'identity {i} <span class="badge">{hub.badges.get(i, "?")}</span></li>'
        for i in request.app[WATCHED]
    )
    return web.Response(text=_LIVE_PAGE.format(rows=rows), content_type="text/html")


async def events(request: web.Request) -> web.StreamResponse:
    """GET /events -> server-sent events, one ``badge`` event per change (and the current
    badges first, so a browser that reconnects is up to date at once)."""
    hub = request.app[HUB]
    queue: asyncio.Queue[tuple[int, int] | None] = asyncio.Queue(maxsize=1000)
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    hub.listeners.add(queue)
    try:
        for identity_id, unread in list(hub.badges.items()):
            await _send(response, identity_id, unread)
        while (badge := await queue.get()) is not None:
            await _send(response, *badge)
    except ConnectionResetError:  # the browser went away
        pass
    finally:
        hub.listeners.discard(queue)
    return response


async def _send(response: web.StreamResponse, identity_id: int, unread: int) -> None:
    data = json.dumps({"identity_id": identity_id, "unread": unread})
    await response.write(f"event: badge\ndata: {data}\n\n".encode())


async def _watch_badges(commbox: AsyncCommbox, ids: list[int], hub: Hub, share: float) -> None:
    """The app's one watch: each badge from its identity's first poll (``baseline=True``),
    then from every change."""
    async with commbox.watch(ids, share=share, baseline=True) as watch:
        async for change in watch:
            if not isinstance(change, PollFailed):  # a failed poll keeps the last badge
                hub.publish(change.identity_id, change.identity_unread)


def _report_end(task: asyncio.Future[None]) -> None:
    """The app's one watch ended before shutdown: say so, or every badge silently freezes."""
    if not task.cancelled() and task.exception() is not None:
        logging.getLogger("web_badges").error(
            "the live badges' watch ended: %r; badges no longer update", task.exception()
        )


def create_app(
    watch_ids: list[int] | None = None,
    *,
    share: float = 0.5,
    deadline: float = PAGE_DEADLINE,
    **client_options: Any,
) -> web.Application:
    """The app; ``client_options`` go to ``AsyncCommbox`` (token and URL default to the env).

    ``watch_ids`` are the identities of the live page (one watch for the whole app, using at
    most ``share`` of the client's rate limit). ``deadline`` bounds each call a page view
    makes, retries and waits included: the client's ``Retries.max_time`` (for the badges and
    the watch's polls), and each inbox call's ``deadline=``.
    """
    app = web.Application()
    app[WATCHED] = list(watch_ids or [])
    app[HUB] = Hub()
    app[DEADLINE] = deadline
    client_options.setdefault("cache", Cache(ttl=2.0, max_entries=10_000))
    client_options.setdefault("retries", Retries(max_time=deadline))

    async def commbox_context(app: web.Application) -> AsyncIterator[None]:
        async with AsyncCommbox(**client_options) as commbox:
            app[COMMBOX] = commbox
            watcher = None
            if app[WATCHED]:
                watcher = asyncio.ensure_future(
                    _watch_badges(commbox, app[WATCHED], app[HUB], share)
                )
                watcher.add_done_callback(_report_end)
            yield
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher

    async def close_streams(app: web.Application) -> None:
        app[HUB].close()

    app.cleanup_ctx.append(commbox_context)
    app.on_shutdown.append(close_streams)
    app.router.add_get("/badges", badges)
    app.router.add_get("/inbox/{identity_id}", inbox)
    app.router.add_get("/live", live)
    app.router.add_get("/events", events)
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--rate", type=float, default=10.0, help="CommBox requests per second")
    parser.add_argument("--watch", default="", help="identities of the live page: 1,2,3")
    parser.add_argument("--share", type=float, default=0.5, help="of the rate, for the watch")
    args = parser.parse_args()
    watched = [int(part) for part in args.watch.split(",") if part.strip()]
    web.run_app(
        create_app(watched, share=args.share, rate_limit=args.rate),
        host=args.host,
        port=args.port,
    )
