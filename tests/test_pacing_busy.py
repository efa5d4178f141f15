"""The pacing model in a busy client (issue 20: many accounts on one event loop): attempts go
out more slowly than the rate allows and their answers come back late, so the readings must
compare the server's answers with what was really sent."""

from __future__ import annotations

import statistics

import pytest
from pacing_sim import ACCOUNT_SCENARIOS, SCENARIOS, simulate

from commbox_async._pacing import Outcome, PacingModel, RateChange, Reading, Reason, Ticket

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


#: The first drain of a 5/s bucket as one of 20 accounts starting at once on one event loop
#: saw it (bench_accounts, in the order of the loop's events): sends, then (answered, sent,
#: outcome). Requests on connections still opening reached the server out of order: the
#: attempts sent at 0.0295 and 0.0348 were accepted, those sent at 0.0160 and 0.0199 refused.
COLD_SENDS = [0.0, 0.0, 0.0096, 0.0160, 0.0199, 0.0295, 0.0348, 0.0362, 0.0407, 0.0418, 0.0465]
COLD_ANSWERS = [
    (0.0348, 0.0, Outcome.ACCEPTED),
    (0.0349, 0.0, Outcome.ACCEPTED),
    (0.0465, 0.0096, Outcome.ACCEPTED),
    (0.0539, 0.0348, Outcome.ACCEPTED),
    (0.0574, 0.0295, Outcome.ACCEPTED),
    (0.0584, 0.0160, Outcome.THROTTLED),
    (0.0590, 0.0199, Outcome.THROTTLED),
]


def _cold_first_drain() -> PacingModel:
    model = PacingModel(250.0)
    events = sorted(
        [(t, 1, t, None) for t in COLD_SENDS] + [(a, 2, s, o) for a, s, o in COLD_ANSWERS]
    )
    tickets: dict[float, list[Ticket]] = {}
    for at, _order, sent, outcome in events:  # _order: a send before an answer at one instant
        if outcome is None:
            tickets.setdefault(sent, []).append(model.on_send(at))
        else:
            model.on_answer(tickets[sent].pop(0), at, outcome, pause=1.0, asked=1.0)
    return model


def test_a_first_burst_counts_what_reached_the_server_out_of_order() -> None:
    """The bucket's burst of 5 is read as 5: the 3 accepted before the refused attempt and the
    2 sent after it that were accepted before its answer came back. Counted as 3, the
    capacity was too small, and the bucket fit at the next drain read the refill rate 10-20%
    high (27.8/s for 22.9/s), which cost a third pause."""
    model = _cold_first_drain()
    assert "5 accepted before the first 429" in model.changes[0].evidence
    assert model._burst == 5
    assert model._first_span == pytest.approx(0.0348)  # to the last of them sent


def test_only_a_first_burst_answered_in_order_is_steady() -> None:
    """The bucket fit takes a whole number of tokens for the capacity only from a first burst
    that reached the server in order (``steady``): overtaken, as on a busy event loop, its
    count leaves an unsure interval, and the fit keeps the middle of it."""
    assert not _cold_first_drain()._first_in_order  # two attempts overtook the refused one
    model = PacingModel(250.0)
    _busy_first_drain(model)  # slow, but every later answer came after the refused one's
    assert model._first_in_order


def test_a_first_burst_answered_at_once_is_no_saturated_reading() -> None:
    """The first drain of a 5/s bucket as 20 accounts starting at once on one event loop saw
    it (bench_accounts, in order of the loop's events): five accepted answers within 23 ms,
    then two 429s asking 1 s. Their throughput, 177/s, is how fast the server answered the
    burst; held at 172/s, the account drained again 1.1 s later and searched up from the
    floor between the two drains (19-25/s accounts at 1.4-1.8x their ideal). The cold start
    searches from halfway between the burst's floor and the pace instead."""
    model = _cold_first_drain()
    first = model.changes[0]
    assert first.reason is Reason.SEARCHING, str(first)
    assert first.new < 40.0  # halfway between the burst's floor (about 5/s) and 250/s


def test_a_first_burst_answered_over_a_while_still_reads_saturated() -> None:
    """The other side: a busy start whose answers came back over 0.4 s, out of order (a
    22.5/s bucket, a client that could send 60/s): half its attempts refused, the accepted
    throughput (33/s) is read and held under, as before."""
    changes = _changes("account_22.5", 1, (0.5, 60.0, 0.4, False))
    assert changes[0].reason is Reason.SATURATED, [str(c) for c in changes]
    assert 20.0 < changes[0].new < 40.0


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
    start: the median job within 1.25x its ideal and nine in ten within 1.5x (1.2497x and
    1.48x; 1.24x and 1.43x while a slip in the fit took the last token as whole, which read
    these fast drains high, and by luck about right; without the upper bound on a slow first
    burst's capacity and with rates that drained gone back to, 1.25x and 1.59x; a model that
    read the limit against a pace never reached and fitted a bucket to the burst it was
    measuring took 1.47x and 2.8x on wider starts)."""
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
    assert "a capacity of about the whole burst" in fits[0].evidence
    assert fits[0].new >= 0.75 * 25.0  # a reading on the safe side, not a guess far below
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


def test_a_limit_that_fell_after_a_busy_start_is_recovered() -> None:
    """The drop kind (100/s, 40/s from 8 s to 16 s, burst 10) after a busy start: the rate
    that ran quietly before the fall is remembered, and the rate goes back to it once the
    limit is back. A fit of the capacity's upper bound, read over the long stretch of the
    fall (where the capacity cannot be what leaves no rate to fit), read 70/s: the good
    rate was forgotten as "just above" it, and the job took 2.9x its ideal (1.35-1.41x)."""
    sc = next(s for s in SCENARIOS if s.name == "drop")
    for busy in [(0.5, 60.0, 0.4, True), (0.5, 60.0, 0.4, False)]:
        for seed in (1, 2):
            result = simulate(sc.make(seed), ids=sc.ids, max_rate=sc.max_rate, seed=seed, busy=busy)
            assert result.time / sc.ideal <= 1.5, (busy, seed, result.time / sc.ideal)


def test_a_probe_that_drained_is_not_the_rate_that_ran_quietly() -> None:
    """A rate marked as having run quietly, and a probe above it set in the same instant,
    which then drains a bucket: the probe drained, not the good rate, which is kept."""
    model = PacingModel(250.0)
    model._burst = 5.0
    model._good, model._good_at = 20.0, 10.0
    model.rate, model._rate_since = 20.4, 10.0  # the probe, at the instant of the mark
    fit = Reading(17.0, Reason.BUCKET_FIT, "a drain")
    assert not model._hid_the_excess(fit, 20.0, drained=11.0)
    model._good_at = 9.0  # the good rate itself, set before, drained
    model.rate, model._rate_since = 20.0, 8.0
    assert model._hid_the_excess(fit, 20.0, drained=11.0)  # 3 s: what a burst of 5 hides
