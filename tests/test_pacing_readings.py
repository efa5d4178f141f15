"""The pacing model's readings, one by one: pure functions of a log of attempts and given times."""

from __future__ import annotations

import math
from collections import deque

import pytest

from commbox_async._pacing import PacingModel, Reading, Reason, best_estimate, search_factor
from commbox_async._pacing_readings import (
    Outcome,
    Ticket,
    accepted_rate,
    beyond_noise,
    bucket_fit,
    counts_at_this_rate,
    drain_to_drain,
    first_burst,
    is_flood,
    noise_allowance,
    not_cured,
    saturated_rate,
    whole_capacity,
    window_counts,
)

A, T, F, P = Outcome.ACCEPTED, Outcome.THROTTLED, Outcome.FAILED, Outcome.PENDING


def _log(*attempts: tuple[float, Outcome] | tuple[float, Outcome, float]) -> deque[Ticket]:
    """A log of (sent, outcome[, answered]) attempts, oldest first."""
    log: deque[Ticket] = deque()
    for sent, state, *answered in attempts:
        log.append(Ticket(sent, state, answered[0] if answered else sent + 0.001))
    return log


def _steady(
    rate: float, start: float, end: float, state: Outcome = A
) -> list[tuple[float, Outcome]]:
    """Attempts sent every 1/rate in [start, end), all ending in ``state``."""
    return [(start + k / rate, state) for k in range(round((end - start) * rate))]


def test_window_counts_take_the_attempts_sent_in_the_half_open_span() -> None:
    """Only attempts sent in [start, end) count; pending and failed ones are neither."""
    log = _log((0.0, A), (0.5, T), (0.6, P), (0.7, F), (1.0, A), (1.5, T))
    assert window_counts(log, 0.0, 1.0) == (1, 1)
    assert window_counts(log, 0.5, 1.5) == (1, 1)
    assert window_counts(log, 0.0, 2.0) == (2, 2)
    assert window_counts(log, 2.0, 3.0) == (0, 0)


def test_counts_at_this_rate_start_when_the_rate_was_set() -> None:
    """Attempts sent before the rate changed are not this rate's; the one at the 429 is."""
    log = _log(*_steady(100, 0.0, 2.0, A), (2.0, T))
    assert counts_at_this_rate(log, 2.0, 1.0, 0.0) == (100, 1)  # the last second
    assert counts_at_this_rate(log, 2.0, 1.0, 1.9) == (10, 1)  # since the rate was set


def test_accepted_rate_is_per_second_of_the_span_given() -> None:
    """40 accepted in a second, over that second and a 1 s pause: 40/s and 20/s."""
    log = _log(*_steady(40, 0.0, 1.0, A), (1.0, T))
    assert accepted_rate(log, 0.0, 1.0, 1.0) == (40.0, 40)
    assert accepted_rate(log, 0.0, 1.0, 2.0) == (20.0, 40)


def test_drain_to_drain_reads_what_was_taken_between_two_429s() -> None:
    """50 accepted between two 429s 2 s apart: 25/s; 0.2 s apart or less: no reading."""
    log = _log((0.0, T), *_steady(25, 0.01, 2.0, A), (2.0, T))
    assert drain_to_drain(log, 0.0, 2.0) == (25.0, 50, 2.0)
    assert drain_to_drain(log, 1.8, 2.0) is None


def test_first_burst_counts_the_accepted_that_overtook_the_refused_one() -> None:
    """Before the refused attempt (sent at 0.3): every accepted one; after it, those accepted
    by the time its answer came (now): not a refusal, not one answered later."""
    log = _log(
        (0.0, A, 0.05),
        (0.1, A, 0.5),  # answered after now: still the burst (sent before the refused one)
        (0.2, T, 0.25),
        (0.3, T, 0.35),  # the refused attempt read
        (0.31, A, 0.33),  # overtook it
        (0.32, T, 0.34),
        (0.33, A, 0.6),  # answered after now: a refill, not the burst
    )
    assert first_burst(log, 0.0, 0.3, 0.35, 0.1) == (3, 0.31)
    assert first_burst(log, 0.05, 0.3, 0.35, 0.1) == (2, 0.31)  # from the start only
    assert first_burst(log, 0.0, 0.3, 0.32, 0.1) == (2, 0.3)  # nothing overtook it yet
    # Sent later than ``late`` after the refused one: refill, whenever its answer came (a
    # 429 answered 30 s late counted 44 refills as the burst).
    assert first_burst(log, 0.0, 0.3, 0.35, 0.005) == (2, 0.3)


def test_saturated_rate_is_the_throughput_of_answers_in_the_last_window() -> None:
    """Answers every 10 ms in the last second read 100/s; fewer than 5, or within 20 ms, none."""
    log = _log(*[(t, A, t + 0.05) for t, _ in _steady(100, 0.0, 2.0)])
    assert saturated_rate(log, 2.05, 1.0) == pytest.approx(100.0)
    assert saturated_rate(_log(*[(0.01 * k, A) for k in range(4)]), 0.1, 1.0) is None
    assert saturated_rate(_log(*[(0.001 * k, A) for k in range(10)]), 0.1, 1.0) is None
    # Over a span shorter than asked: none (a burst answered at once).
    assert saturated_rate(log, 2.05, 1.0, min_span=2.0) is None


def test_saturated_rate_ignores_refused_and_old_attempts() -> None:
    """429s add nothing to the throughput; answers older than the window are not read."""
    attempts = [(t, A if k % 2 else T, t + 0.05) for k, (t, _) in enumerate(_steady(100, 0, 3))]
    assert saturated_rate(_log(*attempts), 3.05, 1.0) == pytest.approx(50.0, rel=0.02)


def _bucket_run(rate: float, burst: float, pace: float, start: float) -> tuple[list[float], float]:
    """The accepted send times of a client at ``pace`` against a token bucket (full at
    ``start``) and the send time of its first 429."""
    tokens, last, sent, t = burst, start, [], start
    while True:
        tokens = min(burst, tokens + rate * (t - last))
        last = t
        if tokens < 1.0:
            return sent, t
        tokens -= 1.0
        sent.append(t)
        t += 1.0 / pace


def _cold_start_fit(
    rate: float, burst: float, pace: float, pause: float, steady: bool = True
) -> float | None:
    """The fit of a bucket drained from full at 1000/s (the burst seen at the first 429), then
    refilled over ``pause`` and drained again at ``pace``."""
    first, first_drain = _bucket_run(rate, burst, 1000.0, start=0.0)
    sent, drained = _bucket_run(rate, burst, pace, start=first_drain + pause)
    return bucket_fit(
        sent,
        origin=first_drain,
        drained=drained,
        burst=len(first),
        first_span=first_drain,
        first_pace=1000.0,
        full=False,
        lo=0.5,
        hi=pace,
        steady=steady,
    )


@pytest.mark.parametrize(("pace", "within"), [(115.0, 0.01), (160.0, 0.06)])
def test_bucket_fit_finds_the_refill_rate_of_a_bucket_that_drained(
    pace: float, within: float
) -> None:
    """A bucket of 10 at 100/s drained from full at 1000/s (the burst seen), then refilled over
    a 1 s pause and drained again: the fit from the first 429 reads 100/s within 1% when the
    second drain comes slowly (at 115/s, a cold start's search), 6% when it comes fast (160/s:
    a token more or less is then a larger share of what was taken)."""
    assert _cold_start_fit(100.0, 10.0, pace, pause=1.0) == pytest.approx(100.0, rel=within)


@pytest.mark.parametrize(
    ("taken", "least", "whole"),
    [
        (2.7, 0.1, 3.0),  # burst 3 at 100/s from 1000/s: 0.3 of a token left at the 429
        (1.92, 0.04, 2.0),  # burst 2 at 40/s
        (9.41, 0.5, 10.0),
        (2.95, 0.1, None),  # [3.05, 3.95) holds no whole number
        (9.0, 0.1, None),  # [9.1, 10.0): open at the top
    ],
)
def test_whole_capacity_is_the_whole_number_its_first_burst_allows(
    taken: float, least: float, whole: float | None
) -> None:
    """At the first 429 the bucket held between ``least`` and 1 token, which leaves its
    capacity in [taken + least, taken + 1): the whole number in it (servers count bursts in
    requests), if there is one."""
    assert whole_capacity(taken, least) == whole


@pytest.mark.parametrize(
    ("rate", "burst", "pace", "within"), [(100.0, 3.0, 103.0, 0.002), (40.0, 2.0, 51.3, 0.005)]
)
def test_bucket_fit_of_a_small_burst_reads_its_refill_rate(
    rate: float, burst: float, pace: float, within: float
) -> None:
    """A burst of 3 (or 2) from 1000/s, then a 3 s pause and a drain at ``pace``: the capacity
    is read whole, so the refill rate comes out within 0.2% (0.5% from the faster drain; the
    middle of the capacity's interval reads 100/s as 99.6/s, and 40/s as 34.8/s)."""
    assert _cold_start_fit(rate, burst, pace, pause=3.0) == pytest.approx(rate, rel=within)


def test_bucket_fit_takes_the_last_token_as_half_held_at_the_pace_that_drained() -> None:
    """At the fitted rate r, replaying the drain leaves (1 + r/p) / 2 of a token at the 429,
    p the pace that drained (150/s here), not the whole token that the search's shrinking
    upper bound put there (which read fast drains high)."""
    sent, drained = _bucket_run(100.0, 10.0, 150.0, start=1.0)
    fit = bucket_fit(
        sent,
        origin=0.0,
        drained=drained,
        burst=10,
        first_span=0.0,
        first_pace=1000.0,
        full=False,
        lo=0.5,
        hi=150.0,
        steady=False,  # the capacity the middle of its interval: 10.5 and a little
    )
    assert fit is not None
    cap = 10.0 + (1.0 + fit / 1000.0) / 2.0
    tokens, last = 0.0, 0.0
    for when in sent:
        tokens = min(cap, tokens + fit * (when - last)) - 1.0
        last = when
    left = min(cap, tokens + fit * (drained - last))
    assert left == pytest.approx((1.0 + fit / 150.0) / 2.0, abs=1e-6)


def test_a_first_burst_out_of_order_keeps_the_middle_of_its_capacity() -> None:
    """Not ``steady`` (answers overtook the refused attempt, or a busy client sent it slowly):
    the capacity stays the middle of its interval, 3.25 here, and the fit reads the drain
    with it, lower than with the whole 3."""
    whole = _cold_start_fit(100.0, 3.0, 103.0, pause=3.0, steady=True)
    middle = _cold_start_fit(100.0, 3.0, 103.0, pause=3.0, steady=False)
    assert whole == pytest.approx(100.0, rel=0.002)
    assert middle is not None and middle < 0.997 * 100.0


def test_bucket_fit_of_a_known_capacity_is_close() -> None:
    """With the capacity exactly known (no first span), a drain at 120/s reads 100/s within 2%."""
    sent, drained = _bucket_run(100.0, 10.0, 120.0, start=1.0)
    fit = bucket_fit(
        sent,
        origin=0.0,
        drained=drained,
        burst=10,
        first_span=0.0,
        first_pace=1000.0,
        full=False,
        lo=0.5,
        hi=120,
    )
    assert fit == pytest.approx(100.0, rel=0.02)


def test_bucket_fit_says_nothing_when_no_rate_explains_the_drain() -> None:
    """Five sends from a full bucket of 50 never empty it, at any rate: no fit."""
    sent = [0.1 * k for k in range(5)]
    assert (
        bucket_fit(
            sent,
            origin=0.0,
            drained=0.5,
            burst=50,
            first_span=1,
            first_pace=400.0,
            full=True,
            lo=0.5,
            hi=400,
        )
        is None
    )


def test_a_flood_is_half_of_ten_attempts_or_more() -> None:
    """5 of 10 refused is a flood at a share of 0.5; 5 of 9, or 4 of 10, is not."""
    assert is_flood(5, 5, 0.5)
    assert not is_flood(4, 5, 0.5)
    assert not is_flood(6, 4, 0.5)


def test_noise_allowance_adds_two_standard_deviations() -> None:
    """3% of 100 answered: 3 expected, plus 2 x sqrt(3)."""
    assert noise_allowance(100, 0.03) == pytest.approx(3.0 + 2.0 * math.sqrt(3.0))
    assert noise_allowance(0, 0.03) == 0.0


def test_beyond_noise_needs_more_than_strays_and_more_than_the_share() -> None:
    """Three 429s in 100 are beyond 2% and two strays; two are strays; three in 200 are 1.5%."""
    assert beyond_noise(3, 100, 0.02, 2)
    assert not beyond_noise(2, 10, 0.02, 2)
    assert not beyond_noise(3, 200, 0.02, 2)


def test_not_cured_means_the_share_fell_less_than_30_percent_and_is_noise_sized() -> None:
    """5% to 4% is not cured; 5% to 3% is; 20% to 18% is a real limit still overrun."""
    assert not_cured(0.05, 0.04, 0.10)
    assert not not_cured(0.05, 0.03, 0.10)
    assert not not_cured(0.20, 0.18, 0.10)


def test_best_estimate_is_the_highest_plausible_one_above_the_floor() -> None:
    """Estimates count between 1.05 x the floor and 0.98 x the pace; the highest wins."""
    readings = [
        Reading(50.0, Reason.DRAIN_TO_DRAIN, "floor"),
        Reading(51.0, Reason.SATURATED, "too close to the floor"),
        Reading(80.0, Reason.RECENT, "recent"),
        Reading(90.0, Reason.BUCKET_FIT, "fit"),
        Reading(99.0, Reason.SATURATED, "at the pace"),
    ]
    floor, best = best_estimate(readings, 100.0)
    assert floor is readings[0] and best is readings[3]
    assert best_estimate(readings[:2], 100.0) == (readings[0], None)


def test_a_step_down_is_only_a_fallback() -> None:
    """A step down wins alone, and gives way to any other plausible estimate, even lower."""
    step = Reading(92.8, Reason.STEP_DOWN, "ran a while")
    fit = Reading(60.0, Reason.BUCKET_FIT, "fit")
    assert best_estimate([step], 100.0) == (None, step)
    assert best_estimate([step, fit], 100.0) == (None, fit)


def test_search_climbs_cautiously_then_doubles() -> None:
    """Climbs of 5%, 10%, 20%, 40%, 80%, then x2 each; a stride of 1.5 makes each at least that."""
    climbs = [search_factor(n, 1.0, 0.05) for n in range(7)]
    want = [1.0, 1.05, 1.05 * 1.1, 1.05 * 1.1 * 1.2, 1.05 * 1.1 * 1.2 * 1.4]
    assert climbs[:5] == pytest.approx(want)
    assert climbs[6] == pytest.approx(want[4] * 1.8 * 2.0)
    assert search_factor(2, 1.5, 0.05) == pytest.approx(1.5 * 1.5)


def test_a_share_slowing_did_not_cure_is_tolerated_even_with_a_pause() -> None:
    """Once a share of 429s was shown not to fall when slowing down, a 429 with a real pause
    at no more than 1.5 times that share keeps the rate."""
    model = PacingModel(100.0)
    model._tolerated_share = 0.05
    tickets = [model.on_send(0.01 * k) for k in range(100)]
    for k, ticket in enumerate(tickets[:-1]):
        model.on_answer(ticket, ticket.sent + 0.001, T if k % 20 == 0 else A, pause=0.0)
    model._last_decision = -math.inf  # the free 429s above were tolerated as noise: start afresh
    model.on_answer(tickets[-1], 1.0, T, pause=1.0, asked=1.0)
    assert model.rate == 100.0
    assert model.last_change.reason is Reason.TOLERATED
    assert "did not lower it" in model.last_change.evidence


def test_a_lower_bound_says_nothing_against_a_higher_step_down() -> None:
    """A bucket fit of a capacity's upper bound reads the lowest rate that explains the drain:
    a step down that reads higher wins over it (a co-tenant's bucket after a busy start was
    held at 60/s for a limit of 70/s). A fit that is not a bound still knows better."""
    floor = Reading(10.0, Reason.DRAIN_TO_DRAIN, "")
    step_down = Reading(70.0, Reason.STEP_DOWN, "")
    bound = Reading(60.0, Reason.BUCKET_FIT, "", at_least=True)
    assert best_estimate([floor, step_down, bound], 80.0) == (floor, step_down)
    fit = Reading(60.0, Reason.BUCKET_FIT, "")
    assert best_estimate([floor, step_down, fit], 80.0) == (floor, fit)
