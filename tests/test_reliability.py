"""Issue 7: every fault, every await point, every bad input and every place a token could leak.

Everything runs against the fake server (or a socket that misbehaves on purpose) over real
loopback sockets. After each scenario the client's connector must hold no acquired connection
and nothing may report an "Unclosed" session, connector, response or socket. Waits are either
injected (a limiter whose ``sleep`` is ours) or tiny stalls of the fake server; no assertion is
about time. The short soak (``benchmarks/soak.py --quick``) runs at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import random
import subprocess
import sys
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from waiting import settle, until

from commbox_async import (
    AsyncCommbox,
    ClientClosedError,
    CommboxConnectionError,
    CommboxDecodeError,
    CommboxError,
    CommboxTimeoutError,
    InvalidArgumentError,
    LocalLimiter,
    PoolConfig,
    RateLimit,
    RateLimitError,
    Retries,
    ServerError,
    Timeout,
)
from commbox_async._pacing import PausePolicy
from commbox_async.testing import (
    ABSURD_RETRY_AFTER,
    FAULT_KINDS,
    PERMANENT_FAULTS,
    Blackhole,
    FakeCommbox,
    Faults,
    unread_of,
    unused_port,
)
from commbox_async.testing import VirtualClock as FakeTime

ROOT = Path(__file__).resolve().parent.parent
IDENT = 558355
#: A token that no other string in a test run contains by chance.
SECRET = "tok-Zq8-SECRET-7c1e9a"
FAST = Retries(base_delay=0.0, max_delay=0.0, default_retry_after=0.0)
FIXED = RateLimit(max_rate=10_000, adaptive=False)
#: Under the cap of the tests' clients, above a normal page (10 conversations, ~110 kB).
CAP = 512 * 1024
OVERSIZED = 2 * 1024 * 1024
#: Loggers whose DEBUG lines could carry a request's headers.
LOGGERS = ("", "commbox_async", "aiohttp", "aiohttp.client", "aiohttp.internal", "backoff")


# --- helpers -------------------------------------------------------------------------------


def make_client(server: FakeCommbox | str, **kwargs: Any) -> AsyncCommbox:
    """A client for ``server`` that never waits for real between attempts."""
    options: dict[str, Any] = {"rate_limit": FIXED, "retries": FAST}
    options.update(kwargs)
    if isinstance(server, FakeCommbox):
        return AsyncCommbox(token=server.token, base_url=server.url, **options)
    return AsyncCommbox(token=SECRET, base_url=server, **options)


def acquired(client: AsyncCommbox) -> int:
    """Connections the client's pool has handed out and not taken back (0 when idle)."""
    session = client._transport.session
    assert session is not None, "the client is not open"
    connector = session.connector
    assert connector is not None
    return len(connector._acquired)  # type: ignore[attr-defined]


@contextlib.contextmanager
def no_unclosed() -> Iterator[list[str]]:
    """Collect "Unclosed ..." reports (warnings and the loop's exception handler); fail on any.

    aiohttp reports a session, connector or response left open both ways, from ``__del__``:
    a ResourceWarning and a call to the loop's exception handler. The block ends with a
    ``gc.collect()`` so that whatever was dropped is finalised inside it.
    """
    loop = asyncio.get_running_loop()
    reports: list[str] = []
    previous = loop.get_exception_handler()

    def handler(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        reports.append(str(context.get("message")))

    loop.set_exception_handler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield reports
            gc.collect()
        reports += [f"{w.category.__name__}: {w.message}" for w in caught]
    finally:
        loop.set_exception_handler(previous)
    bad = [r for r in reports if "nclosed" in r or "ResourceWarning" in r]
    assert not bad, bad


def client_tasks_left() -> list[asyncio.Task[Any]]:
    """Tasks still running that the library started (its fan-out workers)."""
    current = asyncio.current_task()
    return [
        t
        for t in asyncio.all_tasks()
        if t is not current and not t.done() and "_client.py" in repr(t.get_coro())
    ]


class ObservedLimiter:
    """A LocalLimiter that says when an attempt starts waiting for its slot."""

    def __init__(self, inner: LocalLimiter) -> None:
        self.inner = inner
        self.waiting = 0

    async def acquire(self) -> Any:
        self.waiting += 1
        try:
            return await self.inner.acquire()
        finally:
            self.waiting -= 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class MaxRandom(random.Random):
    """Full jitter that always draws the ceiling: the retry sleep is exactly known."""

    def uniform(self, a: float, b: float) -> float:
        return b


# --- faults, one at a time -----------------------------------------------------------------

#: What a single fault turns into when the client may not retry it.
EXPECTED: dict[str, type[CommboxError]] = {
    **{k: ServerError for k in ("500", "502", "503", "504")},
    **{k: ServerError for k in ("html_500", "html_502", "html_503", "html_504")},
    "429": RateLimitError,
    **{k: RateLimitError for k in ABSURD_RETRY_AFTER},
    "reset": CommboxConnectionError,
    "reset_mid_body": CommboxConnectionError,
    "truncate": CommboxConnectionError,
    "bad_status_line": CommboxConnectionError,
    "refuse": CommboxConnectionError,
    "html_200": CommboxDecodeError,
    "empty_200": CommboxDecodeError,
    "slow_headers": CommboxTimeoutError,
    "slow_body": CommboxTimeoutError,
    "oversized": CommboxDecodeError,
    "oversized_chunked": CommboxDecodeError,
}
#: A Retry-After the client must not obey (the test limiter's default pause is 1 s, cap 120 s).
ABSURD_WAIT = {
    "429_no_retry_after": 1.0,
    "429_negative": 1.0,
    "429_garbage": 1.0,
    "429_huge": 120.0,
}


def fault_server(kind: str, **faults: Any) -> FakeCommbox:
    options: dict[str, Any] = {
        "rate": 1.0,
        "kinds": (kind,),
        "limit": 1,
        "slow_seconds": 0.5,
        "oversized_bytes": OVERSIZED,
        "refuse_seconds": 0.02,
        "retry_after": "0",
    }
    options.update(faults)
    return FakeCommbox(token=SECRET, faults=Faults(**options))


def fault_client(server: FakeCommbox, fake: FakeTime | None = None, **kwargs: Any) -> AsyncCommbox:
    # Retries without back-off would all land inside one refused window; give them a little.
    retries = kwargs.pop("retries", Retries(base_delay=0.01, max_delay=0.02))
    options: dict[str, Any] = {
        "retries": retries,
        "pool": PoolConfig(max_body_bytes=CAP),
        # Slow faults stall 0.5 s; the client gives up on a silent socket after 0.05 s.
        "timeout": Timeout(total=5.0, connect=2.0, sock_read=0.05),
    }
    if fake is not None:
        options["limiter"] = LocalLimiter(
            FIXED,
            pause_policy=PausePolicy(default_retry_after=1.0, max_retry_after=120.0),
            clock=fake.clock,
            sleep=fake.sleep,
        )
    options.update(kwargs)
    return make_client(server, **options)


def test_every_fault_kind_is_covered() -> None:
    """The table below names every fault the fake server can inject, and nothing else."""
    assert set(EXPECTED) == set(FAULT_KINDS)


@pytest.mark.parametrize("kind", FAULT_KINDS)
async def test_one_fault_without_retries_is_a_clear_error(kind: str) -> None:
    """With one try, each fault ends in its own CommboxError class; the pool is left clean."""
    async with fault_server(kind) as server:
        with no_unclosed():
            fake = FakeTime()
            one_try = Retries(tries=1, throttled_tries=1, default_retry_after=1.0)
            async with fault_client(server, fake, retries=one_try) as client:
                with pytest.raises(EXPECTED[kind]) as caught:
                    await client.get_user_objects(IDENT)
                error = caught.value
                assert error.identity_id == IDENT
                assert not error.retryable  # the client has decided: this was final
                if kind in PERMANENT_FAULTS:
                    assert "max_body_bytes" in str(error)
                await settle()
                await until(lambda: server.listening, "the server listens again")
                assert acquired(client) == 0
                # The client is still usable after the fault (and its pause, if any).
                page = await client.get_user_objects(IDENT + 1)
                assert page.unread_total == unread_of(IDENT + 1, 10)
                assert acquired(client) == 0
        assert server.count(kind) == 1


@pytest.mark.parametrize("kind", [k for k in FAULT_KINDS if k not in PERMANENT_FAULTS])
async def test_one_transient_fault_is_retried_to_success(kind: str) -> None:
    """Each transient fault costs one more request and never the identity."""
    async with fault_server(kind) as server:
        with no_unclosed():
            fake = FakeTime()
            async with fault_client(server, fake) as client:
                page = await client.get_user_objects(IDENT)
                assert page.unread_total == unread_of(IDENT, 10)
                assert page.data[0].user_identity == IDENT
                await settle()
                assert acquired(client) == 0
        assert server.count(kind) == 1
        assert server.count("ok") == 1
        if kind in ABSURD_RETRY_AFTER:
            # The pause was the default (no/negative/garbage header) or the cap (huge one),
            # plus a jitter that only adds delay.
            (pause,) = fake.sleeps
            assert ABSURD_WAIT[kind] <= pause <= ABSURD_WAIT[kind] + 0.05


@pytest.mark.parametrize("kind", PERMANENT_FAULTS)
async def test_oversized_body_is_never_retried(kind: str) -> None:
    """A body over max_body_bytes fails at once, naming the cap, even with retries left."""
    async with fault_server(kind, limit=None) as server:
        with no_unclosed():
            async with fault_client(server) as client:
                with pytest.raises(CommboxDecodeError, match="max_body_bytes=524288") as caught:
                    await client.get_user_objects(IDENT)
                assert caught.value.status == 200
                await settle()
                assert acquired(client) == 0
        assert len(server.requests) == 1


async def test_oversized_body_with_default_cap() -> None:
    """The default client refuses a body just over 32 MiB (the fake server's default)."""
    faults = Faults(rate=1.0, kinds=("oversized",), limit=1)
    async with FakeCommbox(token=SECRET, faults=faults) as server:
        with no_unclosed():
            async with make_client(server) as client:
                with pytest.raises(CommboxDecodeError, match="max_body_bytes"):
                    await client.get_user_objects(IDENT)
                await settle()
                assert acquired(client) == 0


async def test_absurd_retry_after_past_the_deadline_fails_at_once() -> None:
    """A huge Retry-After (capped at 120 s) past the caller's 5 s deadline fails without a wait."""
    async with fault_server("429_huge") as server:
        fake = FakeTime()
        async with fault_client(server, fake) as client:
            with pytest.raises(RateLimitError):
                await client.get_user_objects(IDENT, deadline=5)
        assert len(server.requests) == 1
        assert fake.sleeps == []


async def test_connection_refused_is_retried_then_reported() -> None:
    """A closed port: every try is refused, the error says so, and nothing is left open."""
    with no_unclosed():
        url = f"http://127.0.0.1:{unused_port()}"
        async with make_client(url, retries=Retries(tries=3, base_delay=0.0, max_delay=0.0)) as c:
            with pytest.raises(CommboxConnectionError, match="cannot connect"):
                await c.get_user_objects(IDENT)
            assert c.stats.requests == 3
            assert c.stats.retries == 2
            assert acquired(c) == 0


async def test_refused_window_is_ridden_out() -> None:
    """While the server stops listening, connects are refused; retries carry the call through."""
    async with fault_server("refuse", refuse_seconds=0.05) as server:
        with no_unclosed():
            retries = Retries(tries=20, base_delay=0.01, max_delay=0.02)
            async with fault_client(server, retries=retries) as client:
                page = await client.get_user_objects(IDENT)
                assert page.unread_total == unread_of(IDENT, 10)
                assert acquired(client) == 0
        assert server.refusals == 1


async def test_connect_that_never_completes_times_out() -> None:
    """A host that drops SYNs: the connect deadline ends the attempt, with a timeout error."""
    with Blackhole() as hole, no_unclosed():
        timeout = Timeout(total=5.0, connect=0.05, sock_read=1.0)
        async with make_client(hole.url, timeout=timeout, retries=Retries(tries=1)) as client:
            with pytest.raises(CommboxTimeoutError):
                await client.get_user_objects(IDENT)
            await settle()
            assert acquired(client) == 0


@pytest.mark.parametrize("kind", ["slow_headers", "slow_body"])
async def test_total_deadline_bounds_a_call_that_keeps_stalling(kind: str) -> None:
    """Every attempt stalls: the call's deadline (not the tries) ends it, as a timeout."""
    faults = Faults(rate=1.0, kinds=(kind,), slow_seconds=5.0)
    async with FakeCommbox(token=SECRET, faults=faults) as server:
        with no_unclosed():
            retries = Retries(tries=1000, base_delay=0.0, max_delay=0.0)
            timeout = Timeout(total=0.1, connect=1.0, sock_read=1.0)
            async with make_client(server, timeout=timeout, retries=retries) as client:
                with pytest.raises(CommboxTimeoutError):
                    await client.get_user_objects(IDENT, deadline=0.25)
                await settle()
                assert acquired(client) == 0
        assert 1 <= len(server.requests) < 10


@pytest.mark.parametrize("kind", ["slow_headers", "slow_body"])
async def test_slow_but_within_the_deadlines_is_not_a_fault(kind: str) -> None:
    """A short stall is waited out: one request, no retry."""
    faults = Faults(rate=1.0, kinds=(kind,), slow_seconds=0.01)
    async with FakeCommbox(token=SECRET, faults=faults) as server:
        async with make_client(server) as client:
            page = await client.get_user_objects(IDENT)
            assert page.unread_total == unread_of(IDENT, 10)
            assert client.stats.retries == 0
        assert len(server.requests) == 1


async def test_mixed_faults_lose_no_identity() -> None:
    """A fan-out through 30% faults of every transient kind: every id ends in success."""
    kinds = tuple(k for k in FAULT_KINDS if k not in PERMANENT_FAULTS and k != "429_huge")
    faults = Faults(rate=0.3, kinds=kinds, slow_seconds=0.4, refuse_seconds=0.005, seed=7)
    ids = list(range(1, 301))
    async with FakeCommbox(token=SECRET, faults=faults, conversations=2, childs=1) as server:
        with no_unclosed():
            # A loaded CI machine can be slow to answer: the read timeout stays well above a
            # normal answer and below the stalls, and the tries are generous (P(20 faults in a
            # row) = 0.3**20).
            timeout = Timeout(total=5.0, connect=2.0, sock_read=0.15)
            retries = Retries(tries=20, base_delay=0.002, max_delay=0.02, default_retry_after=0.0)
            async with make_client(server, timeout=timeout, retries=retries) as client:
                seen: dict[int, int] = {}
                async for result in client.fetch_many(ids, concurrency=16):
                    assert result.error is None, result.error
                    assert result.response is not None
                    assert result.response.unread_total == unread_of(result.identity_id, 2)
                    seen[result.identity_id] = seen.get(result.identity_id, 0) + 1
                assert seen == dict.fromkeys(ids, 1)
                assert acquired(client) == 0
                assert client_tasks_left() == []
        assert sum(server.outcomes[k] for k in kinds) > 50


LATIN1_200 = b'{"status":200,"description":"Op\xe9ration r\xe9ussie","data":[]}'
LATIN1_500 = b'{"status":500,"description":"\xc9chec"}'


@pytest.mark.parametrize("body", [LATIN1_200, LATIN1_500], ids=["200", "500"])
async def test_body_that_is_not_utf8_is_a_library_error(body: bytes) -> None:
    """A body with Latin-1 inside a string ends in a page or a CommboxError, never a raw one."""
    async with FakeCommbox(token=SECRET) as server:
        server.script(IDENT, (200 if body is LATIN1_200 else 500, {}, body))
        async with make_client(server, retries=Retries(tries=1)) as client:
            with contextlib.suppress(CommboxError):
                await client.get_user_objects(IDENT)


async def test_fan_out_loses_no_identity_to_an_unexpected_error() -> None:
    """One identity answers a body that is not UTF-8: every id still yields one result."""
    ids = list(range(1, 21))
    async with FakeCommbox(token=SECRET) as server:
        server.script(7, (200, {}, LATIN1_200))
        async with make_client(server, retries=Retries(tries=1)) as client:
            results = [r async for r in client.fetch_many(ids, concurrency=2)]
            assert acquired(client) == 0
    assert sorted(r.identity_id for r in results) == ids
    assert sum(r.error is not None for r in results) <= 1


# --- cancellation at every await point -----------------------------------------------------


async def _cancel(task: asyncio.Task[Any], times: int = 1) -> None:
    for _ in range(times):
        task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_cancel_while_connecting() -> None:
    """Cancelled in connect (a host that drops SYNs): the half-open socket is released."""
    with Blackhole() as hole, no_unclosed():
        async with make_client(hole.url) as client:
            task = asyncio.create_task(client.get_user_objects(IDENT))
            await until(lambda: acquired(client) == 1, "the connect started")
            await _cancel(task)
            await settle()
            assert acquired(client) == 0


async def test_cancel_while_waiting_for_the_limiter() -> None:
    """Cancelled while waiting for a rate slot: nothing was sent, nothing is held."""
    async with FakeCommbox(token=SECRET) as server:
        with no_unclosed():
            slow = RateLimit(max_rate=0.1, burst=1, adaptive=False, min_rate=0.1)
            limiter = ObservedLimiter(LocalLimiter(slow))
            async with make_client(server, limiter=limiter) as client:
                await client.get_user_objects(IDENT)  # takes the only slot
                task = asyncio.create_task(client.get_user_objects(IDENT + 1))
                await until(lambda: limiter.waiting == 1, "the second call waits for a slot")
                await settle()
                await _cancel(task)
                await settle()  # the shared call's task ends on a later turn of the loop
                assert limiter.waiting == 0
                assert acquired(client) == 0
        assert len(server.requests) == 1


async def test_cancel_during_the_pause_after_a_429() -> None:
    """Cancelled while the client-wide pause of a 429 (Retry-After: 30) runs."""
    async with FakeCommbox(token=SECRET) as server:
        server.script(IDENT, (429, {"Retry-After": "30"}, b"{}"))
        with no_unclosed():
            limiter = ObservedLimiter(
                LocalLimiter(FIXED, pause_policy=PausePolicy(max_retry_after=60.0))
            )
            retries = Retries(base_delay=0.0, max_delay=0.0, max_retry_after=60.0)
            async with make_client(server, limiter=limiter, retries=retries) as client:
                task = asyncio.create_task(client.get_user_objects(IDENT))
                await until(lambda: limiter.inner.pause_remaining() > 0, "the pause began")
                await until(lambda: limiter.waiting == 1, "the retry waits out the pause")
                await _cancel(task)
                assert acquired(client) == 0
        assert len(server.requests) == 1


async def test_cancel_while_waiting_for_headers() -> None:
    """Cancelled while the server stalls before its headers."""
    faults = Faults(rate=1.0, kinds=("slow_headers",), slow_seconds=30.0)
    async with FakeCommbox(token=SECRET, faults=faults) as server:
        with no_unclosed():
            async with make_client(server) as client:
                task = asyncio.create_task(client.get_user_objects(IDENT))
                await until(lambda: server.stalling == 1, "the server stalls")
                await _cancel(task)
                await settle()
                assert acquired(client) == 0


async def test_cancel_while_reading_the_body() -> None:
    """Cancelled with half of the body read and the rest stalled."""
    faults = Faults(rate=1.0, kinds=("slow_body",), slow_seconds=30.0)
    async with FakeCommbox(token=SECRET, faults=faults) as server:
        with no_unclosed():
            async with make_client(server) as client:
                task = asyncio.create_task(client.get_user_objects(IDENT))
                await until(lambda: server.stalling == 1, "half of the body was sent")
                await settle()
                await _cancel(task)
                await settle()
                assert acquired(client) == 0


async def test_cancel_during_the_retry_sleep() -> None:
    """Cancelled in backoff's sleep between two attempts (a 500, then a 30 s back-off)."""
    async with FakeCommbox(token=SECRET) as server:
        server.script(IDENT, 500)
        with no_unclosed():
            retries = Retries(base_delay=30.0, max_delay=30.0)
            async with make_client(server, retries=retries, rng=MaxRandom()) as client:
                task = asyncio.create_task(client.get_user_objects(IDENT))
                await until(lambda: client.stats.retries == 1, "the back-off began")
                await settle()
                await _cancel(task)
                assert acquired(client) == 0
        assert len(server.requests) == 1


@pytest.mark.parametrize("second_after_turns", [0, 1, 3])
async def test_double_cancellation(second_after_turns: int) -> None:
    """A second cancel, at once or while the first unwinds, leaks nothing; the client goes on."""
    faults = Faults(rate=1.0, kinds=("slow_body",), slow_seconds=30.0, limit=1)
    async with FakeCommbox(token=SECRET, faults=faults) as server:
        with no_unclosed():
            async with make_client(server) as client:
                task = asyncio.create_task(client.get_user_objects(IDENT))
                await until(lambda: server.stalling == 1, "half of the body was sent")
                await settle()
                task.cancel()
                for _ in range(second_after_turns):
                    await asyncio.sleep(0)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                await settle()
                assert acquired(client) == 0
                page = await client.get_user_objects(IDENT)
                assert page.unread_total == unread_of(IDENT, 10)
                assert acquired(client) == 0


async def test_cancel_a_fan_out_mid_run() -> None:
    """Cancelling the task that consumes fetch_many stops every worker and frees the pool."""
    async with FakeCommbox(token=SECRET, latency=0.02) as server:
        with no_unclosed():
            async with make_client(server) as client:
                got: list[Any] = []

                async def consume() -> None:
                    async for result in client.fetch_many(range(1, 10_000), concurrency=8):
                        got.append(result)

                task = asyncio.create_task(consume())
                await until(lambda: len(got) >= 8, "some results arrived")
                await _cancel(task, times=2)
                await settle()
                assert client_tasks_left() == []
                assert acquired(client) == 0


async def test_close_the_client_while_a_fan_out_runs() -> None:
    """aclose() during fetch_many: the loop ends with ClientClosedError, nothing is left."""
    async with FakeCommbox(token=SECRET, latency=0.02) as server:
        with no_unclosed():
            client = make_client(server)
            await client.open()
            session = client._transport.session
            assert session is not None
            connector = session.connector
            assert connector is not None
            got: list[Any] = []

            async def consume() -> None:
                async for result in client.fetch_many(range(1, 10_000), concurrency=8):
                    got.append(result)

            task = asyncio.create_task(consume())
            await until(lambda: len(got) >= 8, "some results arrived")
            await client.aclose()
            with pytest.raises(ClientClosedError):
                await asyncio.wait_for(task, 10)  # a hang guard, not a timing assertion
            await settle()
            assert client_tasks_left() == []
            assert connector.closed
            assert len(connector._acquired) == 0  # type: ignore[attr-defined]
            assert all(r.error is None for r in got)


async def test_close_the_client_during_a_single_call() -> None:
    """aclose() while one call waits for its headers: the call ends with a CommboxError."""
    faults = Faults(rate=1.0, kinds=("slow_headers",), slow_seconds=30.0)
    async with FakeCommbox(token=SECRET, faults=faults) as server:
        with no_unclosed():
            client = make_client(server)
            await client.open()
            task = asyncio.create_task(client.get_user_objects(IDENT))
            await until(lambda: server.stalling == 1, "the server stalls")
            await client.aclose()
            with pytest.raises(CommboxError):
                await asyncio.wait_for(task, 10)  # a hang guard
            await settle()


async def test_a_closed_caller_session_is_a_clear_error() -> None:
    """A session the caller passed in and then closed gives ClientClosedError, not RuntimeError."""
    async with FakeCommbox(token=SECRET) as server:
        session = aiohttp.ClientSession()
        async with make_client(server, session=session) as client:
            await session.close()
            with pytest.raises(ClientClosedError):
                await client.get_user_objects(IDENT)
        assert server.requests == []


# --- bad input: a clear error naming the argument, before any request -------------------------

NAN = float("nan")
BAD_IDS: list[Any] = [
    True,
    False,
    1.0,
    1.5,
    NAN,
    math.inf,
    "558355",
    " 558355",
    "558 355",
    "558355 ",
    b"558355",
    None,
    0,
    -1,
    -(2**63),
    2**63,
    10**30,
    [558355],
    {"id": 558355},
]

BAD_FILTERS: list[tuple[str, Any]] = [
    ("page_size", 0),
    ("page_size", -1),
    ("page_size", 101),
    ("page_size", "10"),
    ("page_size", 10.0),
    ("page_size", NAN),
    ("page_size", True),
    ("page_number", -1),
    ("page_number", 2**31),
    ("page_number", "1"),
    ("page_number", NAN),
    ("stream_id", -1),
    ("stream_id", 2**63),
    ("stream_id", "19155"),
    ("stream_id", 1.5),
    ("sub_stream_id", -5),
    ("sub_stream_id", NAN),
    ("object_id", -1),
    ("object_id", " 1"),
    ("module_id", -1),
    ("module_id", math.inf),
    ("statuses", "1,2"),
    ("statuses", b"12"),
    ("statuses", []),
    ("statuses", [1, "2"]),
    ("statuses", [1, -2]),
    ("statuses", [NAN]),
    ("statuses", [2**40]),
    ("statuses", [True]),
    ("statuses", 1.5),
    ("statuses", {"a": 1}),
    ("order", "closedtime; drop"),
    ("order", "closedtime\r\nX-Injected: 1"),
    ("order", 5),
    ("order", ""),
    ("include_childs", "true"),
    ("include_childs", 1),
    ("include_childs", "false"),
    ("include_activity_log", "yes"),
]


@pytest.mark.parametrize("value", BAD_IDS, ids=repr)
async def test_bad_identity_id_named_before_any_request(value: Any) -> None:
    """Each bad identity id is refused by name; the server sees nothing."""
    async with FakeCommbox(token=SECRET) as server:
        async with make_client(server) as client:
            with pytest.raises(InvalidArgumentError, match="identity_id"):
                await client.get_user_objects(value)
            with pytest.raises(InvalidArgumentError, match="identity_id"):
                async for _ in client.iter_user_objects(value):
                    pass
        assert server.requests == []


async def test_bad_ids_in_a_fan_out_are_values_not_requests() -> None:
    """fetch_many turns each bad id into an InvalidArgumentError result and sends nothing."""
    async with FakeCommbox(token=SECRET) as server:
        async with make_client(server) as client:
            results = [r async for r in client.fetch_many(BAD_IDS, concurrency=4)]
        assert len(results) == len(BAD_IDS)
        for result in results:
            assert isinstance(result.error, InvalidArgumentError)
            assert "identity_id" in str(result.error)
        assert server.requests == []


@pytest.mark.parametrize(("name", "value"), BAD_FILTERS, ids=repr)
async def test_bad_filter_named_before_any_request(name: str, value: Any) -> None:
    """Each bad filter value is refused with its name, in every entry point; nothing is sent."""
    async with FakeCommbox(token=SECRET) as server:
        async with make_client(server) as client:
            with pytest.raises(InvalidArgumentError, match=name):
                await client.get_user_objects(IDENT, **{name: value})
            with pytest.raises(InvalidArgumentError, match=name):
                async for _ in client.iter_user_objects(IDENT, **{name: value}):
                    pass
            with pytest.raises(InvalidArgumentError, match=name):
                async for _ in client.fetch_many([IDENT], **{name: value}):
                    pass
        assert server.requests == []


async def test_stream_provider_pair_and_unknown_filters() -> None:
    """The provider id/type pair, too-long ids and misspelt filters are refused by name."""
    cases: list[tuple[dict[str, Any], str]] = [
        ({"stream_provider_id": "abc"}, "stream_provider_type"),
        ({"stream_provider_type": 1}, "stream_provider_id"),
        ({"stream_provider_id": 5, "stream_provider_type": 1}, "stream_provider_id"),
        ({"stream_provider_id": "", "stream_provider_type": 1}, "stream_provider_id"),
        ({"stream_provider_id": "x" * 256, "stream_provider_type": 1}, "stream_provider_id"),
        ({"stream_provider_id": "a", "stream_provider_type": -1}, "stream_provider_type"),
        ({"stream_provider_id": "a", "stream_provider_type": NAN}, "stream_provider_type"),
        ({"pagesize": 10}, "pagesize"),
        ({"status": [1]}, "status"),
    ]
    async with FakeCommbox(token=SECRET) as server:
        async with make_client(server) as client:
            for filters, name in cases:
                with pytest.raises(InvalidArgumentError, match=name):
                    await client.get_user_objects(IDENT, **filters)
        assert server.requests == []


@pytest.mark.parametrize(
    ("call", "name"),
    [
        ({"deadline": NAN}, "deadline"),
        ({"deadline": -1}, "deadline"),
        ({"deadline": math.inf}, "deadline"),
        ({"deadline": "5"}, "deadline"),
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": -3}, "concurrency"),
        ({"concurrency": 2.5}, "concurrency"),
        ({"concurrency": 10**9}, "concurrency"),
        ({"concurrency": "8"}, "concurrency"),
        ({"on_progress": "print"}, "on_progress"),
    ],
    ids=repr,
)
async def test_bad_fan_out_settings_named(call: dict[str, Any], name: str) -> None:
    """fetch_many's own settings are checked before any worker starts."""
    async with FakeCommbox(token=SECRET) as server:
        async with make_client(server) as client:
            with pytest.raises(InvalidArgumentError, match=name):
                async for _ in client.fetch_many([IDENT], **call):
                    pass
        assert server.requests == []


@pytest.mark.parametrize("ids", ["558355", b"558355", 558355, None], ids=repr)
async def test_identity_ids_must_be_an_iterable_of_ids(ids: Any) -> None:
    """A string (an iterable of characters), a bare int or None is not a list of ids."""
    async with FakeCommbox(token=SECRET) as server:
        async with make_client(server) as client:
            with pytest.raises(InvalidArgumentError, match="identity_ids"):
                async for _ in client.fetch_many(ids):
                    pass
        assert server.requests == []


class Endless:
    """An iterable that counts what was taken from it and fails loudly past ``most``."""

    def __init__(self, most: int) -> None:
        self.most = most
        self.taken = 0

    def __iter__(self) -> Iterator[int]:
        while True:
            self.taken += 1
            if self.taken > self.most:
                raise AssertionError(f"more than {self.most} items were read")
            yield 1


async def test_huge_statuses_iterable_refused_by_name() -> None:
    """statuses from an endless iterable: refused by name after a bounded read, nothing sent."""
    endless = Endless(most=100_000)
    async with FakeCommbox(token=SECRET) as server:
        async with make_client(server) as client:
            with pytest.raises(InvalidArgumentError, match="statuses"):
                await client.get_user_objects(IDENT, statuses=endless)
        assert server.requests == []
    assert endless.taken <= 1_000


async def test_huge_lazy_id_iterable_is_read_lazily() -> None:
    """A fan-out over an endless id generator reads ids only as workers free up."""
    async with FakeCommbox(token=SECRET, conversations=1, childs=0) as server:
        async with make_client(server) as client:

            def ids() -> Iterator[int]:
                n = 0
                while True:
                    n += 1
                    yield n

            source = ids()
            done = 0
            stream = client.fetch_many(source, concurrency=4)
            async with contextlib.aclosing(stream):
                async for result in stream:
                    assert result.error is None
                    done += 1
                    if done == 50:
                        break
            taken = next(source)
            assert 50 < taken <= 50 + 2 * 4 + 1
            assert acquired(client) == 0


# --- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "",
        " ",
        "\n",
        " {}",
        "{} ",
        "{}\n",
        "{}\r\nX-Injected: yes",
        "{}\tx",
        "{}\x00",
        "{}\x7f",
        "{}ö",
        "Bearer {}",
    ],
    ids=repr,
)
def test_bad_token_refused_without_echo(template: str) -> None:
    """An empty token or one with whitespace or control characters (header injection) fails,
    and the error does not repeat the token."""
    with pytest.raises(InvalidArgumentError, match="token") as caught:
        AsyncCommbox(token=template.format(SECRET), base_url="https://api.commbox.io")
    assert SECRET not in str(caught.value) + repr(caught.value) + repr(caught.value.args)


@pytest.mark.parametrize("token", [None, b"tok", 123, ["tok"]], ids=repr)
def test_token_must_be_a_str(token: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """No token anywhere, or one that is not a str, is a clear error naming the token."""
    monkeypatch.delenv("COMMBOX_TOKEN", raising=False)
    with pytest.raises(InvalidArgumentError, match="token"):
        AsyncCommbox(token=token, base_url="https://api.commbox.io")


def test_whitespace_token_from_environment_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A token read from COMMBOX_TOKEN with a trailing newline (a common .env slip) fails."""
    monkeypatch.setenv("COMMBOX_TOKEN", "tok-from-env\n")
    with pytest.raises(InvalidArgumentError, match="token"):
        AsyncCommbox(base_url="https://api.commbox.io")


@pytest.mark.parametrize(
    "url",
    [
        "api.commbox.io",
        "ftp://api.commbox.io",
        "https://",
        "https://api.commbox.io/v2",
        "https://api.commbox.io/v2/users",
        "https://api.commbox.io?token=abc",
        "https://api.commbox.io/?x=1",
        "https://api.commbox.io#frag",
        "https://user:pass@api.commbox.io",
        "https://user@api.commbox.io",
        "http://127.0.0.1@evil.example",
        "https://api.commbox.io:99999",
        "https://api.commbox.io:port",
        "http://api.commbox.io",
        "http://10.0.0.1:8080",
        "http://192.168.1.10",
        "http://localhost.evil.example",
        "http://127.0.0.1.nip.io",
        "https://api.commbox.io\r\nX-Injected: 1",
        "https://api.commbox.io /v2",
    ],
    ids=repr,
)
def test_bad_base_url_refused(url: str) -> None:
    """Paths, queries, credentials, bad ports and plain http off loopback all fail, by name."""
    with pytest.raises(InvalidArgumentError, match="base_url") as caught:
        AsyncCommbox(token=SECRET, base_url=url)
    assert "user:pass" not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:8080", "https://api.commbox.io"],
)
def test_good_base_url_accepted(url: str) -> None:
    """Loopback http (tests, the fake server) and https anywhere are accepted."""
    AsyncCommbox(token=SECRET, base_url=url)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout": 0},
        {"timeout": -1},
        {"timeout": NAN},
        {"timeout": math.inf},
        {"timeout": "10"},
        {"rate_limit": 0},
        {"rate_limit": NAN},
        {"rate_limit": -5},
        {"retries": 0},
        {"retries": 2.5},
        {"verify_tls": "no"},
        {"verify_tls": 0},
        {"pool": {"limit": 10}},
        {"session": "session"},
    ],
    ids=repr,
)
def test_bad_settings_refused(kwargs: dict[str, Any]) -> None:
    """Settings with wrong types, NaN, zero or negative values fail when the client is built."""
    name = next(iter(kwargs))
    with pytest.raises(InvalidArgumentError, match=name):
        AsyncCommbox(token=SECRET, base_url="https://api.commbox.io", **kwargs)


# --- secrets -----------------------------------------------------------------------------------


def texts_of(exc: BaseException, *, skip: tuple[type[BaseException], ...] = ()) -> list[str]:
    """Every rendering of an exception and of each exception in its chain (but ``skip``)."""
    out: list[str] = []
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        item = todo.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        todo += [item.__cause__, item.__context__]
        if isinstance(item, skip):
            continue
        out += [str(item), repr(item), repr(item.args), repr(getattr(item, "__dict__", {}))]
    out.append("".join(traceback.format_exception(exc)))
    return out


async def _errors_of_every_kind(server: FakeCommbox) -> list[CommboxError]:
    """One error per fault kind (and refused, blackholed, 4xx) from clients holding SECRET."""
    errors: list[CommboxError] = []
    one_try = Retries(tries=1, throttled_tries=1, default_retry_after=0.0, max_retry_after=0.0)
    async with fault_client(server, retries=one_try) as client:
        for kind in FAULT_KINDS:
            server.faults = Faults(
                rate=1.0, kinds=(kind,), limit=None, slow_seconds=0.5, oversized_bytes=OVERSIZED
            )
            try:
                await client.get_user_objects(IDENT)
            except CommboxError as exc:
                errors.append(exc)
        server.faults = None
        for status in (400, 401, 404, 500, 501):
            server.script(IDENT, status)
            with contextlib.suppress(CommboxError):
                await client.get_user_objects(IDENT)
    for url in (f"http://127.0.0.1:{unused_port()}",):
        async with make_client(url, retries=Retries(tries=1)) as client:
            try:
                await client.get_user_objects(IDENT)
            except CommboxError as exc:
                errors.append(exc)
    return errors


async def test_token_in_no_url_repr_exception_or_log(caplog: pytest.LogCaptureFixture) -> None:
    """Across every fault, the token is only in the header: not in a URL, repr, error or log."""
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name or None)
    async with FakeCommbox(token=SECRET) as server:
        async with make_client(server) as client:
            texts = [repr(client), str(client), repr(client.stats)]
            await client.get_user_objects(IDENT, page_size=5, statuses=[1, 2])
            async for _ in client.fetch_many([IDENT, IDENT + 1]):
                pass
            texts += [repr(client), str(client.stats.as_dict())]
        errors = await _errors_of_every_kind(server)
        targets = [r.target for r in server.requests]
    assert len(errors) >= len(FAULT_KINDS)
    assert all(t.startswith("/v2/users/identities/") for t in targets)
    texts += targets
    for exc in errors:
        texts += texts_of(exc)
    texts.append(caplog.text)
    texts += [repr(r.args) + repr(r.msg) + str(r.exc_text) for r in caplog.records]
    assert any(r.levelno == logging.DEBUG for r in caplog.records)
    leaks = [t for t in texts if SECRET in t]
    assert not leaks, leaks[:3]


async def test_token_not_in_the_repr_of_a_chained_aiohttp_error() -> None:
    """A malformed response: the error's whole chain, reprs included, is free of the token."""
    async with fault_server("bad_status_line", limit=None) as server:
        async with fault_client(server, retries=Retries(tries=1)) as client:
            with pytest.raises(CommboxConnectionError) as caught:
                await client.get_user_objects(IDENT)
    leaks = [t for t in texts_of(caught.value) if SECRET in t]
    assert not leaks, leaks[:1]


@pytest.mark.parametrize("kind", ["reset", "bad_status_line"])
async def test_token_not_in_traceback_locals(kind: str) -> None:
    """A transport error's traceback, rendered with the locals of every frame, hides the token."""
    async with fault_server(kind, limit=None) as server:
        async with fault_client(server, retries=Retries(tries=1)) as client:
            with pytest.raises(CommboxConnectionError) as caught:
                await client.get_user_objects(IDENT)
    rendered = "".join(
        traceback.TracebackException.from_exception(caught.value, capture_locals=True).format()
    )
    assert SECRET not in rendered


async def test_wrong_token_is_not_echoed() -> None:
    """A 401 for a wrong token: the error and the client say nothing of either token."""
    async with FakeCommbox(token=SECRET) as server:
        wrong = "tok-WRONG-but-still-secret-42"
        async with AsyncCommbox(token=wrong, base_url=server.url, rate_limit=FIXED) as client:
            with pytest.raises(CommboxError) as caught:
                await client.get_user_objects(IDENT)
            texts = [*texts_of(caught.value), repr(client)]
    assert not [t for t in texts if wrong in t or SECRET in t]


# --- TLS ---------------------------------------------------------------------------------------


async def test_tls_verification_on_by_default() -> None:
    """The owned session verifies certificates unless told otherwise, and logs nothing about it."""
    async with AsyncCommbox(token=SECRET, base_url="https://api.commbox.io") as client:
        session = client._transport.session
        assert session is not None
        connector = session.connector
        assert isinstance(connector, aiohttp.TCPConnector)
        assert connector._ssl is not False  # type: ignore[attr-defined]


async def test_verify_tls_false_logs_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """Turning verification off is explicit and logged at WARNING (without the token)."""
    caplog.set_level(logging.DEBUG, logger="commbox_async")
    client = AsyncCommbox(token=SECRET, base_url="https://api.commbox.io", verify_tls=False)
    async with client:
        session = client._transport.session
        assert session is not None
        assert session.connector._ssl is False  # type: ignore[union-attr]
    warnings_logged = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("TLS" in r.getMessage() for r in warnings_logged)
    assert SECRET not in caplog.text


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A throwaway key and self-signed certificate for 127.0.0.1 (skips without openssl)."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    try:
        made = subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert),
            ],
            capture_output=True,
            check=False,
        )  # fmt: skip
    except FileNotFoundError:
        pytest.skip("openssl is not available to make a certificate")
    if made.returncode != 0:
        pytest.skip("openssl could not make a certificate")
    return key, cert


async def test_tls_verification_rejects_a_self_signed_server(
    self_signed: tuple[Path, Path],
) -> None:
    """Against a loopback https server with a self-signed certificate: refused by default,
    accepted with verify_tls=False."""
    import ssl

    from aiohttp import web

    key, cert = self_signed
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    fake = FakeCommbox(token=SECRET)
    runner = web.AppRunner(fake.app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    try:
        port = runner.addresses[0][1]
        url = f"https://127.0.0.1:{port}"
        async with make_client(url, retries=Retries(tries=1)) as client:
            with pytest.raises(CommboxConnectionError):
                await client.get_user_objects(IDENT)
        async with make_client(url, retries=Retries(tries=1), verify_tls=False) as client:
            page = await client.get_user_objects(IDENT)
            assert page.unread_total == unread_of(IDENT, 10)
    finally:
        await runner.cleanup()


# --- the short soak ----------------------------------------------------------------------------


def test_quick_soak_loses_nothing() -> None:
    """benchmarks/soak.py --quick: ~3,000 requests, 10% faults of every kind, nothing lost."""
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "soak.py"), "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    import json

    figures = json.loads(run.stdout.strip().splitlines()[-1])
    assert figures["requests_server"] >= 3000
    assert figures["lost"] == 0
    assert figures["duplicated"] == 0
    assert figures["wrong"] == 0
    assert figures["unexpected_failures"] == 0
    assert figures["acquired_at_end"] == 0
    assert figures["unclosed_reports"] == []
    assert figures["tasks_left"] == 0
    assert set(figures["faults_by_kind"]) == set(FAULT_KINDS)
    assert "soak-token" not in run.stdout + run.stderr  # the soak's own token
