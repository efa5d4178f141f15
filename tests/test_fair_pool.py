"""Fair sharing of one pool among accounts, over real loopback sockets against the fake server.

The server holds requests until the test lets them go (``server.holding``), so every check is
made at a moment when all the pool's connections carry held requests: who holds how many is
then exact, and nothing is timed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator

import pytest
from waiting import until

from commbox_async import AsyncCommbox, CommboxTimeoutError, PoolConfig, Timeout
from commbox_async.testing import FAST_RETRIES, FakeCommbox, Throttling

A, B = "key-of-account-a", "key-of-account-b"
POOL = PoolConfig(limit=4)


async def _server() -> FakeCommbox:
    server = FakeCommbox()
    server.add_token(A, account="a")
    server.add_token(B, account="b")
    return await server.start()


async def _drain(view: AsyncCommbox, ids: range, concurrency: int) -> int:
    return sum(r.ok for r in [r async for r in view.fetch_many(ids, concurrency=concurrency)])


async def _queued(view: AsyncCommbox, calls: int, what: str) -> None:
    """Until ``calls`` of the view's calls are past its limiter: sent, or waiting for a
    connection."""
    await until(lambda: view.stats.in_flight == calls, what)


@dataclasses.dataclass
class _Busy:
    server: FakeCommbox
    view_a: AsyncCommbox
    view_b: AsyncCommbox


@contextlib.asynccontextmanager
async def _a_fills_the_pool(held: str | None = None) -> AsyncIterator[_Busy]:
    """Account a's job of 100 ids holding all 4 connections of the pool with requests the
    server holds (``held``: only that account's are held); at the end every request is let
    go and a's job must have all 100."""
    server = await _server()
    server.holding.hold(held)
    try:
        async with server.client(pool=POOL) as commbox:
            busy = _Busy(server, commbox.with_token(A), commbox.with_token(B))
            job_a = asyncio.ensure_future(_drain(busy.view_a, range(1, 101), 100))
            await _queued(busy.view_a, 100, "a's calls sent or queued")
            await until(lambda: server.holding.held("a") == 4, "a holds the pool")
            yield busy
            server.holding.unhold()
            assert await job_a == 100
    finally:
        await server.stop()


def _settled(view: AsyncCommbox, server: FakeCommbox, pool: int) -> bool:
    """The view's calls past its limiter hold every connection they can, each with a request
    held at the server (none is between the server and the pool)."""
    held = server.holding.held()
    return held > 0 and held == min(pool, view.stats.in_flight)


async def test_an_account_that_arrives_late_gets_its_share_at_once() -> None:
    """a's 100 calls fill the pool of 4; b's get 2 connections after two of a's answers, not
    after a's whole queue, and keep 2 while both wait; once b is done, a has all 4 again."""
    async with _a_fills_the_pool() as busy:
        holding = busy.server.holding
        job_b = asyncio.ensure_future(_drain(busy.view_b, range(101, 121), 20))
        await _queued(busy.view_b, 20, "b's calls queued")
        for _ in range(2):
            holding.release(account="a")
            await until(lambda: holding.held() == 4, "the freed connection used again")
        assert (holding.held("a"), holding.held("b")) == (2, 2)
        while not job_b.done():
            waiting_b = busy.view_b.stats.in_flight - holding.held("b")
            if waiting_b > 0:
                assert (holding.held("a"), holding.held("b")) == (2, 2)
            holding.release()  # the oldest held request, whoever's
            await until(lambda: holding.held() == 4 or job_b.done(), "the pool full again")
        await until(lambda: holding.held("a") == 4, "a has the whole pool again")
        assert await job_b == 20
    assert holding.peak == 4


async def test_an_account_that_needs_less_than_its_share_leaves_the_rest() -> None:
    """b's one call gets a connection at a's next answer; a keeps the other 3 (work-conserving,
    not an even 2 and 2), and has 4 again once b's call is answered."""
    async with _a_fills_the_pool() as busy:
        holding = busy.server.holding
        call_b = asyncio.ensure_future(busy.view_b.get_user_objects(500))
        await _queued(busy.view_b, 1, "b's call queued")
        for _ in range(3):
            holding.release(account="a")
            await until(lambda: holding.held() == 4, "the freed connection used again")
            assert (holding.held("a"), holding.held("b")) == (3, 1)
        holding.release(account="b")
        await call_b
        await until(lambda: holding.held("a") == 4, "a has the whole pool again")


async def test_one_account_alone_uses_the_whole_pool() -> None:
    """With no other account waiting, one account's calls hold all 4 connections, never more."""
    server = await _server()
    holding = server.holding
    holding.hold()
    try:
        async with server.client(pool=POOL) as commbox:
            view_a = commbox.with_token(A)
            job_a = asyncio.ensure_future(_drain(view_a, range(1, 21), 20))
            for _ in range(8):
                await until(lambda: holding.held("a") == 4, "a holds the pool")
                holding.release()
            holding.unhold()
            assert await job_a == 20
    finally:
        await server.stop()
    assert holding.peak == 4


async def test_a_slow_account_keeps_no_more_than_its_share() -> None:
    """a's answers never come (held) and it has 96 calls queued; b's fast calls get in at a's
    first answer, and all 50 are done while a's 2 remaining requests are still held."""
    async with _a_fills_the_pool(held="a") as busy:
        server, holding = busy.server, busy.server.holding
        job_b = asyncio.ensure_future(_drain(busy.view_b, range(101, 151), 50))
        await _queued(busy.view_b, 50, "b's calls queued")
        holding.release(account="a")
        await until(
            lambda: server.count(account="b") > 0 or holding.held("a") == 4,
            "the freed connection used again",
        )
        assert server.count(account="b") > 0, "b waited behind a's queue"
        holding.release(account="a")
        await until(job_b.done, "b's job done beside a's 2 held requests")
        assert job_b.result() == 50
        assert server.count("ok", account="a") == 2  # a was answered only what we let go


async def test_a_paused_account_holds_no_connection_and_no_worker_slot() -> None:
    """While a's 40 calls wait out a 30 s pause, b's job has all 4 connections at once and
    finishes; a has no request at the server and none past its limiter."""
    server = await _server()
    server.accounts.limit("a", Throttling(rate=0.001, burst=1, retry_after="30"))
    retries = dataclasses.replace(FAST_RETRIES, max_retry_after=60.0, default_retry_after=30.0)
    holding = server.holding
    try:
        async with server.client(retries=retries, pool=POOL) as commbox:
            view_a, view_b = commbox.with_token(A), commbox.with_token(B)
            await view_a.get_user_objects(1)  # the bucket's one token
            job_a = asyncio.ensure_future(_drain(view_a, range(2, 42), 16))
            await until(
                lambda: view_a.limiter.pause_remaining() > 0 and view_a.stats.in_flight == 0,
                "a paused, its calls that were sent answered 429",
            )
            holding.hold("b")
            job_b = asyncio.ensure_future(_drain(view_b, range(1, 41), 8))
            await until(lambda: holding.held("b") == 4, "b holds the whole pool")
            assert holding.in_flight["a"] == 0 and view_a.stats.in_flight == 0
            holding.unhold()
            assert await job_b == 40
            assert not job_a.done()  # a is still waiting, holding nothing b needed
    finally:
        await server.stop()
    assert job_a.done()


async def test_a_call_that_waits_for_a_connection_too_long_times_out() -> None:
    """A call that finds the pool full waits no longer than its connect timeout, as aiohttp's
    own wait for a pooled connection did, and says why."""
    server = await _server()
    server.holding.hold()
    try:
        async with server.client(pool=PoolConfig(limit=1)) as commbox:
            first = asyncio.ensure_future(commbox.get_user_objects(1))
            await until(lambda: server.holding.held() == 1, "the one connection held")
            short = Timeout(total=5.0, connect=0.01)
            with pytest.raises(CommboxTimeoutError, match="free connection") as caught:
                await commbox.get_user_objects(2, timeout=short, retries=1)
            assert caught.value.reason == "no free connection in the pool"
            server.holding.unhold()
            await first
    finally:
        await server.stop()


async def test_one_accounts_requests_get_connections_in_the_order_they_asked() -> None:
    """A job with more workers than connections: each connection given back goes to the
    request that waited longest, not to the worker that just finished (which would leave the
    others waiting, up to their connect timeout); the server sees the ids in order."""
    server = await _server()
    holding = server.holding
    holding.hold()
    try:
        async with server.client(pool=PoolConfig(limit=2)) as commbox:
            view_a = commbox.with_token(A)
            job_a = asyncio.ensure_future(_drain(view_a, range(1, 31), 10))
            await _queued(view_a, 10, "a's first 10 calls sent or queued")
            while not job_a.done():
                await until(lambda: job_a.done() or _settled(view_a, server, 2), "pool in use")
                holding.release()
            assert job_a.result() == 30
    finally:
        await server.stop()
    assert [r.identity_id for r in server.requests] == list(range(1, 31))
