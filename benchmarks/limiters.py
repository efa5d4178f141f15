"""Server-side limiters the client cannot see: the kinds of throttling the pacing issue names.

No I/O and no clock of their own: every decision takes ``now`` (seconds on the server's
monotonic clock), so the tests drive them with plain numbers. A limiter answers ``decide(now)``
with a :class:`Verdict`: accepted, or throttled with the ``Retry-After`` value to send (``None``
for no header). ``hold`` is how long the server keeps an accepted request before answering, and
``release()`` is called when that answer leaves (only the in-flight cap uses either).

The semantics follow the pacing issue and agree with the independent check
``../shared/checks/throttle_zoo.py``: buckets start full and refill along a schedule, a fixed
window's 429 points at the next window, the in-flight cap answers ``Retry-After: 0``, and the
random limiter draws from a seeded generator so that every contender of a round meets the same
sequence of 429s.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    """What the server answers one request: 200, or 429 with this Retry-After (None: no header)."""

    accepted: bool
    retry_after: str | None = None


ACCEPT = Verdict(True)


class Limiter:
    """A server's limit. ``start(now)`` resets it for a new run at the run's first request."""

    hold = 0.0

    def start(self, now: float) -> None:
        self.t0 = now

    def decide(self, now: float) -> Verdict:
        raise NotImplementedError

    def release(self) -> None:
        """An accepted request's answer has left the server."""


class TokenBucket(Limiter):
    """Tokens refill at a rate that follows ``schedule`` (pairs of seconds after the start and
    the rate from then on), capped at ``burst``; the bucket is full at the start. An empty
    bucket answers 429 with ``retry_after`` (None: no header)."""

    def __init__(
        self, schedule: list[tuple[float, float]], burst: float, retry_after: str | None
    ) -> None:
        if not schedule or schedule[0][0] != 0.0:
            raise ValueError("a schedule starts at second 0")
        self.schedule, self.burst, self.retry_after = schedule, burst, retry_after

    def start(self, now: float) -> None:
        super().start(now)
        self.tokens = float(self.burst)
        self.refilled = 0.0  # tokens the schedule had produced at the last decision

    def produced(self, elapsed: float) -> float:
        """Tokens the schedule produces in the first ``elapsed`` seconds (its integral)."""
        total = 0.0
        for i, (since, rate) in enumerate(self.schedule):
            until = self.schedule[i + 1][0] if i + 1 < len(self.schedule) else math.inf
            if elapsed <= since:
                break
            total += rate * (min(elapsed, until) - since)
        return total

    def decide(self, now: float) -> Verdict:
        produced = self.produced(now - self.t0)
        self.tokens = min(float(self.burst), self.tokens + produced - self.refilled)
        self.refilled = produced
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return ACCEPT
        return Verdict(False, self.retry_after)


class FixedWindow(Limiter):
    """At most ``limit`` accepted per window of ``window`` seconds, the windows counted from the
    clock's zero (so the run starts at an arbitrary phase, as against a wall-clock second); a
    429 says how many whole seconds remain until the next window (at least 1)."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window = limit, window

    def start(self, now: float) -> None:
        super().start(now)
        self.index, self.count = -1, 0

    def decide(self, now: float) -> Verdict:
        index = math.floor(now / self.window)
        if index != self.index:
            self.index, self.count = index, 0
        if self.count < self.limit:
            self.count += 1
            return ACCEPT
        remaining = (index + 1) * self.window - now
        return Verdict(False, str(max(1, math.ceil(remaining))))


class SlidingWindow(Limiter):
    """At most ``limit`` accepted in any trailing ``span`` seconds; a 429 says how many whole
    seconds remain until the oldest accepted request leaves the window (at least 1)."""

    def __init__(self, limit: int, span: float) -> None:
        self.limit, self.span = limit, span

    def start(self, now: float) -> None:
        super().start(now)
        self.accepted: deque[float] = deque()

    def decide(self, now: float) -> Verdict:
        while self.accepted and self.accepted[0] <= now - self.span:
            self.accepted.popleft()
        if len(self.accepted) < self.limit:
            self.accepted.append(now)
            return ACCEPT
        return Verdict(False, str(max(1, math.ceil(self.accepted[0] + self.span - now))))


class InFlightCap(Limiter):
    """Each accepted request is held ``hold`` seconds; beyond ``cap`` at once, 429 with
    ``Retry-After: 0`` (the kind of server whose 429s depend on overlap, not on rate)."""

    def __init__(self, cap: int, hold: float) -> None:
        self.cap, self.hold = cap, hold

    def start(self, now: float) -> None:
        super().start(now)
        self.in_flight = 0
        self.most = 0

    def decide(self, now: float) -> Verdict:
        if self.in_flight >= self.cap:
            return Verdict(False, "0")
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        return ACCEPT

    def release(self) -> None:
        self.in_flight -= 1


class RandomThrottle(Limiter):
    """No rate limit; each request is answered 429 (``Retry-After: 0``) with probability ``p``,
    drawn from a generator seeded at every start (the same 429s for every contender)."""

    def __init__(self, p: float, seed: int) -> None:
        self.p, self.seed = p, seed

    def start(self, now: float) -> None:
        super().start(now)
        self.rng = random.Random(self.seed)

    def decide(self, now: float) -> Verdict:
        return Verdict(False, "0") if self.rng.random() < self.p else ACCEPT
