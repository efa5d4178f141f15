"""What this process knows of the key's shared pause and of the schedule's rebookings.

Redis holds the schedule; the replies of the scripts and the key's channel tell this process
when the pause ends and when the schedule was rebooked (the shared rate changed). This keeps
what they told, and the waits that follow from it: for the pause to end, and for a slot unless
the schedule is rebooked from before it. No Redis here.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time

from ._waiting import wait_for

__all__ = ["ScheduleView"]


class ScheduleView:
    """The pause's end and the last rebooking, as far as this process knows."""

    def __init__(self) -> None:
        # Pauses: approximate end on our clock (for waiting), exact end on Redis's clock (for
        # giving up slots inside it), and the end of a pause we started ourselves.
        self._pause_until = -math.inf
        self._redis_pause_end = -math.inf
        self._own_pause_until = -math.inf
        #: Task-seconds spent waiting for pauses (before a slot was asked for, or in one).
        self.waited = 0.0
        # The schedule's last rebooking known here: its epoch, and the Redis time it began at.
        self._epoch = 0
        self._rebook_from = math.inf
        self._rebooked = asyncio.Event()  # set (and replaced) when the schedule is rebooked

    def remaining(self) -> float:
        """Seconds until the pause ends, as far as this process knows."""
        return max(0.0, self._pause_until - time.monotonic())

    def note_pause(self, pause_end: float, redis_now: float, received: float) -> None:
        """Redis said at ``redis_now`` (our ``received``) that the pause ends at ``pause_end``."""
        if pause_end > self._redis_pause_end:
            self._redis_pause_end = pause_end
        remaining = pause_end - redis_now
        if remaining > 0 and received + remaining > self._pause_until:
            self._pause_until = received + remaining

    def pause_here(self, until: float) -> None:
        """A 429 seen by this process pauses it until ``until`` (our clock), Redis or not."""
        self._own_pause_until = max(self._own_pause_until, until)
        self._pause_until = max(self._pause_until, until)

    def takes_back(self, slot: float, now: float) -> bool:
        """Whether a pause that began after ``slot`` (Redis's clock) was granted takes it back."""
        return slot < self._redis_pause_end or self._own_pause_until > now

    async def wait_pause(self) -> None:
        started = 0.0
        while True:
            now = time.monotonic()
            remaining = self._pause_until - now
            if remaining <= 0:
                break
            if not started:
                started = now
            await asyncio.sleep(remaining)
        if started:
            self.waited += time.monotonic() - started

    def note_epoch(self, epoch: int, redis_now: float) -> None:
        """A slot booked at ``redis_now`` (Redis's clock) in the schedule's ``epoch``. Booked
        after the last rebooking known here, yet in an older epoch: Redis's count started over
        (a Redis restarted or flushed). Take its word, or every slot it books from now on would
        look booked before that rebooking, and be given back, for ever (no request sent,
        thousands of Redis commands a second)."""
        if epoch < self._epoch and redis_now > self._rebook_from:
            self._epoch, self._rebook_from = epoch, math.inf

    def rebooked(self, start: float, epoch: int) -> None:
        """The schedule was rebooked from ``start`` (Redis's clock): wake the slots' holders."""
        if epoch > self._epoch:
            self._epoch, self._rebook_from = epoch, start
            self._rebooked.set()
            self._rebooked = asyncio.Event()

    async def wait_slot(self, slot: float, epoch: int, due: float) -> bool:
        """Sleep until ``due`` (``slot`` on Redis's clock); False when the schedule was rebooked
        from before ``slot`` meanwhile: the rate changed, and a slot booked at the old rate would
        hold its holder back long after a rise, or go out with the others at a pause's end."""
        while True:
            if self._epoch > epoch and slot > self._rebook_from:
                return False
            remaining = due - time.monotonic()
            if remaining <= 0:
                return True
            rebooked = self._rebooked
            with contextlib.suppress(asyncio.TimeoutError):
                await wait_for(rebooked.wait(), remaining)
