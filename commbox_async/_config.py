"""Small frozen configuration objects and their defaults.

Each is keyword-only, validated when built, and varied with ``dataclasses.replace``. The client
accepts either one of these or a plain number where that reads naturally (``rate_limit=50``,
``timeout=10``, ``retries=3``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ._errors import InvalidArgumentError
from ._validate import check_int, check_number

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_RATE_LIMIT",
    "DEFAULT_RETRIES",
    "DEFAULT_TIMEOUT",
    "PoolConfig",
    "RateLimit",
    "Retries",
    "Timeout",
]

DEFAULT_BASE_URL = "https://api.commbox.io"


@dataclass(frozen=True, kw_only=True)
class RateLimit:
    """How fast the client may send, for all of its requests together (retries included).

    ``max_rate`` requests per second is a ceiling the client never exceeds. ``burst`` is the
    limiter's capacity: kept small so that a fresh client does not start with a burst above the
    rate. With ``adaptive`` on, a 429 lowers the send rate toward what the server accepted and
    quiet periods raise it again, never above ``max_rate``; ``min_rate`` is the floor.

    ``start_rate`` starts an adaptive client at a rate an earlier one found (its
    ``stats.current_rate`` at the end of a run), instead of at ``max_rate``: it skips the
    seconds of finding a limit met before. It is a starting point, not a ceiling: quiet time
    raises it toward ``max_rate`` as usual, and a 429 lowers it. ``None`` starts at ``max_rate``.
    """

    max_rate: float = 10.0
    burst: int = 2
    adaptive: bool = True
    min_rate: float = 0.5
    start_rate: float | None = None

    def __post_init__(self) -> None:
        check_number("rate_limit.max_rate", self.max_rate, allow_low=False)
        check_int("rate_limit.burst", self.burst, low=1)
        check_number("rate_limit.min_rate", self.min_rate, allow_low=False)
        if self.min_rate > self.max_rate:
            raise InvalidArgumentError("rate_limit.min_rate must not exceed rate_limit.max_rate")
        if self.start_rate is not None:
            # At most max_rate: a start above the ceiling would be a typo, not a memory.
            check_number(
                "rate_limit.start_rate", self.start_rate, allow_low=False, high=self.max_rate
            )


@dataclass(frozen=True, kw_only=True)
class Retries:
    """How failed attempts are retried.

    ``tries`` bounds the attempts that fail for reasons other than throttling (5xx, resets,
    timeouts, truncated bodies); ``throttled_tries`` separately bounds attempts answered 429,
    because those are paced by the shared pause rather than by the failure. ``max_time`` is the
    total deadline of one call, waits included: a wait that would pass it fails at once.
    Delays between attempts grow exponentially from ``base_delay`` up to ``max_delay``, with
    full jitter. ``max_retry_after`` caps what a server's Retry-After can make the client wait;
    ``default_retry_after`` is the pause after a 429 that gave none.

    The retry budget keeps a failing server from being hammered by every worker at once: each
    first attempt earns ``budget_ratio`` retry tokens (up to ``budget_reserve``), each retry of a
    non-429 failure spends one, and with none left a failure is final.

    Why 8 tries: with 10% of attempts failing at random, the chance that all 8 attempts of one
    identity fail is 1e-8, so a job of a million identities loses none in practice; the retry
    ratio of such a job is about 0.11, well inside a budget ratio of 0.5.
    """

    tries: int = 8
    throttled_tries: int = 30
    max_time: float = 300.0
    base_delay: float = 0.2
    max_delay: float = 20.0
    max_retry_after: float = 120.0
    default_retry_after: float = 1.0
    budget_ratio: float = 0.5
    budget_reserve: float = 100.0

    def __post_init__(self) -> None:
        check_int("retries.tries", self.tries, low=1)
        check_int("retries.throttled_tries", self.throttled_tries, low=1)
        check_number("retries.max_time", self.max_time, allow_low=False)
        check_number("retries.base_delay", self.base_delay)
        check_number("retries.max_delay", self.max_delay)
        check_number("retries.max_retry_after", self.max_retry_after)
        check_number("retries.default_retry_after", self.default_retry_after)
        check_number("retries.budget_ratio", self.budget_ratio)
        check_number("retries.budget_reserve", self.budget_reserve)


@dataclass(frozen=True, kw_only=True)
class Timeout:
    """Per-attempt limits in seconds.

    ``total`` bounds one attempt from connect to the last body byte (a stalled body included),
    ``connect`` the wait for a pooled or new connection. ``sock_read`` (off by default) also
    bounds the gap between two reads: aiohttp re-arms a timer for it on every chunk received,
    which costs about 5% of the throughput of small pages (benchmarks/RESULTS.md).
    """

    total: float = 30.0
    connect: float = 10.0
    sock_read: float | None = None

    def __post_init__(self) -> None:
        check_number("timeout.total", self.total, allow_low=False)
        check_number("timeout.connect", self.connect, allow_low=False)
        if self.sock_read is not None:
            check_number("timeout.sock_read", self.sock_read, allow_low=False)


@dataclass(frozen=True, kw_only=True)
class PoolConfig:
    """The connection pool of the session the client owns.

    ``max_body_bytes`` caps one response body: a larger one fails with a clear error instead of
    filling memory.
    """

    limit: int = 100
    limit_per_host: int = 0
    keepalive_timeout: float = 30.0
    max_body_bytes: int = 32 * 1024 * 1024

    def __post_init__(self) -> None:
        check_int("pool.limit", self.limit, low=1)
        check_int("pool.limit_per_host", self.limit_per_host, low=0)
        check_number("pool.keepalive_timeout", self.keepalive_timeout)
        check_int("pool.max_body_bytes", self.max_body_bytes, low=1024)


DEFAULT_RATE_LIMIT = RateLimit()
DEFAULT_RETRIES = Retries()
DEFAULT_TIMEOUT = Timeout()


def as_rate_limit(value: RateLimit | float | int | None) -> RateLimit:
    """A number is requests per second; None means the documented default."""
    if value is None:
        return DEFAULT_RATE_LIMIT
    if isinstance(value, RateLimit):
        return value
    rate = check_number("rate_limit", value, allow_low=False)
    return RateLimit(max_rate=rate, min_rate=min(DEFAULT_RATE_LIMIT.min_rate, rate))


def as_retries(value: Retries | int | None) -> Retries:
    """A number is the count of tries for non-throttling failures (1 means never retry)."""
    if value is None:
        return DEFAULT_RETRIES
    if isinstance(value, Retries):
        return value
    return Retries(tries=check_int("retries", value, low=1))


def as_timeout(value: Timeout | float | int | object | None) -> Timeout:
    """Accepts seconds, a ``Timeout``, or an ``aiohttp.ClientTimeout`` (its unset parts default)."""
    if value is None:
        return DEFAULT_TIMEOUT
    if isinstance(value, Timeout):
        return value
    total = getattr(value, "total", None)
    if hasattr(value, "sock_read") and hasattr(value, "connect"):
        # aiohttp.ClientTimeout: keep our defaults where it leaves a limit unset (None).
        connect = getattr(value, "connect", None) or getattr(value, "sock_connect", None)
        sock_read = getattr(value, "sock_read", None)
        return Timeout(
            total=total if total is not None else DEFAULT_TIMEOUT.total,
            connect=connect if connect is not None else DEFAULT_TIMEOUT.connect,
            sock_read=sock_read,
        )
    seconds = check_number("timeout", value, allow_low=False)
    return Timeout(
        total=seconds,
        connect=min(seconds, DEFAULT_TIMEOUT.connect),
    )
