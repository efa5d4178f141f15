"""Kinds of server added for issue 19, in the simulator: a cold start's search, a burst small
against a long pause, and random 429s that ask for a pause among other faults."""

from __future__ import annotations

import itertools
import statistics

import pytest
from pacing_sim import (
    ACCOUNT_SCENARIOS,
    BUCKET_GRID,
    BY_NAME,
    RANDOM_MIX,
    SMALL_BURST_SCENARIOS,
    Scenario,
    TokenBucket,
    bucket_job,
    floor_time,
    mix_pairs,
    simulate,
    small_burst_ratios,
)

from commbox_async._pacing import PacingModel, RateChange, Reason

SMALL = {sc.name: sc for sc in SMALL_BURST_SCENARIOS}


@pytest.mark.parametrize("name", ["bucket", "demo", "short_job", "cotenant", "bucket_burst_50"])
def test_a_cold_start_reads_a_bucket_to_a_few_percent(name: str) -> None:
    """The first bucket fit after a cold start (the search from halfway between the floor and
    the pace, climbing slowly at first) is within 3% of the bucket's rate, on every seed."""
    sc = BY_NAME[name]
    models: list[PacingModel] = []

    def factory(rate: float, adaptive: bool) -> PacingModel:
        models.append(PacingModel(rate, adaptive=adaptive))
        return models[-1]

    for seed in range(1, 6):
        server = sc.make(seed)
        assert isinstance(server, TokenBucket)
        simulate(server, ids=sc.ids, max_rate=sc.max_rate, seed=seed, model_factory=factory)
        model = models[-1]
        fit = next(c for c in model.changes if c.reason is Reason.BUCKET_FIT)
        assert fit.new / model.HOLD == pytest.approx(server.rate_at(0.0), rel=0.03), str(fit)


def test_the_floor_of_a_small_burst_long_pause_kind() -> None:
    """The floor is the ideal plus two pauses, less three bursts: 100/s, burst 3, Retry-After
    3 s, 1,500 ids: 14.91 s + 6 s."""
    assert floor_time(1500, 100.0, 3.0, 3.0) == pytest.approx(20.91)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_a_small_burst_with_long_pauses_is_within_5pct_of_its_floor(name: str) -> None:
    """Over 10 seeded jobs, the median time is within 1.05x the floor (the kind's goal: 1.048x,
    1.018x and 1.020x; burst3_ra3 took 1.059x until the bucket fit read small bursts whole,
    docs/pacing.md), the worst within 1.10x, and nothing is lost."""
    ratios = small_burst_ratios(SMALL[name])  # (it raises if an id is lost)
    assert statistics.median(ratios) <= 1.05, ratios
    assert max(ratios) <= 1.10, ratios


def test_random_429s_that_ask_for_a_pause_are_shown_not_cured() -> None:
    """The soak's mix (2% random 429s asking for no pause or for 1 s, 2% 503s, 1% resets, 2%
    slow answers), 3,000 ids at 400/s, 10 seeds: nothing is lost; adapting takes at most 1.10x
    the time of pausing alone, the median of the ten pairs' ratios (measured: 1.064; was 1.23
    before slowing down was put on trial for paused 429s); the median times' ratio is 1.16."""
    ratios, cured = [], 0
    for on, off, model in mix_pairs():
        assert on.done == off.done == RANDOM_MIX.ids
        ratios.append(on.time / off.time)
        cured += any(c.reason is Reason.NOT_CURED for c in model.changes)
    assert statistics.median(ratios) <= 1.10, ratios
    assert cured >= 5


@pytest.mark.parametrize("sc", ACCOUNT_SCENARIOS, ids=lambda sc: sc.name)
def test_each_account_of_many_is_within_its_goal(sc: Scenario) -> None:
    """Issue 20's accounts, one at a time: a bucket of 5 to 25/s with a burst of 5 and 1 s
    pauses, the client at 250/s: within 1.35x its ideal on every seed. Pausing alone gets
    about 6/s from any of them; before the pause-only bar took the readings' estimate into
    account, a search that overshot once (a drain soon after the first pause, read as
    "adapting got 5/s") sent the 8 to 12/s accounts back to pausing alone: 1.6-2.4x."""
    for seed in range(1, 4):
        run = simulate(sc.make(seed), ids=sc.ids, max_rate=sc.max_rate, seed=seed)
        assert run.done == sc.ids
        assert run.time / sc.ideal <= sc.goal, (seed, run.time / sc.ideal)


def _simulated(name: str, seed: int) -> tuple[float, list[RateChange]]:
    """A simulated job of kind ``name``: its time over the ideal, and its model's changes."""
    sc = {s.name: s for s in ACCOUNT_SCENARIOS}.get(name) or BY_NAME[name]
    models: list[PacingModel] = []

    def factory(rate: float, adaptive: bool) -> PacingModel:
        models.append(PacingModel(rate, adaptive=adaptive))
        return models[-1]

    run = simulate(
        sc.make(seed), ids=sc.ids, max_rate=sc.max_rate, seed=seed, model_factory=factory
    )
    return run.time / sc.ideal, list(models[-1].changes)


def _pause_only_changes(name: str, seed: int) -> tuple[float, int]:
    """A simulated job's time over the ideal, and how many times it went back to pausing
    alone."""
    ratio, changes = _simulated(name, seed)
    return ratio, sum(c.reason is Reason.PAUSE_ONLY for c in changes)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_adapting_is_judged_only_after_it_ran_as_long_as_the_pause(seed: int) -> None:
    """A 6/s bucket (burst 5, 1 s pauses): the search after the first pause drains it again
    within 0.4 s, so the stretch between the two 429s is mostly the pause and reads about what
    pausing alone got. That is no verdict on adapting: the job goes on adapting (it went back
    to pausing alone for 30 s, 1.23-1.25x; now at most 1.2x). A window of 5 s, where adapting
    only spreads what comes back whole after each pause, still goes back to pausing alone."""
    ratio, pause_only = _pause_only_changes("account_6", seed)
    assert pause_only == 0 and ratio <= 1.2, (ratio, pause_only)
    assert _pause_only_changes("window_5s", seed)[1] >= 1


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_bucket_fit_on_a_few_tokens_is_probed_sooner(seed: int) -> None:
    """A 10/s bucket (burst 5, 1 s pauses): the search after the first pause drains it within
    0.3 s, so the fit rests on 2-3 tokens refilled and reads 9.2/s (8.9/s held). One token
    more or fewer would move it by a third: the rate rises every QUIET seconds after it, not
    after 6, 18, 42 s, so a fit read low costs seconds, not the job (1.15x before: now 1.12x)."""
    ratio, changes = _simulated("account_10", seed)
    fit = next(c for c in changes if c.reason is Reason.BUCKET_FIT)
    rises = [c for c in changes if c.reason is Reason.QUIET and fit.at < c.at <= fit.at + 8.0]
    assert len(rises) >= 3, [str(c) for c in changes]
    assert ratio <= 1.13


def test_the_drain_that_ends_a_search_is_not_put_on_trial() -> None:
    """A bucket of 300/s, burst 5, Retry-After 5 s: the search from a cold start drains it at
    521/s and the fit reads it. That step down is the limit the search climbed to find, not a
    step to judge by its share of 429s: judged (the shares before and after were 2.0% and
    1.4%, alike on a few 429s), it went back to 521/s, which drains at once, and the job took
    24 times its floor. Now it stays within 1.5x of it (1.26x), on every seed."""
    for seed in range(1, 6):
        model = PacingModel(1000.0)
        result = simulate(
            TokenBucket(300.0, 5.0, 5.0),
            ids=4500,
            max_rate=1000,
            seed=seed,
            model_factory=lambda rate, on, model=model: model,
        )
        assert not any(c.reason is Reason.NOT_CURED for c in model.changes), seed
        assert result.time <= 1.5 * floor_time(4500, 300.0, 5.0, 5.0), (seed, result.time)


@pytest.mark.parametrize(("rate", "burst", "retry_after"), [(31, 2, 1.0), (23, 2, 2.0)])
def test_a_bucket_drained_soon_after_a_pause_is_not_read_as_a_window(
    rate: float, burst: float, retry_after: float
) -> None:
    """A search from a cold start above a small bucket drains it a tenth of a second after the
    pause: 4 accepted, twice the first burst. What the server took in the pause's length
    before that 429 (4/s, mostly the pause) is a window's reading; a window gives back about
    its first burst, no more, so this is a bucket, and that reading is not taken: the job took 6.4
    and 8.1 times its floor, held near 2-4/s, and now the next drain's fit reads the rate."""
    for seed in range(1, 4):
        assert bucket_job(rate, burst, retry_after, seed) <= 1.5


def test_a_pause_length_reading_on_two_tokens_is_probed_soon() -> None:
    """A bucket of 17/s, burst 2, drained after 2 accepted from the pause: just what a window
    of 2 a second gives. Held at 1.9/s on that reading, it is probed every QUIET seconds, as an
    unsure fit is (it was after 6, 18, 42... s: 6.9 times the floor; now 1.9x)."""
    model = PacingModel(1000.0)
    simulate(TokenBucket(17.0, 2.0, 1.0), ids=255, max_rate=1000, model_factory=lambda r, on: model)
    recent = next(c for c in model.changes if c.reason is Reason.RECENT)
    rises = [c.at for c in model.changes if c.reason is Reason.QUIET and c.at > recent.at][:3]
    assert len(rises) == 3
    gaps = [b - a for a, b in itertools.pairwise([recent.at, *rises])]
    assert all(gap < model.PROBE_INTERVAL for gap in gaps), gaps


def test_buckets_of_every_size_stay_near_their_floor() -> None:
    """220 buckets (11 rates of 17-300/s x bursts of 2-20 x Retry-After of 1-5 s), each a
    15-second job from a cold start at 1,000/s: the median within 1.10x its floor, none beyond
    2.5x (measured: 1.047 and 1.90; before the two fixes above and the search's own trial,
    1.047 and 24x, eleven beyond 4x)."""
    ratios = [bucket_job(*bucket) for bucket in BUCKET_GRID]
    assert statistics.median(ratios) <= 1.10
    assert max(ratios) <= 2.5, max(ratios)
