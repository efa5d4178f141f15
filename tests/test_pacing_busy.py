"""The pacing model in a busy client (issue 20: many accounts on one event loop): attempts go
out more slowly than the rate allows and their answers come back late, so the readings must
compare the server's answers with what was really sent."""

from __future__ import annotations

import statistics

import pytest
from pacing_sim import ACCOUNT_SCENARIOS, simulate

from commbox_async._pacing import Outcome, PacingModel, Reason

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
    start: the median job within 1.25x its ideal and nine in ten within 1.8x (the model of
    before took 1.47x and 2.8x: it read the limit against a pace never reached, and fitted
    a bucket to the burst it was measuring)."""
    ratios = [
        simulate(sc.make(seed), ids=sc.ids, max_rate=sc.max_rate, seed=seed, busy=busy).time
        / sc.ideal
        for busy in BUSY
        for sc in ACCOUNT_SCENARIOS
        for seed in (1, 2)
    ]
    ratios.sort()
    assert statistics.median(ratios) <= 1.25, ratios
    assert ratios[int(0.9 * len(ratios))] <= 1.8, ratios
