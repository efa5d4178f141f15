"""AsyncCommbox against real servers on loopback sockets: retries, pacing, paging, redaction.

Most tests use the fake CommBox server (``FakeCommbox``) and count what reached it. A few need a
server that behaves in one precise way (held open until released, paging from 1 while reading
page 0 as 1); those handlers are defined next to the tests that use them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import gzip
import json
import logging
import random
import socket
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from loopback import serve

from commbox_async import (
    AsyncCommbox,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    CommboxAPIError,
    CommboxConnectionError,
    CommboxDecodeError,
    CommboxError,
    CommboxTimeoutError,
    InvalidArgumentError,
    LocalLimiter,
    NotFoundError,
    NotImplementedByServerError,
    PoolConfig,
    RateLimit,
    RateLimitError,
    Retries,
    ServerError,
)
from commbox_async._pacing import PausePolicy
from commbox_async.testing import FakeCommbox, Faults, conversation, unread_of
from commbox_async.testing import VirtualClock as FakeClock

IDENT = 558355
#: As in conftest: no real back-off between attempts, no default pause after a 429.
FAST_RETRIES = Retries(base_delay=0.0, max_delay=0.0, default_retry_after=0.0)
HTML = b"<html><body>Bad gateway</body></html>"


def error_body(status: int, description: str = "Operation failed") -> bytes:
    return json.dumps(
        {
            "status": status,
            "description": description,
            "response_time": "2025-04-15T07:24:52.956Z",
            "data": "",
        }
    ).encode()


#: A fixed rate: the adaptive default answers a scripted 429 by dropping to ``min_rate`` and
#: waiting seconds before the retry, which would make these tests slow.
FIXED_RATE = RateLimit(max_rate=10_000, adaptive=False)


def fast_client(server: FakeCommbox, **kwargs: Any) -> AsyncCommbox:
    """A client for ``server`` that never waits for real between attempts."""
    options: dict[str, Any] = {"rate_limit": FIXED_RATE, "retries": FAST_RETRIES}
    options.update(kwargs)
    return AsyncCommbox(token=server.token, base_url=server.url, **options)


@pytest_asyncio.fixture
async def client(server: FakeCommbox) -> AsyncIterator[AsyncCommbox]:
    """Like conftest's ``client``, but at a fixed rate (see FIXED_RATE)."""
    async with fast_client(server) as commbox:
        yield commbox


def acquired(client: AsyncCommbox) -> int:
    """Connections the client's pool has handed out and not yet got back."""
    session = client._transport.session  # the pool is private; the test must look inside it
    assert session is not None
    return len(session.connector._acquired)  # type: ignore[union-attr]


class NoJitter(random.Random):
    """Jitter at its lower bound, so that recorded waits are exact."""

    def uniform(self, a: float, b: float) -> float:
        return a


def paced_client(
    server: FakeCommbox, clock: FakeClock, retries: Retries = FAST_RETRIES, **limiter: Any
) -> AsyncCommbox:
    """A client whose limiter sleeps on ``clock`` (no real waits) with no jitter."""
    local = LocalLimiter(
        RateLimit(max_rate=10000, adaptive=False),
        pause_policy=PausePolicy(**limiter),
        clock=clock.time,
        sleep=clock.sleep,
        rng=NoJitter(),
    )
    return fast_client(server, limiter=local, retries=retries)


# --- statuses: class and retry ---------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
async def test_transient_statuses_retried_until_success(
    server: FakeCommbox, client: AsyncCommbox, status: int
) -> None:
    """500, 502, 503, 504 and 429 are retried; the third attempt's page is returned."""
    server.script(IDENT, status, status)
    page = await client.get_user_objects(IDENT)
    assert page.total_unread_chat_messages == unread_of(IDENT, 10)
    assert server.count(None, IDENT) == 3
    assert server.count("scripted", IDENT) == 2
    assert server.count("ok", IDENT) == 1
    assert client.stats.retries == 2


@pytest.mark.parametrize(
    ("status", "cls", "description"),
    [
        (400, BadRequestError, "Bad Request"),
        (401, AuthenticationError, "Unauthorized access"),
        (404, NotFoundError, "Not found"),
        (501, NotImplementedByServerError, "Not Implemented"),
        (403, CommboxAPIError, "Error"),
        (405, CommboxAPIError, "Error"),
        (409, CommboxAPIError, "Error"),
        (418, CommboxAPIError, "Error"),
        (422, CommboxAPIError, "Error"),
    ],
)
async def test_final_statuses_not_retried(
    server: FakeCommbox,
    client: AsyncCommbox,
    status: int,
    cls: type[CommboxAPIError],
    description: str,
) -> None:
    """400, 401, 404, 501 and other 4xx raise their class after exactly one request."""
    server.script(IDENT, status)
    with pytest.raises(CommboxAPIError) as info:
        await client.get_user_objects(IDENT)
    exc = info.value
    assert type(exc) is cls
    assert (exc.status, exc.description, exc.identity_id) == (status, description, IDENT)
    assert exc.response_time is not None and exc.response_time.tzinfo is not None
    assert server.count(None, IDENT) == 1


async def test_redirect_not_followed(server: FakeCommbox, client: AsyncCommbox) -> None:
    """A 3xx is an error after one request; the redirect is never followed."""
    server.script(IDENT, (302, {"Location": f"{server.url}/v2/users/identities/1/objects"}, b""))
    with pytest.raises(CommboxAPIError) as info:
        await client.get_user_objects(IDENT)
    assert info.value.status == 302
    assert len(server.requests) == 1


async def test_real_401_from_wrong_token(server: FakeCommbox) -> None:
    """A token the server refuses gives AuthenticationError after one request."""
    async with AsyncCommbox(token="wrong", base_url=server.url, retries=FAST_RETRIES) as commbox:
        with pytest.raises(AuthenticationError):
            await commbox.get_user_objects(IDENT)
    assert server.count("unauthorized") == 1 and len(server.requests) == 1


async def test_real_404() -> None:
    """An identity the server does not know gives NotFoundError after one request."""
    async with FakeCommbox(not_found=[42]) as fake, fast_client(fake) as commbox:
        with pytest.raises(NotFoundError) as info:
            await commbox.get_user_objects(42)
        assert info.value.identity_id == 42
        assert fake.count("not_found") == 1 and len(fake.requests) == 1


async def test_server_errors_exhaust_tries(server: FakeCommbox) -> None:
    """A server that keeps failing is tried exactly ``tries`` times, then ServerError."""
    server.script(IDENT, *([503] * 6))
    retries = Retries(tries=3, base_delay=0.0, max_delay=0.0)
    async with fast_client(server, retries=retries) as commbox:
        with pytest.raises(ServerError) as info:
            await commbox.get_user_objects(IDENT)
    assert info.value.status == 503 and info.value.description == "Service Unavailable"
    assert server.count(None, IDENT) == 3


async def test_throttling_exhausts_throttled_tries(server: FakeCommbox) -> None:
    """A server that keeps throttling is tried ``throttled_tries`` times, then RateLimitError."""
    server.script(IDENT, *([(429, {"Retry-After": "0"}, error_body(429))] * 6))
    retries = Retries(throttled_tries=4, base_delay=0.0, max_delay=0.0, default_retry_after=0.0)
    async with fast_client(server, retries=retries) as commbox:
        with pytest.raises(RateLimitError):
            await commbox.get_user_objects(IDENT)
    assert server.count(None, IDENT) == 4


async def test_html_200_retried(server: FakeCommbox, client: AsyncCommbox) -> None:
    """A 200 whose body is an HTML page is retried, and the next page returned."""
    server.script(IDENT, (200, {}, HTML), (200, {}, b""))
    page = await client.get_user_objects(IDENT)
    assert len(page.data) == 10
    assert server.count(None, IDENT) == 3


@pytest.mark.parametrize(
    ("kind", "cls"),
    [
        ("reset", CommboxConnectionError),
        ("reset_mid_body", CommboxConnectionError),
        ("truncate", CommboxConnectionError),
        ("html_200", CommboxDecodeError),
        ("empty_200", CommboxDecodeError),
        ("html_502", ServerError),
        ("500", ServerError),
    ],
)
async def test_faults_retried_then_translated(kind: str, cls: type[CommboxError]) -> None:
    """Resets, cut bodies and bad 200s are retried up to ``tries``, then the library's error."""
    faults = Faults(rate=1.0, kinds=(kind,))
    retries = Retries(tries=3, base_delay=0.0, max_delay=0.0)
    async with FakeCommbox(faults=faults) as fake, fast_client(fake, retries=retries) as commbox:
        with pytest.raises(cls) as info:
            await commbox.get_user_objects(IDENT)
        assert fake.count(kind) == 3
        assert info.value.identity_id == IDENT
        assert not isinstance(info.value, aiohttp.ClientError)
        assert acquired(commbox) == 0


async def test_connection_refused() -> None:
    """Nothing listening: CommboxConnectionError after ``tries`` attempts, no aiohttp error."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    retries = Retries(tries=2, base_delay=0.0, max_delay=0.0)
    async with AsyncCommbox(
        token="t", base_url=f"http://127.0.0.1:{port}", retries=retries, rate_limit=FIXED_RATE
    ) as commbox:
        with pytest.raises(CommboxConnectionError) as info:
            await commbox.get_user_objects(IDENT)
    assert info.value.identity_id == IDENT
    assert commbox.stats.requests == 2


async def test_timeout_translated() -> None:
    """An attempt slower than the timeout is a CommboxTimeoutError, retried up to ``tries``."""
    retries = Retries(tries=2, base_delay=0.0, max_delay=0.0)
    async with (
        FakeCommbox(latency=0.05) as fake,
        fast_client(fake, retries=retries, timeout=0.01) as commbox,
    ):
        with pytest.raises(CommboxTimeoutError) as info:
            await commbox.get_user_objects(IDENT)
        assert info.value.identity_id == IDENT
        assert commbox.stats.requests == 2
        assert acquired(commbox) == 0


class RecordingJitter(random.Random):
    """Records the ceiling of every full-jitter draw and returns ``pick`` of it (0: no wait)."""

    def __init__(self, pick: float = 0.0) -> None:
        super().__init__(0)
        self.pick = pick
        self.ceilings: list[float] = []

    def uniform(self, a: float, b: float) -> float:
        self.ceilings.append(b)
        return a + (b - a) * self.pick


async def test_backoff_is_exponential_and_capped(server: FakeCommbox) -> None:
    """Delays between failed attempts are full jitter under base * 2**n, capped at max_delay."""
    jitter = RecordingJitter()
    server.script(IDENT, 500, 502, 503, 504)
    retries = Retries(tries=5, base_delay=0.2, max_delay=0.5)
    async with fast_client(server, retries=retries, rng=jitter) as commbox:
        await commbox.get_user_objects(IDENT)
    assert jitter.ceilings == pytest.approx([0.2, 0.4, 0.5, 0.5])
    assert server.count(None, IDENT) == 5


async def test_backoff_past_deadline_fails_at_once(server: FakeCommbox) -> None:
    """A back-off delay that would pass the caller's deadline ends the call at once."""
    jitter = RecordingJitter(pick=1.0)  # the delay drawn is the full 10 s
    server.script(IDENT, 503)
    retries = Retries(base_delay=10.0, max_delay=10.0)
    async with fast_client(server, retries=retries, rng=jitter) as commbox:
        with pytest.raises(ServerError):
            await commbox.get_user_objects(IDENT, deadline=2)
    assert jitter.ceilings == [10.0]
    assert server.count(None, IDENT) == 1


async def test_body_over_cap_is_refused(server: FakeCommbox) -> None:
    """A body larger than max_body_bytes fails clearly, and its connection is given back."""
    async with fast_client(server, pool=PoolConfig(max_body_bytes=1024)) as commbox:
        with pytest.raises(CommboxDecodeError) as info:
            await commbox.get_user_objects(IDENT)
        assert "max_body_bytes" in str(info.value)
        assert acquired(commbox) == 0
    assert server.count(None, IDENT) == 1


@pytest.mark.parametrize("with_length", [True, False])
async def test_gzip_body_over_cap_once_unpacked_is_refused(with_length: bool) -> None:
    """The cap counts the bytes after decompression: a small gzip body that unpacks past
    max_body_bytes is refused, with or without a Content-Length, and the connection is freed."""
    page = json.dumps({"totalUnreadChatMessages": 0, "data": [], "pad": "x" * 200_000}).encode()
    packed = gzip.compress(page)
    assert len(packed) < 2048 < len(page)

    async def handler(request: web.Request) -> web.StreamResponse:
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        if with_length:
            return web.Response(body=packed, headers=headers)
        response = web.StreamResponse(headers=headers)
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(packed)
        await response.write_eof()
        return response

    async with serve(handler) as url:
        pool = PoolConfig(max_body_bytes=100_000)
        async with AsyncCommbox(token="t", base_url=url, pool=pool) as commbox:
            with pytest.raises(CommboxDecodeError) as info:
                await commbox.get_user_objects(IDENT)
            assert "max_body_bytes=100000" in str(info.value)
            assert acquired(commbox) == 0
        # The same body under a cap it fits in decodes: the refusal was about size.
        pool = PoolConfig(max_body_bytes=len(page) + 1)
        async with AsyncCommbox(token="t", base_url=url, pool=pool) as commbox:
            assert (await commbox.get_user_objects(IDENT)).unread_total == 0


async def test_aiohttp_client_timeout_accepted() -> None:
    """An aiohttp ClientTimeout is accepted as the timeout and enforced."""
    retries = Retries(tries=1)
    async with (
        FakeCommbox(latency=0.05) as fake,
        fast_client(fake, retries=retries, timeout=aiohttp.ClientTimeout(total=0.01)) as commbox,
    ):
        with pytest.raises(CommboxTimeoutError):
            await commbox.get_user_objects(IDENT)


# --- Retry-After, on an injected clock --------------------------------------------------------


async def test_retry_after_seconds_honoured(server: FakeCommbox) -> None:
    """A 429 with Retry-After: 7 makes the next attempt wait exactly 7 seconds."""
    clock = FakeClock()
    server.script(IDENT, (429, {"Retry-After": "7"}, error_body(429)))
    async with paced_client(server, clock) as commbox:
        page = await commbox.get_user_objects(IDENT)
    assert len(page.data) == 10
    assert clock.sleeps == [7.0]
    assert server.count(None, IDENT) == 2


async def test_retry_after_http_date_honoured(server: FakeCommbox) -> None:
    """A 429 with an HTTP-date Retry-After waits until that date."""
    clock = FakeClock()
    when = datetime.now(timezone.utc) + timedelta(seconds=30)
    server.script(IDENT, (429, {"Retry-After": format_datetime(when, usegmt=True)}, b""))
    async with paced_client(server, clock) as commbox:
        await commbox.get_user_objects(IDENT)
    assert len(clock.sleeps) == 1
    # The date has whole seconds, and it was read a moment after it was written.
    assert 28.0 <= clock.sleeps[0] <= 30.0
    assert server.count(None, IDENT) == 2


async def test_retry_after_missing_uses_default(server: FakeCommbox) -> None:
    """A 429 without Retry-After waits the configured default."""
    clock = FakeClock()
    server.script(IDENT, 429)
    retries = Retries(base_delay=0.0, max_delay=0.0, default_retry_after=2.0)
    async with paced_client(server, clock, retries, default_retry_after=2.0) as commbox:
        await commbox.get_user_objects(IDENT)
    assert clock.sleeps == [2.0]


async def test_retry_after_capped(server: FakeCommbox) -> None:
    """A Retry-After above max_retry_after waits the cap (and the capped wait fits the deadline)."""
    clock = FakeClock()
    server.script(IDENT, (429, {"Retry-After": "1000"}, error_body(429)))
    retries = Retries(base_delay=0.0, max_delay=0.0, max_retry_after=5.0)
    async with paced_client(server, clock, retries, max_retry_after=5.0) as commbox:
        await commbox.get_user_objects(IDENT, deadline=10)
    assert clock.sleeps == [5.0]
    assert server.count(None, IDENT) == 2


@pytest.mark.parametrize("retry_after", ["10", "60"])
async def test_retry_after_past_deadline_fails_at_once(
    server: FakeCommbox, retry_after: str
) -> None:
    """A Retry-After longer than the caller's deadline fails at once: one request, no sleep."""
    clock = FakeClock()
    server.script(IDENT, (429, {"Retry-After": retry_after}, error_body(429)))
    async with paced_client(server, clock) as commbox:
        with pytest.raises(RateLimitError) as info:
            await commbox.get_user_objects(IDENT, deadline=5)
    assert info.value.retry_after == float(retry_after)
    assert info.value.identity_id == IDENT
    assert server.count(None, IDENT) == 1
    assert clock.sleeps == []


async def test_pause_is_shared_by_later_calls(server: FakeCommbox) -> None:
    """After a 429 the next call, for any identity, waits out the server's Retry-After."""
    clock = FakeClock()
    server.script(IDENT, (429, {"Retry-After": "9"}, error_body(429)))
    async with paced_client(server, clock) as commbox:
        with pytest.raises(RateLimitError):
            await commbox.get_user_objects(IDENT, deadline=5)
        assert clock.sleeps == []
        await commbox.get_user_objects(IDENT + 1)
    assert clock.sleeps == [9.0]


# --- pagination -------------------------------------------------------------------------------


async def test_iter_pages_until_short_page(server: FakeCommbox, client: AsyncCommbox) -> None:
    """iter_user_objects walks pages from 0 with the page size and stops on a short page."""
    ids = [c.object_id async for c in client.iter_user_objects(IDENT, page_size=3)]
    assert ids == [IDENT * 1000 + i for i in range(10)]
    assert [r.query["pageNumber"] for r in server.requests] == ["0", "1", "2", "3"]
    assert {r.query["pageSize"] for r in server.requests} == {"3"}


async def test_iter_stops_on_empty_page() -> None:
    """When the total is a multiple of the page size, the empty page after the last ends it."""
    async with FakeCommbox(conversations=9) as fake, fast_client(fake) as commbox:
        ids = [c.object_id async for c in commbox.iter_user_objects(IDENT, page_size=3)]
    assert len(ids) == len(set(ids)) == 9
    assert [r.query["pageNumber"] for r in fake.requests] == ["0", "1", "2", "3"]


async def test_iter_default_page_size(server: FakeCommbox, client: AsyncCommbox) -> None:
    """By default one request of 100 reads an identity with fewer conversations."""
    items = [c async for c in client.iter_user_objects(IDENT)]
    assert len(items) == 10
    assert [r.query for r in server.requests] == [{"pageSize": "100", "pageNumber": "0"}]


async def test_iter_first_page_one() -> None:
    """With a server that counts from 1, first_page=1 reads every conversation once."""
    async with FakeCommbox(first_page=1) as fake, fast_client(fake) as commbox:
        ids = [
            c.object_id async for c in commbox.iter_user_objects(IDENT, page_size=4, first_page=1)
        ]
    assert ids == [IDENT * 1000 + i for i in range(10)]
    assert [r.query["pageNumber"] for r in fake.requests] == ["1", "2", "3"]


async def test_iter_wrong_base_is_loud() -> None:
    """A server that refuses page 0 makes iteration fail, never end silently with nothing."""
    async with FakeCommbox(first_page=1) as fake, fast_client(fake) as commbox:
        with pytest.raises(BadRequestError):
            async for _ in commbox.iter_user_objects(IDENT, page_size=4):
                pass
        assert len(fake.requests) == 1


async def test_iter_passes_filters(server: FakeCommbox, client: AsyncCommbox) -> None:
    """Filters reach every page request, and the server's filtering shows in the results."""
    items = [
        c
        async for c in client.iter_user_objects(
            IDENT, page_size=2, statuses=[1], include_childs=False
        )
    ]
    assert [c.object_id for c in items] == [IDENT * 1000 + i for i in (0, 3, 6, 9)]
    assert all(c.childs == [] for c in items)
    assert all(r.query["status"] == "1" for r in server.requests)
    assert all(r.query["includeChilds"] == "false" for r in server.requests)


async def test_iter_max_pages(server: FakeCommbox, client: AsyncCommbox) -> None:
    """max_pages bounds the requests of one iteration."""
    items = [c async for c in client.iter_user_objects(IDENT, page_size=2, max_pages=2)]
    assert len(items) == 4
    assert len(server.requests) == 2


def _one_based_handler(
    items: list[bytes], *, zero_as_one: bool
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Pages from 1; with ``zero_as_one`` page 0 is read as page 1 (as some vendor calls do)."""
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        size = int(request.query["pageSize"])
        number = int(request.query["pageNumber"])
        seen.append(request.query["pageNumber"])
        if zero_as_one and number == 0:
            number = 1
        chunk = items[(number - 1) * size : number * size]
        body = b'{"status": 200, "data": [' + b",".join(chunk) + b"]}"
        return web.Response(body=body, content_type="application/json")

    handler.seen = seen  # type: ignore[attr-defined]
    return handler


def _items(count: int) -> list[bytes]:
    return [
        json.dumps(conversation(IDENT, i, childs=0, activity_log=False)).encode()
        for i in range(count)
    ]


async def test_iter_dedupes_when_server_reads_zero_as_one() -> None:
    """Against a server that reads page 0 as 1, page 1 repeats page 0: no duplicate, no loss."""
    handler = _one_based_handler(_items(10), zero_as_one=True)
    async with (
        serve(handler) as url,
        AsyncCommbox(
            token="t", base_url=url, rate_limit=FIXED_RATE, retries=FAST_RETRIES
        ) as commbox,
    ):
        ids = [c.object_id async for c in commbox.iter_user_objects(IDENT, page_size=3)]
    assert ids == [IDENT * 1000 + i for i in range(10)]  # every one, once


async def test_iter_never_yields_duplicates_when_server_reads_zero_as_one() -> None:
    """Against a server that reads page 0 as 1, no conversation is yielded twice."""
    handler = _one_based_handler(_items(10), zero_as_one=True)
    async with (
        serve(handler) as url,
        AsyncCommbox(
            token="t", base_url=url, rate_limit=FIXED_RATE, retries=FAST_RETRIES
        ) as commbox,
    ):
        ids = [c.object_id async for c in commbox.iter_user_objects(IDENT, page_size=3)]
    assert len(ids) == len(set(ids)) >= 3


async def test_iter_invalid_items_do_not_end_paging() -> None:
    """A full page with an unreadable conversation is still full: paging goes on."""
    items = _items(5)
    items[1] = b'{"childs": 7}'  # cannot be read
    handler = _one_based_handler(items, zero_as_one=False)
    async with (
        serve(handler) as url,
        AsyncCommbox(
            token="t", base_url=url, rate_limit=FIXED_RATE, retries=FAST_RETRIES
        ) as commbox,
    ):
        ids = [
            c.object_id async for c in commbox.iter_user_objects(IDENT, page_size=2, first_page=1)
        ]
    assert ids == [IDENT * 1000 + i for i in (0, 2, 3, 4)]
    assert handler.seen == ["1", "2", "3"]  # type: ignore[attr-defined]


# --- bad input never reaches the network --------------------------------------------------


@pytest.mark.parametrize(
    ("identity_id", "filters"),
    [
        (True, {}),
        (558355.0, {}),
        ("558355", {}),
        (0, {}),
        (-1, {}),
        (2**63, {}),
        (None, {}),
        (IDENT, {"page_size": 101}),
        (IDENT, {"page_size": True}),
        (IDENT, {"pageSize": 10}),
        (IDENT, {"statuses": "1,2"}),
        (IDENT, {"include_childs": "yes"}),
        (IDENT, {"stream_provider_id": "x"}),
        (IDENT, {"stream_id": -1}),
        (IDENT, {"deadline": 0}),
        (IDENT, {"deadline": -1}),
        (IDENT, {"deadline": True}),
        (IDENT, {"deadline": "5"}),
        (IDENT, {"deadline": float("nan")}),
        (IDENT, {"deadline": float("inf")}),
    ],
)
async def test_bad_input_sends_nothing(
    server: FakeCommbox, client: AsyncCommbox, identity_id: Any, filters: dict[str, Any]
) -> None:
    """Invalid ids, filters and deadlines raise InvalidArgumentError before any request."""
    with pytest.raises(InvalidArgumentError):
        await client.get_user_objects(identity_id, **filters)
    with pytest.raises(InvalidArgumentError):
        async for _ in client.iter_user_objects(identity_id, **filters):
            pass
    assert server.requests == []
    assert client.stats.requests == 0


@pytest.mark.parametrize(
    "options",
    [
        {"page_size": 0},
        {"page_size": 101},
        {"first_page": -1},
        {"first_page": True},
        {"page_number": 2},
        {"max_pages": 0},
        {"max_pages": True},
    ],
)
async def test_iter_bad_paging_sends_nothing(
    server: FakeCommbox, client: AsyncCommbox, options: dict[str, Any]
) -> None:
    """Bad paging options of iter_user_objects raise before any request."""
    with pytest.raises(InvalidArgumentError):
        async for _ in client.iter_user_objects(IDENT, **options):
            pass
    assert server.requests == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"token": ""},
        {"token": "has space"},
        {"token": "line\n"},
        {"base_url": "http://api.commbox.io"},
        {"base_url": "https://api.commbox.io/v2"},
        {"rate_limit": 0},
        {"rate_limit": True},
        {"timeout": -1},
        {"retries": 0},
        {"session": object()},
    ],
)
def test_bad_constructor_arguments(kwargs: dict[str, Any]) -> None:
    """Bad constructor arguments raise InvalidArgumentError at once."""
    options: dict[str, Any] = {"token": "t", "base_url": "http://127.0.0.1:1"}
    options.update(kwargs)
    with pytest.raises(InvalidArgumentError):
        AsyncCommbox(**options)


def test_no_token_anywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without token= or COMMBOX_TOKEN the client refuses to be built."""
    monkeypatch.delenv("COMMBOX_TOKEN", raising=False)
    with pytest.raises(InvalidArgumentError):
        AsyncCommbox()


async def test_token_and_url_from_environment(
    server: FakeCommbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """COMMBOX_TOKEN and COMMBOX_BASE_URL are used when the arguments are absent."""
    monkeypatch.setenv("COMMBOX_TOKEN", server.token)
    monkeypatch.setenv("COMMBOX_BASE_URL", server.url)
    async with AsyncCommbox(retries=FAST_RETRIES) as commbox:
        await commbox.get_user_objects(IDENT)
    assert server.count("ok") == 1


async def test_query_reaches_server_encoded(server: FakeCommbox, client: AsyncCommbox) -> None:
    """Every filter reaches the server under its wire name, special characters intact."""
    await client.get_user_objects(
        IDENT,
        stream_provider_id="a&b=c d/é?#",
        stream_provider_type=5,
        stream_id=19155,
        sub_stream_id=0,
        page_number=0,
        page_size=5,
        statuses=[1, 2],
        order="closedtime",
        object_id=0,
        module_id=0,
        include_childs=True,
        include_activity_log=True,
    )
    assert server.requests[0].query == {
        "streamProviderId": "a&b=c d/é?#",
        "streamProviderType": "5",
        "stream": "19155",
        "subStream": "0",
        "pageNumber": "0",
        "pageSize": "5",
        "status": "1,2",
        "order": "closedtime",
        "objectId": "0",
        "moduleId": "0",
        "includeChilds": "true",
        "includeActivityLog": "true",
    }


# --- redaction ----------------------------------------------------------------------------------

SECRET = "tok-SUPERSECRET-4f9a"


def _texts_of(exc: BaseException) -> list[str]:
    """str and repr of an exception and of everything chained to it."""
    texts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts += [str(current), repr(current), repr(current.args)]
        current = current.__cause__ or current.__context__
    return texts


async def test_token_never_leaks(caplog: pytest.LogCaptureFixture) -> None:
    """At DEBUG, across success, retries and failures, the token is in no log, repr or error."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="commbox_async")
    errors: list[BaseException] = []
    retries = Retries(tries=2, base_delay=0.0, max_delay=0.0, default_retry_after=0.0)
    async with FakeCommbox(token=SECRET, not_found=[404]) as fake:
        async with AsyncCommbox(
            token=SECRET, base_url=fake.url, retries=retries, rate_limit=FIXED_RATE
        ) as commbox:
            texts = [repr(commbox), str(commbox)]
            await commbox.get_user_objects(IDENT)  # success
            fake.script(IDENT, 500, (429, {"Retry-After": "0"}, b""), (200, {}, HTML))
            fake.script(IDENT, 502, 503)
            # Retries ending in a bad 200, retries ending in a 5xx, a 404, then a success.
            for target in (IDENT, IDENT, 404, 4242):
                try:
                    await commbox.get_user_objects(target, page_size=5)
                except CommboxError as exc:
                    errors.append(exc)
            fake.faults = Faults(rate=1.0, kinds=("reset", "truncate", "html_200"))
            try:
                await commbox.get_user_objects(IDENT)
            except CommboxError as exc:
                errors.append(exc)
            fake.faults = None
            texts += [repr(commbox), str(commbox.stats)]
        # A wrong token, too: the server answers 401 and that token must not show either.
        wrong = "wrong-SUPERSECRET-token"
        async with AsyncCommbox(token=wrong, base_url=fake.url, retries=retries) as commbox:
            try:
                await commbox.get_user_objects(IDENT)
            except CommboxError as exc:
                errors.append(exc)
            texts.append(repr(commbox))
        requests = fake.requests
    assert {type(e) for e in errors} >= {
        CommboxDecodeError,
        ServerError,
        NotFoundError,
        AuthenticationError,
    }
    assert len(errors) == 5
    for exc in errors:
        texts += _texts_of(exc)
    texts.append(caplog.text)
    texts += [repr(r.args) + repr(r.msg) for r in caplog.records]
    texts += [repr(r) for r in requests]
    assert any("GET" in r.getMessage() for r in caplog.records)  # DEBUG lines were captured
    for text in texts:
        assert "SUPERSECRET" not in text


async def test_token_only_in_authorization_header() -> None:
    """The server sees the token in the Authorization header and nowhere in the URL."""
    seen: list[web.Request] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request)
        return web.json_response({"status": 200, "data": []})

    async with (
        serve(handler) as url,
        AsyncCommbox(
            token=SECRET, base_url=url, rate_limit=FIXED_RATE, retries=FAST_RETRIES
        ) as commbox,
    ):
        await commbox.get_user_objects(
            IDENT, page_size=5, stream_provider_id="x", stream_provider_type=1
        )
    (request,) = seen
    assert request.headers["Authorization"] == f"Bearer {SECRET}"
    assert request.raw_path.startswith(f"/v2/users/identities/{IDENT}/objects?")
    for text in (str(request.url), request.raw_path, request.query_string):
        assert "SUPERSECRET" not in text
    others = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
    assert "SUPERSECRET" not in repr(others)


async def test_bad_token_error_does_not_echo() -> None:
    """A token rejected at construction is not repeated in the error."""
    with pytest.raises(InvalidArgumentError) as info:
        AsyncCommbox(token="SUPERSECRET with space", base_url="http://127.0.0.1:1")
    assert all("SUPERSECRET" not in text for text in _texts_of(info.value))


# --- cancellation and clean shutdown ----------------------------------------------------------


class Gate:
    """A handler that answers only when released, so a request can be held in flight."""

    def __init__(self, *, half_body: bool = False) -> None:
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()
        self.half_body = half_body

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        body = json.dumps({"status": 200, "data": []}).encode()
        if not self.half_body:
            self.arrived.set()
            await self.release.wait()
            return web.Response(body=body, content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(body)
        await response.prepare(request)
        await response.write(body[:5])
        self.arrived.set()
        await self.release.wait()
        with contextlib.suppress(ConnectionError):
            await response.write(body[5:])
        return response


def _resource_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [
        str(w.message)
        for w in caught
        if issubclass(w.category, ResourceWarning) or "Unclosed" in str(w.message)
    ]


@pytest.mark.parametrize("half_body", [False, True], ids=["awaiting-headers", "mid-body"])
async def test_cancel_releases_connection(half_body: bool) -> None:
    """Cancelling a call in flight gives its connection back and leaves nothing unclosed."""
    gate = Gate(half_body=half_body)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with serve(gate) as url:
            commbox = AsyncCommbox(token="t", base_url=url, rate_limit=FIXED_RATE)
            async with commbox:
                task = asyncio.create_task(commbox.get_user_objects(IDENT))
                await gate.arrived.wait()
                await asyncio.sleep(0)
                assert acquired(commbox) == 1  # the call holds a connection now
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                assert acquired(commbox) == 0
                assert commbox.stats.in_flight == 0
                gate.release.set()
                # The client still works after a cancelled call.
                page = await commbox.get_user_objects(IDENT)
                assert page.data == []
            assert commbox.closed
        gc.collect()
    assert _resource_warnings(caught) == []


async def test_cancel_during_retry_pause(server: FakeCommbox) -> None:
    """Cancelling a call that waits out a Retry-After stops it and sends nothing more."""
    sleeping = asyncio.Event()

    async def never(seconds: float) -> None:
        sleeping.set()
        await asyncio.Event().wait()

    limiter = LocalLimiter(RateLimit(max_rate=10000, adaptive=False), sleep=never)
    server.script(IDENT, (429, {"Retry-After": "30"}, error_body(429)))
    async with fast_client(server, limiter=limiter) as commbox:
        task = asyncio.create_task(commbox.get_user_objects(IDENT))
        await sleeping.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert acquired(commbox) == 0
    assert server.count(None, IDENT) == 1


async def test_close_leaves_nothing_unclosed(server: FakeCommbox) -> None:
    """After use and close, garbage collection finds no unclosed session or connector."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        commbox = fast_client(server)
        async with commbox:
            await asyncio.gather(*(commbox.get_user_objects(IDENT + i) for i in range(5)))
            assert acquired(commbox) == 0
        del commbox
        gc.collect()
    assert _resource_warnings(caught) == []


# --- life of the client -----------------------------------------------------------------------


async def test_closed_client_refuses(server: FakeCommbox) -> None:
    """A closed client raises ClientClosedError for calls, iteration and reopening."""
    commbox = fast_client(server)
    async with commbox:
        await commbox.get_user_objects(IDENT)
    assert commbox.closed
    with pytest.raises(ClientClosedError):
        await commbox.get_user_objects(IDENT)
    with pytest.raises(ClientClosedError):
        async for _ in commbox.iter_user_objects(IDENT):
            pass
    with pytest.raises(ClientClosedError):
        async with commbox:
            pass
    await commbox.aclose()  # closing twice is fine
    assert len(server.requests) == 1


async def test_unopened_client_refuses(server: FakeCommbox) -> None:
    """A client used outside ``async with`` raises ClientClosedError and sends nothing."""
    commbox = fast_client(server)
    with pytest.raises(ClientClosedError):
        await commbox.get_user_objects(IDENT)
    await commbox.aclose()
    assert server.requests == []


async def test_caller_session_used_and_left_open(server: FakeCommbox) -> None:
    """A session passed in carries the requests and is still open after the client closes."""
    async with aiohttp.ClientSession() as session:
        async with fast_client(server, session=session) as commbox:
            assert commbox._transport.session is session
            await commbox.get_user_objects(IDENT)
        assert not session.closed
        headers = {"Authorization": f"Bearer {server.token}"}
        async with session.get(
            f"{server.url}/v2/users/identities/{IDENT}/objects", headers=headers
        ) as response:
            assert response.status == 200
    assert server.count("ok") == 2


async def test_concurrent_calls_share_one_pool(server: FakeCommbox, client: AsyncCommbox) -> None:
    """Many concurrent calls all succeed and give every connection back."""
    pages = await asyncio.gather(*(client.get_user_objects(IDENT + i) for i in range(20)))
    assert [p.total_unread_chat_messages for p in pages] == [
        unread_of(IDENT + i, 10) for i in range(20)
    ]
    assert acquired(client) == 0
    assert client.stats.requests == 20
