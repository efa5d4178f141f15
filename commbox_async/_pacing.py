"""The pacing model: how fast to send, learned from what the server accepted. No I/O, no clock.

Every limiter a server can run has a long-run rate R that it sustains; they differ in what they
allow in the short run and in what a 429 says (a token bucket's burst, a window's edge, a cap on
requests in flight, a limit that changes, 429s that have nothing to do with rate). The model
does not ask which kind it faces. It reads three things from the client's own log of attempts
(send time, outcome) and the pauses the server asked for:

1. **Is this 429 worth slowing down for?** A pause the server asks for stops the whole client,
   so 429s that come with real pauses cost time; 429s that come with no pause (``Retry-After:
   0``) cost only themselves, and a low share of them is noise: a proxy, a flaky node, another
   tenant. Those are *tolerated*: the rate stays (``Reason.TOLERATED``). So is a 429 after
   which a slower rate did not lower the share of 429s (the "did slowing cure it?" test).
2. **What does the server sustain?** Three readings, each valid for some kinds and none wrong
   by much for the others:

   - *saturated throughput*: when many of the recent attempts were refused, the server was
     given more than it takes, so what it accepted per second is its rate (caps on requests in
     flight, windows, any limiter under heavy overload);
   - *drain to drain*: what it accepted between two 429s, per second, pauses included: a lower
     bound for a token bucket (its bucket was empty at both ends) and about right for windows;
   - *a token-bucket fit*: replay the accepted attempts since the last pause through a bucket
     (full at the restart, of the burst seen at the first 429) and find the refill rate that
     empties it exactly at the 429. It is what a small-burst bucket with long pauses needs,
     where the other two read far too low.

   The estimate is the largest reading that is plausible (below the rate that drained the
   server); the rate is set to ``HOLD`` of it, never above what drained the server.
3. **Has the limit moved up?** After ``QUIET`` seconds without a 429, the rate rises: quickly
   back toward a rate that ran quietly before (a limit that dropped and recovered), slowly
   beyond it, after 6, 18, 42... quiet seconds (each probe that drains the server costs a
   pause). With no reading possible yet (the first 429 of a job, from a full bucket), the rate
   *searches*: it climbs from the drain-to-drain floor every ``SEARCH_STEP``, faster the longer
   it stays quiet and the farther the floor is below the pace that drained, until the next 429
   gives a fit.
4. **429s that cost no pause** (``Retry-After: 0``; a cap on requests in flight) make
   overshooting cheap, so they are searched by *bisection* (``Phase.BISECT``): a flood cuts the
   rate to the share not refused, then every ``SEARCH_STEP`` it rises to the geometric mean of
   the last rate that ran quietly and the lowest that drew 429s; a rise that draws more 429s
   than noise explains goes straight back (``Reason.RISE_FAILED``). Under the cap so found, a
   share above that steps down a little, on trial like any step down.
5. **Is adapting worth it?** Pausing alone at full pace is the bar: when adapting gets no more
   than ``PAUSE_ONLY_MARGIN`` times what it got between two 429s (a window's limit comes back
   whole after each pause), the model goes back to full pace for ``FULL_STAY`` seconds.

It never starts below the configured maximum (no slow start), never exceeds it, and never
goes below ``min_rate``. ``PacingModel`` is fed by a limiter (in-process or shared) and is
driven in the tests by a discrete-event simulator of every limiter kind (tests/pacing_sim.py).

The pause rules (what a Retry-After means, its cap, the default when absent, the jitter) are
``PausePolicy``: one object used by every limiter and by the retry decision, so that they can
never disagree.
"""

from __future__ import annotations

import enum
import math
import random
from collections import deque
from dataclasses import dataclass

import msgspec

__all__ = ["Outcome", "PacingModel", "PausePolicy", "Phase", "RateChange", "Reason", "Ticket"]


class Outcome(enum.IntEnum):
    """How one attempt ended, as far as pacing is concerned."""

    PENDING = 0
    ACCEPTED = 1  # any answer but a 429 (errors included: the server took the request)
    THROTTLED = 2  # a 429, in the HTTP status or in the body's envelope
    FAILED = 3  # no answer (connection refused or reset, timeout): says nothing of the limit


class Ticket(msgspec.Struct, gc=False):
    """One attempt's slot: when it was sent and, once known, how it ended.

    gc=False: one is made per attempt and the model keeps thousands; it holds two numbers and
    cannot be part of a reference cycle.
    """

    sent: float
    state: Outcome = Outcome.PENDING
    answered: float = 0.0


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


def _window_counts(log: deque[Ticket], start: float, end: float) -> tuple[int, int]:
    """(accepted, throttled) among the attempts sent in [start, end)."""
    accepted = throttled = 0
    for ticket in reversed(log):
        if ticket.sent >= end:
            continue
        if ticket.sent < start:
            break
        if ticket.state is Outcome.ACCEPTED:
            accepted += 1
        elif ticket.state is Outcome.THROTTLED:
            throttled += 1
    return accepted, throttled


class PacingModel:
    """The send rate, from the log of attempts and the pauses; a pure object on given times.

    Feed it ``on_send`` (a new attempt), ``on_answer`` (how it ended, and the pause a 429
    started) and read ``rate_at(now)``. See the module docstring for the reasoning.
    """

    HOLD = 0.97  # fraction of the estimate to hold at: a little room for jitter and alignment
    QUIET = 2.0  # seconds without a 429 before the rate rises
    RECOVER_STEP = 0.5  # seconds between rises toward a rate that ran quietly before
    PROBE_INTERVAL = 6.0  # quiet seconds between rises beyond any rate known to run quietly
    PROBE_FIRST = 0.02  # the first such rise; doubles each PROBE_INTERVAL
    RISE_NOISE = 0.02  # a share of 429s since a rise above this failed it...
    RISE_STRAYS = 2  # ...once there are more of them than this
    RISE_WINDOW = 1.0  # seconds after a rise in which its 429s are the rise's
    BISECT_GAP = 0.02  # bisect down to this gap between the quiet rate and the failed one
    FLOOD_CUT = 0.1  # a flood of free 429s cuts the rate to at least this fraction
    CEILING_GROWTH = 0.01  # a failed rise's rate is trusted less by this fraction per second
    PROBE_MIN = 0.003  # a rise smaller than this, below a failed one, is not worth a 429
    QUIET_RUN = 0.15  # seconds a rate must run with no 429 to be taken back to after a rise
    SEARCH_STEP = 0.2  # seconds between two climbs while searching
    SEARCH_FIRST = 0.05  # first climb while searching; doubles each step, at most x2
    SEARCH_SPAN = 4  # climbs that would cover the whole way from the floor to the draining pace
    NOISE_SHARE = 0.03  # a share of 429s at or below this, with no real pause, is tolerated
    NOISE_MAX = 0.10  # a share of 429s above this is never taken for noise
    STEP_DOWN = 0.9  # after a pace that ran STEP_AFTER seconds drained the server
    STEP_AFTER = 1.0
    FULL_STAY = 30.0  # seconds at full pace after adapting did worse than pausing alone
    PAUSE_ONLY_MARGIN = 1.1  # adapting must beat pausing alone by this much to be kept
    BLIND_STEP = 0.9  # with no reading at all, try this much slower (and check it helped)
    CHEAP_PAUSE = 0.1  # seconds: a pause this short costs too little to slow down for
    SATURATED_SHARE = 0.25  # above this share of 429s the accepted throughput is the rate
    WINDOW = 1.0  # seconds of recent attempts read for shares and throughput
    CURE_EVIDENCE = 50  # answered attempts in a window needed to compare shares of 429s
    MIN_EVIDENCE = 20  # answered attempts needed before the first reading
    MIN_SPAN = 0.1  # seconds of a job needed before the first reading
    MIN_FIT_SPAN = 0.1  # seconds since the restart needed for a bucket fit
    DECISION_GAP = 0.25  # seconds between two decisions (429s without pauses come in floods)
    FLOOD_SHARE = 0.5  # a share of 429s this high, with no pause, halves the rate at once
    FLOOD_GAP = 0.015  # seconds between two such halvings
    GOOD_MEMORY = 60.0  # seconds a rate that ran quietly is remembered for recovery
    LOG_SPAN = 30.0  # seconds of attempts kept

    def __init__(self, max_rate: float, min_rate: float = 0.5, *, adaptive: bool = True) -> None:
        self.max_rate = max_rate
        self.min_rate = min(min_rate, max_rate)
        self.adaptive = adaptive
        self.rate = max_rate
        self.phase = Phase.FULL
        self.last_change = RateChange(0.0, max_rate, max_rate, Reason.START, "configured")
        self.changes: deque[RateChange] = deque(maxlen=64)
        self._log: deque[Ticket] = deque()
        self._resume = -math.inf  # when the last pause ended (the server refilled during it)
        self._pause_end = -math.inf
        self._pause_len = 0.0
        self._last_drain: float | None = None  # send time of the last 429 that was read
        self._burst: float | None = None  # accepted from a full start to the first 429
        self._first_span = 0.0  # how long that took
        self._last_decision = -math.inf
        self._quiet_since = 0.0
        self._step = 0  # rises (or climbs) since the last decision
        self._search_from = max_rate
        self._search_start = 0.0
        self._search_stride = 1.0  # each climb at least this factor (far floors climb fast)
        self._good: float | None = None  # a rate that ran QUIET seconds without a 429
        self._good_at = -math.inf
        self._cure: tuple[float, float, float] | None = None  # (rate before, share before, at)
        self._tolerated_share = 0.0  # share of 429s shown not to fall when slowing down
        self._cheap_limit = False  # the last limit answered 429s with no pause: probe sooner
        self._throttled_sent = -math.inf  # send time of the latest attempt answered 429
        self._below: float | None = None  # the rate before the last rise, if it ran quietly
        self._rise_at = math.inf  # when that rise happened
        self._ceiling: tuple[float, float] | None = None  # (a rise that failed, when)
        self._noise_seen = False  # some 429s were tolerated as noise
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
        if end > self._pause_end:
            self._pause_end = end
            self._pause_len = pause
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
        if pause < self.CHEAP_PAUSE and (
            (decided and self.last_change.reason is Reason.TOLERATED and self.last_change.at == now)
            or (not decided and noise_lately)
        ):
            # Noise does not break a quiet spell: with random 429s coming every second, the
            # rate could never rise again (it would only ever step down).
            self._quiet_since = quiet_since

    # --- output ------------------------------------------------------------------------------
    def rate_at(self, now: float) -> float:
        """The rate to send at now: rising when quiet, climbing while searching."""
        if not self.adaptive or self.phase is Phase.FULL:
            return self.rate
        if self.phase is Phase.BISECT:
            # 429s that cost no pause: overshooting costs a 429 or two and is taken back at
            # once, so halve the gap (in ratio) between the quiet rate and the failed one.
            steps = int((now - self._search_start) / self.SEARCH_STEP)
            if steps > self._step and self._ceiling is not None:
                self._step = steps
                target = math.sqrt(self.rate * self._ceiling[0])
                if target < self.rate * (1.0 + self.BISECT_GAP):
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
            return self.rate
        if self.phase is Phase.SEARCH:
            steps = int((now - self._search_start) / self.SEARCH_STEP)
            if steps > self._step:
                self._step = steps
                # Each climb doubles the last: cautious near the floor (a window's rate is
                # often close to it), quick far below the limit (a bucket's floor is low).
                # A floor far below the pace that drained the server is a weak bound (a
                # bucket's burst over a long pause): then each climb covers at least a
                # SEARCH_SPAN-th of the way up, in ratio.
                factor = math.prod(
                    max(self._search_stride, min(2.0, 1.0 + self.SEARCH_FIRST * 2.0**k))
                    for k in range(min(steps, 20))
                )
                self._set(
                    now,
                    min(self.max_rate, self._search_from * factor),
                    Reason.SEARCHING,
                    f"quiet {now - self._search_start:.1f} s since the last 429",
                )
            return self.rate
        quiet = now - self._quiet_since
        if quiet < self.QUIET:
            return self.rate
        if now - max(self._quiet_since, self._rate_since) >= self.QUIET and (
            self._good is None or self.rate >= self._good or now - self._good_at >= self.GOOD_MEMORY
        ):
            self._good, self._good_at = self.rate, now  # this rate ran quietly
        good = self._good
        if good is not None and self.rate < good and now - self._good_at < self.GOOD_MEMORY:
            # A rate that ran quietly not long ago: the limit may be back there; go quickly.
            steps = int((quiet - self.QUIET) / self.RECOVER_STEP) + 1
            if steps > self._step:
                self._step = steps
                target = math.sqrt(self.rate * good) if good > self.rate * 1.1 else good
                self.phase = Phase.PROBE
                self._set(
                    now,
                    target,
                    Reason.QUIET,
                    f"no 429 for {quiet:.1f} s; {good:.4g}/s ran quietly before",
                )
                if target >= good:
                    # Back where it was: probes beyond it count their quiet time from here.
                    self._step = 0
                    self._quiet_since = now
            return self.rate
        # Beyond anything known to work: each probe that drains the server costs a pause.
        if self._cheap_limit:
            steps = int(quiet / self.QUIET)
        else:
            # A probe that drains the server costs a whole pause, so beyond a limit that was
            # read, probes come after 6, 18, 42... quiet seconds (each interval doubles).
            steps = int(math.log2(quiet / self.PROBE_INTERVAL + 1.0))
        if steps > self._step:
            self._step = steps
            rise = min(0.5, self.PROBE_FIRST * 2.0 ** (steps - 1))
            new = min(self.max_rate, self.rate * (1.0 + rise))
            if self._ceiling is not None:
                # A rise to the ceiling drew 429s: halve the gap instead. The ceiling rises
                # with time (a limit may go up; and a server that stalls for a moment fails a
                # rise that was fine), so the probes go on, ever more slowly.
                failed, at = self._ceiling
                ceiling = failed * (1.0 + self.CEILING_GROWTH * (now - at))
                new = min(new, math.sqrt(self.rate * ceiling))
                if new < self.rate * (1.0 + self.PROBE_MIN):
                    return self.rate  # as close to the ceiling as is worth going for now
            self.phase = Phase.PROBE
            reason = Reason.RECOVERED if new >= self.max_rate else Reason.QUIET
            self._set(now, new, reason, f"no 429 for {quiet:.1f} s")
            if new >= self.max_rate:
                self.phase = Phase.FULL
        return self.rate

    def pause_remaining(self, now: float) -> float:
        """Seconds from ``now`` until the whole-client pause ends (0 when not paused)."""
        return max(0.0, self._pause_end - now)

    # --- the decision on a 429 ---------------------------------------------------------------
    def _decide(self, drained: float, now: float, pause: float) -> bool:
        """Read the evidence at a 429 sent at ``drained``; False when too early to read."""
        start = self._started if self._started is not None else drained
        accepted, throttled = _window_counts(self._log, drained - self.WINDOW, drained + 1e-9)
        throttled = max(throttled, 1)
        share = throttled / (accepted + throttled)
        answered = accepted + throttled
        gap = now - self._last_decision
        if (
            pause < self.CHEAP_PAUSE
            and self._below is not None
            and self.rate > self._below
            and self._rise_at <= drained <= self._rise_at + self.RISE_WINDOW
        ):
            # 429s with no pause right after a rise from a rate that drew none: the rise
            # overran the limit (a cap on requests in flight is crossed by a few percent).
            # Noise would have shown at the quiet rate too, so this is not tolerated: go back,
            # and later rises stop short of this one. A stray 429 or two is not enough.
            if not self._rise_failed(drained):
                self._note(now, Reason.TOLERATED, "a stray 429 since the last rise")
                return True
            self._ceiling = (self.rate, now)
            self.phase = Phase.HOLD
            self._step = 0
            self._cure = None
            self._cheap_limit = True
            self._set(
                now,
                self._below,
                Reason.RISE_FAILED,
                f"{self._ceiling[0]:.4g}/s drew 429s; {self._below:.4g}/s ran quietly",
            )
            if self._ceiling[0] > self.rate * (1.0 + self.BISECT_GAP):
                self._start_bisecting(now)
            return True
        # A flood is judged on the attempts sent at the current rate only: those sent faster
        # before it are still being answered (and a cap on requests in flight still holds them).
        f_acc, f_thr = self._counts_at_this_rate(drained)
        flood = f_acc + f_thr >= 10 and f_thr >= self.FLOOD_SHARE * (f_acc + f_thr)
        if pause < self.CHEAP_PAUSE and flood:
            # A flood of 429s that cost no pause: the server takes far less than we send.
            # Cut at once (a saturated reading, once answers allow one, sets the level).
            if gap < self.FLOOD_GAP:
                return False
            saturated = self._saturated_rate(now)
            if saturated is not None:
                self.phase = Phase.HOLD
                self._step = 0
                self._set(
                    now,
                    min(self.rate, saturated * self.HOLD),
                    Reason.SATURATED,
                    f"{saturated:.4g}/s accepted while {share:.0%} were refused",
                )
            else:
                # No answer yet to read a level from: keep the share that was not refused
                # (at least a tenth), then search up from there as the answers come in.
                self._ceiling = (self.rate, now)
                self._set(
                    now,
                    self.rate * max(self.FLOOD_CUT, 1.0 - share),
                    Reason.BLIND,
                    f"{share:.0%} of 429s, no pause",
                )
                self._start_bisecting(now)
            self._cheap_limit = True
            return True
        if gap < self.DECISION_GAP:
            return False
        if self._cure is not None:
            self._judge_cure(now)
            if (
                self.phase is Phase.HOLD
                and self.last_change.reason is Reason.NOT_CURED
                and self.last_change.at == now
            ):
                return True
        if pause < self.CHEAP_PAUSE and (
            answered < self.MIN_EVIDENCE or drained - start < self.MIN_SPAN
        ):
            return False  # too early to read anything, and waiting costs nothing
        if self._cure is not None and pause < self.CHEAP_PAUSE:
            return True  # a step down is on trial: judge it before taking another
        if (
            pause < self.CHEAP_PAUSE
            and self._ceiling is not None
            and now - self._ceiling[1] < self.GOOD_MEMORY
        ):
            # Under a limit shown to answer rises with 429s (and slower rates without), a
            # share of them above RISE_NOISE is this limit, not noise: a little slower.
            acc, thr = self._counts_at_this_rate(drained)
            if thr > self.RISE_STRAYS and thr > self._noise_bound(acc + thr):
                # The ceiling keeps its time: it is forgotten GOOD_MEMORY after the rise that
                # found it, whatever happened since.
                self._ceiling = (min(self.rate, self._ceiling[0]), self._ceiling[1])
                # On trial: if the share of 429s does not fall, they were noise (not-cured).
                self._cure = (self.rate, thr / (acc + thr), now)
                self.phase = Phase.HOLD
                self._step = 0
                self._set(
                    now,
                    self.rate * self.HOLD,
                    Reason.STEP_DOWN,
                    f"{thr} 429s in {acc + thr} attempts at {self.rate:.4g}/s",
                )
                return True
        # What the noise alone would give, with two standard deviations of slack.
        noise = max(self.NOISE_SHARE, self._tolerated_share)
        expected = noise * answered + 2.0 * math.sqrt(noise * answered)
        if pause < self.CHEAP_PAUSE and throttled <= expected:
            self._noise_seen = True
            self._note(now, Reason.TOLERATED, f"{share:.1%} of 429s with no pause")
            return True
        if self._tolerated_share and share <= 1.5 * self._tolerated_share:
            self._note(now, Reason.TOLERATED, f"{share:.1%} of 429s: slowing down did not lower it")
            return True
        pace = self.rate
        readings: list[tuple[float, Reason, str]] = []
        saturated = self._saturated_rate(now) if share >= self.SATURATED_SHARE else None
        if saturated is not None:
            readings.append(
                (saturated, Reason.SATURATED, f"{saturated:.4g}/s accepted with {share:.0%} 429s")
            )
        real_pause = pause >= self.CHEAP_PAUSE
        if pause >= 0.5 and drained - pause < self._resume <= drained:
            # What the server took in the last `pause` seconds: a window's limit per window,
            # when the server's pause is about its window (a bucket's reading here is its
            # rate plus its burst; read only when the last pause ended inside that span).
            acc, _ = _window_counts(self._log, drained - pause, drained)
            rate = acc / pause
            readings.append(
                (rate, Reason.RECENT, f"{acc} accepted in the {pause:.1f} s before the 429")
            )
        if self._last_drain is not None and real_pause:
            d2d_acc, _ = _window_counts(self._log, self._last_drain, drained)
            gap = drained - self._last_drain
            if gap > 0.2:
                rate = d2d_acc / gap
                readings.append(
                    (
                        rate,
                        Reason.DRAIN_TO_DRAIN,
                        f"{d2d_acc} accepted in {gap:.1f} s between two 429s",
                    )
                )
        elif self._burst is None and pause >= self.CHEAP_PAUSE:
            # The first 429 from a full start: the burst the server allowed.
            acc, _ = _window_counts(self._log, start, drained)
            self._burst = float(max(acc, 1))
            self._first_span = drained - start
            rate = acc / (drained - start + max(pause, 0.5))
            readings.append(
                (
                    rate,
                    Reason.DRAIN_TO_DRAIN,
                    f"{acc} accepted before the first 429, then a {pause:.1f} s pause",
                )
            )
        if real_pause and drained - self._rate_since >= self.STEP_AFTER:
            # The pace ran a while before this 429: the limit is a little below it, whatever
            # the floors say (a window's edge, a bucket slowly drained).
            readings.append(
                (
                    pace * self.STEP_DOWN / self.HOLD,
                    Reason.STEP_DOWN,
                    f"{pace:.4g}/s ran {drained - self._rate_since:.1f} s before a 429",
                )
            )
        fit = self._bucket_fit(drained, pace) if pause >= self.CHEAP_PAUSE else None
        if fit is not None:
            readings.append(fit)
        self._last_drain = drained
        # Drain-to-drain readings are floors (the server took at least that); the others are
        # estimates. An estimate is plausible between the floor and the pace that drained;
        # one no higher than the floor says nothing more than the floor does.
        floors = [r for r in readings if r[1] is Reason.DRAIN_TO_DRAIN]
        floor = max(floors, key=lambda r: r[0]) if floors else None
        low = floor[0] if floor is not None else 0.0
        estimates = [
            r
            for r in readings
            if r[1] is not Reason.DRAIN_TO_DRAIN and 1.05 * low <= r[0] < 0.98 * pace
        ]
        # Only a share read on enough attempts, below saturation, can be compared later.
        testable = (
            answered >= self.CURE_EVIDENCE and share < self.SATURATED_SHARE and not real_pause
        )
        self._cheap_limit = not real_pause
        if self.phase is Phase.FULL:
            # What pausing alone gets from this server at full pace: the bar to beat.
            acc, _ = _window_counts(self._log, max(self._resume, start), drained)
            self._full_rate = acc / max(drained - max(self._resume, start) + pause, 1e-3)
            if now < self._pause_only_until:
                self._note(now, Reason.PAUSE_ONLY, "pausing alone did better here")
                return True
        if (
            self.phase is not Phase.FULL
            and floor is not None
            and floor[0] < self.PAUSE_ONLY_MARGIN * self._full_rate
        ):
            # Adapting got no more between two 429s than pausing alone did at full pace (a
            # window's limit comes back whole after each pause; adapting only spreads it, and
            # loses at the job's end): pause alone for a while.
            self._cure = None
            self.phase = Phase.FULL
            self._pause_only_until = now + self.FULL_STAY
            self._set(
                now,
                self.max_rate,
                Reason.PAUSE_ONLY,
                f"{floor[0]:.4g}/s adapted, {self._full_rate:.4g}/s pausing alone",
            )
            return True
        if len(estimates) > 1:
            # A step down is only a fallback: any other estimate knows better.
            estimates = [r for r in estimates if r[1] is not Reason.STEP_DOWN]
        if estimates:
            best = max(estimates, key=lambda r: r[0])
            self._cure = (pace, share, now) if testable else None
            self.phase = Phase.HOLD
            self._step = 0
            if self._good is not None and best[0] <= self._good <= best[0] / self.HOLD**2:
                # The rate that "ran quietly" was just above this limit (a bucket's burst hid
                # the excess for a few seconds): going back to it would only drain again.
                self._good = None
            self._set(now, max(self.min_rate, best[0] * self.HOLD), best[1], best[2])
            return True
        if floor is not None and floor[0] < 0.98 * pace:
            # A floor only: climb from it until the next 429 allows an estimate.
            self._cure = None
            self.phase = Phase.SEARCH
            self._search_from = max(self.min_rate, min(floor[0], pace * self.HOLD))
            self._search_start = now + pause
            self._search_stride = min(2.0, (pace / self._search_from) ** (1.0 / self.SEARCH_SPAN))
            self._step = 0
            self._set(now, self._search_from, Reason.SEARCHING, floor[2])
            return True
        if not real_pause:
            # Nothing to read, and more 429s than noise: try slower, and check it helped.
            self._cure = (pace, share, now) if testable else None
            self.phase = Phase.HOLD
            self._step = 0
            self._set(now, pace * self.BLIND_STEP, Reason.BLIND, f"{share:.1%} of 429s, no pause")
            return True
        # Every reading says the server took what we sent: the pause is what paces us.
        self._note(now, Reason.TOLERATED, f"{share:.1%} of 429s; the server accepted the pace")
        return True

    def _rise_failed(self, drained: float) -> bool:
        """Did the last rise draw more 429s than a couple of strays (a busy event loop bunches
        a few sends even well below a cap), and a share of them above RISE_NOISE? Past a cap
        on requests in flight the share jumps (measured: 0.1% at 145/s against a cap of
        147/s, 12% at 150/s), so three come quickly when the rise really overran it."""
        accepted, throttled = _window_counts(self._log, self._rise_at, drained + 1e-9)
        return throttled > self.RISE_STRAYS and throttled > self._noise_bound(accepted + throttled)

    def _counts_at_this_rate(self, drained: float) -> tuple[int, int]:
        """(accepted, throttled) among the attempts of the last WINDOW sent at the current
        rate, up to the one sent at ``drained``."""
        return _window_counts(
            self._log, max(drained - self.WINDOW, self._rate_since), drained + 1e-9
        )

    def _noise_bound(self, answered: int) -> float:
        """The most 429s among ``answered`` attempts that noise explains: RISE_NOISE, or the
        share of random 429s already tolerated (or NOISE_SHARE once any was). Random 429s on
        top of a real limit must not be read as that limit (they would drag the rate down step
        by step); a step down they cause is put on trial and undone (``not-cured``), and their
        share is tolerated from then on. No slack of standard deviations here: under a cap,
        a few percent more is the cap (measured: 2.2% of 429s against 2.8% with two of them)."""
        noise = max(self.RISE_NOISE, self._tolerated_share)
        if self._noise_seen:
            noise = max(noise, self.NOISE_SHARE)
        return noise * answered

    def _start_bisecting(self, now: float) -> None:
        self.phase = Phase.BISECT
        self._search_start = now
        self._step = 0

    def _saturated_rate(self, now: float) -> float | None:
        """The rate of accepted answers over the last window (None with too few of them)."""
        first = last = None
        count = 0
        for ticket in reversed(self._log):
            if ticket.sent < now - 2 * self.WINDOW:
                break
            if ticket.state is Outcome.ACCEPTED and ticket.answered >= now - self.WINDOW:
                count += 1
                first = ticket.answered if first is None else min(first, ticket.answered)
                last = ticket.answered if last is None else max(last, ticket.answered)
        if count < 5 or first is None or last is None or last - first < 0.02:
            return None
        return (count - 1) / (last - first)

    def _bucket_fit(self, drained: float, pace: float) -> tuple[float, Reason, str] | None:
        """Refill rate of a bucket, of the burst seen at the first 429, that is empty at
        ``drained``: replayed from the previous 429 (empty then, refilled during the pause) or,
        before any, from the start (full). None when the log is too short to tell."""
        if self._burst is None:
            return None
        origin = self._last_drain if self._last_drain is not None else self._started
        if origin is None or drained - max(origin, self._resume) < self.MIN_FIT_SPAN:
            return None
        sent = [
            t.sent for t in self._log if origin <= t.sent < drained and t.state is Outcome.ACCEPTED
        ]
        if len(sent) < 5:
            return None
        burst, first_span = self._burst, self._first_span
        full = self._last_drain is None

        def left(rate: float) -> float:
            # The first 429 came after `burst` accepted in `first_span` seconds from a full
            # bucket, which refilled meanwhile: its capacity is less than `burst`. Only half
            # that refill is taken off, since send times run ahead of arrival times (measured
            # in the simulator: the whole refill reads buckets 1-2% fast, none reads a bucket
            # whose limit is half the pace 20% slow).
            cap = max(1.0, burst - 0.5 * rate * first_span)
            tokens, last = (cap if full else 0.0), origin
            for when in sent:
                tokens = min(cap, tokens + rate * (when - last)) - 1.0
                last = when
            return min(cap, tokens + rate * (drained - last))

        lo, hi = self.min_rate, pace
        if left(hi) < 0.5 or left(lo) >= 0.5:
            return None  # no rate below the pace explains a drain here: not a bucket
        for _ in range(30):
            mid = math.sqrt(lo * hi)
            if left(mid) >= 0.5:
                hi = mid
            else:
                lo = mid
        span = drained - origin
        return (
            hi,
            Reason.BUCKET_FIT,
            f"{len(sent)} accepted in the {span:.1f} s since the last 429",
        )

    def _judge_cure(self, now: float) -> None:
        """After slowing down, did the share of 429s fall? If not, they are noise: undo."""
        assert self._cure is not None
        before_rate, before_share, at = self._cure
        if now - at < 2.0 * self.WINDOW:
            return
        self._cure = None
        accepted, throttled = _window_counts(self._log, at, now)
        if accepted + throttled < self.CURE_EVIDENCE:
            return
        share = throttled / (accepted + throttled)
        # Noise is a few percent: a share above NOISE_MAX after slowing down means the step
        # was too small for a real limit (a cap on requests in flight still overrun), not
        # that slowing down cannot help.
        if share >= 0.7 * before_share and self.rate < before_rate and share <= self.NOISE_MAX:
            self._tolerated_share = max(self._tolerated_share, share)
            self.phase = Phase.HOLD
            self._set(
                now,
                before_rate,
                Reason.NOT_CURED,
                f"{share:.1%} of 429s at {self.rate:.4g}/s, "
                f"{before_share:.1%} at {before_rate:.4g}/s",
            )

    # --- bookkeeping ---------------------------------------------------------------------------
    def _set(self, now: float, new: float, reason: Reason, evidence: str) -> None:
        new = max(self.min_rate, min(self.max_rate, new))
        old = self.rate
        self.rate = new
        if new > old and max(self._throttled_sent, self._rate_since) <= now - self.QUIET_RUN:
            # The old rate ran a while, and none of the attempts of its last QUIET_RUN seconds
            # drew a 429 (earlier ones may have: a cap on requests in flight still held the
            # attempts sent before it).
            self._below, self._rise_at = old, now
        elif new < old:
            self._below = None
        if new != old:
            self._rate_since = now
            self.last_change = RateChange(now, old, new, reason, evidence)
            self.changes.append(self.last_change)
        if (
            reason is not Reason.SEARCHING
            and reason is not Reason.QUIET
            and reason is not Reason.RECOVERED
        ):
            self._quiet_since = max(self._quiet_since, now)

    def _note(self, now: float, reason: Reason, evidence: str) -> None:
        self.last_change = RateChange(now, self.rate, self.rate, reason, evidence)
