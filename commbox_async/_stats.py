"""Counters a caller can read at any time: what the client sent, what came back, where time went."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

__all__ = ["ClientStats", "StatsSnapshot"]

_LATENCY_WINDOW = 8192


@dataclass(frozen=True)
class StatsSnapshot:
    """A consistent copy of the counters at one moment."""

    requests: int
    successes: int
    failures: int
    retries: int
    throttled: int
    errors_by_kind: dict[str, int]
    limiter_wait_s: float
    pause_wait_s: float
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    current_rate: float
    in_flight: int
    #: Why the rate last changed, with the evidence ("1000 -> 98/s (bucket-fit): ...").
    rate_change: str = ""

    def as_dict(self) -> dict[str, object]:
        """Plain values, for logs and JSON."""
        return dict(self.__dict__)


@dataclass
class ClientStats:
    """Mutable counters updated by the client; read them with ``snapshot()``.

    ``requests`` counts attempts sent (retries included), ``successes`` and ``failures`` count
    calls that ended, ``retries`` attempts after the first, ``throttled`` responses with 429.
    Latency percentiles are over the last 8192 attempts that got a response. Waiting times are
    summed over every waiting task (task-seconds), so they can exceed the wall-clock time.
    """

    requests: int = 0
    successes: int = 0
    failures: int = 0
    retries: int = 0
    throttled: int = 0
    in_flight: int = 0
    errors_by_kind: Counter[str] = field(default_factory=Counter)
    _latencies: deque[float] = field(default_factory=lambda: deque(maxlen=_LATENCY_WINDOW))

    def record_latency(self, seconds: float) -> None:
        self._latencies.append(seconds)

    def snapshot(
        self,
        current_rate: float = 0.0,
        waited: tuple[float, float] = (0.0, 0.0),
        rate_change: str = "",
    ) -> StatsSnapshot:
        """Copy the counters; ``waited`` is the limiter's (rate, pause) waiting time."""
        ordered = sorted(self._latencies)

        def pct(p: float) -> float | None:
            if not ordered:
                return None
            return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000.0

        return StatsSnapshot(
            requests=self.requests,
            successes=self.successes,
            failures=self.failures,
            retries=self.retries,
            throttled=self.throttled,
            errors_by_kind=dict(self.errors_by_kind),
            limiter_wait_s=waited[0],
            pause_wait_s=waited[1],
            latency_p50_ms=pct(0.50),
            latency_p95_ms=pct(0.95),
            latency_p99_ms=pct(0.99),
            current_rate=current_rate,
            in_flight=self.in_flight,
            rate_change=rate_change,
        )
