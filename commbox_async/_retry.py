"""Whether a failed attempt is tried again, and after how long: one function, no I/O.

The rules, in the order ``decide_retry`` applies them:

- An error that is not ``retryable`` (400, 401, 404, a bad payload...) ends the call.
- **Throttled (429, in the status or in the body's envelope).** The limiter's whole-client
  pause does most of the waiting: the next attempt cannot start before it ends. A call that is
  answered 429 again and again also backs off by itself (full jitter, growing with its own
  429s in a row), so that ``Retry-After: 0`` cannot make it spin. Its 429s count toward
  ``throttled_tries`` only while the server accepts nothing else: a call never fails for
  throttling while the server keeps answering other requests (it is only waiting its turn).
  The call's deadline still bounds it.
- **Other transient failures** (5xx, resets, timeouts, truncated bodies) back off
  exponentially with full jitter, up to ``tries`` attempts, each retry paid for from the
  client-wide ``RetryBudget``.
- Any wait that would pass the call's deadline ends it at once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import msgspec
from yarl import URL

from ._config import Retries
from ._errors import CommboxError, RateLimitError

__all__ = ["CallState", "RetryBudget", "decide_retry"]

#: Back-off of a call's own repeated 429s: this much after its first, doubling, full jitter.
THROTTLED_BASE_DELAY = 0.05


class CallState(msgspec.Struct):
    """One logical call across its attempts.

    A plain (gc-tracked) Struct: it is short-lived, and the URL it holds is an arbitrary object.
    """

    identity_id: int
    url: URL
    deadline: float  # on the monotonic clock
    started: float
    attempts: int = 0
    failures: int = 0  # non-429 failures
    throttled: int = 0  # 429s answered to this call
    throttled_streak: int = 0  # 429s while the server accepted nothing else
    accepted_seen: int = -1  # the client's accepted answers when this call was last throttled


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


@dataclass(frozen=True)
class RetryDecision:
    """``delay`` seconds before the next attempt, or ``None``: the call ends with the error."""

    delay: float | None
    why: str
    by_deadline: bool = False  # the call ends because its deadline would pass


def decide_retry(
    call: CallState,
    exc: CommboxError,
    config: Retries,
    budget: RetryBudget,
    rng: random.Random,
    *,
    now: float,
    pause_remaining: float,
    accepted_total: int,
) -> RetryDecision:
    """The one retry decision. ``pause_remaining`` is the limiter's whole-client pause;
    ``accepted_total`` counts the answers the client got that were not 429s (so that a 429
    can tell whether the server is still serving others)."""
    if not exc.retryable:
        return RetryDecision(None, "not retryable")
    remaining = call.deadline - now
    if isinstance(exc, RateLimitError):
        call.throttled += 1
        if accepted_total > call.accepted_seen:
            call.throttled_streak = 1  # the server is answering others: this call waits its turn
        else:
            call.throttled_streak += 1
        call.accepted_seen = accepted_total
        if call.throttled_streak >= config.throttled_tries:
            return RetryDecision(None, f"{call.throttled_streak} 429s in a row, none accepted")
        ceiling = min(config.max_delay, THROTTLED_BASE_DELAY * 2.0 ** (call.throttled_streak - 1))
        # The shared pause waits first; the call's own back-off only adds to a short one.
        delay = max(0.0, rng.uniform(0.0, ceiling) - pause_remaining)
        if pause_remaining + delay >= remaining:
            return RetryDecision(None, "the pause would pass the call's deadline", True)
        return RetryDecision(delay, "throttled")
    call.failures += 1
    ceiling = min(config.max_delay, config.base_delay * 2.0 ** (call.failures - 1))
    delay = rng.uniform(0.0, ceiling)  # full jitter
    if call.failures >= config.tries:
        return RetryDecision(None, f"{call.failures} attempts failed")
    if delay >= remaining:
        return RetryDecision(None, "the wait would pass the call's deadline", True)
    if not budget.spend():
        return RetryDecision(None, "the client's retry budget is spent")
    return RetryDecision(delay, exc.kind)
