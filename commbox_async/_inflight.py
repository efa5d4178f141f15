"""Shared in-flight calls: concurrent callers with the same key wait for one request.

The request runs in its own task, and each caller waits on it through ``asyncio.shield``, so
cancelling one caller leaves the request running for the others. When the last caller leaves
before the end, nobody wants the answer any more and the request is cancelled. Every caller
gets the same page, or the same exception.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

__all__ = ["InFlight"]

K = TypeVar("K")
V = TypeVar("V")


class _Shared(Generic[V]):
    __slots__ = ("task", "waiters")

    def __init__(self, task: asyncio.Task[V]) -> None:
        self.task = task
        self.waiters = 0


class InFlight(Generic[K, V]):
    """The calls running now, by key; ``run`` joins one or starts it."""

    def __init__(self, closed_error: Callable[[], BaseException]) -> None:
        self._calls: dict[K, _Shared[V]] = {}
        # What a caller gets when the call was cancelled by ``cancel_all`` (the client closing)
        # rather than by the caller itself.
        self._closed_error = closed_error

    def __len__(self) -> int:
        return len(self._calls)

    async def run(
        self, key: K, start: Callable[[], Coroutine[Any, Any, V]], timeout: float | None = None
    ) -> V:
        """The result of the call for ``key``: a running one if any, else ``start()``'s.

        ``timeout`` bounds this caller's wait when it joins a call started by someone with a
        later deadline; the call itself goes on for the others.
        """
        shared = self._calls.get(key)
        joined = shared is not None
        if shared is None:
            shared = _Shared(asyncio.ensure_future(start()))
            self._calls[key] = shared
            shared.task.add_done_callback(lambda task: self._finished(key, task))
        task = shared.task
        shared.waiters += 1
        try:
            if joined and timeout is not None:
                return await asyncio.wait_for(asyncio.shield(task), timeout)
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled():  # the call itself was cancelled, not this caller
                raise self._closed_error() from None
            raise
        finally:
            shared.waiters -= 1
            if shared.waiters == 0 and not task.done():
                # Nobody wants the answer any more; a caller arriving now starts afresh.
                if self._calls.get(key) is shared:
                    del self._calls[key]
                task.cancel()

    def _finished(self, key: K, task: asyncio.Task[V]) -> None:
        shared = self._calls.get(key)
        if shared is not None and shared.task is task:
            del self._calls[key]
        if not task.cancelled():
            task.exception()  # retrieved: an error no caller stayed for is not logged as lost

    def cancel_all(self) -> list[asyncio.Task[V]]:
        """Cancel every running call (the client is closing); returns their tasks to await."""
        tasks = [shared.task for shared in self._calls.values()]
        for task in tasks:
            task.cancel()
        return tasks
