"""The fake CommBox server: a real aiohttp.web app on a loopback port.

It serves ``GET /v2/users/identities/{id}/objects`` with bearer auth, the synthetic pages of
``_data``, a server-wide throttle (``_throttling``), scripted answers, ids that 404, and the
faults of ``_faults`` at a chosen rate. Every request is logged in ``requests`` (and counted by
outcome in ``outcomes``) so that tests can assert what reached it; ``holding`` counts the
requests being handled now, by account, and holds them until a test lets them go.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .._client import AsyncCommbox
from ._accounts import Accounts
from ._activity import Activity, Changes, Message, run_activity
from ._data import error_body, page_body
from ._faults import Faults, inject, json_error
from ._holding import Holding
from ._settings import fast_client_settings
from ._sockets import Listener
from ._throttling import Bucket, Throttling

__all__ = ["FakeCommbox", "RequestRecord"]

#: Pages kept encoded, so a soak or a benchmark measures the client rather than the server.
_CACHED_PAGES = 2048


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw it."""

    at: float
    identity_id: int | None
    status: int
    outcome: str  # "ok", "throttled", "unauthorized", "not_found", "scripted" or a fault kind
    query: dict[str, str] = field(default_factory=dict)
    #: The request target as sent (path and query string), to check what a URL carried.
    target: str = ""
    #: The account whose token the request carried ("" for a token the server never knew).
    account: str = ""


class FakeCommbox:
    """The fake server; start it with ``async with`` (or ``start()``/``stop()``)."""

    def __init__(
        self,
        *,
        token: str = "test-token",
        conversations: int | Callable[[int], int] = 10,
        childs: int = 10,
        not_found: Iterable[int] | Callable[[int], bool] = (),
        first_page: int = 0,
        throttling: Throttling | None = None,
        faults: Faults | None = None,
        latency: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        record: bool = True,
        clock: Callable[[], float] = time.monotonic,
        activity: Activity | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.clock = clock
        #: The tokens the server accepts, by account (``add_token``, ``revoke``, ``rotate``).
        self.accounts = Accounts(clock)
        self._token = token
        self.accounts.add(token)
        #: Requests being handled now, by account, and requests held until a test lets go.
        self.holding = Holding()
        self.conversations = conversations
        self.childs = childs
        self._not_found = not_found if callable(not_found) else frozenset(not_found)
        self.first_page = first_page
        self.faults = faults
        self.latency = latency
        self.host, self.port = host, port
        #: Serve https with this server-side context (its certificate and key); None: http.
        self.ssl_context = ssl_context
        self.record = record
        self.requests: list[RequestRecord] = []
        #: Requests by outcome; counted even with ``record=False`` (bounded memory for soaks).
        self.outcomes: Counter[str] = Counter()
        #: Faults injected so far (what ``Faults.limit`` counts).
        self.faults_injected = 0
        #: Stalls (slow faults, latency) in progress now: a test can wait for one to start.
        self.stalling = 0
        self._scripts: dict[int, list[tuple[int, dict[str, str], bytes]]] = {}
        self._rotations = 0
        self._bucket: Bucket | None = None
        self.throttling = throttling
        self._rng = random.Random(faults.seed if faults else 0)
        self._cache: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        self._runner: web.AppRunner | None = None
        self._listener: Listener | None = None
        self._stopping: asyncio.Event | None = None
        self.activity = activity
        self._changes = Changes()
        self._activity_task: asyncio.Task[None] | None = None
        self.app = web.Application()
        self.app.router.add_get("/v2/users/identities/{ident}/objects", self._handle)

    # --- control ------------------------------------------------------------------------
    @property
    def token(self) -> str:
        """The server's first account's current token (``rotate()`` replaces it)."""
        return self._token

    def add_token(
        self, token: str, *, throttling: Throttling | None = None, account: str | None = None
    ) -> str:
        """Accept one more token, for an account of its own (or ``account``) whose own
        token bucket is ``throttling``; returns the account's name (see ``RequestRecord``)."""
        return self.accounts.add(token, account=account, throttling=throttling)

    def revoke(self, token: str, *, grace: float = 0.0) -> None:
        """Refuse ``token`` (401) once ``grace`` seconds of the server's clock have passed."""
        self.accounts.revoke(token, grace=grace)

    def rotate(
        self, token: str | None = None, *, new_token: str | None = None, grace: float = 0.0
    ) -> str:
        """Issue a new key for ``token``'s account (default: the server's ``token``, which
        then becomes the new one) and revoke the old after ``grace``; returns the new key."""
        old = token if token is not None else self._token
        fresh = new_token or f"{old.split('~')[0]}~{self._rotations + 1}"
        self._rotations += 1
        self.accounts.rotate(old, fresh, grace=grace)
        if old == self._token:
            self._token = fresh
        return fresh

    @property
    def throttling(self) -> Throttling | None:
        """The server's rate limit (None: unlimited); settable while it runs."""
        return self._throttling

    @throttling.setter
    def throttling(self, value: Throttling | None) -> None:
        self._throttling = value
        self._bucket = Bucket(value.rate, value.burst, self.clock) if value else None

    def script(self, identity_id: int, *responses: int | tuple[int, dict[str, str], bytes]) -> None:
        """Answer the next requests for ``identity_id`` with these statuses (then normally).

        A bare status gets the documented error body; a tuple gives status, headers and body.
        """
        queue = self._scripts.setdefault(identity_id, [])
        for item in responses:
            if isinstance(item, int):
                queue.append((item, {}, error_body(item)))
            else:
                queue.append(item)

    def count(
        self,
        outcome: str | None = None,
        identity_id: int | None = None,
        account: str | None = None,
    ) -> int:
        """How many logged requests match."""
        return sum(
            1
            for r in self.requests
            if (outcome is None or r.outcome == outcome)
            and (identity_id is None or r.identity_id == identity_id)
            and (account is None or r.account == account)
        )

    def add_message(self, identity_id: int, object_id: int | None = None, *, count: int = 1) -> int:
        """A customer writes: ``count`` more unread messages on a conversation (default: the
        identity's first open one). Returns its object id; pages served from now on show it."""
        return self._changes.add_message(
            identity_id, object_id, count, self.conversations_of(identity_id), self.clock()
        )

    def read_messages(self, identity_id: int, object_id: int | None = None) -> int:
        """An agent reads a conversation: its unread count drops to 0. Returns its object id."""
        return self._changes.read_messages(
            identity_id, object_id, self.conversations_of(identity_id)
        )

    def close_conversation(self, identity_id: int, object_id: int) -> None:
        """The conversation is resolved (status 2)."""
        self._changes.close(identity_id, object_id, self.conversations_of(identity_id))

    @property
    def messages(self) -> list[Message]:
        """The messages added so far (``add_message`` or activity), oldest first; the last
        10,000 are kept."""
        return list(self._changes.messages)

    def conversations_of(self, identity_id: int) -> int:
        """How many conversations this identity's pages hold."""
        c = self.conversations
        return c(identity_id) if callable(c) else c

    @property
    def url(self) -> str:
        """The base URL a client uses (``http://host:port``, ``https://`` with
        ``ssl_context``)."""
        scheme = "http" if self.ssl_context is None else "https"
        return f"{scheme}://{self.host}:{self.port}"

    def client(self, **settings: Any) -> AsyncCommbox:
        """A client for this server with fast test settings (``fast_client_settings``).

        Use it with ``async with``; ``settings`` are any other ``AsyncCommbox`` options, and
        replace the fast ones they name (``token=`` another token, or a provider).
        """
        options = {"token": self.token, **fast_client_settings(**settings)}
        return AsyncCommbox(base_url=self.url, **options)

    @property
    def listening(self) -> bool:
        """False while a ``refuse`` fault keeps the listening socket closed (or when stopped)."""
        return self._listener is not None and self._listener.listening

    @property
    def refusals(self) -> int:
        """How many times a ``refuse`` fault closed the listening socket."""
        return self._listener.refusals if self._listener is not None else 0

    async def start(self) -> FakeCommbox:
        """Listen on the host and port (port 0: a free one); ``async with`` calls this."""
        self._stopping = asyncio.Event()
        # Slow faults sleep past a client that gave up; a short grace is enough at shutdown.
        self._runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await self._runner.setup()
        assert self._runner.server is not None
        self._listener = Listener(
            self.host, self.port, self._runner.server, ssl_context=self.ssl_context
        )
        self._listener.open()
        self.port = self._listener.port
        if self.activity is not None:
            self._activity_task = asyncio.ensure_future(
                run_activity(self.activity, self.add_message, self._changes.seen)
            )
        return self

    async def stop(self) -> None:
        """Stop listening and close the open connections."""
        if self._stopping is not None:
            self._stopping.set()
        self.holding.unhold()
        if self._activity_task is not None:
            self._activity_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._activity_task
            self._activity_task = None
        if self._listener is not None:
            await self._listener.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeCommbox:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # --- what fault handlers use (``_faults.FaultHost``) ----------------------------------
    def log(
        self,
        ident: int | None,
        status: int,
        outcome: str,
        request: web.Request,
        account: str | None = None,
    ) -> None:
        """Count the request under ``outcome`` and, when recording, log it."""
        self.outcomes[outcome] += 1
        if self.record:
            if account is None:
                account = self.accounts.whose(request.headers.get("Authorization"))
            self.requests.append(
                RequestRecord(
                    self.clock(),
                    ident,
                    status,
                    outcome,
                    dict(request.query),
                    request.path_qs,
                    account or "",
                )
            )

    async def stall(self, seconds: float) -> None:
        """Sleep, but end at once when the server stops (a stalled fault must not hold it)."""
        self.stalling += 1
        try:
            if self._stopping is None:
                await asyncio.sleep(seconds)
                return
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), seconds)
        finally:
            self.stalling -= 1

    def refuse(self, seconds: float) -> None:
        """Stop listening for ``seconds``: connections opened meanwhile are refused."""
        assert self._listener is not None, "the server is not started"
        self._listener.refuse(seconds)

    def page(self, ident: int, request: web.Request) -> bytes:
        """The 200 body for this request (a fault that sends a body needs a valid query)."""
        body = self._page(ident, request.query)
        assert isinstance(body, bytes)
        return body

    # --- the endpoint -------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        holding = self.holding
        account = self.accounts.whose(request.headers.get("Authorization")) or ""
        try:
            if holding.enter(account):
                await holding.wait(account)
            return await self._answer(request)
        finally:
            holding.leave(account)

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        if self.latency:
            await self.stall(self.latency)
        try:
            ident: int | None = int(request.match_info["ident"])
        except ValueError:
            ident = None
        verdict = self.accounts.check(request.headers.get("Authorization"))
        account = verdict.account or ""
        if verdict.outcome in ("unauthorized", "revoked"):
            self.log(ident, 401, verdict.outcome, request, account)
            return json_error(401)
        if ident is None or ident <= 0:
            self.log(ident, 400, "bad_request", request, account)
            return json_error(400)
        if verdict.outcome == "throttled":  # the account's own bucket
            self.log(ident, 429, "throttled", request, account)
            retry = {"Retry-After": verdict.retry_after} if verdict.retry_after is not None else {}
            return json_error(429, retry)
        script = self._scripts.get(ident)
        if script:
            status, headers, body = script.pop(0)
            self.log(ident, status, "scripted", request, account)
            return web.Response(
                status=status, body=body, headers=headers, content_type="application/json"
            )
        if self._bucket is not None and not self._bucket.take():
            assert self._throttling is not None
            self.log(ident, 429, "throttled", request, account)
            headers = {}
            if self._throttling.retry_after is not None:
                headers["Retry-After"] = self._throttling.retry_after
            return json_error(429, headers)
        is_missing = (
            self._not_found(ident) if callable(self._not_found) else ident in self._not_found
        )
        if is_missing:
            self.log(ident, 404, "not_found", request, account)
            return json_error(404)
        faults = self.faults
        if (
            faults is not None
            and faults.kinds
            and (faults.limit is None or self.faults_injected < faults.limit)
            and self._rng.random() < faults.rate
        ):
            kind = self._rng.choice(faults.kinds)
            self.faults_injected += 1
            return await inject(self, kind, ident, request, faults)
        if self.activity is not None and self.activity.identities is None:
            self._changes.seen.append(ident)
        page = self._page(ident, request.query)
        if isinstance(page, int):
            self.log(ident, page, "bad_request", request, account)
            return json_error(page)
        self.log(ident, 200, "ok", request, account)
        return web.Response(body=page, content_type="application/json")

    def _page(self, ident: int, query: Any) -> bytes | int:
        # The identity's version is in the key: a page from before a change is never served.
        key = (ident, self._changes.version(ident), tuple(sorted(query.items())))
        cached: bytes | None = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        body = page_body(
            ident,
            query,
            conversations=self.conversations_of(ident),
            childs=self.childs,
            first_page=self.first_page,
            now=self.clock(),
            overrides=self._changes.overrides(ident),
        )
        if isinstance(body, bytes):
            self._cache[key] = body
            if len(self._cache) > _CACHED_PAGES:
                self._cache.popitem(last=False)
        return body
