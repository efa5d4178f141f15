"""The limiters: what the client awaits before each attempt, and tells how it ended.

One client has one limiter; every attempt (retries included) takes a slot from it. A 429 pauses
the whole limiter, not just the request that got it: no attempt starts before the server's
Retry-After has passed. What the pause is (``PausePolicy``) and how the rate moves
(``PacingModel``) live in ``_pacing``, written once for every limiter.

``Limiter`` is the protocol the client speaks; ``LocalLimiter`` is the in-process
implementation: aiolimiter paces the attempts at the model's rate. A limiter shared between
processes (``RedisLimiter``) implements the same protocol.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from aiolimiter import AsyncLimiter

from ._config import RateLimit
from ._pacing import Outcome, PacingModel, PausePolicy, RateChange, Ticket
from ._waiting import wait_for

__all__ = ["Limiter", "LocalLimiter", "Ticket", "log_rate_change"]

logger = logging.getLogger("commbox_async.pacing")

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

#: A rate change larger than this fraction of the last logged rate is logged at INFO.
LOG_CHANGE = 0.2


class Limiter(Protocol):
    """What the client needs from a limiter, in-process or shared."""

    async def acquire(self, deadline: float | None = None) -> Ticket:
        """Wait for any pause to end and for a slot under the current rate.

        ``deadline``, a ``time.monotonic()`` instant: a wait that would pass it raises
        ``TimeoutError`` and takes no slot. (The client passes it only to a limiter whose
        class sets ``bounds_deadline = True``; it bounds any other limiter's wait itself.)"""
        ...

    def report(self, ticket: Ticket, outcome: Outcome, retry_after: float | None = None) -> None:
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
    def last_change(self) -> RateChange:
        """The last change of the rate, and why (or why a 429 did not change it)."""
        ...

    @property
    def waited(self) -> tuple[float, float]:
        """Total seconds callers spent waiting (on the rate, on pauses)."""
        ...

    async def aclose(self) -> None:
        """Release what the limiter holds (connections of a shared limiter)."""
        ...


def log_rate_change(change: RateChange, last_logged: float) -> float:
    """Log ``change`` at INFO when it moved the rate by more than a fifth since the last line;
    returns the rate now logged against."""
    if last_logged > 0 and abs(change.new / last_logged - 1.0) <= LOG_CHANGE:
        return last_logged
    logger.info(
        "rate %.4g -> %.4g/s (%s): %s",
        last_logged,
        change.new,
        change.reason.value,
        change.evidence,
    )
    return change.new


class LocalLimiter:
    """The in-process limiter: aiolimiter for the rate, one shared pause, the pacing model.

    ``clock`` and ``sleep`` can be injected (tests); they default to the monotonic clock and
    ``asyncio.sleep``. Build it inside a running loop or let the client build it.
    """

    #: ``acquire`` honours its ``deadline`` (see ``Limiter.acquire``).
    bounds_deadline = True

    def __init__(
        self,
        rate_limit: RateLimit,
        *,
        pause_policy: PausePolicy | None = None,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = rate_limit
        self.pause_policy = pause_policy or PausePolicy()
        self._clock = clock or time.monotonic
        self._sleep = sleep or asyncio.sleep
        self._rng = rng or random.Random()
        self.model = PacingModel(
            rate_limit.max_rate,
            rate_limit.min_rate,
            adaptive=rate_limit.adaptive,
            start_rate=rate_limit.start_rate,
        )
        self._limiter_rate = 0.0
        self._limiter: AsyncLimiter | None = None
        #: Done when the limiter is replaced: wakes the attempts waiting in the old one.
        self._swapped: asyncio.Future[None] | None = None
        self._fresh = False
        self._waited_rate = 0.0
        self._waited_pause = 0.0
        self._logged_change = self.model.last_change
        self._logged_rate = rate_limit.max_rate
        # The pauses, for a caller to show (the command line's summary): how many began, the
        # wall-clock seconds of those that ended, and the one in progress (or the last one).
        self._pauses = 0
        self._paused_before = 0.0
        self._pause_from = 0.0
        self._pause_to = 0.0
        self._pause_asked: float | None = None
        self._last_slot = -math.inf  # when the last slot was taken (``idle``)

    @property
    def current_rate(self) -> float:
        """The rate the model holds now (requests per second)."""
        return self.model.rate

    @property
    def last_change(self) -> RateChange:
        """The model's last change of the rate, with its reason and evidence."""
        return self.model.last_change

    @property
    def waited(self) -> tuple[float, float]:
        """Task-seconds spent waiting for a slot, and for pauses."""
        return self._waited_rate, self._waited_pause

    def pause_remaining(self) -> float:
        """Seconds until the whole-client pause ends (0 when not paused)."""
        return self.model.pause_remaining(self._clock())

    def carry_pause(self, seconds: float, asked: float | None) -> None:
        """Wait out ``seconds`` of a pause another limiter of this account began (a plan
        change replaces the limiter, not the server's Retry-After); ``asked`` as that 429's."""
        if seconds <= 0:
            return
        now = self._clock()
        was_paused = self.model.pause_remaining(now) > 0
        self.model.hold_until(now + seconds)
        self._count_pause(now, was_paused, asked)

    def idle(self) -> float:
        """Seconds since the last slot was taken (infinite before the first)."""
        return self._clock() - self._last_slot

    @property
    def pauses(self) -> int:
        """Whole-client pauses begun so far (a 429 during a pause extends it: not one more)."""
        return self._pauses

    @property
    def paused(self) -> float:
        """Wall-clock seconds the client has spent paused so far (not task-seconds: one pause
        of 120 s is 120 s, however many tasks waited it out)."""
        current = max(0.0, min(self._clock(), self._pause_to) - self._pause_from)
        return self._paused_before + current

    @property
    def pause_asked(self) -> float | None:
        """The Retry-After, in seconds, that the server sent with the 429 that set the end of
        the current (or last) pause; None when it sent none (the default pause applied)."""
        return self._pause_asked

    def _make_limiter(self, rate: float) -> AsyncLimiter:
        # A burst only where it is small against the rate: the slack below costs a slot.
        burst = self.config.burst if rate >= 20 * self.config.burst else 1
        # uvloop's loop.time() moves in whole milliseconds and stands still within a loop
        # iteration, so a bucket of c slots lets at most c attempts out per millisecond
        # (2,000/s with a burst of 2): hold at least 2 ms of the rate.
        burst = max(burst, math.ceil(rate * 0.002))
        # A bucket of capacity c lets c-1 attempts beyond the rate into any one-second window;
        # near the configured maximum, drip c - 1 slower and a slot more, so that no window
        # of the *server's* log ever holds more than the maximum: the first attempts wait for
        # their connections, which brings them nearer to those after them (measured: 41 in
        # one second at max_rate=40, burst=4, with a drip of max_rate - (c - 1)). At
        # max_rate=10 the slack is 3% of the rate instead (9.7/s, not 9/s: a whole slot would
        # be a tenth of it).
        slack = min(1.0, 0.03 * self.config.max_rate)
        drip = max(min(rate, self.config.max_rate - (burst - 1) - slack), rate / 2)
        self._limiter_rate = rate
        return AsyncLimiter(burst, burst / drip)

    async def acquire(self, deadline: float | None = None) -> Ticket:
        """Wait for any pause to end and for a slot at the model's rate; ``TimeoutError``,
        and no slot taken, if that would pass ``deadline`` (a ``time.monotonic()`` instant)."""
        now = self._clock()
        limiter = self._limiter
        if (
            limiter is not None
            and not self._fresh
            and self.model.pause_remaining(now) <= 0
            and self._current_limiter(now) is limiter
            and limiter.has_capacity()
        ):
            # The usual case, read at one instant: no pause, the rate as it was, a free slot.
            # Taking that slot does not wait, so the checks the loop below makes after a wait
            # would find nothing new; the limiter's own acquire still takes it.
            await limiter.acquire()
            self._last_slot = now
            return self.model.on_send(now)
        if deadline is None:
            return await self._acquire_waiting()
        # Only a wait pays for the timer (a task: more than the rest of this method).
        return await wait_for(self._acquire_waiting(), deadline - time.monotonic())

    async def _acquire_waiting(self) -> Ticket:
        """``acquire`` when it may have to wait: for a pause, a new rate's empty bucket, or a
        slot; the rate and the pause are read again after every wait."""
        model = self.model
        while True:
            if model.pause_remaining(self._clock()) > 0:
                await self._wait_pause()
            limiter = self._current_limiter()
            if self._fresh and limiter.has_capacity():
                # A new rate starts with an empty bucket: attempts that were waiting for the
                # old limiter must not go out together as a burst at the new one.
                self._fresh = False
                await limiter.acquire(limiter.max_rate)
            started = self._clock()
            got_slot = await self._slot(limiter)
            now = self._clock()
            self._waited_rate += now - started
            if not got_slot:
                continue  # the rate changed while this attempt waited: wait at the new one
            # A pause or a new rate may have come while this attempt waited for its slot. The
            # rate is read again here, not only before waiting: when every worker waits in
            # the old limiter, nobody else would notice a cut, and they would all go out at
            # the old pace (measured: ten attempts in 15 ms after a cut from 1,000 to 100/s).
            if self._current_limiter() is limiter and model.pause_remaining(now) <= 0:
                self._last_slot = now
                return model.on_send(now)

    async def _slot(self, limiter: AsyncLimiter) -> bool:
        """A slot from ``limiter``, or False when the rate changed first.

        Attempts queued in a slow limiter would otherwise keep its pace after the rate rose,
        one slot at a time (measured: about 2 requests/s for 9 s after a rise to 20/s).
        """
        if limiter.has_capacity():
            await limiter.acquire()
            return True
        if self._swapped is None or self._swapped.done():
            self._swapped = asyncio.get_running_loop().create_future()
        swapped = self._swapped
        slot = asyncio.ensure_future(limiter.acquire())
        try:
            await asyncio.wait((slot, swapped), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not slot.done():
                slot.cancel()  # the rate changed, or this attempt was cancelled
        if slot.cancelled() or not slot.done():
            return False
        slot.result()
        return True

    def _current_limiter(self, now: float | None = None) -> AsyncLimiter:
        rate = self.model.rate_at(self._clock() if now is None else now)
        self._note_change()
        limiter = self._limiter
        if limiter is None or rate != self._limiter_rate:
            # Every change takes effect at once: a pace above the model's would cost 429s
            # that its statistics would not show; attempts waiting in the old limiter are
            # woken to wait at the new one.
            self._fresh = limiter is not None
            limiter = self._limiter = self._make_limiter(rate)
            if self._swapped is not None and not self._swapped.done():
                self._swapped.set_result(None)
        return limiter

    async def _wait_pause(self) -> None:
        started = self._clock()
        while True:
            remaining = self.model.pause_remaining(self._clock())
            if remaining <= 0:
                break
            await self._sleep(remaining)
        self._waited_pause += self._clock() - started

    def report(self, ticket: Ticket, outcome: Outcome, retry_after: float | None = None) -> None:
        """How an attempt ended; a 429 starts (or extends) the whole-client pause."""
        if outcome is Outcome.THROTTLED:
            policy = self.pause_policy
            pause = policy.pause_for(retry_after, self._rng)
            asked = policy.asked(retry_after)
            now = self._clock()
            was_paused = self.model.pause_remaining(now) > 0
            self.model.on_answer(ticket, now, outcome, pause=pause, asked=asked)
            self._count_pause(now, was_paused, retry_after)
            self._note_change()
        else:
            self.model.on_answer(ticket, self._clock(), outcome)

    def _count_pause(self, now: float, was_paused: bool, retry_after: float | None) -> None:
        """Count a pause that a 429 began, or follow one that it extended."""
        end = now + self.model.pause_remaining(now)
        if end <= max(now, self._pause_to):
            return  # no pause (Retry-After: 0), or within the one in progress
        if not was_paused:
            self._paused_before += max(0.0, self._pause_to - self._pause_from)
            self._pauses += 1
            self._pause_from = now
        self._pause_to = end
        self._pause_asked = retry_after

    def _note_change(self) -> None:
        change = self.model.last_change
        if change is not self._logged_change:
            self._logged_change = change
            if change.new != change.old:
                self._logged_rate = log_rate_change(change, self._logged_rate)

    async def aclose(self) -> None:
        """Nothing to release: the in-process limiter holds no connection."""
        return None
