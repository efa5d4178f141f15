"""``wait_for`` that never loses a cancellation.

``asyncio.wait_for`` before Python 3.12 returns the awaited result when its task is cancelled
in the same turn of the event loop in which that result arrived, and the cancellation is gone
(CPython gh-86296; 3.12 rewrote it on ``asyncio.timeout``). A fan-out worker that lost its
cancellation that way, waiting for a rate slot at that moment, went on to wait for a place
among the results that its consumer, gone, would never give: the fan-out's clean-up waited
for it forever (the likely cause of a command line that hung once in CI after Ctrl-C).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["wait_for"]

T = TypeVar("T")


async def wait_for(awaitable: Awaitable[T], timeout: float | None) -> T:
    """``asyncio.wait_for(awaitable, timeout)``, but a cancellation of the calling task that
    came while it waited is raised, whether the awaited thing returned or failed meanwhile.
    (Python 3.10 has no count of pending cancellations to tell by: there it is
    ``asyncio.wait_for`` as it is, and ``fan_out`` does not rely on it.)"""
    task = asyncio.current_task()
    pending = getattr(task, "cancelling", None)
    before = pending() if pending is not None else 0
    try:
        result = await asyncio.wait_for(awaitable, timeout)
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        # 3.11 hands on the awaited thing's own error when a cancel came with it (its own
        # timeout racing a cancel raises CancelledError): the cancel comes first.
        if pending is not None and pending() > before:
            raise asyncio.CancelledError from exc
        raise
    if pending is not None and pending() > before:
        raise asyncio.CancelledError  # requested while waiting, and swallowed with the result
    return result
