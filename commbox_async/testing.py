"""A fake CommBox server for tests and demos: a real aiohttp.web app on a loopback port.

It serves ``GET /v2/users/identities/{id}/objects`` with bearer auth, deterministic synthetic
conversations for any identity (shaped like the vendor's example, double-encoded ``content``
included), paging and the filters, error bodies in the documented shape, a server-wide
token-bucket throttle that answers 429 with ``Retry-After``, and fault injection (error
statuses, resets, truncated or malformed bodies, slow headers or bodies, absurd Retry-After
values, oversized bodies, refused connections) at a chosen rate. Every request is logged in
``server.requests`` (and counted by outcome in ``server.outcomes``) so that tests can assert
what reached it.

``unused_port()`` gives a loopback port with nothing listening (connection refused) and
``Blackhole`` a port where connecting never completes, for the faults no server can answer.

    async with FakeCommbox(throttling=Throttling(rate=100, burst=10)) as server:
        async with AsyncCommbox(token=server.token, base_url=server.url) as commbox:
            ...

From a shell: ``python -m commbox_async.testing --port 8080`` (or ``commbox-async mock``).
With pytest: ``pytest_plugins = ["commbox_async.testing"]`` gives a ``fake_commbox`` fixture.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import socket
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import msgspec
from aiohttp import web

__all__ = [
    "ABSURD_RETRY_AFTER",
    "DEFAULT_FAULT_KINDS",
    "FAULT_KINDS",
    "PERMANENT_FAULTS",
    "TRANSIENT_FAULTS",
    "Blackhole",
    "FakeCommbox",
    "Faults",
    "RequestRecord",
    "Throttling",
    "VirtualClock",
    "unused_port",
]

#: The faults ``Faults()`` injects unless told otherwise: each is recovered from by an immediate
#: retry (their 429s carry ``Faults.retry_after``, "0" by default).
DEFAULT_FAULT_KINDS = (
    "500",
    "502",
    "503",
    "504",
    "429",
    "reset",
    "reset_mid_body",
    "truncate",
    "html_200",
    "empty_200",
    "html_502",
    "slow_headers",
    "slow_body",
)
#: Kept for compatibility: the quick transient faults (the same as ``DEFAULT_FAULT_KINDS``).
TRANSIENT_FAULTS = DEFAULT_FAULT_KINDS
#: 429s whose Retry-After a client must not take at face value: kind -> header value sent.
ABSURD_RETRY_AFTER: dict[str, str | None] = {
    "429_no_retry_after": None,
    "429_negative": "-30",
    "429_huge": "999999999",
    "429_garbage": "soon, maybe",
}
#: Faults that no retry can cure: a correct client fails the identity at once with a clear error.
PERMANENT_FAULTS = ("oversized", "oversized_chunked")
#: Every fault the server can inject.
#:
#: - ``500`` ... ``504``, ``429``: the documented error body (429 with ``Faults.retry_after``).
#: - ``html_500`` ... ``html_504``: a 5xx whose body is an HTML page (a proxy's).
#: - ``429_no_retry_after``, ``429_negative``, ``429_huge``, ``429_garbage``: see
#:   ``ABSURD_RETRY_AFTER``.
#: - ``reset``: the connection is aborted before any header is sent.
#: - ``reset_mid_body``: headers and half of the body, then the connection is aborted.
#: - ``truncate``: headers with the full Content-Length and half the body, then a clean close.
#: - ``html_200``, ``empty_200``: a 200 whose body is an HTML page, or empty.
#: - ``slow_headers``: the answer starts after ``Faults.slow_seconds``.
#: - ``slow_body``: half of the body, a pause of ``Faults.slow_seconds``, the rest.
#: - ``oversized``: a 200 of ``Faults.oversized_bytes`` with its Content-Length;
#:   ``oversized_chunked`` the same without one (chunked), so only counting bytes catches it.
#: - ``bad_status_line``: bytes that are not HTTP (a broken proxy), then a close.
#: - ``refuse``: this connection is aborted and the server stops listening for
#:   ``Faults.refuse_seconds``, so new connections in that window are refused by the OS.
FAULT_KINDS = (
    *DEFAULT_FAULT_KINDS,
    "html_500",
    "html_503",
    "html_504",
    *ABSURD_RETRY_AFTER,
    "bad_status_line",
    "refuse",
    *PERMANENT_FAULTS,
)


def unused_port(host: str = "127.0.0.1") -> int:
    """A loopback port with nothing listening on it: connecting is refused by the OS.

    The port was free a moment ago; another process could take it, which on loopback in a
    test run is unlikely enough to ignore.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
    return port


class Blackhole:
    """A loopback port where connecting never completes (a host that drops SYNs).

    A listening socket that never accepts, with its accept queue filled by connections of its
    own: the kernel then drops further SYNs, so a client's connect waits until its timeout.
    Use as a context manager; ``url`` is ``http://host:port``.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._fillers: list[socket.socket] = []
        self.port = 0

    def __enter__(self) -> Blackhole:
        self._listener.bind((self.host, 0))
        self._listener.listen(0)
        self.port = self._listener.getsockname()[1]
        for _ in range(3):  # a backlog of 0 admits one or two; the rest wait in SYN_SENT
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect((self.host, self.port))
            self._fillers.append(filler)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for filler in self._fillers:
            filler.close()
        self._fillers.clear()
        self._listener.close()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass(kw_only=True)
class Throttling:
    """A server-wide token bucket: ``rate`` tokens a second up to ``burst``.

    ``retry_after`` is the header value sent with a 429 (None: no header).
    """

    rate: float
    burst: float = 10.0
    retry_after: str | None = "1"


@dataclass(kw_only=True)
class Faults:
    """Inject a fault into ``rate`` of the requests, picking among ``kinds`` (seeded).

    ``kinds`` defaults to ``DEFAULT_FAULT_KINDS``; pass ``FAULT_KINDS`` for every fault the
    server knows (see there). ``slow_seconds`` is the stall of the slow faults,
    ``retry_after`` the header of a plain ``429``, ``oversized_bytes`` the size of the
    oversized bodies (default: just over the client's default cap of 32 MiB), and
    ``refuse_seconds`` how long ``refuse`` keeps the server from listening. ``limit`` caps the
    faults injected in all (None: no cap), so a test can fail the first request and no other.
    """

    rate: float = 0.1
    kinds: tuple[str, ...] = DEFAULT_FAULT_KINDS
    seed: int | None = 0
    slow_seconds: float = 0.05
    retry_after: str | None = "0"
    oversized_bytes: int = 33 * 1024 * 1024
    refuse_seconds: float = 0.05
    limit: int | None = None

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds: {sorted(unknown)}")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        if self.slow_seconds < 0 or self.refuse_seconds < 0 or self.oversized_bytes < 0:
            raise ValueError("slow_seconds, refuse_seconds and oversized_bytes must be >= 0")


class VirtualClock:
    """A clock that moves only when someone sleeps on it, and remembers every sleep.

    Pass it as ``LocalLimiter(..., clock=vc, sleep=vc.sleep)`` and as ``FakeCommbox(clock=vc)``:
    pauses and waits then cost no real time, and the server's log uses the same time line.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    clock = time

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


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


class _Bucket:
    def __init__(self, rate: float, burst: float, clock: Callable[[], float]) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens, self.stamp = burst, clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


_encoder = msgspec.json.Encoder()
_EPOCH = datetime(2026, 2, 12, 15, 0, 0, tzinfo=timezone.utc)
_WORDS = [
    "hello",
    "thanks",
    "order",
    "delivery",
    "refund",
    "status",
    "account",
    "password",
    "invoice",
    "question",
    "help",
    "agent",
    "tomorrow",
    "payment",
    "card",
    "address",
    "change",
    "please",
    "confirm",
    "number",
    "waiting",
    "update",
]


def _stamp(seconds: int) -> str:
    return (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _text(seed: int, words: int) -> str:
    return " ".join(_WORDS[(seed * 7 + i * 13) % len(_WORDS)] for i in range(words))


def conversation(
    identity_id: int, index: int, *, childs: int, activity_log: bool
) -> dict[str, Any]:
    """The deterministic conversation number ``index`` of an identity (wire field names)."""
    object_id = identity_id * 1000 + index
    agent = {
        "id": 545437,
        "managerId": 545437,
        "isManager": True,
        "encryptedId": "HnJymfEHh8dORgiV0otwEgRpcFYJqKfueiQqPvbZTrs%3d",
        "identity": {
            "id": 558237,
            "streamProviderId": "",
            "streamProviderType": 0,
            "firstName": "AI Agent",
            "lastName": "",
            "thumbnailUrl": "",
        },
        "uniqueId": None,
        "phone1": None,
        "phone2": None,
        "email": None,
        "firstName": None,
        "lastName": None,
        "gender": None,
        "numberIdentities": 0,
        "locale": None,
        "birthday": None,
        "remarks": None,
        "content": None,
    }
    children = [
        {
            "id": object_id * 100 + c,
            "objectId": object_id,
            "content": _encoder.encode(
                {
                    "messageAlreadyRenderedFromClient": c % 2 == 0,
                    "lang": "en",
                    "seq": c,
                    "tags": [_WORDS[(c + i) % len(_WORDS)] for i in range(4)],
                }
            ).decode(),
            "message": _text(object_id + c, 40),
            "createdTime": _stamp(index * 600 + c * 7),
            "streamProviderType": 0,
            "type": 11 if c == 0 else 0,
            "user": agent,
        }
        for c in range(childs)
    ]
    return {
        "objectId": object_id,
        "streamId": 19155,
        "subStreamId": 0,
        "streamProviderId": "",
        "streamProviderType": 0,
        "user_identity": identity_id,
        "firstName": "",
        "lastName": "",
        "moduleId": 0,
        "userStreamProviderId": f"{identity_id:08x}-ac14-4aa1-8907-1e26402ac6da",
        "userStreamProviderType": 6,
        "content": _encoder.encode(
            {"guidRT": f"{object_id:032x}", "languages": [{"Item1": "en", "Item2": object_id}]}
        ).decode(),
        "message": f"<p>{_text(object_id, 8)}</p>",
        "createdTime": _stamp(index * 600),
        "updatedTime": _stamp(index * 600 + 434),
        "closedTime": None if index % 3 else _stamp(index * 600 + 500),
        "firstResponseTime": _stamp(index * 600 + 25),
        "lastResponseTime": _stamp(index * 600 + 491),
        "statusId": 1 + index % 3,
        "assignedManagerId": 0,
        "lastAssignedManagerId": 0,
        "type": 0,
        "user": {
            "id": identity_id + 7,
            "managerId": None,
            "isManager": False,
            "encryptedId": None,
            "identity": None,
            "uniqueId": "",
            "phone1": "",
            "phone2": "",
            "email": "",
            "firstName": "",
            "lastName": "",
            "gender": "",
            "numberIdentities": 1,
            "locale": "",
            "birthday": "",
            "remarks": "",
            "content": "{}",
        },
        "isManager": False,
        "childs": children,
        "activityLogs": (
            [{"text": "status changed", "source": "system", "managerId": 0}] if activity_log else []
        ),
        "tagsObjectId": [],
        "customerParticipants": [],
        "unreadMessages": (identity_id + index) % 4,
    }


def unread_of(identity_id: int, conversations: int) -> int:
    """Total unread chat messages the fake server reports for an identity."""
    return sum((identity_id + i) % 4 for i in range(conversations))


class FakeCommbox:
    """The fake server. Start it with ``async with`` (or ``start()``/``stop()``); see the module."""

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
    ) -> None:
        self.token = token
        self.conversations = conversations
        self.childs = childs
        self._not_found = not_found if callable(not_found) else frozenset(not_found)
        self.first_page = first_page
        self.faults = faults
        self.latency = latency
        self.host, self.port = host, port
        self.record = record
        self.clock = clock
        self.requests: list[RequestRecord] = []
        #: Requests by outcome; counted even with ``record=False`` (bounded memory for soaks).
        self.outcomes: Counter[str] = Counter()
        #: How many times a ``refuse`` fault closed the listening socket.
        self.refusals = 0
        #: Faults injected so far (what ``Faults.limit`` counts).
        self.faults_injected = 0
        #: Stalls (slow faults, latency) in progress now: a test can wait for one to start.
        self.stalling = 0
        self._scripts: dict[int, list[tuple[int, dict[str, str], bytes]]] = {}
        self._bucket: _Bucket | None = None
        self.throttling = throttling
        self._rng = random.Random(faults.seed if faults else 0)
        self._cache: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        self._runner: web.AppRunner | None = None
        self._listener: socket.socket | None = None
        self._adopting: set[asyncio.Task[None]] = set()
        self._reopen_task: asyncio.Task[None] | None = None
        self._refuse_until = 0.0
        self._stopping: asyncio.Event | None = None
        self.app = web.Application()
        self.app.router.add_get("/v2/users/identities/{ident}/objects", self._handle)

    # --- control ------------------------------------------------------------------------
    @property
    def throttling(self) -> Throttling | None:
        return self._throttling

    @throttling.setter
    def throttling(self, value: Throttling | None) -> None:
        self._throttling = value
        self._bucket = _Bucket(value.rate, value.burst, self.clock) if value else None

    def script(self, identity_id: int, *responses: int | tuple[int, dict[str, str], bytes]) -> None:
        """Answer the next requests for ``identity_id`` with these statuses (then normally).

        A bare status gets the documented error body; a tuple gives status, headers and body.
        """
        queue = self._scripts.setdefault(identity_id, [])
        for item in responses:
            if isinstance(item, int):
                queue.append((item, {}, _error_body(item)))
            else:
                queue.append(item)

    def count(self, outcome: str | None = None, identity_id: int | None = None) -> int:
        """How many logged requests match."""
        return sum(
            1
            for r in self.requests
            if (outcome is None or r.outcome == outcome)
            and (identity_id is None or r.identity_id == identity_id)
        )

    def conversations_of(self, identity_id: int) -> int:
        c = self.conversations
        return c(identity_id) if callable(c) else c

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def listening(self) -> bool:
        """False while a ``refuse`` fault keeps the listening socket closed (or when stopped)."""
        return self._listener is not None

    async def start(self) -> FakeCommbox:
        self._stopping = asyncio.Event()
        # Slow faults sleep past a client that gave up; a short grace is enough at shutdown.
        self._runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await self._runner.setup()
        # The listening socket and its accept loop are ours rather than a TCPSite's, so that
        # ``refuse`` can close and reopen it while the open connections carry on. (Closing an
        # asyncio Server instead races with its pending accepts and leaks their sockets.)
        self._listen()
        return self

    async def stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()
        if self._reopen_task is not None:
            self._reopen_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reopen_task
            self._reopen_task = None
        await self._close_listener()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _listen(self) -> None:
        family, kind, proto, _, address = socket.getaddrinfo(
            self.host, self.port, type=socket.SOCK_STREAM
        )[0]
        listener = socket.socket(family, kind, proto)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(address)
            listener.listen(512)
            listener.setblocking(False)
        except OSError:
            listener.close()
            raise
        self.port = listener.getsockname()[1]
        self._listener = listener
        # A plain reader callback accepts synchronously, so closing the listener can never
        # strand a socket that was accepted but not yet handed to aiohttp.
        asyncio.get_running_loop().add_reader(listener.fileno(), self._on_acceptable, listener)

    def _on_acceptable(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(64):
            try:
                conn, _ = listener.accept()
            except OSError:  # nothing left to accept (BlockingIOError) or a client gave up
                return
            conn.setblocking(False)
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = loop.create_task(self._adopt(conn))
            self._adopting.add(task)
            task.add_done_callback(self._adopting.discard)

    async def _adopt(self, conn: socket.socket) -> None:
        assert self._runner is not None and self._runner.server is not None
        try:
            await asyncio.get_running_loop().connect_accepted_socket(self._runner.server, conn)
        except BaseException:
            conn.close()
            raise

    async def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            asyncio.get_running_loop().remove_reader(listener.fileno())
            listener.close()  # the connections it accepted are left alone
        if self._adopting:
            await asyncio.gather(*self._adopting, return_exceptions=True)

    def _refuse(self, seconds: float) -> None:
        """Stop listening for ``seconds``: connections opened meanwhile are refused."""
        self._refuse_until = max(self._refuse_until, time.monotonic() + seconds)
        if self._reopen_task is not None:
            return  # already refusing; the window was extended
        self.refusals += 1
        self._reopen_task = asyncio.get_running_loop().create_task(self._refuse_window())

    async def _refuse_window(self) -> None:
        await self._close_listener()
        # ``refuse`` may extend the window while this sleeps, hence the loop.
        while True:
            remaining = self._refuse_until - time.monotonic()
            if remaining > 0:
                await asyncio.sleep(remaining)
                continue
            try:
                self._listen()
            except OSError:  # the port is not free again yet; try once more shortly
                self._refuse_until = time.monotonic() + 0.01
                continue
            break
        self._reopen_task = None

    async def _stall(self, seconds: float) -> None:
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

    async def __aenter__(self) -> FakeCommbox:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # --- the endpoint -------------------------------------------------------------------
    def _log(self, ident: int | None, status: int, outcome: str, request: web.Request) -> None:
        self.outcomes[outcome] += 1
        if self.record:
            self.requests.append(
                RequestRecord(
                    self.clock(), ident, status, outcome, dict(request.query), request.path_qs
                )
            )

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self.latency:
            await self._stall(self.latency)
        try:
            ident: int | None = int(request.match_info["ident"])
        except ValueError:
            ident = None
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            self._log(ident, 401, "unauthorized", request)
            return _json(401)
        if ident is None or ident <= 0:
            self._log(ident, 400, "bad_request", request)
            return _json(400)
        script = self._scripts.get(ident)
        if script:
            status, headers, body = script.pop(0)
            self._log(ident, status, "scripted", request)
            return web.Response(
                status=status, body=body, headers=headers, content_type="application/json"
            )
        if self._bucket is not None and not self._bucket.take():
            assert self._throttling is not None
            self._log(ident, 429, "throttled", request)
            headers = {}
            if self._throttling.retry_after is not None:
                headers["Retry-After"] = self._throttling.retry_after
            return _json(429, headers)
        is_missing = (
            self._not_found(ident) if callable(self._not_found) else ident in self._not_found
        )
        if is_missing:
            self._log(ident, 404, "not_found", request)
            return _json(404)
        faults = self.faults
        if (
            faults is not None
            and faults.kinds
            and (faults.limit is None or self.faults_injected < faults.limit)
            and self._rng.random() < faults.rate
        ):
            kind = self._rng.choice(faults.kinds)
            self.faults_injected += 1
            return await self._fault(kind, ident, request, faults)
        page = self._page(ident, request.query)
        if isinstance(page, int):
            self._log(ident, page, "bad_request", request)
            return _json(page)
        self._log(ident, 200, "ok", request)
        return web.Response(body=page, content_type="application/json")

    def _page(self, ident: int, query: Any) -> bytes | int:
        key = (ident, tuple(sorted(query.items())))
        cached: bytes | None = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        try:
            size = min(100, int(query.get("pageSize", "100")))
            number = int(query.get("pageNumber", str(self.first_page)))
            statuses = {int(s) for s in query["status"].split(",")} if "status" in query else None
            object_filter = int(query.get("objectId", "0"))
        except ValueError:
            return 400
        if size < 1 or number < self.first_page:
            return 400
        include_childs = query.get("includeChilds", "true") != "false"
        activity = query.get("includeActivityLog", "false") == "true"
        total = self.conversations_of(ident)
        indexes = [
            i
            for i in range(total)
            if (statuses is None or 1 + i % 3 in statuses)
            and (not object_filter or ident * 1000 + i == object_filter)
        ]
        start = (number - self.first_page) * size
        chosen = indexes[start : start + size]
        data = [
            conversation(
                ident, i, childs=self.childs if include_childs else 0, activity_log=activity
            )
            for i in chosen
        ]
        body = _encoder.encode(
            {
                "totalUnreadChatMessages": sum((ident + i) % 4 for i in indexes),
                "status": 200,
                "description": "Operation successful",
                "response_time": _stamp(int(self.clock()) % 86400),
                "data": data,
            }
        )
        self._cache[key] = body
        if len(self._cache) > 2048:
            self._cache.popitem(last=False)
        return body

    async def _fault(
        self, kind: str, ident: int, request: web.Request, faults: Faults
    ) -> web.StreamResponse:
        if kind.isdigit():
            status = int(kind)
            self._log(ident, status, kind, request)
            headers = {}
            if status == 429 and faults.retry_after is not None:
                headers["Retry-After"] = faults.retry_after
            return _json(status, headers)
        if kind in ABSURD_RETRY_AFTER:
            self._log(ident, 429, kind, request)
            value = ABSURD_RETRY_AFTER[kind]
            return _json(429, {"Retry-After": value} if value is not None else {})
        if kind.startswith("html_5"):
            status = int(kind[5:])
            self._log(ident, status, kind, request)
            return web.Response(
                status=status,
                text=f"<html><body><h1>{status} {_DESCRIPTIONS.get(status, 'Error')}</h1>"
                "<p>nginx</p></body></html>",
                content_type="text/html",
            )
        if kind == "html_200":
            self._log(ident, 200, kind, request)
            return web.Response(
                text="<html><body>maintenance</body></html>", content_type="text/html"
            )
        if kind == "empty_200":
            self._log(ident, 200, kind, request)
            return web.Response(body=b"", content_type="application/json")
        if kind == "bad_status_line":
            self._log(ident, 0, kind, request)
            transport = request.transport
            if transport is not None:
                transport.write(b"HTTP/1.1 2OO Okay-ish\r\nContent-Length: 0\r\n\r\n")
            _drop(request, abort=False)
            return web.Response(status=500)
        if kind == "refuse":
            self._log(ident, 0, kind, request)
            self._refuse(faults.refuse_seconds)
            _drop(request)
            return web.Response(status=500)
        if kind in PERMANENT_FAULTS:
            self._log(ident, 200, kind, request)
            return await self._oversized(request, faults.oversized_bytes, kind == "oversized")
        body = self._page(ident, request.query)
        assert isinstance(body, bytes)
        if kind == "slow_headers":
            self._log(ident, 200, kind, request)
            await self._stall(faults.slow_seconds)
            return web.Response(body=body, content_type="application/json")
        if kind == "reset":
            self._log(ident, 0, kind, request)
            _drop(request)
            return web.Response(status=500)
        # The rest send headers with the full Content-Length, then only part of the body.
        self._log(ident, 200 if kind == "slow_body" else 0, kind, request)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(body)
        try:
            await response.prepare(request)
            await response.write(body[: len(body) // 2])
            if kind == "slow_body":
                await self._stall(faults.slow_seconds)
                await response.write(body[len(body) // 2 :])
                await response.write_eof()
                return response
        except (ConnectionError, RuntimeError):
            return response  # the client gave up first (its timeout or cancellation)
        _drop(request, abort=kind == "reset_mid_body")
        return response

    async def _oversized(
        self, request: web.Request, size: int, with_length: bool
    ) -> web.StreamResponse:
        # Streamed in chunks, so a huge body never sits in the server's memory.
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        if with_length:
            response.content_length = size
        else:
            response.enable_chunked_encoding()
        chunk = b" " * 65536
        try:
            await response.prepare(request)
            sent = 0
            while sent < size:
                part = chunk[: size - sent]
                await response.write(part)
                sent += len(part)
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the client stopped reading at its cap and closed the connection
        return response


def _drop(request: web.Request, *, abort: bool = True) -> None:
    transport = request.transport
    if transport is not None:
        if abort:
            transport.abort()
        else:
            transport.close()


_DESCRIPTIONS = {
    400: "Bad Request",
    401: "Unauthorized access",
    404: "Not found",
    429: "Too Many Requests",
    500: "Operation failed",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def _error_body(status: int) -> bytes:
    return _encoder.encode(
        {
            "status": status,
            "description": _DESCRIPTIONS.get(status, "Error"),
            "response_time": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
            "data": "",
        }
    )


def _json(status: int, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=_error_body(status), headers=headers, content_type="application/json"
    )


# --- pytest --------------------------------------------------------------------------------
try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - pytest is a test-time dependency only
    pass
else:

    @pytest_asyncio.fixture
    async def fake_commbox() -> AsyncIterator[FakeCommbox]:
        """A started ``FakeCommbox`` on a free loopback port."""
        async with FakeCommbox() as server:
            yield server


# --- command line --------------------------------------------------------------------------
def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Run the fake CommBox server on loopback.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--token", default="test-token")
    parser.add_argument("--conversations", type=int, default=10)
    parser.add_argument("--childs", type=int, default=10)
    parser.add_argument("--throttle-rate", type=float, default=None, help="requests/s (off)")
    parser.add_argument("--throttle-burst", type=float, default=10.0)
    parser.add_argument("--retry-after", default="1")
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument(
        "--fault-kinds",
        default="default",
        help="comma-separated kinds, 'default' or 'all' (see FAULT_KINDS)",
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added per request")
    return parser


def server_from_args(args: argparse.Namespace) -> FakeCommbox:
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


def main(argv: list[str] | None = None) -> None:
    args = build_arg_parser().parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_forever(server_from_args(args)))


if __name__ == "__main__":
    main()
