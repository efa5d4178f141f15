"""The pacing model: how fast to send, learned from what the server accepted. No I/O, no clock.

Every limiter a server can run has a long-run rate R that it sustains; they differ in what they
allow in the short run and in what a 429 says (a token bucket's burst, a window's edge, a cap on
requests in flight, a limit that changes, 429s that have nothing to do with rate). The model does
not ask which kind it faces. What it believes:

- **A 429 that asks for no pause costs only itself** ("free": ``Retry-After: 0``, a cap on
  requests in flight). A low share of them is noise, tolerated; overshooting is cheap, so such
  a limit is found by bisection. A 429 with a real pause (a tenth of a second or more) stops the
  whole client, so such a limit is read and held under.
- **What the server sustains can be read from the log of attempts** (``_pacing_readings``): the
  accepted throughput of an overloaded server (*saturated*; at the first 429 from full pace,
  one with a real pause, only over a tenth of that pause or more); what it took in the
  pause-length before the 429, about a window's limit, unless more came back after the pause
  than about the first burst (*recent*); the refill rate of a token bucket that empties exactly at
  the 429 (*bucket fit*); a little below a pace that ran a while (*step down*); and, as a
  floor, what it took from one 429 to the next (*drain to drain*). An estimate is plausible
  between the floor and the pace that drained the server; the rate is ``HOLD`` of the
  highest. With only a floor, the rate searches up from it.
- **Slowing down must cure the 429s.** A step down for free 429s is on trial: if the share of
  429s does not fall, they were noise; the rate goes back and that share is tolerated.
- **Pausing alone at full pace is the bar.** When adapting gets no more than
  1.1 times what pausing alone got, the model goes back to full pace.
- **A limit can move up.** After ``QUIET`` seconds without a 429 the rate rises: quickly back
  toward a rate that ran quietly before, slowly beyond it (each probe that drains the server
  costs a pause).

It starts at the configured maximum (no slow start), or holding a ``start_rate`` remembered
from an earlier run (a starting point, not a ceiling: rows 22-24 raise it, a 429 above it is
read as usual, one below it starts afresh, row 12); it never exceeds the maximum and never
goes below ``min_rate``. Every phase and every move between them, at a 429 (``on_answer``:
the rules in order, the first that applies decides; a 429 sent before the last decision's
pause ended belongs to a drain already read) and as time passes (``rate_at``); "=" is no
change:

  #  in        at a 429 ...                                          to      reason: new rate
  1  any       free, within a WINDOW of a rise from a rate that ran  BISECT* rise-failed: that
               quietly; 429s beyond RISE_STRAYS and noise                    quiet rate
  2  any       the same, a stray 429 or two                          =       tolerated: =
  3  any       free, FLOOD_SHARE of 10+ attempts at this rate        HOLD    saturated: HOLD x
               refused, enough answers to read a throughput, HOLD            accepted/s
               x which is under the rate (else not read: sent faster)
  4  any       the same, too few answers                             BISECT  blind: x the share
                                                                             accepted, FLOOD_CUT+
  5  any       within DECISION_GAP of the last decision              =       not read
  6  any       a step down on trial 2 WINDOWs ago: its share of      HOLD    not-cured: the rate
               429s fell by less than 30%, under SATURATED_SHARE             before it (paused:
               (paused 429s: a step down for them, no rise since)            before the first)
  7  any       free, < MIN_EVIDENCE answered in the last WINDOW      =       not read
               or < MIN_SPAN into the job
  8  any       free, a step down on trial                            =       =
  9  any       free, under a ceiling found within GOOD_MEMORY,       HOLD    step-down: x HOLD,
               429s at this rate beyond RISE_STRAYS and noise                on trial
 10  any       free, no more than NOISE_SHARE (or the share          =       tolerated: =
               tolerated) explains, with two standard deviations
 11  any       a share within 1.5x of one that slowing did not cure  =       tolerated: =
 12  any       paused, below a remembered start rate (no first burst FULL    forgotten: max (the
               known: no bucket to fit)                                      next drain is read
                                                                             as a first burst)
               ... then the readings:
 13  FULL      within LOG_SPAN of going back to full pace            FULL    pause-only: =
 14  not FULL  the floor, and the best estimate x HOLD, < 1.1 x       FULL    pause-only: max
               pausing alone's rate, after adapting ran a pause's length
 15  any       a plausible estimate                                  HOLD    its reading: HOLD x
                                                                             the highest
 16  any       a floor only, below 0.98 of the pace                  SEARCH  searching: the floor
                                                                             (cold start: halfway
                                                                             to the pace)
 17  any       nothing to read, free                                 HOLD    blind: x STEP_DOWN,
                                                                             on trial
 18  any       nothing to read, a real pause (the pause paces)       =       tolerated: =
     ... as time passes:
 19  BISECT    every SEARCH_STEP                                     BISECT  searching: geometric
                                                                             mean with the failed
 20  BISECT    that mean within PROBE_FIRST of the rate              HOLD    =
 21  SEARCH    every SEARCH_STEP after the pause                     SEARCH  searching: its start
                                                                             x the climbs so far
     SEARCH    that reaching HOLD x the pace that drained            HOLD    searching: that
 22  HOLD,     QUIET s without a 429, below a rate that ran          PROBE   quiet: toward it,
     PROBE     quietly within GOOD_MEMORY                                    every WINDOW
 23  HOLD,     QUIET s without a 429, beyond any such rate: every    PROBE   quiet: + PROBE_FIRST,
     PROBE     QUIET s (free limit, or a reading on fewer than               doubling; at most
               FIT_TOKENS tokens), else PROBE_INTERVAL x 1, 3, 7...          halfway to a ceiling
               s (6, 18, 42...); a probe above the last reading, x
               the pause it risks in seconds, if over 1 (5 s: 30, 90)
 24  PROBE     row 23 reaching max_rate                              FULL    recovered: max

*HOLD when the failed rate is within ``PROBE_FIRST`` of the quiet one. Row 16 starts no lower
than one attempt per ``SEARCH_STEP``. Row 21's climbs: the first ``PROBE_FIRST``, each
doubling the last (at most x2), and each at least ``SEARCH_RISE`` (so that the drain that ends
a search comes slowly). A *cold start* is the first 429 of a model that started at full pace:
its floor (the first burst over the pause) and the pace can be a hundredfold apart, so the
search starts halfway between them in ratio instead (a slow drain at the end is what lets the
bucket fit read the refill rate to a percent or two; the fit takes the capacity from the first
burst (``first_burst``: with the attempts that overtook the refused one) less the refill
during it, and at each 429 the bucket is taken to hold, on average, what a pace p over a
refill r leaves of the last token, (1 + r/p) / 2; from a first burst sent in order at half the
maximum or more, the capacity is the whole number in the interval its count leaves, when there
is one, as servers count bursts in requests (``whole_capacity``); a first burst sent at under
half the maximum, by a busy client, gives the capacity only as an upper bound, the whole burst,
taken when no rate below 0.98 of the pace fits without it and the burst is a tenth or more of
what was accepted since: the rate it reads is a lower bound, which a step down that reads
higher overrides). A rate that ran quietly and then drained a bucket within twice the time its
burst hides that excess, by the fit, is forgotten (row 22 would go back to it and drain again).
A *ceiling* is a rate whose rise failed (row 1, or the rate a flood cut from, row 4); it is
trusted 1% less each second. The *noise* share is ``NOISE_SHARE``, or the share shown not to
fall when slowing down. 429s tolerated as noise do not break a quiet spell. Row 6 for paused
429s: each step down they cause (but a cold start's, and a search's that ends in a bucket fit:
the limit it climbed to find) goes on trial with the share of 429s at the pace that drained
(over CURE_EVIDENCE attempts at least); the steps that follow with no rise between (a search's
climbs are none) keep the pace before the first, so a trial begun by the 429 that started a
search goes on after it; a share since the step under a tenth of NOISE_SHARE ends the trial (a
real limit, held right); row 11 reads a paused 429's share over LOG_SPAN.

``PacingModel`` is fed by a limiter (in-process or shared) and is driven in the tests by a
discrete-event simulator of every limiter kind (tests/pacing_sim.py). The pause rules (what a
Retry-After means, its cap, the default when absent, the jitter) are ``PausePolicy``: one
object used by every limiter and by the retry decision, so that they can never disagree.
"""

from __future__ import annotations

import enum
import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

from ._pacing_readings import (
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
    window_counts,
)

__all__ = ["Outcome", "PacingModel", "PausePolicy", "Phase", "RateChange", "Reason", "Ticket"]


class Phase(enum.Enum):
    """Where the model stands."""

    FULL = "full"  # at the configured maximum: no limit seen, or it went away
    SEARCH = "search"  # a limit was hit and no reading of it is possible yet: climbing to find it
    BISECT = "bisect"  # 429s with no pause: halving the gap between a quiet rate and a failed one
    HOLD = "hold"  # just under the estimated limit
    PROBE = "probe"  # quiet for a while: rising to see whether the limit went up


class Reason(enum.Enum):
    """Why the rate last changed (or, for ``TOLERATED``, why a 429 did not change it)."""

    START = "start"
    SATURATED = "saturated"  # set from the throughput of an overloaded server
    RECENT = "recent"  # set from what was accepted in the pause's length before the 429
    DRAIN_TO_DRAIN = "drain-to-drain"  # set from what was accepted between two 429s
    BUCKET_FIT = "bucket-fit"  # set from a token-bucket replay of the attempts since a pause
    SEARCHING = "searching"  # climbing from a floor to find the limit
    STEP_DOWN = "step-down"  # a pace that ran a while, then drained: a little below it
    BLIND = "blind"  # no reading possible: a step down, to see whether it helps
    TOLERATED = "tolerated"  # a 429 that slowing down would not cure: rate kept
    NOT_CURED = "not-cured"  # slowing down did not lower the share of 429s: rate restored
    RISE_FAILED = "rise-failed"  # a rise drew 429s with no pause: back to the quiet rate
    QUIET = "quiet"  # no 429 for a while: probing upward
    PAUSE_ONLY = "pause-only"  # pausing alone at full pace did better than adapting
    RECOVERED = "recovered"  # back at the configured maximum
    FORGOTTEN = "forgotten"  # a remembered rate drew a 429: finding the limit afresh


@dataclass(frozen=True)
class RateChange:
    """One change of the rate, with the evidence for it (logged when it is large)."""

    at: float
    old: float
    new: float
    reason: Reason
    evidence: str

    def __str__(self) -> str:
        return f"{self.old:.4g} -> {self.new:.4g}/s ({self.reason.value}): {self.evidence}"


@dataclass(frozen=True)
class PausePolicy:
    """What a 429 makes the whole client wait: the server's Retry-After, capped at
    ``max_retry_after``, ``default_retry_after`` when it gave none, plus a little jitter that
    only ever adds (so that nobody starts before the server said, and many processes paused by
    one 429 do not all start in the same millisecond)."""

    default_retry_after: float = 1.0
    max_retry_after: float = 120.0

    def asked(self, retry_after: float | None) -> float:
        """The wait the server asked for, capped, or the default when it named none."""
        wait = self.default_retry_after if retry_after is None else retry_after
        return min(max(wait, 0.0), self.max_retry_after)

    def pause_for(self, retry_after: float | None, rng: random.Random) -> float:
        """The pause to take: what the server asked for, plus jitter."""
        wait = self.asked(retry_after)
        return wait + rng.uniform(0.0, min(0.05, 0.1 * wait))


class Reading(NamedTuple):
    """One reading of the limit at a 429: the rate, which reading it is, and the evidence."""

    rate: float
    reason: Reason
    evidence: str
    at_least: bool = False  # the rate is at least this (a fit of a capacity's upper bound)
    unsure: bool = False  # a bucket fit, or a pause-length reading, on under FIT_TOKENS


def best_estimate(readings: list[Reading], pace: float) -> tuple[Reading | None, Reading | None]:
    """(the floor, the best estimate) among ``readings`` taken at a 429 at ``pace``.

    Drain-to-drain readings are floors (the server took at least that); the others are
    estimates. An estimate is plausible between the floor and the pace that drained; one no
    higher than the floor says nothing more than the floor does. A step down is only a
    fallback: any other plausible estimate knows better, except a lower bound (``at_least``)
    below it, which says nothing against it.
    """
    floors = [r for r in readings if r.reason is Reason.DRAIN_TO_DRAIN]
    floor = max(floors, key=lambda r: r.rate) if floors else None
    low = floor.rate if floor is not None else 0.0
    estimates = [
        r
        for r in readings
        if r.reason is not Reason.DRAIN_TO_DRAIN and 1.05 * low <= r.rate < 0.98 * pace
    ]
    step_down = max((r.rate for r in estimates if r.reason is Reason.STEP_DOWN), default=0.0)
    estimates = [r for r in estimates if not (r.at_least and r.rate < step_down)]
    if len(estimates) > 1:
        estimates = [r for r in estimates if r.reason is not Reason.STEP_DOWN]
    return floor, (max(estimates, key=lambda r: r.rate) if estimates else None)


def search_factor(steps: int, stride: float, first: float) -> float:
    """How far ``steps`` climbs of a search take the rate above where it started: the first
    climb ``first``, each doubling the last, at most x2 each (quick far below the limit, where a
    bucket's floor is), and each at least ``stride`` (slow enough near the limit for the drain
    that ends the search to come slowly, which is what lets a bucket fit be exact)."""
    return math.prod(max(stride, min(2.0, 1.0 + first * 2.0**k)) for k in range(min(steps, 20)))


@dataclass(frozen=True)
class _At429:
    """What a 429 sent at ``drained`` and answered at ``now`` shows, read once for every rule."""

    drained: float
    now: float
    pause: float  # what the server asked for
    free: bool  # a pause too short to slow down for (see ``_free``)
    start: float  # when the job started
    throttled: int  # among the attempts of the last WINDOW up to this one (at least this one)
    answered: int
    share: float
    gap: float  # seconds since the last decision


def _probes(quiet: float, interval: float) -> int:
    """How many probes ``quiet`` seconds allow when each waits twice the last, the first
    ``interval`` (1, 3, 7... intervals in all)."""
    return int(math.log2(quiet / interval + 1.0))


def _free(pause: float) -> bool:
    """A pause too short to slow down for: it costs only itself. (Under 0.1 s: a server asks
    for none, ``Retry-After: 0``, or for whole seconds; a tenth tells them apart with room
    for a server that asks for a few hundred milliseconds.)"""
    return pause < 0.1


_Rule = Callable[["PacingModel", _At429], "bool | None"]


class PacingModel:
    """The send rate, from the log of attempts and the pauses; a pure object on given times.

    Feed it ``on_send`` (a new attempt), ``on_answer`` (how it ended, and the pause a 429
    started) and read ``rate_at(now)``. See the module docstring for the reasoning.
    """

    # Each changes an outcome in the simulator at half or double its value: the table is in
    # docs/pacing.md, by tests/pacing_sensitivity.py.
    HOLD = 0.97  # fraction of the estimate to hold at: a little room for jitter and alignment
    QUIET = 2.0  # seconds without a 429 before the rate rises
    PROBE_INTERVAL = 6.0  # quiet seconds between rises beyond any rate known to run quietly
    # (for each second of the pause it risks, above the last reading)
    PROBE_FIRST = 0.02  # the first such rise, and the first climb of a search; each doubles;
    # and as close as bisection goes to a failed rate (a probe would cover a smaller gap)
    RISE_STRAYS = 2  # 429s after a rise (beyond noise) that are strays, not the rise's
    FLOOD_CUT = 0.1  # a flood of free 429s cuts the rate to at least this fraction
    SEARCH_STEP = 0.2  # seconds between two climbs while searching
    SEARCH_RISE = 0.15  # each climb of a search at least this much (the first ones: exactly)
    NOISE_SHARE = 0.03  # a share of free 429s that is noise (beyond it, a rise failed)
    STEP_DOWN = 0.9  # after a pace that ran a WINDOW drained the server; or blind, on trial
    SATURATED_SHARE = 0.25  # from this share of 429s on, a real limit: accepted/s is its rate
    WINDOW = 1.0  # seconds of recent attempts read for shares and throughput, and for a rise
    # (rows 1-2; so a rise back toward a rate that ran quietly comes once the last had its WINDOW)
    CURE_EVIDENCE = 50  # answered attempts in a window needed to compare shares of 429s
    MIN_EVIDENCE = 20  # answered attempts needed before the first reading
    MIN_SPAN = 0.1  # seconds of sending too short to show anything: of a job (or since a
    # restart, for a bucket fit) before a reading, or the pace sent at; of a rate with no 429,
    # before a rise from it can be taken back to it
    FIT_TOKENS = 4  # a fit on fewer tokens since the pause is unsure (or a pause-length
    # reading on as few accepted): probe sooner
    DECISION_GAP = 0.25  # seconds between two decisions (429s without pauses come in floods)
    FLOOD_SHARE = 0.5  # a share of 429s this high, with no pause, cuts the rate at once
    LOG_SPAN = 30.0  # seconds of attempts kept, and of pausing alone when that did better
    GOOD_MEMORY = 60.0  # seconds a rate that ran quietly (or a ceiling) is remembered: a limit
    # that dropped for longer than LOG_SPAN and came back is recovered quickly (throttle_zoo's
    # "drop" took 2.1x its ideal time in 2 of 3 runs with 30 s)

    def __init__(
        self,
        max_rate: float,
        min_rate: float = 0.5,
        *,
        adaptive: bool = True,
        start_rate: float | None = None,
    ) -> None:
        self.max_rate = max_rate
        self.min_rate = min(min_rate, max_rate)
        self.adaptive = adaptive
        self.rate = max_rate
        self.phase = Phase.FULL
        self.last_change = RateChange(0.0, max_rate, max_rate, Reason.START, "configured")
        if adaptive and start_rate is not None and start_rate < max_rate:
            # A rate remembered from an earlier run: a starting point, not a ceiling. Held as
            # if it had been read here: a 429 lowers it, quiet time probes above it.
            self.rate = max(self.min_rate, start_rate)
            self.phase = Phase.HOLD
            self.last_change = RateChange(0.0, max_rate, self.rate, Reason.START, "remembered")
        self.changes: deque[RateChange] = deque(maxlen=64)
        self._log: deque[Ticket] = deque()
        self._resume = -math.inf  # when the last pause ended (the server refilled during it)
        self._pause_end = -math.inf
        self._last_drain: float | None = None  # send time of the last 429 that was read
        self._burst: float | None = None  # accepted from a full start to the first 429
        self._first_span = 0.0  # how long that took
        self._first_pace = max_rate  # at what pace
        self._first_in_order = True  # its answers came in the order it was sent
        self._from_full = self.phase is Phase.FULL  # started at full pace, not remembered
        self._remembered = self.rate  # the rate it started at
        self._last_decision = -math.inf
        self._quiet_since = 0.0
        self._step = 0  # rises (or climbs) since the last decision
        self._search_from = max_rate
        self._search_to = max_rate  # a search stops just under the pace that drained
        self._search_start = 0.0
        self._good: float | None = None  # a rate that ran QUIET seconds without a 429
        self._good_at = -math.inf
        self._cure: tuple[float, float, float] | None = None  # (rate before, share before, at)
        self._tolerated_share = 0.0  # share of 429s shown not to fall when slowing down
        # Paused 429s' step downs on trial: the pace before the first of them (no rise since),
        # and (when, share of 429s at the pace that drained) of the last.
        self._paused_from: float | None = None
        self._paused_trial: tuple[float, float] | None = None
        # (the limit the last reading found, the pause its 429 asked for): a probe above that
        # limit risks that pause
        self._read: tuple[float, float] | None = None
        self._cheap_limit = False  # the last limit answered 429s with no pause: probe sooner
        self._unsure = False  # the last drain's readings rest on too few tokens: probe sooner
        self._throttled_sent = -math.inf  # send time of the latest attempt answered 429
        self._below: float | None = None  # the rate before the last rise, if it ran quietly
        self._rise_at = math.inf  # when that rise happened
        self._ceiling: tuple[float, float] | None = None  # (a rise that failed, when)
        self._full_rate = 0.0  # throughput of the last cycle at full pace, pause included
        self._pause_only_until = -math.inf  # until then, 429s only pause (adapting did worse)
        self._started: float | None = None
        self._rate_since = 0.0

    # --- inputs -----------------------------------------------------------------------------
    def on_send(self, now: float) -> Ticket:
        """A new attempt goes out now."""
        ticket = Ticket(now)
        if self._started is None:
            self._started = now
            self._quiet_since = now
            self._rate_since = now
        if self.adaptive:
            self._log.append(ticket)
            while self._log and self._log[0].sent < now - self.LOG_SPAN:
                self._log.popleft()
        return ticket

    def on_answer(
        self,
        ticket: Ticket,
        now: float,
        outcome: Outcome,
        *,
        pause: float = 0.0,
        asked: float | None = None,
    ) -> None:
        """How ``ticket``'s attempt ended; a 429 started (or extended) a pause of ``pause``
        seconds, of which the server asked for ``asked`` (the rest is jitter)."""
        ticket.state = outcome
        ticket.answered = now
        if outcome is not Outcome.THROTTLED:
            return
        self._throttled_sent = max(self._throttled_sent, ticket.sent)
        end = now + pause
        self._pause_end = max(self._pause_end, end)
        if not self.adaptive:
            return
        quiet_since = self._quiet_since
        last = self.last_change
        noise_lately = last.reason is Reason.TOLERATED and now - last.at < self.DECISION_GAP
        self._quiet_since = end
        if ticket.sent < self._resume:
            return  # sent before the last pause ended: part of a drain already read
        decided = self._decide(ticket.sent, now, pause if asked is None else asked)
        if decided:
            self._last_decision = now
            self._resume = end
        if _free(pause) and (
            (decided and self.last_change.reason is Reason.TOLERATED and self.last_change.at == now)
            or (not decided and noise_lately)
        ):
            # Noise does not break a quiet spell: with random 429s coming every second, the
            # rate could never rise again (it would only ever step down).
            self._quiet_since = quiet_since

    # --- output ------------------------------------------------------------------------------
    def rate_at(self, now: float) -> float:
        """The rate to send at now: rising when quiet, climbing while searching."""
        if not self.adaptive or self.phase is Phase.FULL or self._started is None:
            return self.rate  # (before the first send, no time has passed: nothing to read)
        if self.phase is Phase.BISECT:
            self._bisect(now)
        elif self.phase is Phase.SEARCH:
            self._climb(now)
        else:
            self._rise_when_quiet(now)
        return self.rate

    def pause_remaining(self, now: float) -> float:
        """Seconds from ``now`` until the whole-client pause ends (0 when not paused)."""
        return max(0.0, self._pause_end - now)

    def hold_until(self, end: float) -> None:
        """Pause until ``end`` at least: a pause the server asked of this account elsewhere
        (not a 429 seen here, so nothing is read from it)."""
        self._pause_end = max(self._pause_end, end)

    # --- as time passes (rows 19-24 of the table) ----------------------------------------------
    def _bisect(self, now: float) -> None:
        """Rows 19-20: 429s that cost no pause make overshooting cost a 429 or two, taken back
        at once, so halve the gap (in ratio) between the quiet rate and the failed one."""
        steps = int((now - self._search_start) / self.SEARCH_STEP)
        if steps <= self._step or self._ceiling is None:
            return
        self._step = steps
        target = math.sqrt(self.rate * self._ceiling[0])
        if target < self.rate * (1.0 + self.PROBE_FIRST):
            self.phase = Phase.HOLD  # close enough: hold, and probe slowly
            self._step = 0
            self._quiet_since = max(self._quiet_since, now)
        else:
            self._set(
                now,
                target,
                Reason.SEARCHING,
                f"{self.rate:.4g}/s ran quietly, {self._ceiling[0]:.4g}/s did not",
            )

    def _climb(self, now: float) -> None:
        """Row 21: every SEARCH_STEP, a climb from the floor (see ``search_factor``)."""
        steps = int((now - self._search_start) / self.SEARCH_STEP)
        if steps > self._step:
            self._step = steps
            factor = search_factor(steps, 1.0 + self.SEARCH_RISE, self.PROBE_FIRST)
            # No higher than just under the pace that drained: the search ends there, and
            # quiet-time probes go on from it.
            new = min(self._search_to, self._search_from * factor)
            self._set(
                now,
                new,
                Reason.SEARCHING,
                f"quiet {now - self._search_start:.1f} s since the pause",
            )
            if new >= self._search_to:
                self._hold(cure=None)

    def _rise_when_quiet(self, now: float) -> None:
        """Rows 22-24: after QUIET seconds without a 429, back toward a rate that ran quietly
        not long ago, or beyond anything known to work."""
        quiet = now - self._quiet_since
        if quiet < self.QUIET:
            return
        # Not at an unsure estimate, probed every QUIET s: a burst can hide the excess of a rate
        # for longer than that (5 tokens at 1.4/s over the limit: 3.6 s), and the drain would
        # be pinned on the probe above it, leaving that rate to go back to and drain again.
        if (
            now - max(self._quiet_since, self._rate_since) >= self.QUIET
            and not self._unsure
            and (
                self._good is None
                or self.rate >= self._good
                or now - self._good_at >= self.GOOD_MEMORY
            )
        ):
            self._good, self._good_at = self.rate, now  # this rate ran quietly
        good = self._good
        if good is not None and self.rate < good and now - self._good_at < self.GOOD_MEMORY:
            self._recover(now, quiet, good)
        else:
            self._probe(now, quiet)

    def _recover(self, now: float, quiet: float, good: float) -> None:
        """Row 22: a rate that ran quietly not long ago: the limit may be back there; go
        quickly (halfway in ratio while far, then all the way), a rise every WINDOW: rows 1-2
        judge each by the 429s of the attempts of the WINDOW after it, which have gone out
        before the next."""
        steps = int((quiet - self.QUIET) / self.WINDOW) + 1
        if steps <= self._step:
            return
        self._step = steps
        target = math.sqrt(self.rate * good) if good > self.rate * 1.1 else good
        self.phase = Phase.PROBE
        self._set(
            now, target, Reason.QUIET, f"no 429 for {quiet:.1f} s; {good:.4g}/s ran quietly before"
        )
        if target >= good:
            # Back where it was: probes beyond it count their quiet time from here.
            self._step = 0
            self._quiet_since = now

    def _rise(self, steps: int) -> float:
        """The rise of the probe that makes ``steps``: PROBE_FIRST, doubling, at most a half."""
        return min(0.5, self.PROBE_FIRST * 2.0 ** (steps - 1))

    def _probe(self, now: float, quiet: float) -> None:
        """Rows 23-24: beyond anything known to work, each probe that drains the server costs
        a pause (unless the limit answers with free 429s): beyond a limit that was read, probes
        come after 6, 18, 42... quiet seconds (each interval doubles); one that would pass the
        reading waits that many for each second of the pause it risks (its drain would cost
        the same share of the time whatever the pause: 5 s, 30 and 90 s)."""
        if self._cheap_limit or self._unsure:
            steps = int(quiet / self.QUIET)
        else:
            steps = _probes(quiet, self.PROBE_INTERVAL)
            if self._read is not None and self.rate * (1.0 + self._rise(steps)) > self._read[0]:
                # Beyond what the last drain read, a probe risks that drain's pause: it
                # waits PROBE_INTERVAL quiet seconds for each second of that pause.
                steps = _probes(quiet, self.PROBE_INTERVAL * max(1.0, self._read[1]))
        if steps <= self._step:
            return
        self._step = steps
        rise = self._rise(steps)
        new = min(self.max_rate, self.rate * (1.0 + rise))
        if self._ceiling is not None:
            # A rise to the ceiling drew 429s: halve the gap instead. The ceiling rises with
            # time (a limit may go up; and a server that stalls for a moment fails a rise that
            # was fine), so the probes go on, ever more slowly: by 1% a second, which leaves it
            # a half higher before GOOD_MEMORY forgets it (the simulator shows no outcome move
            # between 0.5% and 2%).
            failed, at = self._ceiling
            ceiling = failed * (1.0 + 0.01 * (now - at))
            new = min(new, math.sqrt(self.rate * ceiling))
            if new < self.rate * (1.0 + self.PROBE_FIRST):
                return  # as close to the ceiling as is worth going for now
        self.phase = Phase.PROBE
        reason = Reason.RECOVERED if new >= self.max_rate else Reason.QUIET
        self._set(now, new, reason, f"no 429 for {quiet:.1f} s")
        if new >= self.max_rate:
            self.phase = Phase.FULL

    # --- at a 429 (rows 1-18 of the table) -----------------------------------------------------
    def _decide(self, drained: float, now: float, pause: float) -> bool:
        """Read the evidence at a 429 sent at ``drained``; False when too early to read. The
        rules in the table's order: the first with a verdict decides."""
        start = self._started if self._started is not None else drained
        accepted, throttled = window_counts(self._log, drained - self.WINDOW, drained + 1e-9)
        throttled = max(throttled, 1)
        at = _At429(
            drained=drained,
            now=now,
            pause=pause,
            free=_free(pause),
            start=start,
            throttled=throttled,
            answered=accepted + throttled,
            share=throttled / (accepted + throttled),
            gap=now - self._last_decision,
        )
        for rule in self._RULES:
            verdict = rule(self, at)
            if verdict is not None:
                return verdict
        raise AssertionError("the last rule always decides")  # pragma: no cover

    def _after_a_rise(self, at: _At429) -> bool | None:
        """Rows 1-2: free 429s right after a rise from a rate that drew none overran the limit
        (a cap on requests in flight is crossed by a few percent). Noise would have shown at
        the quiet rate too, so this is not tolerated: go back, and later rises stop short of
        this one. A stray 429 or two is not enough."""
        below = self._below
        if not (
            at.free
            and below is not None
            and self.rate > below
            and self._rise_at <= at.drained <= self._rise_at + self.WINDOW
        ):
            return None
        accepted, throttled = window_counts(self._log, self._rise_at, at.drained + 1e-9)
        if not beyond_noise(throttled, accepted + throttled, self._noise_share(), self.RISE_STRAYS):
            self._note(at.now, Reason.TOLERATED, "a stray 429 since the last rise")
            return True
        self._ceiling = (self.rate, at.now)
        self._hold(cure=None)
        self._cheap_limit = True
        self._set(
            at.now,
            below,
            Reason.RISE_FAILED,
            f"{self._ceiling[0]:.4g}/s drew 429s; {below:.4g}/s ran quietly",
        )
        if self._ceiling[0] > self.rate * (1.0 + self.PROBE_FIRST):
            self._start_bisecting(at.now)
        return True

    def _flood(self, at: _At429) -> bool | None:
        """Rows 3-4: a flood of 429s that cost no pause: the server takes far less than we
        send. Cut at once (a saturated reading, once answers allow one, sets the level). It is
        judged on the attempts sent at the current rate only (see ``counts_at_this_rate``)."""
        if not at.free:
            return None
        accepted, throttled = self._counts_at_this_rate(at.drained)
        if not is_flood(accepted, throttled, self.FLOOD_SHARE):
            return None
        saturated = saturated_rate(self._log, at.now, self.WINDOW)
        if saturated is not None and saturated * self.HOLD >= self.rate:
            # The rate is already under what the server took: the flood was sent at a faster
            # pace (a cut just made, which attempts still under way, or other processes on
            # the same limit, have not caught up with). Nothing to decide.
            return False
        if saturated is not None:
            self.phase = Phase.HOLD
            self._step = 0
            self._set(
                at.now,
                min(self.rate, saturated * self.HOLD),
                Reason.SATURATED,
                f"{saturated:.4g}/s accepted while {at.share:.0%} were refused",
            )
        else:
            # No answer yet to read a level from: keep the share that was not refused (at
            # least FLOOD_CUT), then search up from there as the answers come in.
            self._ceiling = (self.rate, at.now)
            self._set(
                at.now,
                self.rate * max(self.FLOOD_CUT, 1.0 - at.share),
                Reason.BLIND,
                f"{at.share:.0%} of 429s, no pause",
            )
            self._start_bisecting(at.now)
        self._cheap_limit = True
        return True

    def _too_soon(self, at: _At429) -> bool | None:
        """Row 5: 429s without pauses come in floods; one decision per DECISION_GAP."""
        return False if at.gap < self.DECISION_GAP else None

    def _cure_verdict(self, at: _At429) -> bool | None:
        """Row 6: a step down on trial long enough is judged; undone if it cured nothing."""
        if self._cure is not None and self._judge_cure(at.now):
            return True
        if self._paused_trial is not None and not at.free:
            return self._judge_paused(at)
        return None

    def _judge_paused(self, at: _At429) -> bool | None:
        """Row 6, for 429s that pause: a paused 429 at a rate lowered for paused 429s (with no
        rise since) at least 2 WINDOWs later, with a share of 429s since then no lower by 30%
        than at the pace that drained: slowing down did not cure them, they are noise. Back to
        the pace before the first such step down, and tolerate that share."""
        assert self._paused_trial is not None and self._paused_from is not None
        since, before = self._paused_trial
        if at.now - since < 2.0 * self.WINDOW:
            return None
        accepted, throttled = window_counts(self._log, since, at.drained + 1e-9)
        if accepted + throttled < self.CURE_EVIDENCE:
            return None
        share = throttled / (accepted + throttled)
        restore = self._paused_from
        if self.rate >= restore or not not_cured(before, share, self.SATURATED_SHARE):
            if share < self.NOISE_SHARE / 10:
                self._paused_trial = self._paused_from = None  # it cured them: a real limit
            return None  # read this 429 as usual (undecided: the trial goes on from it)
        self._paused_trial = self._paused_from = None
        self._tolerated_share = max(self._tolerated_share, share)
        self._hold(cure=None)
        self._read = None  # the reading that slowed down was wrong: these 429s are noise
        evidence = f"{share:.1%} of 429s at {self.rate:.4g}/s, {before:.1%} before slowing down"
        self._set(at.now, restore, Reason.NOT_CURED, evidence)
        return True

    def _too_early(self, at: _At429) -> bool | None:
        """Rows 7-8: too early to read anything, and waiting costs nothing; or a step down is
        on trial: judge it before taking another."""
        if at.free and (at.answered < self.MIN_EVIDENCE or at.drained - at.start < self.MIN_SPAN):
            return False
        if self._cure is not None and at.free:
            return True
        return None

    def _under_a_ceiling(self, at: _At429) -> bool | None:
        """Row 9: under a limit shown to answer rises with 429s (and slower rates without), a
        share of them beyond noise is this limit: a little slower, on trial (if the share of
        429s does not fall, they were noise: ``not-cured``)."""
        ceiling = self._ceiling
        if not at.free or ceiling is None or at.now - ceiling[1] >= self.GOOD_MEMORY:
            return None
        accepted, throttled = self._counts_at_this_rate(at.drained)
        answered = accepted + throttled
        if not beyond_noise(throttled, answered, self._noise_share(), self.RISE_STRAYS):
            return None
        # The ceiling keeps its time: it is forgotten GOOD_MEMORY after the rise that found it,
        # whatever happened since.
        self._ceiling = (min(self.rate, ceiling[0]), ceiling[1])
        self._hold(cure=(self.rate, throttled / answered, at.now))
        self._set(
            at.now,
            self.rate * self.HOLD,
            Reason.STEP_DOWN,
            f"{throttled} 429s in {answered} attempts at {self.rate:.4g}/s",
        )
        return True

    def _tolerate(self, at: _At429) -> bool | None:
        """Rows 10-11: what noise alone explains (free 429s within the noise share, with two
        standard deviations of slack), or a share no higher than one slowing did not cure."""
        if at.free and at.throttled <= noise_allowance(at.answered, self._noise_share()):
            self._note(at.now, Reason.TOLERATED, f"{at.share:.1%} of 429s with no pause")
            return True
        # A paused 429's last WINDOW is mostly its pause: its share is read over the log.
        share = at.share if at.free else self._share_since(at.drained - self.LOG_SPAN, at.drained)
        if self._tolerated_share and share <= 1.5 * self._tolerated_share:
            self._note(
                at.now, Reason.TOLERATED, f"{share:.1%} of 429s: slowing down did not lower it"
            )
            return True
        return None

    def _memory_failed(self, at: _At429) -> bool | None:
        """Row 12: a paused 429 below the rate a model started from (remembered): the limit
        fell since, and without a cold start's first burst there is no bucket to fit. Start
        afresh, as from a cold start: full pace after this pause, whose drain is read as a
        first burst. (A 429 at or above the remembered rate, a probe, is read as usual.)"""
        if self._from_full or at.free or self.rate >= self._remembered:
            return None
        self._from_full = True
        self._started = at.now + at.pause
        self._last_drain, self._burst = None, None
        self._hold(cure=None)
        self.phase = Phase.FULL
        evidence = f"{self.rate:.4g}/s drew a 429, below {self._remembered:.4g}/s remembered"
        self._set(at.now, self.max_rate, Reason.FORGOTTEN, evidence)
        return True

    def _read_the_limit(self, at: _At429) -> bool:
        """Rows 13-18: take every reading this 429 allows and follow the best; a step down for
        a paused 429 goes on trial (row 6)."""
        pace, since = self.rate, self._rate_since
        cold = self._last_drain is None and self._from_full  # no share to compare with yet
        searching = self.phase is Phase.SEARCH
        followed = self._follow_readings(at)
        # A search that ends in a bucket fit found the limit it climbed to, from rates that
        # ran quietly: no new trial. (Its top drained at once; restored, as a trial finding
        # the shares alike on a few 429s would, it drains at once again: a bucket of 300/s,
        # burst 5, Retry-After 5 s was held near pausing alone's rate, 24 times its floor.) A
        # trial begun by the 429 that started the search goes on: ending it too left random
        # 429s read as a limit (the soak's mix: 1.40x pausing alone over 20 seeds, not 1.19x).
        found = searching and followed is Reason.BUCKET_FIT
        if not at.free and not cold and not found and self.rate < pace:
            # The share at the pace that drained, over CURE_EVIDENCE attempts at least.
            share = self._share_since(min(since, self._evidence_from(at.drained)), at.drained)
            self._paused_from = pace if self._paused_from is None else self._paused_from
            self._paused_trial = (at.now, share)
        return True

    def _follow_readings(self, at: _At429) -> Reason | None:
        """Rows 13-18: take every reading this 429 allows and follow the best; which reading
        set the rate, if one did."""
        pace = self._sent_pace(at.drained)
        cold = self._last_drain is None and self._from_full  # the first 429 from full pace
        readings = self._readings(at, pace)
        floor, best = best_estimate(readings, pace)
        # Only a share read on enough attempts, below saturation, can be compared later.
        testable = at.answered >= self.CURE_EVIDENCE and at.share < self.SATURATED_SHARE and at.free
        self._cheap_limit = at.free
        if self._pausing_alone_is_better(at, floor, best):
            return None
        if best is not None:
            self._hold(cure=(pace, at.share, at.now) if testable else None)
            if self._good is not None and self._hid_the_excess(best, self._good, at.drained):
                self._good = None
            self._read = (best.rate, at.pause)
            self._set(at.now, max(self.min_rate, best.rate * self.HOLD), best.reason, best.evidence)
            # A reading on a few tokens (a fit, or one of the pause's length) says the run since
            # the pause was short: then this drain's estimate is unsure, whichever is followed.
            self._unsure = any(r.unsure for r in readings)
            return best.reason
        if floor is not None and floor.rate < 0.98 * pace:
            self._search(at, floor, pace, cold)
        elif at.free:
            # Nothing to read, and more 429s than noise: try slower, and check it helped.
            self._hold(cure=(pace, at.share, at.now) if testable else None)
            evidence = f"{at.share:.1%} of 429s, no pause"
            self._set(at.now, pace * self.STEP_DOWN, Reason.BLIND, evidence)
        else:
            # Every reading says the server took what we sent: the pause is what paces us.
            evidence = f"{at.share:.1%} of 429s; the server accepted the pace"
            self._note(at.now, Reason.TOLERATED, evidence)
        return None

    _RULES: tuple[_Rule, ...] = (
        _after_a_rise,
        _flood,
        _too_soon,
        _cure_verdict,
        _too_early,
        _under_a_ceiling,
        _tolerate,
        _memory_failed,
        _read_the_limit,
    )

    def _search(self, at: _At429, floor: Reading, pace: float, cold: bool) -> None:
        """Row 16: a floor only: climb from it until the next 429 allows an estimate, never
        above just under the pace that drained. From a cold start the floor (a burst over a
        pause) and the pace can be a hundredfold apart: start halfway between them in ratio.
        The climbs (row 21) are SEARCH_RISE a step at first, so that the drain that ends the
        search comes slowly, which is what lets the bucket fit read the refill rate to a
        percent or two."""
        self._cure = None
        self.phase = Phase.SEARCH
        self._search_to = pace * self.HOLD
        # At least one attempt per climb, so that each climb is taken on time (a floor of a
        # small burst over a long pause, 3 over 3 s, would hold the first attempt a second).
        low = max(self.min_rate, 1.0 / self.SEARCH_STEP)
        self._search_from = max(low, min(floor.rate, self._search_to))
        if cold:
            halfway = math.sqrt(max(floor.rate, self.min_rate) * self._search_to)
            self._search_from = max(low, min(halfway, self._search_to))
        self._search_start = at.now + at.pause
        self._step = 0
        self._read = (pace, at.pause)  # the search tops out just under it
        self._set(at.now, self._search_from, Reason.SEARCHING, floor.evidence)

    def _readings(self, at: _At429, pace: float) -> list[Reading]:
        """Every reading of the limit this 429 allows, floors included (see the module
        docstring); notes the first burst and this drain for the next ones."""
        drained, pause = at.drained, at.pause
        readings: list[Reading] = []
        # At the first 429 from full pace, a pause's 429s: the answers so far are the first
        # burst, and a burst answered within a tenth of the pause it drew shows how fast the
        # server answers, not what it sustains (a busy event loop, 20 accounts starting at
        # once, read 140-198/s for buckets of 5-25/s, and held there until the next drain).
        # At most half the WINDOW the answers are counted over: a long pause still reads.
        min_span = 0.02
        if self._last_drain is None and self._from_full and not at.free:
            min_span = max(min_span, min(0.1 * pause, 0.5 * self.WINDOW))
        saturated = (
            saturated_rate(self._log, at.now, self.WINDOW, min_span)
            if at.share >= self.SATURATED_SHARE
            else None
        )
        if saturated is not None:
            evidence = f"{saturated:.4g}/s accepted with {at.share:.0%} 429s"
            readings.append(Reading(saturated, Reason.SATURATED, evidence))
        if pause >= 0.5 and drained - pause < self._resume <= drained:
            # What the server took in the last `pause` seconds: a window's limit per window,
            # when the server's pause is about its window (a bucket's reading here is its
            # rate plus its burst; read only when the last pause ended inside that span).
            rate, accepted = accepted_rate(self._log, drained - pause, drained, pause)
            evidence = f"{accepted} accepted in the {pause:.1f} s before the 429"
            # A window comes back whole after its pause, about the first burst (a tenth more
            # for 200s still in flight when the first 429 was answered); a server that took
            # more refills as it goes (a bucket), and over a short run after the pause this
            # reads mostly the pause: 31/s, burst 2, drained 0.13 s after a 1 s pause, read
            # 4/s, held for minutes. On a few tokens (2 of a bucket of 17/s, burst 2, look
            # like a window's 2 a second), probe sooner, as for an unsure fit. (Without a
            # first burst, after a remembered start or a forgotten one, it is read as before.)
            since_pause, _ = window_counts(self._log, self._resume, drained)
            if self._burst is None or since_pause <= 1.1 * self._burst:
                unsure = since_pause < self.FIT_TOKENS
                readings.append(Reading(rate, Reason.RECENT, evidence, unsure=unsure))
        # The bucket fit takes the capacity from the first burst: not at the 429 that measures
        # it, where every rate explains the burst (the fit would return an arbitrary one).
        burst_known = self._burst is not None
        floor = self._floor(at, pace)
        if floor is not None:
            readings.append(floor)
        ran = drained - max(self._rate_since, self._resume)  # a pause is not running
        if not at.free and ran >= self.WINDOW:
            # The pace ran a while before this 429: the limit is a little below it, whatever
            # the floors say (a window's edge, a bucket slowly drained).
            evidence = f"{pace:.4g}/s ran {ran:.1f} s before a 429"
            readings.append(Reading(pace * self.STEP_DOWN / self.HOLD, Reason.STEP_DOWN, evidence))
        fit = self._bucket_fit(drained, pace) if burst_known and not at.free else None
        if fit is not None:
            readings.append(fit)
        self._last_drain = drained
        return readings

    def _floor(self, at: _At429, pace: float) -> Reading | None:
        """What the server took from the last 429 to this one, or, at the first 429 from a
        full start, what it took before it (the burst it allowed, noted for the bucket fit)."""
        if at.free:
            return None
        if self._last_drain is not None:
            d2d = drain_to_drain(self._log, self._last_drain, at.drained)
            if d2d is None:
                return None
            rate, accepted, gap = d2d
            evidence = f"{accepted} accepted in {gap:.1f} s between two 429s"
            return Reading(rate, Reason.DRAIN_TO_DRAIN, evidence)
        if self._burst is not None:
            return None
        # Within a tenth of the pause, as for the saturated reading: what came later is refill.
        accepted, last = first_burst(self._log, at.start, at.drained, at.now, 0.1 * at.pause)
        span = last - at.start
        rate = accepted / (span + max(at.pause, 0.5))
        if self._from_full:
            # A burst only from a full start at full pace: after a remembered start the
            # first 429 comes after a long stretch near the limit, which says nothing of it.
            self._burst = float(max(accepted, 1))
        self._first_span, self._first_pace = span, pace
        self._first_in_order = last <= at.drained  # no attempt overtook the refused one
        evidence = f"{accepted} accepted before the first 429, then a {at.pause:.1f} s pause"
        return Reading(rate, Reason.DRAIN_TO_DRAIN, evidence)

    def _pausing_alone_is_better(
        self, at: _At429, floor: Reading | None, best: Reading | None
    ) -> bool:
        """Rows 13-14: at full pace, note what pausing alone gets from this server (the bar to
        beat). Adapting that got no more between two 429s (a window's limit comes back whole
        after each pause; adapting only spreads it, and loses at the job's end) goes back to
        pausing alone for LOG_SPAN seconds. "No more" is within 10%, the most adapting may cost
        over pausing alone (the bar tests/test_pacing.py holds it to). Adapting is judged only
        once it ran, since the last pause, at least as long as this 429's pause: a shorter
        stretch reads mostly the pause, and a bucket's burst, not what the adapted rate gets
        (an account whose start was slowed by the others' share of the pool went back to
        pausing alone for 30 s)."""
        if self.phase is Phase.FULL:
            since = max(self._resume, at.start)
            seconds = max(at.drained - since + at.pause, 1e-3)
            self._full_rate, _ = accepted_rate(self._log, since, at.drained, seconds)
            if at.now < self._pause_only_until:
                self._note(at.now, Reason.PAUSE_ONLY, "pausing alone did better here")
                return True
            return False
        if floor is None or floor.rate >= 1.1 * self._full_rate:
            return False
        if at.drained - self._resume < at.pause:
            return False  # too short a stretch to judge adapting by
        if best is not None and best.rate * self.HOLD >= 1.1 * self._full_rate:
            return False  # an estimate says adapting will do better than it did so far
        self._cure = None
        self.phase = Phase.FULL
        self._pause_only_until = at.now + self.LOG_SPAN
        self._set(
            at.now,
            self.max_rate,
            Reason.PAUSE_ONLY,
            f"{floor.rate:.4g}/s adapted, {self._full_rate:.4g}/s pausing alone",
        )
        return True

    def _hid_the_excess(self, best: Reading, good: float, drained: float) -> bool:
        """Whether the rate that "ran quietly" was above the limit ``best`` reads: a bucket's
        burst hid the excess for a few seconds, and going back to it would only drain again.
        Within HOLD squared above the reading; or, further above a bucket fit, when that rate
        itself drained no later than a burst (the first one, twice over) allows at that
        excess. (A step down says only that the pace was too fast, not that the rate before it
        was. A limit that fell after a long quiet stretch at that rate is no such case: that
        rate may come back.)"""
        if best.reason is Reason.STEP_DOWN or good < best.rate:
            return False
        if good <= best.rate / self.HOLD**2:
            return True
        ran = drained - max(self._rate_since, self._resume)
        return (
            best.reason is Reason.BUCKET_FIT
            and self._burst is not None
            # That rate is the one that drained: marked good after it was set (a probe set
            # in the same instant as the mark is a rate above it)
            and self._good_at > self._rate_since
            and ran <= 2.0 * self._burst / (good - best.rate)
        )

    def _bucket_fit(self, drained: float, pace: float) -> Reading | None:
        """The refill rate of a bucket, of the burst seen at the first 429, that is empty at
        ``drained``: replayed from the previous 429 (empty then, refilled during the pause) or,
        before any, from the start (full); with the capacity at its upper bound when a slow
        first burst leaves nothing to fit. None when the log is too short to tell."""
        if self._burst is None:
            return None
        origin = self._last_drain if self._last_drain is not None else self._started
        if origin is None or drained - max(origin, self._resume) < self.MIN_SPAN:
            return None
        sent = [
            t.sent for t in self._log if origin <= t.sent < drained and t.state is Outcome.ACCEPTED
        ]
        if len(sent) < 5:
            return None
        evidence = f"{len(sent)} accepted in the {drained - origin:.1f} s since the last 429"
        slow_start = self._first_pace < 0.5 * self.max_rate
        fit = partial(
            bucket_fit,
            sent,
            origin=origin,
            drained=drained,
            burst=self._burst,
            first_pace=self._first_pace,
            full=self._last_drain is None,
            lo=self.min_rate,
            hi=pace,
            steady=self._first_in_order and not slow_start,
        )
        rate = fit(first_span=self._first_span)
        if (rate is None or rate >= 0.98 * pace) and slow_start and self._burst >= 0.1 * len(sent):
            # A first burst sent slowly (a client busy with other work) spans long enough that
            # the refill during it is guesswork, and a capacity read too small leaves no rate
            # below the pace to explain this drain. The capacity is at most the whole burst:
            # the lowest refill rate that explains the drain with it is a reading on the safe
            # side. Only where the capacity is a tenth or more of what was accepted since: over
            # a longer stretch it cannot be what leaves no rate to fit (a limit that fell
            # can). And not at full pace, where the span is too short to matter: a drain no
            # rate explains there is not a bucket's (random 429s, for one).
            rate = fit(first_span=0.0)
            if rate is None:
                return None
            evidence += f", a capacity of about the whole burst of {self._burst:.0f}"
            return Reading(rate, Reason.BUCKET_FIT, evidence, at_least=True)
        if rate is None:
            return None  # no rate below the pace explains a drain here: not a bucket
        # Refilled tokens are counted whole: over a short run after the pause, one more or
        # fewer moves the rate by a third (17.6/s read as 13.5/s after 0.17 s), which the
        # slow probes of row 23 would take a minute to undo; a sooner probe reads a longer
        # run. The run starts at the first send after the pause (the 429s of requests sent
        # before it, answered late, extend it past ``_resume``).
        run = drained - next((t for t in sent if t >= self._resume), drained)
        return Reading(rate, Reason.BUCKET_FIT, evidence, unsure=rate * run < self.FIT_TOKENS)

    def _judge_cure(self, now: float) -> bool:
        """After slowing down, did the share of 429s fall? If not, they are noise: undo (and
        say so)."""
        assert self._cure is not None
        before_rate, before_share, at = self._cure
        if now - at < 2.0 * self.WINDOW:
            return False
        self._cure = None
        accepted, throttled = window_counts(self._log, at, now)
        if accepted + throttled < self.CURE_EVIDENCE:
            return False
        share = throttled / (accepted + throttled)
        if self.rate >= before_rate or not not_cured(before_share, share, self.SATURATED_SHARE):
            return False
        self._tolerated_share = max(self._tolerated_share, share)
        self.phase = Phase.HOLD
        self._read = None  # the reading that slowed down was wrong: these 429s are noise
        self._set(
            now,
            before_rate,
            Reason.NOT_CURED,
            f"{share:.1%} of 429s at {self.rate:.4g}/s, {before_share:.1%} at {before_rate:.4g}/s",
        )
        return True

    # --- bookkeeping ---------------------------------------------------------------------------
    def _counts_at_this_rate(self, drained: float) -> tuple[int, int]:
        return counts_at_this_rate(self._log, drained, self.WINDOW, self._rate_since)

    def _sent_pace(self, drained: float) -> float:
        """The pace attempts went out at up to the 429 sent at ``drained``: the rate, or less
        when they could not go out that fast (a connection pool or an event loop busy with
        other accounts' work). Every reading compares the server's answers with what was sent:
        read against a pace that was never reached, a limit looks other than it is."""
        since = max(self._rate_since, self._resume, drained - self.WINDOW)
        span = drained - since
        if span < self.MIN_SPAN:
            return self.rate  # too short to tell
        sent = sum(1 for ticket in self._log if since <= ticket.sent <= drained)
        return min(self.rate, sent / span)

    def _evidence_from(self, drained: float) -> float:
        """When the last CURE_EVIDENCE answered attempts up to ``drained`` began."""
        count = 0
        for ticket in reversed(self._log):
            if ticket.sent <= drained and ticket.state is not Outcome.PENDING:
                count += 1
                if count >= self.CURE_EVIDENCE:
                    return ticket.sent
        return -math.inf

    def _share_since(self, start: float, drained: float) -> float:
        """The share of 429s among the attempts sent from ``start`` up to ``drained`` (this one
        counted)."""
        accepted, throttled = window_counts(self._log, start, drained + 1e-9)
        return max(throttled, 1) / max(accepted + throttled, 1)

    def _noise_share(self) -> float:
        """The share of 429s that noise explains: NOISE_SHARE, or the share of random 429s
        shown not to fall when slowing down. Random 429s on top of a real limit must not be
        read as that limit (they would drag the rate down step by step); a step down they cause
        is put on trial and undone (``not-cured``), and their share is tolerated from then on."""
        return max(self.NOISE_SHARE, self._tolerated_share)

    def _hold(self, cure: tuple[float, float, float] | None) -> None:
        """Into HOLD, with a step down on trial (or none); the rate held is no unsure estimate
        unless the caller says so after."""
        self._cure = cure
        self.phase = Phase.HOLD
        self._step = 0
        self._unsure = False

    def _start_bisecting(self, now: float) -> None:
        self.phase = Phase.BISECT
        self._search_start = now
        self._step = 0

    def _set(self, now: float, new: float, reason: Reason, evidence: str) -> None:
        new = max(self.min_rate, min(self.max_rate, new))
        old = self.rate
        self.rate = new
        if new > old and max(self._throttled_sent, self._rate_since) <= now - self.MIN_SPAN:
            # The old rate ran a while, and none of the attempts of its last MIN_SPAN seconds
            # drew a 429 (earlier ones may have: a cap on requests in flight still held the
            # attempts sent before it).
            self._below, self._rise_at = old, now
        elif new < old:
            self._below = None
        if new != old:
            self._rate_since = now
            self.last_change = RateChange(now, old, new, reason, evidence)
            self.changes.append(self.last_change)
        if new > old and reason is not Reason.SEARCHING:
            self._paused_from = self._paused_trial = None  # a rise ends a paused trial
        if reason not in (Reason.SEARCHING, Reason.QUIET, Reason.RECOVERED):
            self._quiet_since = max(self._quiet_since, now)

    def _note(self, now: float, reason: Reason, evidence: str) -> None:
        self.last_change = RateChange(now, self.rate, self.rate, reason, evidence)
