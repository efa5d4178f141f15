"""Shared in-flight calls: concurrent callers with the same key wait for one request.

The request runs in its own task; each caller waits on a future of its own, which the task's
end fills for everyone (one callback, one loop over the waiters). A caller that is cancelled
loses only its own future, so the request goes on for the others; when the last caller leaves
before the end, nobody wants the answer any more and the request is cancelled. Every caller
gets the same page, or the same exception. (``asyncio.shield`` per caller would do the same
with two callbacks and a closure each: with a thousand callers on one call, that is most of
the cost of sharing.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

__all__ = ["InFlight", "Shared"]

K = TypeVar("K")
V = TypeVar("V")


class Shared(Generic[V]):
    """One running call: its task and the futures of the callers waiting on it."""

    __slots__ = ("ends", "task", "waiters")

    def __init__(self, task: asyncio.Task[V]) -> None:
        self.task = task
        self.waiters: list[asyncio.Future[V]] = []
        #: When the call's own deadline passes (monotonic), as its starter set it.
        self.ends = float("inf")


class InFlight(Generic[K, V]):
    """The calls running now, by key; ``run`` joins one or starts it."""

    def __init__(self, closed_error: Callable[[], BaseException]) -> None:
        self._calls: dict[K, Shared[V]] = {}
        # What the waiters get when the call was cancelled by ``cancel_all`` (the client
        # closing) rather than by its callers leaving.
        self._closed_error = closed_error

    def __len__(self) -> int:
        return len(self._calls)

    def join(
        self, key: K, start: Callable[[], Coroutine[Any, Any, V]]
    ) -> tuple[Shared[V], asyncio.Future[V], bool]:
        """A future of this caller's own for the call on ``key`` (started with ``start()``
        when none runs), the call, and whether it was already running.

        A plain function, not a coroutine: a thousand callers of one call each cost a future
        and nothing more. A caller that stops waiting (cancelled, timed out) must ``leave``.
        """
        shared = self._calls.get(key)
        joined = shared is not None
        if shared is None:
            shared = self._start(key, start)
        waiter: asyncio.Future[V] = shared.task.get_loop().create_future()
        shared.waiters.append(waiter)
        return shared, waiter, joined

    def _start(self, key: K, start: Callable[[], Coroutine[Any, Any, V]]) -> Shared[V]:
        task = asyncio.ensure_future(start())
        shared = Shared(task)
        self._calls[key] = shared

        def finished(task: asyncio.Task[V]) -> None:
            if self._calls.get(key) is shared:
                del self._calls[key]
            if task.cancelled():
                error: BaseException | None = self._closed_error()
            else:
                error = task.exception()  # retrieved: a lost error is not logged as such
            for waiter in shared.waiters:
                if waiter.done():  # its caller was cancelled or timed out meanwhile
                    continue
                if error is not None:
                    waiter.set_exception(error)
                else:
                    waiter.set_result(task.result())

        task.add_done_callback(finished)
        return shared

    def leave(self, key: K, shared: Shared[V], waiter: asyncio.Future[V]) -> None:
        """This caller no longer waits; the last one to leave cancels the call."""
        if waiter in shared.waiters:
            shared.waiters.remove(waiter)
        if not shared.waiters and not shared.task.done():
            # Nobody wants the answer any more; a caller arriving now starts afresh.
            if self._calls.get(key) is shared:
                del self._calls[key]
            shared.task.cancel()

    def cancel_all(self) -> list[asyncio.Task[V]]:
        """Cancel every running call (the client is closing); returns their tasks to await."""
        tasks = [shared.task for shared in self._calls.values()]
        for task in tasks:
            task.cancel()
        return tasks
