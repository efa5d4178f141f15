"""The wire of RedisLimiter read in one place: each script's reply and each channel message
parsed by name from what redis-py returns, and the shared rate's clamp written once (in Lua).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pytest

from commbox_async._redis_runner import ScriptRunner
from commbox_async._redis_scripts import (
    ACQUIRE_SCRIPT,
    TICK_SCRIPT,
    AcquireArgs,
    AcquireReply,
    KeySpace,
    PauseMessage,
    RateMessage,
    RateWrite,
    Role,
    ThrottleReply,
    TickArgs,
    TickReply,
    read_message,
)

if TYPE_CHECKING:
    from redis_server import RedisServer

pytest_plugins = ["redis_server"]


def test_acquire_reply_is_read_by_name() -> None:
    """A recorded ACQUIRE reply: times, rate and epoch as numbers, the leader's words as text."""
    raw = [b"10.500000", b"10.250000", b"33.333333", b"0.000000", b"10.530900", b"hold", b"", b"3"]
    reply = AcquireReply.parse(raw)
    assert reply == AcquireReply(10.5, 10.25, 33.333333, 0.0, 10.5309, "hold", "", 3)


def test_throttle_reply_is_read_by_name() -> None:
    """THROTTLE answers the pause's end, then Redis's time."""
    assert ThrottleReply.parse([b"12.000000", b"11.000000"]) == ThrottleReply(12.0, 11.0)


def test_tick_reply_reads_the_role_and_what_is_missing() -> None:
    """No rate stored reads NaN, no leader's heartbeat -inf; the role is named."""
    raw = [b"5.000000", b"2", b"", b"100", b"", b"", b"", []]
    reply = TickReply.parse(raw)
    assert reply.role is Role.NEW_LEADER and reply.rate == 100.0 and reply.events == []
    assert math.isnan(reply.stored_rate) and reply.lead_at == -math.inf
    follower = TickReply.parse([b"5", b"0", b"80.5", b"80.5", b"quiet", b"ran 2 s", b"4", []])
    assert follower.role is Role.FOLLOWER and follower.why == "quiet"
    assert follower.stored_rate == 80.5 and follower.lead_at == 4.0


def test_channel_messages_are_read_in_one_place() -> None:
    """A pause is "<end> <now>", a rate "r <rate> <from> <epoch> <why> <evidence>"; the evidence
    keeps its spaces, missing words read '', and anything else raises ValueError."""
    assert read_message(b"12.500000 12.000000") == PauseMessage(12.5, 12.0)
    rate = read_message(b"r 80.000000 13.100000 4 step-down ran 2.1 s at 88/s")
    assert rate == RateMessage(80.0, 13.1, 4, "step-down", "ran 2.1 s at 88/s")
    assert read_message(b"r 80.000000 0 0") == RateMessage(80.0, 0.0, 0, "", "")
    for bad in (b"12.5", b"r 80", b"r x 0 0", b"1 2 3"):
        with pytest.raises(ValueError):
            read_message(bad)


@pytest.mark.parametrize("stored", [None, "500", "0.5", "20.123456"])
async def test_the_shared_rate_is_clamped_once_and_exactly(
    redis_server: RedisServer, stored: str | None
) -> None:
    """ACQUIRE and TICK clamp a stored rate with the one Lua rule; TICK's value is the exact
    double Python's min(max(...)) gave before the clamp moved to Lua (bounds of no six-decimal
    form included); ACQUIRE's keeps its six decimals."""
    import redis.asyncio as aioredis

    max_rate, min_rate = 100 / 3, 1 / 7
    keys = KeySpace.of("commbox:wire")
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        if stored is not None:
            await client.hset(keys.hash, "rate", stored)
        runner = ScriptRunner(client, 1.0)
        bounds = AcquireArgs(max_rate, min_rate, ttl_ms=60_000, pace=1.03, max_events=100)
        acquire = AcquireReply.parse(
            await runner.run(ACQUIRE_SCRIPT, [keys.hash, keys.outcomes], bounds.encode([]))
        )
        args = TickArgs(2000, 60_000, 100, keys.channel, 0.1, max_rate, min_rate)
        tick_keys = [keys.hash, keys.outcomes, keys.lease]
        tick = TickReply.parse(await runner.run(TICK_SCRIPT, tick_keys, args.encode("", None, [])))
    finally:
        await client.aclose()
    expected = min(max(float(stored), min_rate), max_rate) if stored else max_rate
    assert tick.rate == expected  # exactly, not approximately
    assert acquire.rate == float(f"{expected:.6f}")
    assert tick.role is Role.FOLLOWER  # '' as id: a closing process takes no lease


async def test_a_written_rate_is_published_and_read_back(redis_server: RedisServer) -> None:
    """The leader's TICK writes its rate and publishes a RateMessage that parses to it."""
    import redis.asyncio as aioredis

    keys = KeySpace.of("commbox:publish")
    client = aioredis.Redis.from_url(redis_server.url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    try:
        await pubsub.subscribe(keys.channel)
        runner = ScriptRunner(client, 1.0)
        args = TickArgs(2000, 60_000, 100, keys.channel, 0.1, 50.0, 1.0)
        tick_keys = [keys.hash, keys.outcomes, keys.lease]
        first = TickReply.parse(
            await runner.run(TICK_SCRIPT, tick_keys, args.encode("me", None, []))
        )
        write = RateWrite("40.000000", "step-down", "ran 2 s at 44/s")
        second = TickReply.parse(
            await runner.run(TICK_SCRIPT, tick_keys, args.encode("me", write, ["s 1 1"]))
        )
        message = None
        for _ in range(50):
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if message is not None:
                break
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await client.aclose()
    assert first.role is Role.NEW_LEADER and second.role is Role.LEADER
    assert second.rate == 40.0 and second.why == "step-down" and second.events == [b"s 1 1"]
    assert message is not None
    assert read_message(message["data"]) == RateMessage(
        40.0, 0.0, 0, "step-down", "ran 2 s at 44/s"
    )
