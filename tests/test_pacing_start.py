"""Starting where the last run ended: ``RateLimit(start_rate=...)``, in the simulator.

A rate saved at the end of one run (``client.stats.current_rate``) and passed to the next is a
starting point, not a ceiling: the second run skips the seconds of finding the limit, a limit
that rose is raised toward by the usual quiet-time probes, one that fell is read at the first
429 as usual.
"""

from __future__ import annotations

import math
import statistics

import pytest
from pacing_sim import BY_NAME, TokenBucket, simulate

from commbox_async import InvalidArgumentError, RateLimit
from commbox_async._pacing import PacingModel, Phase, Reason
from commbox_async._throttle import LocalLimiter

SEEDS = range(1, 6)
#: The simulator's token-bucket kinds (a co-tenant and a limit that drops to 40/s and comes back
#: included), and the goal of the second run: 1.15x, and 1.20x for the drop (its ideal time
#: includes the drop; a remembered rate has no cold start's first burst to fit a bucket with,
#: so a 429 below it starts afresh, which costs a pause).
BUCKET_KINDS = {
    "bucket": 1.15,
    "no_retry_after": 1.15,
    "cotenant": 1.15,
    "bucket_burst_50": 1.15,
    "below": 1.15,
    "drop": 1.20,
}


def test_start_rate_is_validated() -> None:
    """start_rate must be a finite number above 0 and at most max_rate; None is the default."""
    assert RateLimit().start_rate is None
    assert RateLimit(max_rate=100.0, start_rate=100.0).start_rate == 100.0
    for bad in (0.0, -1.0, math.nan, math.inf, 100.5, True):
        with pytest.raises(InvalidArgumentError, match="start_rate"):
            RateLimit(max_rate=100.0, start_rate=bad)


def test_a_start_rate_is_held_and_reaches_the_limiter() -> None:
    """The model starts holding start_rate (at least min_rate); None or max_rate starts at the
    maximum as before; the in-process limiter passes it on."""
    model = PacingModel(1000.0, start_rate=97.0)
    assert (model.rate, model.phase, model.last_change.reason) == (97.0, Phase.HOLD, Reason.START)
    assert PacingModel(1000.0, 2.0, start_rate=1.0).rate == 2.0
    for start in (None, 1000.0):
        assert PacingModel(1000.0, start_rate=start).phase is Phase.FULL
    assert PacingModel(1000.0, adaptive=False, start_rate=97.0).rate == 1000.0
    limiter = LocalLimiter(RateLimit(max_rate=1000.0, start_rate=97.0))
    assert limiter.current_rate == 97.0


@pytest.mark.parametrize("name", BUCKET_KINDS)
def test_a_second_run_from_the_first_runs_rate_is_near_the_ideal(name: str) -> None:
    """The rate a first run ended at, given to a second run as start_rate: the second run's
    median is within 1.15x of the ideal time (the first pays for finding the limit)."""
    goal = BUCKET_KINDS[name]
    sc = BY_NAME[name]
    seconds = []
    first: list[PacingModel] = []

    def factory(rate: float, adaptive: bool) -> PacingModel:
        first.append(PacingModel(rate, adaptive=adaptive))
        return first[-1]

    for seed in SEEDS:
        simulate(sc.make(seed), ids=sc.ids, max_rate=sc.max_rate, seed=seed, model_factory=factory)
        again = simulate(
            sc.make(seed), ids=sc.ids, max_rate=sc.max_rate, seed=seed, start_rate=first[-1].rate
        )
        seconds.append(again.time / sc.ideal)
    assert statistics.median(seconds) <= goal, seconds


def test_a_start_rate_below_a_limit_that_rose_is_raised_by_probes() -> None:
    """Remembered at 30/s, the bucket now refills 100/s: quiet-time probes raise the rate (a
    starting point, not a ceiling), with no 429 on the way."""
    model = PacingModel(1000.0, start_rate=30.0)
    result = simulate(
        TokenBucket(100, 10, 1.0), ids=3000, max_rate=1000, model_factory=lambda r, on: model
    )
    assert result.throttled == 0
    assert model.rate > 1.1 * 30.0
    assert all(c.reason is Reason.QUIET for c in model.changes)


def test_a_start_rate_above_a_limit_that_fell_is_lowered_by_the_usual_429() -> None:
    """Remembered at 97/s, the bucket now refills 40/s: a 429 below the remembered rate starts
    afresh (full pace, a first burst, a search), the rate ends under the new limit, and the job
    is within 1.30x of its ideal time."""
    model = PacingModel(1000.0, start_rate=97.0)
    result = simulate(
        TokenBucket(40, 10, 1.0), ids=800, max_rate=1000, model_factory=lambda r, on: model
    )
    assert any(c.reason is Reason.FORGOTTEN for c in model.changes)
    assert 36.0 <= model.rate <= 40.0
    assert result.time <= 1.30 * 800 / 40
