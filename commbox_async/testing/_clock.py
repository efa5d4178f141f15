"""A virtual clock for tests: time moves only when something sleeps on it."""

from __future__ import annotations

import asyncio

__all__ = ["VirtualClock"]


class VirtualClock:
    """A clock that moves only when someone sleeps on it, and remembers every sleep.

    Pass it as ``LocalLimiter(..., clock=vc, sleep=vc.sleep)`` and as ``FakeCommbox(clock=vc)``:
    pauses and waits then cost no real time, and the server's log uses the same time line.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def time(self) -> float:
        """The virtual time now, in seconds (also as ``clock``)."""
        return self.now

    clock = time

    async def sleep(self, seconds: float) -> None:
        """Move the clock on by ``seconds`` at once, and remember the sleep."""
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)
