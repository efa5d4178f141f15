"""The pacing model in a busy client (issue 20: many accounts on one event loop): attempts go
out more slowly than the rate allows and their answers come back late, so the readings must
compare the server's answers with what was really sent."""

from __future__ import annotations

import statistics

import pytest
from pacing_sim import ACCOUNT_SCENARIOS, simulate

from commbox_async._pacing import Outcome, PacingModel, RateChange, Reason

#: A busy start: for its first 0.5 s the client sends at most 60/s, its requests reach the
#: server 0.12 to 0.4 s late (in order, or, with False, not), then it is quick again.
BUSY = [(0.5, 60.0, 0.4, True), (0.5, 60.0, 0.4, False), (1.0, 40.0, 0.4, True)]


def _busy_first_drain(model: PacingModel) -> None:
    """A bucket with a burst of 5 drained by a client that could only send 40/s (its rate is
    250/s), answered 100 ms late: 5 accepted, then every other attempt refused."""
    tickets = [model.on_send(i * 0.025) for i in range(13)]
    for i, ticket in enumerate(tickets):
        refused = i >= 5 and i % 2 == 1
        outcome = Outcome.THROTTLED if refused else Outcome.ACCEPTED
        model.on_answer(ticket, ticket.sent + 0.1, outcome, pause=1.0, asked=1.0)


def test_the_pace_read_is_the_pace_attempts_went_out_at() -> None:
    """At 250/s, attempts that went out at 40/s: the readings take 40/s as the pace that
    drained the server (the search stops under it), not 250/s."""
    model = PacingModel(250.0)
    _busy_first_drain(model)
    assert model.last_change.reason is Reason.SEARCHING
    # 6 attempts (5 accepted, the 429 read) went out in the 0.125 s before the 429 read.
    assert model._search_to == pytest.approx(model.HOLD * 6 / 0.125)


def test_no_bucket_fit_at_the_429_that_measures_the_burst() -> None:
    """A first drain long enough to fit (a busy client's) is not fitted: its burst is read
    from it, and every refill rate explains a burst read from the same attempts (before, a
    bucket of 11.5/s read as 75/s at its first 429, 0.3 s into a start at 80/s)."""
    models: list[PacingModel] = []

    def factory(rate: float, adaptive: bool) -> PacingModel:
        models.append(PacingModel(rate, adaptive=adaptive))
        return models[-1]

    for sc in ACCOUNT_SCENARIOS:
        for seed in (1, 2):
            busy = (0.3, 80.0, 0.3, False)
            server = sc.make(seed)
            simulate(
                server,
                ids=sc.ids,
                max_rate=sc.max_rate,
                seed=seed,
                busy=busy,
                model_factory=factory,
            )
            first = models[-1].changes[0]
            assert first.reason is not Reason.BUCKET_FIT, (sc.name, seed, str(first))


def test_a_busy_start_costs_each_account_little() -> None:
    """Issue 20's accounts (5 to 25/s, burst 5, 1 s pauses, client at 250/s) after a busy
    start: the median job within 1.25x its ideal and nine in ten within 1.5x (1.19x and
    1.41x; without the upper bound on a slow first burst's capacity, the burst counted again
    and with rates that drained gone back to, 1.25x and 1.59x; a model that read the limit
    against a pace never reached and fitted a bucket to the burst it was measuring took 1.47x
    and 2.8x on wider starts)."""
    ratios = [
        simulate(sc.make(seed), ids=sc.ids, max_rate=sc.max_rate, seed=seed, busy=busy).time
        / sc.ideal
        for busy in BUSY
        for sc in ACCOUNT_SCENARIOS
        for seed in (1, 2)
    ]
    ratios.sort()
    assert statistics.median(ratios) <= 1.25, ratios
    assert ratios[int(0.9 * len(ratios))] <= 1.5, ratios


def _changes(name: str, seed: int, busy: tuple[float, ...] | None) -> list[RateChange]:
    """The rate changes of one account's job in the simulator."""
    sc = next(s for s in ACCOUNT_SCENARIOS if s.name == name)
    models: list[PacingModel] = []

    def factory(rate: float, adaptive: bool) -> PacingModel:
        models.append(PacingModel(rate, adaptive=adaptive))
        return models[-1]

    simulate(
        sc.make(seed), ids=sc.ids, max_rate=sc.max_rate, seed=seed, busy=busy, model_factory=factory
    )
    return list(models[0].changes)


def test_a_first_burst_sent_slowly_still_gives_a_bucket_fit() -> None:
    """A 25/s bucket (burst 5) whose first burst went out at 40/s, 0.3 s late: the refill
    during that burst is guesswork, and the capacity it gave was too small for any rate below
    the pace to explain the next drain. The fit takes the capacity at its upper bound (the
    whole burst) instead. Before, no reading came: the model searched from a floor and
    drained again, every 2.4 s, to the end of the job (1.84x its ideal)."""
    changes = _changes("account_25", 2, (0.5, 40.0, 0.3))
    fits = [c for c in changes if c.reason is Reason.BUCKET_FIT]
    assert fits, [str(c) for c in changes]
    assert "a capacity of at most" in fits[0].evidence
    searches_after = [c for c in changes if c.at > fits[0].at and c.reason is Reason.SEARCHING]
    assert not searches_after, [str(c) for c in changes]


def test_a_rate_that_drained_a_bucket_is_not_gone_back_to() -> None:
    """An 11.5/s bucket: the first fit read 12.9/s (held: the burst hides the excess for
    4 s), the second 11.1/s. The rate that ran quietly for those 4 s drained the bucket in
    the time its burst allows at that excess: it is not one to recover to. Before, the model
    went back to it after every 2 quiet seconds and drained again, twice more (1.19x its
    ideal, against 1.12x)."""
    changes = _changes("account_11.5", 1, None)
    fits = [c for c in changes if c.reason is Reason.BUCKET_FIT]
    assert len(fits) == 2, [str(c) for c in changes]
    drained_at = fits[0].new  # the rate held after the first fit, which drained
    later = [c for c in changes if c.at > fits[1].at]
    assert all(c.new < drained_at for c in later), [str(c) for c in changes]


def test_a_first_burst_is_counted_again_once_its_answers_are_in() -> None:
    """A 429 is answered at once and a page takes longer: the first 429 can be read while
    attempts sent before it are still unanswered. The burst it measured (3 accepted) is
    counted again at the next drain, once they are in (5), so that the bucket fit does not take
    the bucket for smaller than it is (and its refill rate for faster)."""
    model = PacingModel(250.0)
    first = [model.on_send(i * 0.004) for i in range(7)]
    for ticket in first[:3]:
        model.on_answer(ticket, ticket.sent + 0.005, Outcome.ACCEPTED)
    model.on_answer(first[5], 0.025, Outcome.THROTTLED, pause=1.0, asked=1.0)
    assert model._burst == 3.0
    for ticket in first[3:5]:
        model.on_answer(ticket, 0.03, Outcome.ACCEPTED)
    model.on_answer(first[6], 0.03, Outcome.THROTTLED, pause=1.0, asked=1.0)
    # After the pause, 20 accepted at 40/s, then a drain that the bucket fit reads.
    for i in range(20):
        ticket = model.on_send(1.1 + i * 0.025)
        model.on_answer(ticket, ticket.sent + 0.005, Outcome.ACCEPTED)
    drained = model.on_send(1.6)
    model.on_answer(drained, 1.605, Outcome.THROTTLED, pause=1.0, asked=1.0)
    assert model._burst == 5.0
