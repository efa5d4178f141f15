"""What a program sees when a job cannot succeed, and what an error tells about its response:
a fan-out that stops sending when nothing connects, a call that will not outwait its deadline,
errors that carry the response's headers and first bytes, default headers, status names."""

from __future__ import annotations

import asyncio
import json
import pickle
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from loopback import serve

from commbox_async import (
    AsyncCommbox,
    ClientClosedError,
    CommboxConnectionError,
    CommboxTimeoutError,
    InvalidArgumentError,
    RateLimit,
    RateLimitError,
    Retries,
    ServerError,
)
from commbox_async._fanout import fan_out
from commbox_async._models import UserObjectsPage
from commbox_async._pacing import PausePolicy, Ticket
from commbox_async._protocol import Query, parse_response
from commbox_async._throttle import LocalLimiter
from commbox_async.testing import FakeCommbox, unused_port

FIXED = RateLimit(max_rate=10_000, adaptive=False)
ONE_TRY = Retries(tries=1, base_delay=0.0, max_delay=0.0, default_retry_after=0.0)


async def test_a_fan_out_to_a_closed_port_stops_sending_after_a_few_failures() -> None:
    """Nothing listens: after 3 calls fail to connect, the other ids get that error unsent,
    one result each, and the client sent no more than 3 + concurrency attempts."""
    port = unused_port()
    async with AsyncCommbox(
        token="t", base_url=f"http://127.0.0.1:{port}", retries=ONE_TRY, rate_limit=FIXED
    ) as commbox:
        results = [
            r async for r in commbox.fetch_many(range(1, 201), concurrency=4, unreachable_after=3)
        ]
        sent = commbox.stats.requests
    assert sorted(r.identity_id for r in results) == list(range(1, 201))
    errors = [r.error for r in results]
    assert all(isinstance(e, CommboxConnectionError) and e.could_not_connect for e in errors)
    unsent = [e for e in errors if e is not None and "not sent" in str(e)]
    assert len(unsent) >= 200 - (3 + 4)
    assert sent <= 3 + 4
    assert all(e.identity_id == r.identity_id for e, r in zip(errors, results, strict=True) if e)


async def test_unreachable_after_none_sends_every_id() -> None:
    """``unreachable_after=None`` never gives up: every id is tried."""
    port = unused_port()
    async with AsyncCommbox(
        token="t", base_url=f"http://127.0.0.1:{port}", retries=ONE_TRY, rate_limit=FIXED
    ) as commbox:
        results = [
            r async for r in commbox.fetch_many(range(1, 21), concurrency=2, unreachable_after=None)
        ]
        assert commbox.stats.requests == 20
    assert not any("not sent" in str(r.error) for r in results)


async def test_a_server_that_answered_once_is_never_given_up() -> None:
    """One answer, then connect failures: every later id is still sent (a blip, not a wrong
    URL), so no result says "not sent"."""
    calls: list[int] = []

    async def request(ident: int) -> UserObjectsPage:
        calls.append(ident)
        if ident == 1:
            return UserObjectsPage(status=200)
        error = CommboxConnectionError("cannot connect to 127.0.0.1:1: connection refused")
        error.could_not_connect = True
        raise error

    results = [
        r
        async for r in fan_out(
            range(1, 31),
            request,
            concurrency=1,
            dedupe=False,
            on_progress=None,
            tasks=set(),
            stopped_from_outside=lambda: False,
            unreachable_after=3,
        )
    ]
    assert calls == list(range(1, 31))
    assert results[0].ok and not any("not sent" in str(r.error) for r in results[1:])


async def test_a_call_does_not_wait_out_a_pause_past_its_deadline() -> None:
    """A 429 asking for 20 s pauses the client; a call with deadline=3 made during that pause
    fails at once as a timeout, without a request (no real waiting in this test)."""
    async with FakeCommbox(record=True) as server:
        server.script(5, (429, {"Retry-After": "20"}, b'{"status": 429}'))
        async with server.client(retries=Retries(default_retry_after=20.0)) as commbox:
            with pytest.raises(RateLimitError):
                await commbox.get_user_objects(5, deadline=1)
            assert commbox.limiter.pause_remaining() > 10
            with pytest.raises(CommboxTimeoutError) as caught:
                await commbox.get_user_objects(6, deadline=3)
        assert "paused" in str(caught.value) and "deadline" in str(caught.value)
        assert server.count(identity_id=6) == 0


async def test_a_call_does_not_queue_for_a_rate_slot_past_its_deadline() -> None:
    """At 1 request/s, four more calls with deadline=0.2 cannot get a slot in time: each fails
    as a final timeout that names the rate, and none of them is sent (their slots, a second
    apart, were never taken)."""
    slow = RateLimit(max_rate=1.0, burst=1, min_rate=0.5, adaptive=False)
    async with FakeCommbox(record=True) as server, server.client(rate_limit=slow) as commbox:
        results = await asyncio.gather(
            *(commbox.get_user_objects(i, deadline=0.2) for i in range(1, 6)),
            return_exceptions=True,
        )
        assert isinstance(results[0], UserObjectsPage)
        for error in results[1:]:
            assert isinstance(error, CommboxTimeoutError) and not error.retryable
            assert "no slot under the rate limit" in str(error)
        assert len(server.requests) == 1


class _OwnLimiter:
    """A user's limiter that knows nothing of deadlines: its slot never comes."""

    def __init__(self, inner: LocalLimiter) -> None:
        self.inner = inner

    async def acquire(self) -> object:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


async def test_a_limiter_of_ones_own_is_bounded_by_the_deadline_too() -> None:
    """A limiter whose ``acquire`` takes no deadline is bounded by the client instead."""
    async with FakeCommbox(record=True) as server:
        own = _OwnLimiter(LocalLimiter(FIXED))
        async with server.client(limiter=own) as commbox:
            with pytest.raises(CommboxTimeoutError, match="no slot"):
                # (the outer bound only turns a regression's hang into a failure)
                await asyncio.wait_for(commbox.get_user_objects(1, deadline=0.1), 30)
        assert server.requests == []


async def test_a_joiner_repeats_a_call_that_found_no_slot_before_the_starters_deadline() -> None:
    """The starter (deadline 0.2 s) finds no rate slot in time; a caller that joined it with a
    deadline of 30 s is not ended by that: it makes the call itself, at the next slot."""
    slow = RateLimit(max_rate=1.0, burst=1, min_rate=0.5, adaptive=False)
    async with FakeCommbox(record=True) as server, server.client(rate_limit=slow) as commbox:
        await commbox.get_user_objects(1)  # takes the one slot of this second
        starter = asyncio.ensure_future(commbox.get_user_objects(2, deadline=0.2))
        joiner = asyncio.ensure_future(commbox.get_user_objects(2, deadline=30))
        with pytest.raises(CommboxTimeoutError) as caught:
            await starter
        assert caught.value.ended_by_deadline
        assert isinstance(await joiner, UserObjectsPage)
        assert server.count(identity_id=2) == 1


class _Subclassed(LocalLimiter):
    """A subclass of ours whose ``acquire`` takes no deadline (written before it did)."""

    async def acquire(self) -> Ticket:  # type: ignore[override]
        return await super().acquire()


async def test_a_subclass_that_overrides_acquire_is_called_as_before() -> None:
    """It does not inherit the promise to honour a deadline: the client calls ``acquire()``
    and bounds the wait itself (it was called with a deadline and failed with TypeError)."""
    async with FakeCommbox() as server:
        async with server.client(limiter=_Subclassed(FIXED)) as commbox:
            assert isinstance(await commbox.get_user_objects(1, deadline=5), UserObjectsPage)


def test_an_api_error_carries_headers_request_id_and_the_body_head() -> None:
    """A 503 keeps the response headers (credentials left out), its request id and the first
    1,024 bytes of the body; it pickles with them."""
    body = b'{"status": 503, "description": "down"}' + b" " * 3000
    headers = {"X-Request-Id": "req-42", "Set-Cookie": "session=secret", "Retry-After": "1"}
    with pytest.raises(ServerError) as caught:
        parse_response(503, headers, body, 7)
    error = caught.value
    assert error.request_id == "req-42"
    assert error.headers == {"x-request-id": "req-42", "retry-after": "1"}
    assert error.body == body[:1024]
    copy = pickle.loads(pickle.dumps(error))
    assert copy.headers == error.headers and copy.body == error.body
    assert "secret" not in repr(error) + str(error)


def test_an_error_without_a_response_has_no_headers() -> None:
    """An error that did not come from a response says so: no headers, no request id."""
    error = CommboxConnectionError("cannot connect")
    assert error.headers is None and error.request_id is None and error.body == b""


@pytest.fixture
async def header_server() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """A server that records each request's headers and answers an empty page."""
    seen: list[dict[str, str]] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.json_response({"status": 200, "data": []})

    async with serve(handle) as url:
        yield url, seen


async def test_default_headers_go_with_every_request(
    header_server: tuple[str, list[dict[str, str]]],
) -> None:
    """``default_headers`` reach the server on every request, beside the token's header."""
    url, seen = header_server
    async with AsyncCommbox(
        token="tok", base_url=url, default_headers={"X-Tenant": "acme"}, rate_limit=FIXED
    ) as commbox:
        await commbox.get_user_objects(1)
        await commbox.get_user_objects(2)
    assert [h.get("X-Tenant") for h in seen] == ["acme", "acme"]
    assert all(h["Authorization"] == "Bearer tok" for h in seen)


@pytest.mark.parametrize(
    "headers",
    [{"Authorization": "Bearer other"}, {"X-Bad": "a\r\nInjected: 1"}, {"bad name": "x"}, ["x"]],
)
def test_bad_default_headers_are_refused_before_any_request(headers: object) -> None:
    """Authorization, a line break in a value, a bad name or a non-mapping: a clear error."""
    with pytest.raises(InvalidArgumentError, match="default_headers"):
        AsyncCommbox(token="t", default_headers=headers)  # type: ignore[arg-type]


def test_statuses_by_name() -> None:
    """The library takes status names as the command line does, in any case."""
    assert Query.from_filters({"statuses": ["open", "In-Process", 2]}).params() == {
        "status": "1,8,2"
    }
    with pytest.raises(InvalidArgumentError, match="opn"):
        Query.from_filters({"statuses": ["opn"]})


async def test_a_never_opened_client_says_how_to_open_it() -> None:
    """Using a client before opening it names both ways to open it."""
    commbox = AsyncCommbox(token="t")
    with pytest.raises(ClientClosedError, match=r"open\(\)"):
        await commbox.get_user_objects(1)


async def test_unread_counts_takes_a_deadline() -> None:
    """``unread_counts(deadline=...)`` is checked before any request (a page view's bound)."""
    async with FakeCommbox() as server, server.client() as commbox:
        with pytest.raises(InvalidArgumentError, match="deadline"):
            await commbox.unread_counts([1], deadline=0)
        counts = await commbox.unread_counts([1, 2], deadline=5)
    assert set(counts) == {1, 2}


async def test_a_pause_longer_than_the_time_left_fails_at_once_whatever_the_policy() -> None:
    """With a given limiter that allows longer pauses than the client's retries, a call whose
    deadline ends before the pause does still fails at once (it would wait 150 s otherwise)."""
    async with FakeCommbox(record=True) as server:
        server.script(5, (429, {"Retry-After": "150"}, b'{"status": 429}'))
        limiter = LocalLimiter(
            RateLimit(max_rate=1000.0), pause_policy=PausePolicy(max_retry_after=200.0)
        )
        async with server.client(limiter=limiter) as commbox:
            with pytest.raises(RateLimitError):
                await commbox.get_user_objects(5, deadline=1)
            assert limiter.pause_remaining() > 100
            with pytest.raises(CommboxTimeoutError, match="paused"):
                await asyncio.wait_for(commbox.get_user_objects(6, deadline=130), 10)
        await limiter.aclose()
        assert server.count(identity_id=6) == 0


@pytest.fixture
async def echo_server() -> AsyncIterator[str]:
    """A server (a proxy gone wrong) that echoes the request's Authorization in its answer."""

    async def handle(request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        body = json.dumps({"status": 502, "description": f"bad gateway for {auth}"})
        return web.Response(status=502, body=body, headers={"X-Echo": auth})

    async with serve(handle) as url:
        yield url


async def test_a_token_echoed_by_the_server_never_reaches_the_error(echo_server: str) -> None:
    """A 502 whose body and headers echo the token: the error's message, description, headers,
    body, str, repr and pickle hold none of it."""
    token = "echoed-secret-token-99"
    async with AsyncCommbox(
        token=token, base_url=echo_server, retries=ONE_TRY, rate_limit=FIXED
    ) as commbox:
        with pytest.raises(ServerError) as caught:
            await commbox.get_user_objects(1)
    error = caught.value
    everything = [str(error), repr(error), error.description or "", str(error.headers)]
    assert all(token not in text for text in everything)
    assert token.encode() not in error.body and token.encode() not in pickle.dumps(error)
    assert error.headers is not None and error.headers["x-echo"] == "Bearer ***"
