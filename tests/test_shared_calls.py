"""Shared in-flight calls and the page cache, against the fake server."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from conftest import FAST_RETRIES
from waiting import until

from commbox_async import (
    AsyncCommbox,
    Cache,
    ClientClosedError,
    CommboxTimeoutError,
    InvalidArgumentError,
    NotFoundError,
    UserObjectsPage,
)
from commbox_async.testing import FakeCommbox, VirtualClock, unread_of


@asynccontextmanager
async def _client(server: FakeCommbox, **options: Any) -> AsyncIterator[AsyncCommbox]:
    options.setdefault("retries", FAST_RETRIES)
    async with AsyncCommbox(
        token=server.token, base_url=server.url, rate_limit=10_000, **options
    ) as commbox:
        yield commbox


def _waiting(commbox: AsyncCommbox) -> int:
    """Callers waiting on the client's shared calls, all calls together."""
    return sum(len(shared.waiters) for shared in commbox._shared._in_flight._calls.values())


async def test_concurrent_calls_for_one_identity_make_one_request() -> None:
    """Fifty concurrent calls for one identity and filters: one request, one shared page."""
    async with FakeCommbox() as server, _client(server) as commbox:
        pages = await asyncio.gather(
            *(commbox.get_user_objects(558355, page_size=5) for _ in range(50))
        )
        assert server.count(identity_id=558355) == 1
        assert all(page is pages[0] for page in pages)
        assert pages[0].unread_total == unread_of(558355, 10)


async def test_different_filters_or_identities_are_not_shared() -> None:
    """Calls differing in identity or in a filter each make their own request."""
    async with FakeCommbox() as server, _client(server) as commbox:
        await asyncio.gather(
            commbox.get_user_objects(1),
            commbox.get_user_objects(1, page_size=5),
            commbox.get_user_objects(2),
            commbox.get_user_objects(1),
        )
        assert len(server.requests) == 3


async def test_sequential_calls_are_not_shared() -> None:
    """A call after the previous one ended makes a new request (sharing is not caching)."""
    async with FakeCommbox() as server, _client(server) as commbox:
        await commbox.get_user_objects(7)
        await commbox.get_user_objects(7)
        assert server.count(identity_id=7) == 2


async def test_an_error_is_shared_by_every_caller() -> None:
    """The one request's error reaches every caller waiting on it, and only one is made."""
    async with FakeCommbox(latency=0.05) as server, _client(server) as commbox:
        server.script(9, 404)
        results = await asyncio.gather(
            *(commbox.get_user_objects(9) for _ in range(5)), return_exceptions=True
        )
        assert all(isinstance(r, NotFoundError) for r in results)
        assert server.count(identity_id=9) == 1


async def test_cancelling_one_caller_leaves_the_request_to_the_others() -> None:
    """A caller cancelled mid-request does not cancel the request the others wait on."""
    async with FakeCommbox(latency=0.2) as server, _client(server) as commbox:
        first = asyncio.ensure_future(commbox.get_user_objects(11))
        others = [asyncio.ensure_future(commbox.get_user_objects(11)) for _ in range(2)]
        await until(lambda: server.stalling == 1, "the server holds the request")
        first.cancel()
        pages = await asyncio.gather(*others)
        assert first.cancelled()
        assert pages[0] is pages[1] and pages[0].unread_total == unread_of(11, 10)
        assert server.count(identity_id=11) == 1


async def test_the_last_caller_leaving_cancels_the_request() -> None:
    """When every caller is cancelled, the request is cancelled and a new caller starts afresh."""
    async with FakeCommbox(latency=0.2) as server, _client(server) as commbox:
        callers = [asyncio.ensure_future(commbox.get_user_objects(12)) for _ in range(2)]
        await until(lambda: server.stalling == 1, "the server holds the request")
        for caller in callers:
            caller.cancel()
        await asyncio.gather(*callers, return_exceptions=True)
        assert len(commbox._shared._in_flight) == 0
        server.latency = 0.0
        page = await commbox.get_user_objects(12)
        assert page.unread_total == unread_of(12, 10)


async def test_closing_the_client_fails_waiting_callers_with_a_clear_error() -> None:
    """Callers of a shared call get ClientClosedError when the client closes under them."""
    async with FakeCommbox(latency=0.2) as server:
        commbox = AsyncCommbox(token=server.token, base_url=server.url, retries=FAST_RETRIES)
        await commbox.open()
        callers = [asyncio.ensure_future(commbox.get_user_objects(13)) for _ in range(3)]
        await until(lambda: server.stalling == 1, "the server holds the request")
        await commbox.aclose()
        results = await asyncio.gather(*callers, return_exceptions=True)
        assert all(isinstance(r, ClientClosedError) for r in results)


async def test_a_joiner_with_a_shorter_deadline_times_out_alone() -> None:
    """A caller joining with a short deadline gives up; the call goes on for the first caller."""
    async with FakeCommbox(latency=0.3) as server, _client(server) as commbox:
        first = asyncio.ensure_future(commbox.get_user_objects(14))
        await until(lambda: server.stalling == 1, "the server holds the request")
        with pytest.raises(CommboxTimeoutError):
            await commbox.get_user_objects(14, deadline=0.01)
        assert (await first).unread_total == unread_of(14, 10)
        assert server.count(identity_id=14) == 1


async def test_a_joiner_with_a_longer_deadline_outlives_the_first_callers() -> None:
    """The first caller's short deadline ends its call; a joiner with a long one still gets
    the page, by a request of its own."""
    async with FakeCommbox(latency=0.3) as server, _client(server) as commbox:
        first = asyncio.ensure_future(commbox.get_user_objects(16, deadline=0.1))
        await until(lambda: server.stalling == 1, "the server holds the request")
        page = await commbox.get_user_objects(16, deadline=30)
        assert page.unread_total == unread_of(16, 10)
        with pytest.raises(CommboxTimeoutError):
            await first
        assert server.count(identity_id=16) == 2


async def test_a_joiner_at_the_default_deadline_is_bounded_by_it() -> None:
    """The starter's deadline is longer than the client's default one; a caller that joins
    with a deadline at that default gives up at its own deadline, while the call goes on."""
    retries = dataclasses.replace(FAST_RETRIES, max_time=0.2)
    async with FakeCommbox() as server, _client(server, retries=retries) as commbox:
        server.holding.hold()
        starter = asyncio.ensure_future(commbox.get_user_objects(17, deadline=60))
        await until(lambda: server.holding.held() == 1, "the server holds the request")
        with pytest.raises(CommboxTimeoutError, match="shared call"):
            await asyncio.wait_for(commbox.get_user_objects(17, deadline=0.2), 30)
        assert not starter.done()
        server.holding.unhold()
        assert (await starter).unread_total == unread_of(17, 10)
        assert server.count(identity_id=17) == 1


async def test_a_joiner_does_not_repeat_a_call_that_ran_out_of_tries() -> None:
    """Two callers share one call that ends after its 2 tries (503, 503), well before either
    deadline: the joiner gets that error too, and the server saw 2 requests, not 4."""
    two_tries = dataclasses.replace(FAST_RETRIES, tries=2)
    async with FakeCommbox() as server, _client(server, retries=two_tries) as commbox:
        server.script(18, *[(503, {}, b"")] * 4)
        server.holding.hold()
        starter = asyncio.ensure_future(commbox.get_user_objects(18, deadline=5))
        await until(lambda: server.holding.held() == 1, "the server holds the request")
        joiner = asyncio.ensure_future(commbox.get_user_objects(18, deadline=60))
        await until(lambda: _waiting(commbox) == 2, "the joiner joined")
        server.holding.unhold()
        results = await asyncio.gather(starter, joiner, return_exceptions=True)
        assert [type(r).__name__ for r in results] == ["ServerError", "ServerError"]
        assert not results[0].ended_by_deadline  # type: ignore[union-attr]
        assert server.count(identity_id=18) == 2


async def test_an_invalidate_reaches_the_calls_already_running() -> None:
    """A caller after ``invalidate(id)`` does not join the call running since before it,
    and that call's page, answered last, does not replace the newer one in the cache."""
    async with FakeCommbox() as server, _client(server, cache=Cache(ttl=60)) as commbox:
        server.holding.hold()
        before = asyncio.ensure_future(commbox.get_user_objects(19))
        await until(lambda: server.holding.held() == 1, "the server holds the request")
        old = unread_of(19, 10)
        server.holding.unhold(release=False)  # the first request is answered as it was
        server.add_message(19, count=5)
        commbox.cache.invalidate(19)  # type: ignore[union-attr]
        after = await commbox.get_user_objects(19)
        assert after.unread_total == old + 5
        server.holding.release()
        await before
        assert await commbox.get_user_objects(19) is after
        assert server.count(identity_id=19) == 2


async def test_an_invalidate_of_one_identity_leaves_the_others_calls_alone() -> None:
    """``invalidate(A)`` while B's call runs: a caller for B still joins it, and B's page is
    still cached (a global generation made every call in flight miss both)."""
    async with FakeCommbox() as server, _client(server, cache=Cache(ttl=60)) as commbox:
        server.holding.hold()
        first = asyncio.ensure_future(commbox.get_user_objects(23))
        await until(lambda: server.holding.held() == 1, "the server holds the request")
        commbox.cache.invalidate(22)  # type: ignore[union-attr]
        second = asyncio.ensure_future(commbox.get_user_objects(23))
        await asyncio.sleep(0)
        server.holding.unhold()
        page = await first
        assert await second is page
        assert await commbox.get_user_objects(23) is page
        assert server.count(identity_id=23) == 1


async def test_sharing_can_be_turned_off() -> None:
    """With share_calls=False each concurrent call makes its own request."""
    async with FakeCommbox() as server, _client(server, share_calls=False) as commbox:
        await asyncio.gather(*(commbox.get_user_objects(15) for _ in range(4)))
        assert server.count(identity_id=15) == 4


async def test_cache_answers_within_ttl_and_refetches_after() -> None:
    """A cached page is served without a request until its ttl passes on the injected clock."""
    clock = VirtualClock()
    cache = Cache(ttl=2.0, clock=clock)
    async with FakeCommbox() as server, _client(server, cache=cache) as commbox:
        first = await commbox.get_user_objects(21)
        clock.now += 1.9
        assert await commbox.get_user_objects(21) is first
        assert server.count(identity_id=21) == 1
        clock.now += 0.2
        assert await commbox.get_user_objects(21) is not first
        assert server.count(identity_id=21) == 2
        assert (cache.hits, cache.misses) == (1, 2)


async def test_cache_keys_on_filters_and_can_be_bypassed() -> None:
    """Other filters miss the cache; cache=False fetches anew and refreshes the entry."""
    cache = Cache(ttl=60.0)
    async with FakeCommbox() as server, _client(server, cache=cache) as commbox:
        first = await commbox.get_user_objects(22)
        await commbox.get_user_objects(22, page_size=3)
        assert server.count(identity_id=22) == 2
        fresh = await commbox.get_user_objects(22, cache=False)
        assert fresh is not first and server.count(identity_id=22) == 3
        assert await commbox.get_user_objects(22) is fresh


async def test_cache_is_bounded_least_recently_used_first() -> None:
    """Past max_entries the least recently used page is dropped."""
    cache = Cache(ttl=60.0, max_entries=2)
    async with FakeCommbox() as server, _client(server, cache=cache) as commbox:
        await commbox.get_user_objects(31)
        await commbox.get_user_objects(32)
        await commbox.get_user_objects(31)  # 31 is now the most recent
        await commbox.get_user_objects(33)  # evicts 32
        assert len(cache) == 2
        await commbox.get_user_objects(31)
        await commbox.get_user_objects(32)
        assert server.count(identity_id=31) == 1
        assert server.count(identity_id=32) == 2


async def test_unread_counts_uses_the_cache() -> None:
    """unread_counts reads cached pages, so a second call within ttl makes no request."""
    cache = Cache(ttl=60.0)
    async with FakeCommbox(not_found={404}) as server, _client(server, cache=cache) as commbox:
        ids = [1, 2, 404]
        first = await commbox.unread_counts(ids, raise_on_error=False)
        second = await commbox.unread_counts(ids, raise_on_error=False)
        assert first == second == {1: unread_of(1, 10), 2: unread_of(2, 10)}
        # The failure was not cached: 404 was asked twice, the others once.
        assert [server.count(identity_id=i) for i in ids] == [1, 1, 2]


def test_cache_invalidate_drops_one_identity_or_all() -> None:
    """invalidate drops one identity's entries (every filter) or all of them."""
    cache = Cache(ttl=60.0)
    page = UserObjectsPage()
    cache.put((1, ""), page)
    cache.put((1, "pageSize=5"), page)
    cache.put((2, ""), page)
    assert cache.invalidate(1) == 2
    assert cache.get((2, "")) is page and cache.get((1, "")) is None
    assert cache.invalidate() == 1 and len(cache) == 0


@pytest.mark.parametrize(
    "options",
    [{"ttl": 0}, {"ttl": -1}, {"ttl": "2"}, {"max_entries": 0}, {"max_entries": 1.5}],
)
def test_cache_rejects_bad_settings(options: dict[str, Any]) -> None:
    """A bad ttl or max_entries is refused when the cache is built."""
    with pytest.raises(InvalidArgumentError):
        Cache(**options)


async def test_bad_cache_arguments_are_refused_before_any_request() -> None:
    """cache= must be a Cache on the client and a bool per call."""
    with pytest.raises(InvalidArgumentError):
        AsyncCommbox(token="t", cache={"ttl": 2})  # type: ignore[arg-type]
    async with FakeCommbox() as server, _client(server) as commbox:
        with pytest.raises(InvalidArgumentError):
            await commbox.get_user_objects(1, cache="no")
        assert server.requests == []
