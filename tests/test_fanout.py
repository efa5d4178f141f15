"""fetch_many, unread_counts and the shared pacing, against the fake server over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from waiting import until

from commbox_async import (
    AsyncCommbox,
    ClientClosedError,
    FanOutError,
    FanOutProgress,
    FetchResult,
    InvalidArgumentError,
    LocalLimiter,
    NotFoundError,
    RateLimit,
    Retries,
)
from commbox_async._fanout import fan_out
from commbox_async.testing import FakeCommbox, Faults, Throttling, unread_of
from commbox_async.testing import VirtualClock as VirtualTime

FAST_RETRIES = Retries(base_delay=0.0, max_delay=0.0, default_retry_after=0.0)
MISSING = {7, 70, 700}


def _client(server: FakeCommbox, **kwargs: object) -> AsyncCommbox:
    options: dict[str, object] = {"rate_limit": 10_000, "retries": FAST_RETRIES}
    options.update(kwargs)
    return AsyncCommbox(token=server.token, base_url=server.url, **options)  # type: ignore[arg-type]


def _connections_in_use(commbox: AsyncCommbox) -> int:
    session = commbox._transport.session
    assert session is not None
    connector = session.connector
    assert connector is not None
    return len(connector._acquired)  # type: ignore[attr-defined]


async def test_every_id_accounted_for_under_faults() -> None:
    """With 10% faults of every transient kind and some 404s, each id ends exactly once."""
    faults = Faults(
        rate=0.1,
        kinds=("500", "502", "503", "504", "429", "reset", "truncate", "html_200"),
        seed=3,
    )
    async with FakeCommbox(faults=faults, not_found=MISSING, conversations=2, childs=1) as server:
        async with _client(server) as commbox:
            seen: Counter[int] = Counter()
            errors = {}
            async for result in commbox.fetch_many(range(1, 801), concurrency=16):
                seen[result.identity_id] += 1
                assert (result.response is None) != (result.error is None)
                if result.error is not None:
                    errors[result.identity_id] = result.error
    assert set(seen) == set(range(1, 801))
    assert max(seen.values()) == 1
    assert set(errors) == MISSING
    assert all(isinstance(e, NotFoundError) for e in errors.values())
    served = {r.identity_id for r in server.requests if r.outcome == "ok"}
    assert served == set(range(1, 801)) - MISSING
    assert server.count() > 800  # faults really happened and were retried


async def test_duplicates_fetched_per_occurrence_unless_deduped(server: FakeCommbox) -> None:
    """Repeated ids are fetched once per occurrence; dedupe=True fetches them once."""
    ids = [5, 6, 5, 5, 6]
    async with _client(server) as commbox:
        plain = [r.identity_id async for r in commbox.fetch_many(ids)]
        assert sorted(plain) == sorted(ids)
        assert server.count("ok") == 5
        deduped = [r.identity_id async for r in commbox.fetch_many(ids, dedupe=True)]
    assert sorted(deduped) == [5, 6]
    assert server.count("ok") == 7


async def test_dedupe_keeps_true_apart_from_1(server: FakeCommbox) -> None:
    """True == 1 in Python: deduped as one, the invalid True took the place of the valid 1,
    which then got no result at all."""
    async with _client(server) as commbox:
        results = [r async for r in commbox.fetch_many([True, 1, 2], dedupe=True)]
    assert sorted((repr(r.identity_id), r.ok) for r in results) == [
        ("1", True),
        ("2", True),
        ("True", False),
    ]


async def test_unread_counts_with_an_unhashable_invalid_id(server: FakeCommbox) -> None:
    """A list among the ids gets its error (keyed by its repr), not a crash of the call."""
    async with _client(server) as commbox:
        with pytest.raises(FanOutError) as info:
            await commbox.unread_counts([1, [2], 3])
    assert sorted(info.value.counts) == [1, 3]
    assert list(info.value.errors) == ["[2]"]


async def test_ids_that_fail_midway_still_give_each_id_read_its_result(
    server: FakeCommbox,
) -> None:
    """The caller's async iterable raises after five ids, while their calls are in flight:
    the five results come first, then its exception (they were cancelled, unanswered)."""

    async def ids() -> AsyncIterator[int]:
        for ident in range(1, 6):
            yield ident
        raise RuntimeError("the export broke")

    got: list[int] = []

    async def consume(results: AsyncIterator[FetchResult]) -> None:
        async for result in results:
            got.append(result.identity_id)

    async with _client(server) as commbox:
        server.holding.hold()
        running = asyncio.ensure_future(consume(commbox.fetch_many(ids(), concurrency=8)))
        await until(lambda: server.holding.held() == 5, "five calls in flight")
        server.holding.unhold()
        with pytest.raises(RuntimeError, match="the export broke"):
            await running
    assert sorted(got) == [1, 2, 3, 4, 5]


async def test_ids_are_read_lazily_and_break_stops_everything(server: FakeCommbox) -> None:
    """A million-id generator is read only as far as needed; break releases every worker."""
    drawn = 0

    def ids() -> Iterator[int]:
        nonlocal drawn
        for i in range(1, 1_000_001):
            drawn += 1
            yield i

    async with _client(server) as commbox:
        got = 0
        async with contextlib.aclosing(commbox.fetch_many(ids(), concurrency=8)) as results:
            async for _ in results:
                got += 1
                if got == 20:
                    break
        assert drawn <= 20 + 2 * 8
        assert _connections_in_use(commbox) == 0
        assert not commbox._tasks
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert not [t for t in others if "worker" in repr(t.get_coro())]


async def test_cancelling_the_consumer_stops_workers() -> None:
    """Cancelling the task that runs the loop cancels its workers and frees connections."""
    async with FakeCommbox(latency=0.01) as server, _client(server) as commbox:
        got = asyncio.Event()

        async def consume() -> None:
            async for _ in commbox.fetch_many(range(1, 10_000), concurrency=8):
                got.set()

        task = asyncio.create_task(consume())
        await got.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not commbox._tasks
        assert _connections_in_use(commbox) == 0


async def test_a_worker_that_outlives_its_cancellation_takes_no_more_ids() -> None:
    """A request that survives its cancellation (as one swallowed by asyncio.wait_for before
    Python 3.12 does) and returns: the fan-out still ends when its consumer stops, and that
    worker takes no other id (it took one more, and waited for it forever: a hung Ctrl-C)."""
    sent: list[int] = []

    async def request(ident: int) -> Any:
        sent.append(ident)
        if ident in (2, 3):  # in flight when the consumer stops: they survive the cancel
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.Event().wait()  # until cancelled
        elif ident > 3:
            await asyncio.Event().wait()  # (only the guard's cancel ends a wait for another id)
        return ident

    async def first_then_stop() -> None:
        results = fan_out(
            iter(range(1, 1000)),
            request,
            concurrency=2,
            dedupe=False,
            on_progress=None,
            tasks=set(),
            stopped_from_outside=lambda: False,
        )
        async for result in results:
            assert result.response == 1
            break
        await results.aclose()

    await asyncio.wait_for(first_then_stop(), 60)  # a guard: before the fix, it never ended
    assert sorted(sent) == [1, 2, 3]


async def test_async_iterable_input_and_invalid_items(server: FakeCommbox) -> None:
    """Async iterables work; an invalid id becomes an error result and sends nothing."""

    async def ids() -> AsyncIterator[object]:
        for item in (1, "2", 3, True, -4):
            yield item

    async with _client(server) as commbox:
        results = {repr(r.identity_id): r async for r in commbox.fetch_many(ids())}
    assert results["1"].ok and results["3"].ok
    for bad in ("'2'", "True", "-4"):
        assert isinstance(results[bad].error, InvalidArgumentError)
    assert server.count() == 2


async def test_progress_callback_and_counters(server: FakeCommbox) -> None:
    """on_progress sees every result; the counters match the server's log."""
    seen: list[tuple[int, int, int | None]] = []

    def progress(p: FanOutProgress) -> None:
        seen.append((p.done, p.succeeded, p.total))

    server.script(3, 500, 429)
    async with _client(server) as commbox:
        async for _ in commbox.fetch_many([1, 2, 3, 4], on_progress=progress):
            pass
        stats = commbox.stats
    assert [d for d, _, _ in seen] == [1, 2, 3, 4]
    assert seen[-1] == (4, 4, 4)
    assert stats.requests == server.count() == 6
    assert stats.retries == 2 and stats.throttled == 1
    assert stats.errors_by_kind == {"server_error": 1, "rate_limited": 1}
    assert stats.successes == 4 and stats.latency_p50_ms is not None


async def test_unread_counts_reports_failures(server: FakeCommbox) -> None:
    """unread_counts maps identity -> total; a failure raises with the partial counts."""
    async with _client(server) as commbox:
        counts = await commbox.unread_counts([1, 2, 3])
        assert counts == {i: unread_of(i, 10) for i in (1, 2, 3)}
        server.script(2, 404)
        with pytest.raises(FanOutError) as caught:
            await commbox.unread_counts([1, 2, 3])
        assert set(caught.value.counts) == {1, 3}
        assert isinstance(caught.value.errors[2], NotFoundError)
        server.script(2, 404)
        assert set(await commbox.unread_counts([1, 2, 3], raise_on_error=False)) == {1, 3}


async def test_bad_arguments_fail_before_any_request(server: FakeCommbox) -> None:
    """Bad concurrency, ids or filters raise before a single request is sent."""
    async with _client(server) as commbox:
        for kwargs in ({"concurrency": 0}, {"concurrency": 2.5}, {"page_size": 500}):
            with pytest.raises(InvalidArgumentError):
                async for _ in commbox.fetch_many([1], **kwargs):  # type: ignore[arg-type]
                    pass
        with pytest.raises(InvalidArgumentError):
            async for _ in commbox.fetch_many("123"):
                pass
    assert server.count() == 0


async def test_closing_the_client_ends_a_running_fan_out() -> None:
    """aclose() during a fan-out stops its workers and the loop says why."""
    async with FakeCommbox(latency=0.01) as server:
        commbox = _client(server)
        await commbox.open()
        with pytest.raises(ClientClosedError):
            async for result in commbox.fetch_many(range(1, 10_000), concurrency=4):
                if result.identity_id:
                    await commbox.aclose()
        assert not commbox._tasks


async def test_closing_the_client_after_the_last_id_was_taken_still_raises() -> None:
    """Every id taken and in flight, then aclose(): the loop raises rather than end as if
    every id had had its result."""
    async with FakeCommbox(latency=0.2) as server:
        commbox = _client(server)
        await commbox.open()

        async def close_when_all_sent() -> None:
            await until(lambda: server.stalling == 3, "all three requests held by the server")
            await commbox.aclose()

        closer = asyncio.create_task(close_when_all_sent())
        results = []
        with pytest.raises(ClientClosedError, match="during a fan-out"):
            async for result in commbox.fetch_many([1, 2, 3], concurrency=8):
                results.append(result)
        await closer
        assert results == [] and not commbox._tasks


async def test_a_fan_out_started_after_close_raises_once(server: FakeCommbox) -> None:
    """A fan-out made while open but first iterated after aclose() raises, not one error per id."""
    commbox = _client(server)
    await commbox.open()
    stream = commbox.fetch_many([1, 2, 3])
    await commbox.aclose()
    with pytest.raises(ClientClosedError, match="before the fan-out started"):
        await stream.__anext__()
    assert server.count() == 0


class _BadRepr:
    def __repr__(self) -> str:
        raise ValueError("no repr")


async def test_an_id_whose_repr_fails_costs_only_that_id(server: FakeCommbox) -> None:
    """An input whose __repr__ raises is one error result; the others are fetched, with and
    without dedupe (which keys non-int ids by repr)."""
    for dedupe in (False, True):
        async with _client(server) as commbox:
            results = [r async for r in commbox.fetch_many([1, _BadRepr(), 3], dedupe=dedupe)]
        assert len(results) == 3
        bad = [r for r in results if isinstance(r.identity_id, _BadRepr)]
        assert len(bad) == 1 and isinstance(bad[0].error, InvalidArgumentError)
        assert sorted(r.identity_id for r in results if r.ok) == [1, 3]


async def test_a_429_pauses_every_worker_for_retry_after() -> None:
    """After one 429 with Retry-After: 5, no request reaches the server for 5 seconds."""
    clock = VirtualTime()
    async with FakeCommbox(clock=clock, latency=0.001) as server:
        server.script(9, (429, {"Retry-After": "5"}, b'{"status": 429}'))
        limiter = LocalLimiter(
            RateLimit(max_rate=10_000, adaptive=False), clock=clock, sleep=clock.sleep
        )
        async with _client(server, limiter=limiter) as commbox:
            results = [r async for r in commbox.fetch_many(range(1, 41), concurrency=8)]
    assert all(r.ok for r in results) and len(results) == 40
    throttled_at = next(r.at for r in server.requests if r.status == 429)
    during = [r for r in server.requests if throttled_at < r.at < throttled_at + 5.0]
    assert during == []
    assert [r for r in server.requests if r.at >= throttled_at + 5.0]


async def test_rate_never_exceeds_the_maximum_in_any_second() -> None:
    """At max_rate=40/s, no one-second window of the server's log holds more than 40."""
    async with FakeCommbox(conversations=1, childs=0) as server:
        async with _client(server, rate_limit=RateLimit(max_rate=40, burst=4)) as commbox:
            async for _ in commbox.fetch_many(range(1, 101), concurrency=32):
                pass
    times = sorted(r.at for r in server.requests)
    assert len(times) == 100
    worst = max(sum(1 for t in times[i:] if t < start + 1.0) for i, start in enumerate(times))
    assert worst <= 40


async def test_throttled_fan_out_loses_nothing_and_pauses() -> None:
    """Against a throttling server, every id succeeds and the client's counters see the 429s."""
    throttling = Throttling(rate=200, burst=5, retry_after="0")
    async with FakeCommbox(throttling=throttling, conversations=1, childs=0) as server:
        async with _client(server, rate_limit=2000) as commbox:
            ok = {r.identity_id async for r in commbox.fetch_many(range(1, 201)) if r.ok}
            stats = commbox.stats
    assert ok == set(range(1, 201))
    assert stats.throttled == server.count("throttled") > 0
    assert stats.current_rate < 2000


async def test_retry_budget_stops_hammering_a_failing_server() -> None:
    """When every attempt fails, the client-wide budget caps retries well below tries x ids."""
    faults = Faults(rate=1.0, kinds=("503",), retry_after=None)
    retries = Retries(base_delay=0.0, max_delay=0.0, budget_ratio=0.1, budget_reserve=5)
    async with FakeCommbox(faults=faults, conversations=1, childs=0) as server:
        async with _client(server, retries=retries) as commbox:
            results = [r async for r in commbox.fetch_many(range(1, 51), concurrency=4)]
    assert len(results) == 50 and not any(r.ok for r in results)
    # 50 first attempts; retries limited to the reserve plus 0.1 per first attempt.
    assert server.count() <= 50 + 5 + 5 + 1
