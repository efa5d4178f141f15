"""Everything about pacing: the limiter, the shared pause, the adaptive rate, the retry budget.

One client has one limiter; every attempt (retries included) takes a slot from it. A 429 pauses
the whole limiter, not just the request that got it: no attempt starts before the server's
Retry-After has passed. With adaptation on, the send rate then moves toward what the server
accepts (see ``RateEstimator``) and never above the configured maximum.

``Limiter`` is the protocol the client speaks; ``LocalLimiter`` is the in-process
implementation built on aiolimiter. A limiter shared between processes implements the same
protocol.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

import msgspec
from aiolimiter import AsyncLimiter

from ._config import RateLimit

__all__ = ["Limiter", "LocalLimiter", "RateEstimator", "RetryBudget", "Ticket"]

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

PENDING, ACCEPTED, THROTTLED = 0, 1, 2


class Ticket(msgspec.Struct, gc=False):
    """One attempt's slot: when it was sent and, once known, whether it was throttled.

    A gc=False Struct: one is made per attempt and the estimator keeps thousands, and the
    garbage collector need not scan objects that cannot form cycles.
    """

    sent: float
    state: int = PENDING


class Limiter(Protocol):
    """What the client needs from a limiter, in-process or shared."""

    async def acquire(self) -> Ticket:
        """Wait for any pause to end and for a slot under the current rate."""
        ...

    def report(self, ticket: Ticket, *, throttled: bool, retry_after: float | None) -> None:
        """Tell the limiter how an attempt ended; a throttled one starts (or extends) a pause."""
        ...

    def pause_remaining(self) -> float:
        """Seconds until the current pause ends (0 when not paused)."""
        ...

    @property
    def current_rate(self) -> float:
        """The send rate in force now, in requests per second."""
        ...

    @property
    def waited(self) -> tuple[float, float]:
        """Total seconds callers spent waiting (on the rate, on pauses)."""
        ...

    async def aclose(self) -> None:
        """Release what the limiter holds (connections of a shared limiter)."""
        ...


class RetryBudget:
    """A client-wide allowance of retries, so a failing server is not hammered by every worker.

    Every first attempt earns ``ratio`` tokens (up to ``reserve``); every retry spends one.
    """

    def __init__(self, ratio: float, reserve: float) -> None:
        self.ratio = ratio
        self.reserve = reserve
        self.tokens = reserve

    def earn(self) -> None:
        if self.tokens < self.reserve:  # full most of the time: skip the arithmetic
            self.tokens = min(self.reserve, self.tokens + self.ratio)

    def spend(self) -> bool:
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class RateEstimator:
    """Finds the rate a token-bucket server accepts, from the client's own send log. No I/O.

    The model: the server refills R tokens a second up to a burst b, and answers 429 when it has
    none. A 429 marks a moment when its bucket was empty. The estimator keeps the send time and
    outcome of every attempt since the last such moment and replays them through a bucket for a
    candidate R; bisection finds the rates consistent with what was seen.

    - Start at the configured maximum: when the server is faster this costs nothing.
    - First 429 (bucket full at the start, unknown R and b): one equation ``b + R*d1 = A1``
      (A1 accepted in the first d1 seconds). Climb geometrically from a low rate so that the next
      drain is approached from below.
    - Later 429s: replay from the previous drain (bucket empty then) with b from that equation,
      keep the rates consistent with every accepted attempt and with the drain, and hold just
      under the lowest of them.
    - Quiet periods raise the rate slowly (servers change their limits), faster the longer the
      quiet lasts, never above the maximum.
    """

    CLIMB_FACTOR = 1.7  # per CLIMB_STEP seconds, while looking for the second drain
    CLIMB_STEP = 0.25
    HOLD = 0.98  # fraction of the (conservative) estimate to hold at
    PROBE_INTERVAL = 6.0  # quiet seconds between upward probes
    PROBE_FIRST = 0.005  # first probe's increase; doubles each quiet interval
    PROBE_MAX = 0.25
    MAX_LOG = 20_000  # attempts kept for replay; older ones are summarised as a full bucket
    ARRIVAL_SLACK = 0.001  # seconds between our send time and the server's arrival time
    FALLBACK_DECREASE = 0.7
    DECREASE_INTERVAL = 0.2  # seconds between two blind decreases
    MIN_ANALYSIS_PAUSE = 0.5

    def __init__(self, max_rate: float, min_rate: float) -> None:
        self.max_rate = max_rate
        self.min_rate = min_rate
        self.rate = max_rate
        self.estimate: float | None = None
        self.mode = "max"
        self._log: deque[Ticket] = deque()
        # Where the replay starts: a time and whether the bucket was full (True) or empty then.
        self._origin: float | None = None
        self._origin_full = True
        self._b_line: tuple[float, float] | None = None  # (A1, d1): b + R*d1 = A1
        self._episode_start = -math.inf
        self._drain: float | None = None
        self._pause_len = 0.0
        self.last_fit: tuple[float, float] | None = None
        self._last_decrease = -math.inf
        self._climb_start = 0.0
        self._climb_rate0 = max_rate
        self._quiet_since = 0.0
        self._probe_step = self.PROBE_FIRST

    # --- inputs -------------------------------------------------------------------------
    def on_send(self, ticket: Ticket) -> None:
        if self._origin is None:
            self._origin = ticket.sent
        self._log.append(ticket)
        if len(self._log) > self.MAX_LOG:
            # Keep memory bounded; long quiet stretches leave the server's bucket full.
            dropped = self._log.popleft()
            if self._drain is None:
                self._origin, self._origin_full = dropped.sent, True

    def on_throttled(self, ticket: Ticket, pause_len: float) -> None:
        # Attempts sent before the last pause ended belong to the drain already analysed.
        if ticket.sent < self._episode_start:
            return
        if self._drain is None or ticket.sent < self._drain:
            self._drain = ticket.sent
        self._pause_len = max(self._pause_len, pause_len)

    def on_pause_end(self, now: float) -> None:
        """Analyse the drain that caused the pause and choose the rate to resume at."""
        drain = self._drain
        if drain is None:
            return
        origin = self._origin if self._origin is not None else drain
        entries = [t for t in self._log if origin <= t.sent < drain]
        accepted = sum(1 for t in entries if t.state != THROTTLED)
        if self._b_line is None and self._origin_full and accepted >= 3:
            d1 = max(drain - origin, 0.0)
            self._b_line = (float(accepted), d1)
            # The server asked for a pause that (for a token bucket) refills about one burst,
            # so burst / pause is a floor for its rate: start the climb there. A server that
            # asks for no pause at all gets the floor of a half-second pause.
            rate0 = accepted / (d1 + max(self._pause_len, self.MIN_ANALYSIS_PAUSE))
            self._start_climb(max(self.min_rate, min(self.max_rate, rate0)), now)
        elif self._b_line is None:
            # Throttled before a run from a full bucket (another client drained it, or the
            # first attempt got a 429): nothing to measure yet, so back off blindly and treat
            # the end of a real pause as a full bucket to measure from.
            self._blind_decrease(now)
            if self._pause_len >= self.MIN_ANALYSIS_PAUSE:
                self._trim_before(drain)
                self._origin, self._origin_full = now, True
                self._episode_start = now
                self._drain = None
                self._pause_len = 0.0
                return
        elif sum(1 for t in entries if t.sent >= self._episode_start and t.state != THROTTLED) < 3:
            # Too little evidence since the last decision (attempts in flight across a short
            # pause, or a server that asks for no pause): back off, at most once per interval.
            self._blind_decrease(now)
        else:
            estimate = self._fit(entries, origin, self._origin_full, drain)
            self.estimate = estimate
            self.mode = "hold"
            self.rate = max(self.min_rate, min(self.max_rate, self.HOLD * estimate))
            self._quiet_since = now
            self._probe_step = self.PROBE_FIRST
            self._last_decrease = now
        # The bucket was empty at the drain: the next replay starts there.
        self._trim_before(drain)
        self._origin, self._origin_full = drain, False
        self._episode_start = now
        self._drain = None
        self._pause_len = 0.0

    def tick(self, now: float) -> float:
        """The rate to send at now (climbing or probing as time passes)."""
        if self.mode == "climb":
            steps = (now - self._climb_start) / self.CLIMB_STEP
            self.rate = min(self.max_rate, self._climb_rate0 * self.CLIMB_FACTOR**steps)
            if self.rate >= self.max_rate:
                self.mode = "max"
        elif self.mode == "hold" and now - self._quiet_since >= self.PROBE_INTERVAL:
            self._quiet_since = now
            self.rate = min(self.max_rate, self.rate * (1.0 + self._probe_step))
            self._probe_step = min(self.PROBE_MAX, self._probe_step * 2.0)
            if self.rate >= self.max_rate:
                self.mode = "max"
        return self.rate

    # --- the fit ------------------------------------------------------------------------
    def _trim_before(self, when: float) -> None:
        while self._log and self._log[0].sent < when:
            self._log.popleft()

    def _blind_decrease(self, now: float) -> None:
        if now - self._last_decrease < self.DECREASE_INTERVAL:
            return
        self._last_decrease = now
        lower = max(self.min_rate, self.rate * self.FALLBACK_DECREASE)
        if self.mode == "climb":
            self._start_climb(lower, now)  # keep looking for a clean drain
        else:
            self.mode = "hold"
            self.rate = lower
            self._quiet_since = now
            self._probe_step = self.PROBE_FIRST

    def _start_climb(self, rate0: float, now: float) -> None:
        self.mode = "climb"
        self._climb_rate0 = rate0
        self._climb_start = now
        self.rate = rate0

    def _burst(self, rate: float, left: float) -> float:
        assert self._b_line is not None
        accepted, d1 = self._b_line
        # The first drain found `left` tokens, somewhere in [0, 1): b = A1 - R*d1 + left.
        return min(accepted + left, max(1.0, accepted + left - rate * d1))

    def _replay(
        self,
        rate: float,
        sent: list[float],
        ok: list[bool],
        origin: float,
        full: bool,
        drain: float,
        check_from: float,
        left: float,
    ) -> tuple[float, float]:
        """Tokens at the drain, and the fewest tokens any checked accepted attempt found."""
        cap = self._burst(rate, left)
        tokens = cap if full else 0.0
        last = origin
        fewest = math.inf
        for when, accepted in zip(sent, ok, strict=True):
            tokens = min(cap, tokens + rate * (when - last))
            last = when
            if accepted:
                if when >= check_from and tokens < fewest:
                    fewest = tokens
                tokens -= 1.0
        tokens = min(cap, tokens + rate * (drain - last))
        return tokens, fewest

    def _fit(self, entries: list[Ticket], origin: float, full: bool, drain: float) -> float:
        sent = [t.sent for t in entries]
        ok = [t.state != THROTTLED for t in entries]
        # Attempts in flight across the previous pause are judged by the server's clock, not
        # ours; only those sent after it ended constrain the fit.
        check_from = self._episode_start
        low, high = self.min_rate, self.max_rate

        def bisect(predicate: Callable[[float], bool]) -> float:
            # Smallest rate in [low, high] for which predicate holds (predicate is monotone).
            lo, hi = low, high
            if predicate(lo):
                return lo
            if not predicate(hi):
                return hi
            for _ in range(24):
                mid = math.sqrt(lo * hi)
                if predicate(mid):
                    hi = mid
                else:
                    lo = mid
            return hi

        # Upper bound: the drain needs the bucket below one token at the drain.
        r_high = bisect(
            lambda r: self._replay(r, sent, ok, origin, full, drain, check_from, 0.0)[0] >= 1.0
        )
        # Lower bound: every accepted attempt needed a token when it reached the server, which
        # is a little after we sent it: allow a fifth of a token plus a millisecond of refill.
        r_low = bisect(
            lambda r: (
                self._replay(r, sent, ok, origin, full, drain, check_from, 0.99)[1]
                >= 0.8 - r * self.ARRIVAL_SLACK
            )
        )
        self.last_fit = (r_low, r_high)
        if r_high <= low * 1.0001 or r_low > r_high:
            # The log fits no token bucket (another kind of limiter, or 429s for other
            # reasons): back off multiplicatively instead of trusting the fit.
            return max(low, self.rate * self.FALLBACK_DECREASE)
        # Both bounds allow for what the log cannot tell (the burst's last token, the trip
        # to the server), so the truth lies between them; erring low costs a little time,
        # erring high costs a pause per drain, so lean to the low side. A single drain never
        # justifies more than halving the rate we were sending at.
        return max(r_low + 0.25 * (r_high - r_low), min(r_high, self.rate * 0.5))


class LocalLimiter:
    """The in-process limiter: aiolimiter for the rate, one shared pause, adaptive rate.

    ``clock`` and ``sleep`` can be injected (tests); they default to the loop's monotonic time
    and ``asyncio.sleep``. Build it inside a running loop or let the client build it.
    """

    def __init__(
        self,
        rate_limit: RateLimit,
        *,
        default_retry_after: float = 1.0,
        max_retry_after: float = 120.0,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = rate_limit
        self._default_retry_after = default_retry_after
        self._max_retry_after = max_retry_after
        self._clock = clock or time.monotonic
        self._sleep = sleep or asyncio.sleep
        self._rng = rng or random.Random()
        self._estimator = (
            RateEstimator(rate_limit.max_rate, rate_limit.min_rate) if rate_limit.adaptive else None
        )
        self._pause_until = -math.inf
        self._pause_pending_analysis = False
        self._limiter_rate = 0.0
        self._limiter: AsyncLimiter | None = None
        self._fresh = False
        self._waited_rate = 0.0
        self._waited_pause = 0.0

    @property
    def current_rate(self) -> float:
        return self._estimator.rate if self._estimator is not None else self.config.max_rate

    @property
    def estimator(self) -> RateEstimator | None:
        return self._estimator

    @property
    def waited(self) -> tuple[float, float]:
        return self._waited_rate, self._waited_pause

    def pause_remaining(self) -> float:
        return max(0.0, self._pause_until - self._clock())

    def _make_limiter(self, rate: float) -> AsyncLimiter:
        burst = self.config.burst if rate >= 4 * self.config.burst else 1
        # uvloop's loop.time() moves in whole milliseconds and stands still within a loop
        # iteration, so a bucket of c slots lets at most c attempts out per millisecond
        # (2,000/s with a burst of 2): hold at least 2 ms of the rate.
        burst = max(burst, math.ceil(rate * 0.002))
        # A bucket of capacity c lets c-1 attempts beyond the rate into any one-second window;
        # near the configured maximum, drip that much slower (and one more for the jitter
        # between send and arrival) so that no window ever holds more than the maximum.
        drip = max(min(rate, self.config.max_rate - burst), rate / 2)
        self._limiter_rate = rate
        return AsyncLimiter(burst, burst / drip)

    async def acquire(self) -> Ticket:
        while True:
            if self._pause_until > -math.inf:
                await self._wait_pause()
            limiter = self._limiter
            if limiter is None or self._estimator is not None:
                limiter = self._current_limiter()
            if self._fresh and limiter.has_capacity():
                # A new rate starts with an empty bucket: attempts that were waiting for the
                # old limiter must not go out together as a burst at the new one.
                self._fresh = False
                await limiter.acquire(limiter.max_rate)
            started = self._clock()
            await limiter.acquire()
            now = self._clock()
            self._waited_rate += now - started
            # A pause or a new rate may have come while this attempt waited for its slot.
            if limiter is self._limiter and now >= self._pause_until:
                break
        ticket = Ticket(now)
        if self._estimator is not None:
            self._estimator.on_send(ticket)
        return ticket

    def _current_limiter(self) -> AsyncLimiter:
        rate = self.current_rate
        if self._estimator is not None:
            rate = self._estimator.tick(self._clock())
        limiter = self._limiter
        if (
            limiter is None
            or (rate != self._limiter_rate and abs(rate / self._limiter_rate - 1.0) > 0.08)
            or (rate == self.config.max_rate and self._limiter_rate != rate)
        ):
            self._fresh = limiter is not None
            limiter = self._limiter = self._make_limiter(rate)
        return limiter

    async def _wait_pause(self) -> None:
        started = self._clock()
        while True:
            remaining = self._pause_until - self._clock()
            if remaining <= 0:
                break
            await self._sleep(remaining)
        if self._pause_pending_analysis:
            self._pause_pending_analysis = False
            if self._estimator is not None:
                self._estimator.on_pause_end(self._clock())
        now = self._clock()
        self._waited_pause += now - started
        if now >= self._pause_until:
            # Over: later attempts skip this check (and this coroutine) until the next 429.
            self._pause_until = -math.inf

    def report(self, ticket: Ticket, *, throttled: bool, retry_after: float | None) -> None:
        if not throttled:
            ticket.state = ACCEPTED
            return
        ticket.state = THROTTLED
        wait = self._default_retry_after if retry_after is None else retry_after
        wait = min(wait, self._max_retry_after)
        # Jitter only ever adds delay, so nobody starts before the server said.
        wait += self._rng.uniform(0.0, min(0.05, 0.1 * wait))
        until = self._clock() + wait
        if until > self._pause_until:
            self._pause_until = until
        if self._estimator is not None:
            self._estimator.on_throttled(ticket, wait)
            self._pause_pending_analysis = True

    async def aclose(self) -> None:
        return None
