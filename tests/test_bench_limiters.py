"""The throttle benchmark's server-side limiters and scenarios: the instrument is checked too."""

from __future__ import annotations

import sys
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

# The benchmarks are not part of the package: import them from the project's root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.limited_server import TOKEN, make_app
from benchmarks.limiters import (
    FixedWindow,
    InFlightCap,
    RandomThrottle,
    SlidingWindow,
    TokenBucket,
)
from benchmarks.throttle_scenarios import by_name, scenarios


def accepted(limiter: TokenBucket | FixedWindow | SlidingWindow, now: float, n: int) -> int:
    return sum(limiter.decide(now).accepted for _ in range(n))


def test_token_bucket_starts_full_then_refills_at_its_rate() -> None:
    """A fresh bucket lets its burst through at once, then one token per 1/rate seconds."""
    bucket = TokenBucket([(0.0, 100.0)], 10, "1")
    bucket.start(50.0)
    assert accepted(bucket, 50.0, 20) == 10
    refused = bucket.decide(50.0)
    assert not refused.accepted and refused.retry_after == "1"
    assert accepted(bucket, 50.0501, 20) == 5
    assert accepted(bucket, 60.0, 20) == 10  # capped at the burst after a quiet spell


def test_token_bucket_without_retry_after_sends_no_header() -> None:
    """The no-Retry-After scenario's bucket refuses with no header value."""
    bucket = by_name()["no_retry_after"].limiter(1)
    bucket.start(0.0)
    verdicts = [bucket.decide(0.0) for _ in range(11)]
    assert verdicts[-1].accepted is False and verdicts[-1].retry_after is None


def test_drop_schedule_refills_at_40_per_second_between_8_and_16_s() -> None:
    """The drop's bucket produces 800 tokens by 8 s, 320 more by 16 s, then 100/s again."""
    bucket = by_name()["drop"].limiter(1)
    assert isinstance(bucket, TokenBucket)
    assert bucket.produced(8.0) == pytest.approx(800)
    assert bucket.produced(16.0) == pytest.approx(1120)
    assert bucket.produced(17.0) == pytest.approx(1220)
    bucket.start(0.0)
    accepted(bucket, 10.0, 100)  # drain
    assert accepted(bucket, 10.2001, 100) == 8  # 40/s, under the burst of 10


def test_fixed_window_counts_per_window_and_points_at_the_next() -> None:
    """100 per window; the 101st is told the whole seconds to the next window."""
    window = FixedWindow(100, 2.0)
    window.start(0.0)
    assert accepted(window, 4.5, 150) == 100
    assert window.decide(4.6).retry_after == "2"  # 1.4 s left, rounded up
    assert window.decide(5.5).retry_after == "1"
    assert accepted(window, 6.0, 150) == 100  # a new window


def test_sliding_window_frees_a_slot_when_the_oldest_leaves() -> None:
    """100 in any trailing second: full until the first accepted one is a second old."""
    window = SlidingWindow(100, 1.0)
    window.start(0.0)
    assert accepted(window, 0.5, 100) == 100
    assert accepted(window, 0.9, 10) == 0
    assert accepted(window, 1.2, 10) == 0  # still inside (0.2, 1.2]
    assert accepted(window, 1.5, 150) == 100


def test_in_flight_cap_refuses_with_retry_after_zero_until_a_release() -> None:
    """At most 6 at once; beyond that 429 with Retry-After 0; a release makes room for one."""
    cap = InFlightCap(6, 0.040)
    cap.start(0.0)
    assert all(cap.decide(0.0).accepted for _ in range(6))
    refused = cap.decide(0.0)
    assert not refused.accepted and refused.retry_after == "0"
    cap.release()
    assert cap.decide(0.0).accepted and not cap.decide(0.0).accepted


def test_random_throttle_repeats_its_sequence_for_every_contender() -> None:
    """The same seed gives the same 429s after every start; about 3% of requests."""
    limiter = RandomThrottle(0.03, 7)
    limiter.start(0.0)
    first = [limiter.decide(0.0).accepted for _ in range(10_000)]
    limiter.start(1.0)
    assert [limiter.decide(1.0).accepted for _ in range(10_000)] == first
    assert 0.02 < first.count(False) / 10_000 < 0.04


def test_ideal_times_follow_the_issue() -> None:
    """ids / sustained rate; the drop's integral; whole windows; the client's ceiling when lower."""
    ideal = {sc.name: sc.ideal() for sc in scenarios()}
    assert ideal["bucket"] == pytest.approx(15.0)
    assert ideal["below"] == pytest.approx(10.0)  # 900 ids at the client's 90/s
    assert ideal["fixed_window"] == pytest.approx(15.0)
    assert ideal["in_flight"] == pytest.approx(1500 / 147)
    assert ideal["drop"] == pytest.approx(16.0 + (1800 - 1120) / 100)
    assert ideal["random"] == pytest.approx(7.5)
    quick = by_name(0.1)["drop"]
    assert quick.ids == 180 and quick.ideal() > 1.6  # the quick drop still happens mid-job


async def test_limited_server_answers_as_its_limiter_decides() -> None:
    """Over loopback, the armed scenario's 429s (with Retry-After) and its log match the limiter."""
    runner = web.AppRunner(make_app({}), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    url = f"http://127.0.0.1:{port}"
    expected = RandomThrottle(0.03, 5)
    expected.start(0.0)
    want = [expected.decide(0.0).accepted for _ in range(60)]
    try:
        async with aiohttp.ClientSession() as session:
            params = {"scenario": "random", "seed": "5"}
            async with session.post(f"{url}/_bench/start", params=params) as armed:
                assert armed.status == 200
            async with session.get(f"{url}/v2/users/identities/1/objects") as anonymous:
                assert anonymous.status == 401
            headers = {"Authorization": f"Bearer {TOKEN}"}
            got, retry_after = [], set()
            for ident in range(1, 61):
                path = f"{url}/v2/users/identities/{ident}/objects"
                async with session.get(path, headers=headers) as answer:
                    page = await answer.json()
                    got.append(answer.status == 200)
                    if answer.status == 200:
                        assert page["data"][0]["user_identity"] == ident
                    else:
                        retry_after.add(answer.headers.get("Retry-After"))
            async with session.get(f"{url}/_bench/log") as log:
                seen = (await log.json())["log"]
    finally:
        await runner.cleanup()
    assert got == want and False in got
    assert retry_after == {"0"}
    assert [status == 200 for _, status, _ in seen] == want
    assert [ident for _, _, ident in seen] == list(range(1, 61))
