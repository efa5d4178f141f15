"""RedisLimiter against a real redis-server and the fake CommBox server, over real sockets.

What is claimed is read from the fake server's request log (arrival times), never from timers:
several clients, or processes, on one key stay under the one rate; a 429 seen by one pauses
them all; Redis killed mid-run costs neither a hang, nor a flood, nor an id.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import random
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pytest

from commbox_async import AsyncCommbox, Retries
from commbox_async._config import RateLimit
from commbox_async._pacing import Outcome, PacingModel, Ticket
from commbox_async._redis import LAG
from commbox_async._redis_leader import PacingLeader
from commbox_async._redis_schedule import ScheduleView
from commbox_async.redis import RedisLimiter
from commbox_async.testing import FakeCommbox

if TYPE_CHECKING:
    from redis_server import RedisServer

# The `redis_server` fixture: a real redis-server on a free loopback port.
pytest_plugins = ["redis_server"]

# No real back-off between failed attempts; a 429 waits exactly what the server says.
RETRIES = Retries(base_delay=0.0, max_delay=0.0)


def max_in_window(times: Sequence[float], width: float = 1.0) -> int:
    """The most requests that arrived within any window [t, t + width)."""
    ordered = sorted(times)
    most, start = 0, 0
    for end, at in enumerate(ordered):
        while ordered[start] <= at - width:
            start += 1
        most = max(most, end - start + 1)
    return most


def arrivals(server: FakeCommbox) -> list[float]:
    return [r.at for r in server.requests]


async def fetch_all(
    commbox: AsyncCommbox,
    ids: Sequence[int],
    concurrency: int = 8,
    on_result: Callable[[], None] | None = None,
) -> dict[int, bool]:
    outcome: dict[int, bool] = {}
    async for result in commbox.fetch_many(ids, concurrency=concurrency):
        assert result.identity_id not in outcome, "an id came back twice"
        outcome[result.identity_id] = result.ok
        if on_result is not None:
            on_result()
    return outcome


def split(ids: Sequence[int], parts: int) -> list[list[int]]:
    return [list(ids[i::parts]) for i in range(parts)]


async def run_clients(
    server: FakeCommbox,
    limiters: Sequence[RedisLimiter],
    ids: Sequence[int],
    on_result: Callable[[], None] | None = None,
) -> dict[int, bool]:
    """One client (own session) per limiter, the ids split between them, all at once."""
    outcome: dict[int, bool] = {}

    async def one(limiter: RedisLimiter, part: list[int]) -> None:
        async with AsyncCommbox(
            token=server.token, base_url=server.url, limiter=limiter, retries=RETRIES
        ) as commbox:
            outcome.update(await fetch_all(commbox, part, on_result=on_result))

    parts = split(ids, len(limiters))
    await asyncio.gather(*(one(lim, part) for lim, part in zip(limiters, parts, strict=True)))
    return outcome


def limiters_for(
    redis_server: RedisServer, key: str, count: int, rate: float, **options: Any
) -> list[RedisLimiter]:
    return [
        RedisLimiter.from_url(redis_server.url, key=key, rate_limit=rate, **options)
        for _ in range(count)
    ]


async def close_all(limiters: Sequence[RedisLimiter]) -> None:
    await asyncio.gather(*(limiter.aclose() for limiter in limiters))


def test_importing_the_library_does_not_import_redis() -> None:
    """`import commbox_async` leaves redis-py unimported; `commbox_async.redis` exposes it."""
    code = (
        "import sys, commbox_async\n"
        "assert 'redis' not in sys.modules, 'redis imported'\n"
        "from commbox_async.redis import RedisLimiter\n"
        "assert 'redis' in sys.modules and RedisLimiter.__module__ == 'commbox_async._redis'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


async def test_clients_sharing_a_key_never_exceed_the_limit(redis_server: RedisServer) -> None:
    """Three clients in one loop, separate sessions, one key: any one second holds <= 40."""
    limiters = limiters_for(redis_server, "commbox:rate", 3, 40)
    ids = list(range(1, 91))
    try:
        async with FakeCommbox() as server:
            outcome = await run_clients(server, limiters, ids)
    finally:
        await close_all(limiters)
    assert sorted(outcome) == ids and all(outcome.values())
    assert server.count() == len(ids)
    assert max_in_window(arrivals(server)) <= 40
    # About one round trip per request: no polling (a late wake-up takes a second slot).
    assert sum(lim.round_trips for lim in limiters) <= 1.1 * len(ids)


async def test_a_429_seen_by_one_client_pauses_the_others(redis_server: RedisServer) -> None:
    """A scripted 429 (Retry-After: 0.3) to one client: no request from any arrives in it."""
    limiters = limiters_for(redis_server, "commbox:pause", 3, 60)
    ids = list(range(1, 121))
    victim = ids[30]  # about half a second in
    try:
        async with FakeCommbox() as server:
            server.script(victim, (429, {"Retry-After": "0.3"}, b'{"status": 429}'))
            outcome = await run_clients(server, limiters, ids)
    finally:
        await close_all(limiters)
    assert sorted(outcome) == ids and all(outcome.values())
    [throttled] = [r for r in server.requests if r.outcome == "scripted"]
    t0 = throttled.at
    # Requests already on the wire when the 429 was sent may still land just after it.
    during = [r for r in server.requests if t0 + 0.03 < r.at < t0 + 0.3]
    assert during == [], f"{len(during)} requests arrived during the pause"
    others = {i for part in split(ids, 3)[1:] for i in part}
    before = [r for r in server.requests if t0 - 0.3 < r.at < t0 and r.identity_id in others]
    after = [r for r in server.requests if r.at >= t0 + 0.3 and r.identity_id in others]
    assert before and after, "the other clients were not running around the pause"
    assert server.count(identity_id=victim) == 2  # the 429, then the retry after the pause


async def test_the_shared_pause_reaches_every_limiter(redis_server: RedisServer) -> None:
    """A 429 reported to one limiter pauses the other at once, on Redis's schedule too."""
    first, second = limiters_for(redis_server, "commbox:adapt", 2, 100)
    try:
        tickets = [await first.acquire() for _ in range(5)]
        await second.acquire()  # subscribes `second` to the pause channel
        await asyncio.sleep(0.05)
        first.report(tickets[-1], Outcome.THROTTLED, 0.3)
        for _ in range(100):
            if second.pause_remaining() > 0:
                break
            await asyncio.sleep(0.005)
        assert second.pause_remaining() > 0.2
        state = await second.shared_state()
        assert state["tat"] >= state["pause"]  # no slot is granted inside the pause
        await second.acquire()
        assert second.pause_remaining() == 0
    finally:
        await close_all([first, second])


async def test_a_slot_past_the_deadline_is_not_booked(redis_server: RedisServer) -> None:
    """At 1/s, with this second's slot taken, an acquire that can wait 0.2 s fails at once and
    leaves the shared schedule as it was: the next second's slot stays free for a caller
    that can use it (booking it and giving up, under load, pushed the schedule ever further
    past every caller's deadline)."""
    [limiter] = limiters_for(
        redis_server, "commbox:deadline", 1, RateLimit(max_rate=1.0, adaptive=False)
    )
    try:
        await limiter.acquire()
        before = (await limiter.shared_state())["tat"]
        with pytest.raises(asyncio.TimeoutError):
            await limiter.acquire(time.monotonic() + 0.2)
        assert (await limiter.shared_state())["tat"] == before
    finally:
        await close_all([limiter])


async def wait_for(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def leader_and_follower(
    limiters: Sequence[RedisLimiter],
) -> tuple[RedisLimiter, RedisLimiter]:
    """Start both limiters (one slot each) and wait until one of them leads."""
    for limiter in limiters:
        await limiter.acquire()
    await wait_for(lambda: any(lim.leader is not None for lim in limiters))
    [leader] = [lim for lim in limiters if lim.leader is not None]
    [follower] = [lim for lim in limiters if lim is not leader]
    return leader, follower


async def drain_through(follower: RedisLimiter, leader: RedisLimiter, attempts: int) -> None:
    """`attempts` accepted slots from each limiter in turn, then a 429 (Retry-After 1) seen by
    the follower only."""
    for _ in range(attempts):
        for limiter in (leader, follower):
            limiter.report(await limiter.acquire(), Outcome.ACCEPTED)
    follower.report(await follower.acquire(), Outcome.THROTTLED, 1.0)


async def test_the_leader_feeds_one_model_with_every_process_outcomes(
    redis_server: RedisServer,
) -> None:
    """Two limiters on one key: the leader's model reads both one's sends and outcomes, and a
    429 reported by the follower changes the rate that both use, with the model's reason."""
    limiters = limiters_for(redis_server, "commbox:model", 2, 200)
    try:
        leader, follower = await leader_and_follower(limiters)
        await drain_through(follower, leader, 40)
        await wait_for(lambda: leader.current_rate < 200 and follower.current_rate < 200)
        assert follower.current_rate == leader.current_rate
        shared = leader.leader
        assert shared is not None
        # 2 first slots, 80 accepted, the 429's: 83 sends, 81 answers; all reached the model.
        await wait_for(lambda: shared.events == 83 + 81)
        assert shared.late == 0
        assert follower.last_change.reason is leader.last_change.reason
        assert "the pacing leader" in follower.last_change.evidence
        state = await leader.shared_state()
        assert state["rate"] == pytest.approx(leader.current_rate)
        assert follower.leader is None and leader.leaderships == 1
        # The reports ride along with the slots: only the leader sends commands of its own.
        assert follower.report_trips < 10
    finally:
        await close_all(limiters)


async def test_another_limiter_takes_over_when_the_leader_closes(
    redis_server: RedisServer,
) -> None:
    """The leader closes: the follower takes the lease and starts at the shared rate."""
    limiters = limiters_for(redis_server, "commbox:failover", 2, 200)
    try:
        leader, follower = await leader_and_follower(limiters)
        await drain_through(follower, leader, 40)
        await wait_for(lambda: follower.current_rate < 200)
        shared_rate = follower.current_rate
        await leader.aclose()
        # An idle follower looks at the lease every IDLE_TICK (0.5 s).
        await wait_for(lambda: follower.leader is not None)
        assert follower.leaderships == 1
        new = follower.leader
        assert new is not None
        # The job goes on at the rate it had (not from the maximum again).
        assert new.model.rate == pytest.approx(shared_rate)
        follower.report(await follower.acquire(), Outcome.ACCEPTED)
        await wait_for(lambda: new.events > 0)
    finally:
        await close_all(limiters)


async def test_the_rate_never_exceeds_max_rate(redis_server: RedisServer) -> None:
    """A rate left in Redis above this limiter's maximum (another configuration, a past job)
    is clamped by the slot script; a new leader starts at the maximum."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_server.url)
    try:
        await client.hset("commbox:max", mapping={"rate": "500", "lead_at": "0"})
    finally:
        await client.aclose()
    async with RedisLimiter.from_url(redis_server.url, key="commbox:max", rate_limit=50) as lim:
        lim.report(await lim.acquire(), Outcome.ACCEPTED)
        assert lim.current_rate == 50
        await wait_for(lambda: lim.leader is not None)
        leader = lim.leader
        assert leader is not None
        assert leader.model.rate == 50
        # Its rate written over the foreign one: Redis holds this limiter's maximum now.
        await wait_for(lambda: lim.round_trips > 0)
        await asyncio.sleep(0.1)
        assert (await lim.shared_state())["rate"] <= 50


def test_the_leader_feeds_events_in_time_order_whatever_their_arrival() -> None:
    """Events of three processes, batched and out of order, give the model the same
    rate changes as feeding it every attempt in time order (what LocalLimiter does)."""
    rng = random.Random(7)
    config = RateLimit(max_rate=400)
    # Sends every 4 ms for 6 s against a bucket of 100/s (burst 10, Retry-After 1): the 429s
    # and pauses of a real job, with latencies of 5-30 ms.
    attempts: list[tuple[float, float, Outcome]] = []
    tokens, last, paused_until = 10.0, 0.0, -1.0
    t = 0.0
    while t < 6.0:
        t += 0.004
        if t < paused_until:
            continue
        tokens = min(10.0, tokens + 100 * (t - last))
        last = t
        t = round(t, 6)  # as the events carry it
        answered = round(t + rng.uniform(0.005, 0.03), 6)
        if tokens >= 1:
            tokens -= 1
            attempts.append((t, answered, Outcome.ACCEPTED))
        else:
            attempts.append((t, answered, Outcome.THROTTLED))
            paused_until = answered + 1.0
    # The leader advances its model to LAG behind each report; so does the direct feed.
    grid = [k * 0.015 for k in range(1, 470)]
    direct = PacingModel(config.max_rate, config.min_rate)
    timeline = sorted(
        [(sent, 0, i) for i, (sent, _, _) in enumerate(attempts)]
        + [(answered, 1, i) for i, (_, answered, _) in enumerate(attempts)]
        + [(now - LAG, 2, -1) for now in grid]
    )
    tickets: dict[int, Ticket] = {}
    for at, kind, i in timeline:
        if kind == 0:
            tickets[i] = direct.on_send(at)
        elif kind == 2:
            if tickets:
                direct.rate_at(at)
        elif attempts[i][2] is Outcome.THROTTLED:
            direct.on_answer(tickets[i], at, Outcome.THROTTLED, pause=1.0, asked=1.0)
        else:
            direct.on_answer(tickets[i], at, attempts[i][2])
    leader = PacingLeader(config)
    # Each attempt belongs to one of three processes, which reports its events every 15 ms.
    outboxes: list[list[tuple[float, str]]] = [[], [], []]
    for i, (sent, answered, outcome) in enumerate(attempts):
        pause = 1.0 if outcome is Outcome.THROTTLED else 0.0
        outboxes[i % 3].append((sent, f"s {sent:.6f}"))
        outboxes[i % 3].append(
            (answered, f"a {sent:.6f} {answered:.6f} {int(outcome)} {pause:.6f} {pause:.6f}")
        )
    for now in grid:
        for outbox in outboxes:
            # Reported up to 15 ms after they happened, in any order.
            cut = now - rng.uniform(0, 0.015)
            ready = [event for at, event in outbox if at <= cut]
            outbox[:] = [(at, event) for at, event in outbox if at > cut]
            rng.shuffle(ready)
            leader.add(ready)
        leader.advance(now - LAG)
    assert leader.late == 0
    assert leader.events == 2 * len(attempts)
    assert len(direct.changes) >= 2  # the trace made the model move (down, then back)
    assert [(c.reason, round(c.new, 3)) for c in leader.model.changes] == [
        (c.reason, round(c.new, 3)) for c in direct.changes
    ]
    assert all(c.new <= config.max_rate for c in leader.model.changes)


def _process_worker(
    url: str, key: str, base_url: str, token: str, ids: list[int], rate: float, out: Any
) -> None:
    async def main() -> tuple[dict[int, bool], int]:
        async with RedisLimiter.from_url(url, key=key, rate_limit=rate) as limiter:
            async with AsyncCommbox(
                token=token, base_url=base_url, limiter=limiter, retries=RETRIES
            ) as commbox:
                return await fetch_all(commbox, ids), limiter.round_trips

    out.put(asyncio.run(main()))


async def test_processes_sharing_a_key_never_exceed_the_limit(redis_server: RedisServer) -> None:
    """Three worker processes on one key against one server: any one second holds <= 50."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    ids = list(range(1, 121))
    async with FakeCommbox() as server:
        processes = [
            ctx.Process(
                target=_process_worker,
                args=(redis_server.url, "commbox:procs", server.url, server.token, part, 50, queue),
            )
            for part in split(ids, 3)
        ]
        for process in processes:
            process.start()
        try:
            replies = [await asyncio.to_thread(queue.get, True, 60) for _ in processes]
        finally:
            for process in processes:
                await asyncio.to_thread(process.join, 10)
                if process.is_alive():
                    process.kill()
    outcome: dict[int, bool] = {}
    for part, _ in replies:
        assert not set(part) & set(outcome)
        outcome.update(part)
    assert sorted(outcome) == ids and all(outcome.values())
    assert server.count() == len(ids)
    assert max_in_window(arrivals(server)) <= 50


async def test_redis_killed_and_restarted_mid_run(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis dies for a second mid-run: no hang, no flood, one warning each, every id back."""
    caplog.set_level(logging.WARNING, logger="commbox_async.redis")
    limiters = limiters_for(
        redis_server, "commbox:crash", 2, 40, expected_workers=2, reconnect_interval=0.5
    )
    ids = list(range(1, 161))

    done = 0
    quarter, half = asyncio.Event(), asyncio.Event()

    def count() -> None:
        nonlocal done
        done += 1
        if done == len(ids) // 4:
            quarter.set()
        elif done == len(ids) // 2:
            half.set()

    async def outage() -> None:
        # Kill Redis a quarter of the way in, bring it back at half way (about 1 s each).
        await quarter.wait()
        redis_server.stop(kill=True)
        await half.wait()
        await asyncio.to_thread(redis_server.start)

    server = FakeCommbox()
    try:
        async with server:
            chaos = asyncio.create_task(outage())
            outcome = await asyncio.wait_for(run_clients(server, limiters, ids, count), 30)
            await chaos
    finally:
        await close_all(limiters)
    assert sorted(outcome) == ids and all(outcome.values())
    assert server.count() == len(ids)
    assert [lim.outages for lim in limiters] == [1, 1]
    # A flood would be each process at the full rate: 80 in a second. What remains is the seam
    # at each switch (a process's last slot of one kind lands next to its first of the other,
    # usually +1 or +2) and, on a busy machine, a process that switches back a little later.
    assert max_in_window(arrivals(server)) <= 1.25 * 40, [
        (lim.shared_slots, lim.fallback_slots, lim.forfeited) for lim in limiters
    ]
    assert all(lim.shared and lim.fallback_slots > 0 for lim in limiters)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2


async def test_unreachable_redis_falls_back_to_the_local_rate(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With no Redis at all, slots come from the fallback rate after one warning."""
    from redis_server import free_port

    caplog.set_level(logging.WARNING, logger="commbox_async.redis")
    url = f"redis://127.0.0.1:{free_port()}/0"
    async with RedisLimiter.from_url(url, key="commbox:none", rate_limit=50) as limiter:
        assert limiter.fallback_rate == 50 / 4
        started = time.monotonic()
        for _ in range(3):
            await limiter.acquire()
        assert time.monotonic() - started < 5  # no hang on the dead address
        assert not limiter.shared and limiter.fallback_slots == 3
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


def test_requests_per_window_helper() -> None:
    """max_in_window counts a half-open one-second window."""
    assert max_in_window([0.0, 0.5, 0.999, 1.0, 1.5]) == 3
    assert max_in_window([]) == 0


def test_without_redis_server_the_tests_skip_or_fail_under_ci(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No binary: a skip that says how to install it; under CI=true, a failure instead."""
    import shutil

    import redis_server

    monkeypatch.setattr(shutil, "which", lambda name, path=None: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install redis-server"):
        redis_server.redis_binary()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        redis_server.redis_binary()


def test_bad_arguments_are_refused_before_any_connection() -> None:
    """An empty key or a non-positive fallback rate raises InvalidArgumentError."""
    from commbox_async import InvalidArgumentError

    with pytest.raises(InvalidArgumentError):
        RedisLimiter.from_url("redis://127.0.0.1:1/0", key="")
    with pytest.raises(InvalidArgumentError):
        RedisLimiter.from_url("redis://127.0.0.1:1/0", key="k", fallback_rate=0)
    with pytest.raises(InvalidArgumentError, match="UTF-8"):
        RedisLimiter.from_url("redis://127.0.0.1:1/0", key="k\udcff")


def test_an_accounts_key_never_meets_its_parents_own() -> None:
    """Derived keys sit under ``account:``, the name percent-encoded: an account named
    "outcomes" or "leader" used the parent's own keys (a WRONGTYPE error, read as Redis being
    unreachable), and "a:outcomes" those of the account "a"."""
    parent = RedisLimiter.from_url("redis://127.0.0.1:1/0", key="k")
    names = ("outcomes", "leader", "a", "a:outcomes")
    keys = {name: parent.for_account(name).key for name in names}
    assert keys["outcomes"] == "k:account:outcomes"
    assert keys["a:outcomes"] == "k:account:a%3Aoutcomes"
    internal = {"k:outcomes", "k:leader", "k:pause"} | {f"{keys['a']}:outcomes"}
    assert not internal & set(keys.values())


async def test_a_restarted_redis_count_of_rebookings_is_taken() -> None:
    """Redis restarted: its count of rebookings starts over at 0. A slot booked after that
    is kept; before, every slot looked booked before the last rebooking known here and was
    given back, for ever (no request sent, thousands of Redis commands a second)."""
    view = ScheduleView()
    view.rebooked(start=100.0, epoch=5)  # known before the restart
    now = time.monotonic()
    view.note_epoch(4, redis_now=99.0)  # booked before that rebooking: an older slot
    assert not await view.wait_slot(slot=150.0, epoch=4, due=now + 60.0)  # given back
    view.note_epoch(0, redis_now=120.0)  # booked after it, with a count that started over
    assert await view.wait_slot(slot=200.0, epoch=0, due=now)
    assert await view.wait_slot(slot=300.0, epoch=0, due=now)
    view.rebooked(start=400.0, epoch=1)  # and the restarted Redis's next rebooking is heard
    assert not await view.wait_slot(slot=500.0, epoch=0, due=now + 60.0)
