"""The pacing model, the pause rules and the retry decision: pure objects, driven in virtual time.

The scenario tests run the real ``PacingModel`` against every kind of server limiter in the
discrete-event simulator (tests/pacing_sim.py): hundreds of simulated jobs in a few seconds, so a
change that breaks one kind of server fails here, not in a benchmark weeks later.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
import random
import re
import statistics
from typing import Any

import pytest
from pacing_sim import (
    BY_NAME,
    SCENARIOS,
    SMALL_BURST_SCENARIOS,
    InFlightCap,
    TokenBucket,
    run,
    simulate,
)
from yarl import URL

from commbox_async import AsyncCommbox, RateLimit, Retries
from commbox_async._errors import RateLimitError, ServerError
from commbox_async._pacing import Outcome, PacingModel, PausePolicy, Phase, Reason, Ticket
from commbox_async._retry import CallState, RetryBudget, decide_retry
from commbox_async._throttle import LocalLimiter
from commbox_async.testing import FakeCommbox, Throttling, VirtualClock

SEEDS = range(1, 11)
FAST = Retries(base_delay=0.0, max_delay=0.0, default_retry_after=0.0)


# --- every limiter kind, in simulation -------------------------------------------------------


@pytest.mark.parametrize("name", [s.name for s in SCENARIOS])
def test_each_limiter_kind_meets_its_goal(name: str) -> None:
    """Over 10 seeded jobs: median time within the goal, worst within goal + 0.10, 429s capped."""
    sc = BY_NAME[name]
    runs = [run(name, seed=seed) for seed in SEEDS]
    ratios = [r[0] for r in runs]
    assert statistics.median(ratios) <= sc.goal, ratios
    assert max(ratios) <= sc.goal + 0.10, ratios
    assert all(r[2].done == sc.ids for r in runs)  # nothing lost
    assert statistics.median(r[1] for r in runs) <= max(sc.goal_429, 0.0) or sc.goal_429 == 0


@pytest.mark.parametrize("name", [s.name for s in SCENARIOS])
def test_adaptation_does_no_harm(name: str) -> None:
    """On every kind, the adaptive median is at most 1.10x the median with adaptation off."""
    on = statistics.median(run(name, seed=seed)[0] for seed in SEEDS)
    off = statistics.median(run(name, adaptive=False, seed=seed)[0] for seed in SEEDS)
    assert on <= 1.10 * off, (on, off)


def test_below_the_limit_no_429_at_all() -> None:
    """A client configured below the server's limit never sees a 429 (no slow start either)."""
    for seed in SEEDS:
        ratio, share, _ = run("below", seed=seed)
        assert share == 0.0 and ratio <= 1.02


def test_the_rate_never_exceeds_the_configured_maximum() -> None:
    """Whatever the server does, the model's rate stays within [min_rate, max_rate]."""
    for sc in SCENARIOS:
        result = run(sc.name, seed=3)[2]
        assert all(0.5 <= rate <= sc.max_rate for _, rate in result.rates)


def test_starts_at_the_configured_rate() -> None:
    """No slow start: the first rate used is the configured maximum."""
    result = run("bucket", seed=1)[2]
    assert result.rates[0] == (0.0, 1000.0)


def test_a_limit_that_drops_and_recovers_is_followed_both_ways() -> None:
    """From 100/s to 40/s and back: the rate goes under 45 during the drop, back over 85 after."""
    model = PacingModel(1000.0)
    server = TokenBucket(100, 10, 1.0, schedule=[(0.0, 100.0), (8.0, 40.0), (16.0, 100.0)])
    result = simulate(server, ids=2400, max_rate=1000, model_factory=lambda r, on: model)

    def rate_at(when: float) -> float:
        return [rate for t, rate in result.rates if t <= when][-1]

    assert rate_at(12.0) < 45 and max(rate_at(t / 10) for t in range(110, 160)) < 70
    assert rate_at(22.0) > 85


def test_random_429s_are_tolerated_not_followed() -> None:
    """3% random 429s with no pause leave the rate near the maximum (median over jobs)."""
    model_rates = []
    for seed in SEEDS:
        model = PacingModel(400.0)
        simulate(
            BY_NAME["random"].make(seed),
            ids=3000,
            max_rate=400,
            seed=seed,
            model_factory=lambda r, on, m=model: m,
        )
        model_rates.append(model.rate)
    assert statistics.median(model_rates) >= 360


def test_in_flight_cap_settles_near_its_rate() -> None:
    """Against 6 in flight x 40 ms (147/s) the rate settles between 110 and 160."""
    model = PacingModel(1000.0)
    simulate(InFlightCap(6, 0.040), ids=1500, max_rate=1000, model_factory=lambda r, on: model)
    assert 110 <= model.rate <= 160
    assert model.phase in (Phase.HOLD, Phase.PROBE)


def test_a_flood_of_free_429s_cuts_to_the_share_accepted_then_bisects() -> None:
    """16 attempts at 1000/s, 6 unanswered and 10 answered 429 with no pause: a tenth of the
    rate, then a search that halves the gap between it and the rate that flooded."""
    model = PacingModel(1000.0)
    tickets = [model.on_send(i * 0.001) for i in range(16)]
    for ticket in tickets[6:]:
        model.on_answer(ticket, ticket.sent + 0.0005, Outcome.THROTTLED)
    assert model.rate == pytest.approx(100.0)
    assert model.phase is Phase.BISECT and model.last_change.reason is Reason.BLIND
    # Nothing refused for a search step: up to the geometric mean of 100 and 1000.
    for ticket in tickets[:6]:
        model.on_answer(ticket, 0.06, Outcome.ACCEPTED)
    for k in range(40):
        model.on_answer(model.on_send(0.06 + k * 0.01), 0.07 + k * 0.01, Outcome.ACCEPTED)
    assert model.rate_at(0.5) == pytest.approx(math.sqrt(100.0 * 1000.0))


def test_a_rise_that_draws_free_429s_is_taken_back() -> None:
    """A rise from a rate that ran quietly, answered by 429s with no pause, goes back to it;
    one stray 429 does not."""
    model = PacingModel(1000.0)
    tickets = [model.on_send(i * 0.001) for i in range(16)]
    for ticket in tickets:
        model.on_answer(ticket, ticket.sent + 0.0005, Outcome.THROTTLED)
    t = 0.02
    while t < 0.5:  # quiet at 100/s until the search rises
        model.on_answer(model.on_send(t), t + 0.001, Outcome.ACCEPTED)
        t += 0.01
    risen = model.rate_at(t)
    assert risen > 300
    stray = model.on_send(t)
    model.on_answer(stray, t + 0.001, Outcome.THROTTLED)
    assert model.rate == risen
    assert model.last_change.reason is Reason.TOLERATED
    for k in range(1, 3):
        model.on_answer(model.on_send(t + k * 0.003), t + k * 0.003 + 0.001, Outcome.THROTTLED)
    assert model.rate == pytest.approx(100.0)
    assert model.last_change.reason is Reason.RISE_FAILED  # type: ignore[comparison-overlap]
    assert "ran quietly" in model.last_change.evidence


def test_in_flight_cap_is_bisected_with_few_429s() -> None:
    """Against 6 in flight x 40 ms, after the first tenth of a second under 1.5% of the
    attempts are refused, and the rate is never above the cap's for more than a moment."""
    model = PacingModel(1000.0)
    result = simulate(
        InFlightCap(6, 0.040), ids=1500, max_rate=1000, model_factory=lambda r, on: model
    )
    refused_later = [t for t in model._log if t.sent > 0.1 and t.state is Outcome.THROTTLED]
    assert len(refused_later) <= 0.015 * result.sent
    assert any(c.reason is Reason.RISE_FAILED for c in model.changes)
    spans = itertools.pairwise([*result.rates, (result.time, 0.0)])
    assert all(end - start < 0.5 for (start, rate), (end, _) in spans if rate > 155)


def test_a_limit_once_read_is_probed_at_doubling_intervals() -> None:
    """After the bucket is read, probes above it come after 6, 18, 42... quiet seconds: in a
    15-second job at most one of them drains the server."""
    model = PacingModel(1000.0)
    simulate(BY_NAME["bucket"].make(1), ids=1500, max_rate=1000, model_factory=lambda r, on: model)
    first_fit = next(c.at for c in model.changes if c.reason is Reason.BUCKET_FIT)
    drains = [c for c in model.changes if c.at > first_fit and c.new < c.old]
    assert len(drains) <= 1
    quiet_rises = [c.at for c in model.changes if c.reason is Reason.QUIET and c.at > first_fit]
    gaps = [b - a for a, b in itertools.pairwise(quiet_rises)]
    assert all(gap >= 11.0 for gap in gaps)


def test_a_probe_beyond_the_reading_waits_as_long_as_the_pause_it_risks() -> None:
    """A bucket that asks for 5 s pauses (burst2_ra5): after the fit, the first probe, +2%
    and still under what the fit read, comes after 6 quiet seconds; the next, +4%, would pass
    the reading, so it waits 6 s for each second of the pause it risks (90 s in all), past
    this 50 s job: one rise, and no drain after the fit."""
    model = PacingModel(1000.0)
    burst2_ra5 = next(sc for sc in SMALL_BURST_SCENARIOS if sc.name == "burst2_ra5")
    simulate(
        burst2_ra5.make(1), ids=burst2_ra5.ids, max_rate=1000, model_factory=lambda r, on: model
    )
    fit = next(c for c in model.changes if c.reason is Reason.BUCKET_FIT)
    after = [c for c in model.changes if c.at > fit.at]
    assert [c.reason for c in after] == [Reason.QUIET]
    assert after[0].at == pytest.approx(fit.at + 5.0 + PacingModel.PROBE_INTERVAL, abs=0.5)
    assert after[0].new < fit.new / PacingModel.HOLD


def test_long_windows_are_paced_by_pausing_alone() -> None:
    """A window of 500 per 5 s comes back whole after each pause: adapting only spreads it
    (and loses at the job's end), so the model ends at full pace, and every seeded job is
    within 5% of pausing alone."""
    sc = BY_NAME["window_5s"]
    models: list[PacingModel] = []

    def factory(rate: float, adaptive: bool) -> PacingModel:
        models.append(PacingModel(rate, adaptive=adaptive))
        return models[-1]

    for seed in SEEDS:
        on = simulate(sc.make(seed), ids=sc.ids, max_rate=1000, seed=seed, model_factory=factory)
        off = run("window_5s", adaptive=False, seed=seed)[2]
        assert models[-1].rate == 1000.0
        assert on.time <= 1.05 * off.time, (seed, on.time, off.time)


async def test_waiting_attempts_take_a_cut_rate_at_once() -> None:
    """Attempts already waiting in the limiter when the rate is cut go out at the new rate,
    not at the old one (every attempt is sent through a limiter at the model's rate)."""
    limiter = LocalLimiter(RateLimit(max_rate=1000.0))
    first = [await limiter.acquire() for _ in range(12)]
    paced_at: list[tuple[float, float]] = []  # (the limiter's rate, the model's) at each send
    on_send = limiter.model.on_send

    def record(now: float) -> Ticket:
        paced_at.append((limiter._limiter_rate, limiter.model.rate))
        return on_send(now)

    limiter.model.on_send = record  # type: ignore[method-assign]
    waiting = [asyncio.create_task(limiter.acquire()) for _ in range(20)]
    await asyncio.sleep(0)  # they now wait in the 1000/s limiter (a slot free may go at once)
    for ticket in first:
        limiter.report(ticket, Outcome.THROTTLED, 0.0)
    assert limiter.current_rate < 1000
    await asyncio.gather(*waiting)
    assert len(paced_at) == 20
    assert sum(1 for pair in paced_at if pair[1] < 1000) >= 18  # most went out after the cut
    assert all(limiter_rate == model_rate for limiter_rate, model_rate in paced_at), paced_at


def test_adaptation_off_keeps_the_rate() -> None:
    """With adaptive=False the model only pauses: the rate is the maximum throughout."""
    result = run("bucket", adaptive=False, seed=1)[2]
    assert {rate for _, rate in result.rates} == {1000.0}


def test_every_change_names_its_reason_and_evidence() -> None:
    """Each rate change carries a Reason enum and a sentence of evidence."""
    model = PacingModel(1000.0)
    simulate(BY_NAME["bucket"].make(1), ids=1500, max_rate=1000, model_factory=lambda r, on: model)
    assert model.changes
    for change in model.changes:
        assert isinstance(change.reason, Reason) and change.evidence
        assert str(change).startswith(f"{change.old:.4g} -> {change.new:.4g}/s")


# --- the pause rules ---------------------------------------------------------------------------


def test_pause_policy_caps_defaults_and_only_adds_jitter() -> None:
    """Retry-After is capped, a missing one takes the default, jitter never shortens a pause."""
    policy = PausePolicy(default_retry_after=1.5, max_retry_after=10.0)
    rng = random.Random(4)
    assert policy.asked(None) == 1.5
    assert policy.asked(500.0) == 10.0
    assert policy.asked(-3.0) == 0.0
    for asked in (0.0, 0.2, 1.0, 30.0):
        pauses = [policy.pause_for(asked, rng) for _ in range(200)]
        want = policy.asked(asked)
        assert all(want <= p <= want + min(0.05, 0.1 * want) for p in pauses)


async def test_one_pause_policy_for_client_and_limiter() -> None:
    """The client builds its limiter's pause rules from its Retries: they cannot disagree."""
    retries = Retries(max_retry_after=7.0, default_retry_after=0.25)
    async with AsyncCommbox(token="t", base_url="http://127.0.0.1:9", retries=retries) as commbox:
        limiter = commbox.limiter
        assert isinstance(limiter, LocalLimiter)
        assert limiter.pause_policy == PausePolicy(default_retry_after=0.25, max_retry_after=7.0)


# --- the retry decision ------------------------------------------------------------------------


def _call(deadline: float = 300.0) -> CallState:
    return CallState(1, URL("http://127.0.0.1/x"), deadline, 0.0)


class _Top(random.Random):
    """Full jitter at its ceiling, so that a back-off is exactly known."""

    def uniform(self, a: float, b: float) -> float:
        return b


def _delays(
    call: CallState,
    errors: list[Exception],
    config: Retries,
    *,
    answered: list[int] | None = None,
    pause: float = 0.0,
) -> list[float | None]:
    """The retry decision's delay for each error in turn (None: the call ends)."""
    budget, rng = RetryBudget(0.5, 10), _Top()
    out = []
    for i, exc in enumerate(errors):
        accepted = answered[i] if answered is not None else 0
        assert isinstance(exc, (RateLimitError, ServerError))
        decision = decide_retry(
            call, exc, config, budget, rng, now=0.0, pause_remaining=pause, accepted_total=accepted
        )
        out.append(decision.delay)
    return out


def _throttled(n: int) -> list[Exception]:
    return [RateLimitError("HTTP 429", status=429) for _ in range(n)]


def test_a_429_never_ends_a_call_while_the_server_answers_others() -> None:
    """100 429s in a row for one call, with other answers in between: still retried."""
    delays = _delays(
        _call(), _throttled(100), Retries(throttled_tries=5), answered=list(range(100))
    )
    assert None not in delays


def test_429s_with_nothing_else_answered_end_the_call() -> None:
    """throttled_tries 429s in a row while nothing else gets through: the call ends."""
    delays = _delays(_call(), _throttled(5), Retries(throttled_tries=5))
    assert delays[-1] is None and None not in delays[:-1]


def test_repeated_429s_without_pause_back_off() -> None:
    """Retry-After: 0 again and again: the call's own back-off ceiling doubles each time."""
    delays = _delays(_call(), _throttled(6), Retries(throttled_tries=30, max_delay=20.0))
    assert delays == [0.05, 0.1, 0.2, 0.4, 0.8, 1.6]


def test_a_pause_past_the_deadline_ends_the_call() -> None:
    """The shared pause counts toward the call's deadline."""
    assert _delays(_call(deadline=5.0), _throttled(1), Retries(), pause=6.0) == [None]


def test_other_failures_stop_after_tries() -> None:
    """A 503 is retried tries-1 times, then ends the call."""
    errors: list[Exception] = [ServerError("HTTP 503", status=503) for _ in range(3)]
    delays = _delays(_call(), errors, Retries(tries=3, base_delay=0.0, max_delay=0.0))
    assert delays == [0.0, 0.0, None]


# --- one throttle verdict, over real sockets ---------------------------------------------------


def _envelope_429() -> bytes:
    return json.dumps(
        {"status": 429, "description": "Too Many Requests", "response_time": "", "data": ""}
    ).encode()


async def test_a_429_in_the_envelope_pauses_like_a_429_status() -> None:
    """A 200 whose body says status 429 starts the limiter's pause and is retried after it."""
    clock = VirtualClock()
    async with FakeCommbox() as server:
        server.script(7, (200, {"Retry-After": "3"}, _envelope_429()))
        limiter = LocalLimiter(
            RateLimit(max_rate=10_000, adaptive=False), clock=clock.time, sleep=clock.sleep
        )
        async with AsyncCommbox(
            token=server.token, base_url=server.url, limiter=limiter, retries=Retries(max_delay=0.0)
        ) as commbox:
            page = await commbox.get_user_objects(7)
            stats = commbox.stats
    assert page.data
    assert stats.throttled == 1 and stats.requests == 2
    # The retry waited out the 3 s pause on the limiter's (virtual) clock.
    assert limiter.waited[1] >= 3.0


async def test_a_large_rate_change_is_logged_once_with_its_evidence(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Dropping from 1000/s logs one INFO line naming the new rate and the evidence."""
    clock = VirtualClock()
    limiter = LocalLimiter(RateLimit(max_rate=1000.0), clock=clock.time, sleep=clock.sleep)
    caplog.set_level(logging.INFO, logger="commbox_async.pacing")
    tickets = []
    for _ in range(10):
        tickets.append(await limiter.acquire())
        clock.now += 0.001
    for ticket in tickets[:-1]:
        limiter.report(ticket, Outcome.ACCEPTED)
    limiter.report(tickets[-1], Outcome.THROTTLED, 1.0)
    lines = [r.getMessage() for r in caplog.records if r.name == "commbox_async.pacing"]
    assert len(lines) == 1
    assert lines[0].startswith("rate 1000 -> ") and "accepted" in lines[0]
    assert limiter.current_rate < 100
    assert limiter.last_change.reason is Reason.SEARCHING


async def test_stats_say_why_the_rate_last_changed() -> None:
    """After a 429 from a throttling server, stats.rate_change names the reason and evidence."""
    async with FakeCommbox(throttling=Throttling(rate=50, burst=2, retry_after="0")) as server:
        async with AsyncCommbox(
            token=server.token, base_url=server.url, rate_limit=5000, retries=FAST
        ) as commbox:
            results = [r async for r in commbox.fetch_many(range(1, 121))]
            stats = commbox.stats
    assert all(r.ok for r in results)
    assert stats.current_rate < 5000
    # The last word on the rate, with its reason in brackets and the evidence after the colon.
    assert re.fullmatch(r"[0-9.]+ -> [0-9.]+/s \([a-z-]+\): .+", stats.rate_change)
    assert stats.current_rate < 100


async def test_attempts_waiting_at_a_slow_rate_take_a_rise_at_once() -> None:
    """Attempts queued in a slow limiter move to the new one when the rate rises: the old
    limiter grants at most the one slot that notices the rise, not one per waiting attempt."""
    limiter = LocalLimiter(RateLimit(max_rate=1000.0, adaptive=False))
    limiter.model.rate = 2.0  # as after a cut (adaptation off: the model makes no change)
    granted_by: list[float] = []
    make = limiter._make_limiter

    def counting(rate: float) -> Any:
        inner = make(rate)
        acquire = inner.acquire

        async def counted(amount: float = 1) -> None:
            await acquire(amount)
            granted_by.append(rate)

        inner.acquire = counted  # type: ignore[method-assign]
        return inner

    limiter._make_limiter = counting  # type: ignore[method-assign]
    await limiter.acquire()  # the slow limiter exists now, its one slot taken
    waiting = [asyncio.create_task(limiter.acquire()) for _ in range(10)]
    await asyncio.sleep(0)
    limiter.model.rate = 500.0  # the model's rate rose (a quiet probe, say)
    await asyncio.gather(*waiting)
    slow_grants = [rate for rate in granted_by if rate < 100]
    assert len(slow_grants) <= 2, granted_by  # the first slot, and the one that saw the rise
