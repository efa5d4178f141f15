"""The fake server's throttle: a server-wide token bucket that answers 429 when it is empty."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Bucket", "Throttling"]


@dataclass(kw_only=True)
class Throttling:
    """A server-wide token bucket: ``rate`` tokens a second up to ``burst``.

    ``retry_after`` is the header value sent with a 429 (None: no header).
    """

    rate: float
    burst: float = 10.0
    retry_after: str | None = "1"


class Bucket:
    """The token bucket itself, on the server's clock."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float]) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens, self.stamp = burst, clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False
