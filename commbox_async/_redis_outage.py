"""Paces this process on its own while Redis is unreachable, and says when to try Redis again.

The outage state machine of ``RedisLimiter``: up (slots come from the shared schedule), down
(slots come from a ``LocalLimiter`` at ``fallback_rate``, after the slots every process already
booked are due) and probing (one attempt tries Redis, on a wall-clock grid of
``reconnect_interval`` seconds, so that every process returns at the same moment). One warning
when Redis goes away, one line when it is back. No Redis here: the limiter tells it what
happened.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time

from ._pacing import Ticket
from ._throttle import LocalLimiter

__all__ = ["Outage"]

logger = logging.getLogger("commbox_async.redis")


class Outage:
    """Whether the shared schedule is in use, and the fallback for when it is not."""

    def __init__(
        self, key: str, fallback: LocalLimiter, fallback_rate: float, reconnect_interval: float
    ) -> None:
        self._key = key  # for the log lines
        self.fallback = fallback
        self.fallback_rate = fallback_rate
        self.interval = reconnect_interval
        self.up = True
        self._probing = False
        self._retry_at = 0.0  # wall-clock time of the next probe
        # When the last slot granted by Redis (to any process, as far as we know) is due, and how
        # far ahead of now the schedule was booked at the last reply.
        self._horizon = -math.inf
        self._lead = 0.0
        self._waited = 0.0  # for the slots booked before the outage
        #: Times Redis became unreachable.
        self.count = 0
        #: Slots taken from the fallback limiter.
        self.slots = 0

    @property
    def waited(self) -> tuple[float, float]:
        """Task-seconds waited for fallback slots, and for the fallback limiter's pauses."""
        rate, pause = self.fallback.waited
        return self._waited + rate, pause

    def booked(self, received: float, lead: float) -> None:
        """Redis answered a slot at ``received`` with the schedule booked ``lead`` seconds ahead."""
        self._lead = lead
        self._horizon = max(self._horizon, received + lead)

    def use_redis(self) -> bool:
        """Whether this attempt asks Redis: always while up; while down, one attempt (the probe)
        once the grid's next time has come, and the others keep the fallback."""
        if self.up:
            return True
        if not self._probing and time.time() >= self._retry_at:
            self._probing = True
            return True
        return False

    def probe_done(self) -> None:
        """The probe ended, whatever came of it (a cancelled one too)."""
        self._probing = False

    async def acquire(self) -> Ticket | None:
        """A fallback slot; None when Redis came back while this attempt waited."""
        # The slots that every process took from Redis before it went away still pace them
        # all until the last of them is due; the fallback rate applies one interval after.
        wait = self._horizon + 1.0 / self.fallback_rate - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
            self._waited += wait
        ticket = await self.fallback.acquire()
        if self.up:
            return None
        self.slots += 1
        return ticket

    def went_down(self, exc: BaseException) -> None:
        """A command failed: fall back (and warn) if Redis was up; try again on the grid."""
        self._probing = False
        # On a wall-clock grid, so that every process tries again (and returns) together.
        self._retry_at = (math.floor(time.time() / self.interval) + 1) * self.interval
        if not self.up:
            return
        self.up = False
        self.count += 1
        # Other processes booked slots after our last reply: about as far ahead as then.
        self._horizon = max(self._horizon, time.monotonic() + self._lead)
        logger.warning(
            "Redis unreachable for limiter %r (%s: %s); pacing this process at %.3g req/s "
            "until it returns",
            self._key,
            type(exc).__name__,
            exc,
            self.fallback_rate,
        )

    def came_back(self) -> None:
        """A command succeeded."""
        self._probing = False
        if not self.up:
            self.up = True
            logger.info("Redis reachable again for limiter %r; sharing the rate", self._key)
