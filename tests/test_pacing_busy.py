"""The pacing model in a busy client (issue 20: many accounts on one event loop): attempts go
out more slowly than the rate and their answers come back late, so a drain lasts long enough
to read, and late 429s stretch the pause."""

from __future__ import annotations

import pytest

from commbox_async._pacing import Outcome, PacingModel, Phase, Reason


def _busy_first_drain(model: PacingModel, late: float = 0.1) -> float:
    """A bucket of 20/s with a burst of 5 drained by a client that could only send 40/s (its
    rate is 250/s), answers 100 ms late (429s after the first: ``late``): 5 accepted, then
    every other attempt refused until the first 429's answer starts the pause. Returns the
    pause's end."""
    tickets = [(model.on_send(i * 0.025), i * 0.025) for i in range(13)]
    refused = {5, 7, 9, 11}
    answers = []
    for i, (ticket, sent) in enumerate(tickets):
        delay = late if i in refused and i != min(refused) else 0.1
        answers.append((sent + delay, i in refused, ticket))
    end = 0.0
    for answered, throttled, ticket in sorted(answers, key=lambda a: a[0]):
        if throttled:
            model.on_answer(ticket, answered, Outcome.THROTTLED, pause=1.0, asked=1.0)
            end = max(end, answered + 1.0)
        else:
            model.on_answer(ticket, answered, Outcome.ACCEPTED)
    return end


def test_a_drain_read_from_its_first_to_its_last_429_gives_the_rate() -> None:
    """Between the first and the last 429 of one drain the bucket was empty at both ends: what
    it took between them (3 in 0.15 s) is its rate, 20/s, whatever its burst."""
    model = PacingModel(250.0)
    _busy_first_drain(model)
    tail = model._drain_tail()
    assert tail is not None and tail.reason is Reason.SATURATED
    assert tail.rate == pytest.approx(20.0)


def test_a_quick_drain_is_not_read() -> None:
    """A drain answered at once holds too few answers between its 429s to read a rate."""
    model = PacingModel(250.0)
    tickets = [model.on_send(i * 0.004) for i in range(8)]
    for i, ticket in enumerate(tickets):
        outcome = Outcome.THROTTLED if i >= 5 else Outcome.ACCEPTED
        model.on_answer(ticket, ticket.sent + 0.001, outcome, pause=1.0, asked=1.0)
    assert model._drain_tail() is None


def test_a_search_does_not_climb_while_late_429s_stretch_the_pause() -> None:
    """429s answered after the first (sent before the pause began) extend the pause; the
    search's climbs count from its end, not from the first 429's, so none is taken blind."""
    model = PacingModel(250.0)
    end = _busy_first_drain(model, late=0.5)
    assert model.phase is Phase.SEARCH
    start = model.rate
    assert end > model._search_start  # the late 429s stretched the pause past the search start
    assert model.rate_at(end - 0.01) == start
    assert model.rate_at(end + 0.01) == start  # no climb yet: less than a SEARCH_STEP after it
    assert model.rate_at(end + model.SEARCH_STEP + 0.01) > start
