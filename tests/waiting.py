"""Helpers for tests that wait for the event loop to reach a state: hang guards, never timings."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(predicate: Callable[[], bool], what: str, limit: float = 10.0) -> None:
    """Let the loop run until ``predicate`` holds (a hang guard, not a timing assertion)."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + limit
    while not predicate():
        if loop.time() > give_up:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.001)


async def settle() -> None:
    """A few loop turns, so that callbacks scheduled by a cancellation have run."""
    for _ in range(5):
        await asyncio.sleep(0)
