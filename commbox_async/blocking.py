"""The blocking client: ``AsyncCommbox`` run on a private event-loop thread, the same calls without
``await``.

For code that is not async: a Celery task, a script, a Django view. ``Commbox`` starts one
daemon thread with its own event loop, builds an ``AsyncCommbox`` on it, and hands each call to
that loop, waiting for the answer in the calling thread:

    from commbox_async.blocking import Commbox

    with Commbox(token=..., rate_limit=20) as commbox:
        page = commbox.get_user_objects(558355)
        for result in commbox.fetch_many(ids, concurrency=16):
            ...

- **Safe from many threads.** Calls from any number of threads of the process share the one
  loop, connection pool and limiter (a Celery worker with ``--pool threads``).
- **One per process, made after the fork.** An event loop thread does not survive ``fork()``:
  a ``Commbox`` used in a process other than the one that made it refuses with
  ``ClientClosedError``. In a Celery prefork worker, make it in ``worker_process_init`` or on
  first use in the task, never at import in the parent.
- **Closed once.** ``close()`` (or the ``with`` block, or interpreter exit, or garbage
  collection) closes the client and any limiter it built, then stops the thread; later calls
  raise ``ClientClosedError``; a call still waiting when it closes raises it too.
- **Limiters with a life.** A ``RedisLimiter`` must be built and closed on the loop it serves:
  pass ``limiter_factory=lambda: RedisLimiter.from_url(...)``; the factory runs on the
  client's loop and the client closes what it returns. A ``limiter=`` is used as given and, as
  with ``AsyncCommbox``, not closed.
- **Lazy, bounded iteration.** ``fetch_many`` and ``iter_user_objects`` return iterators fed
  from the loop one result at a time: memory is bounded as in the async client, and leaving the
  loop early (``break``, or closing the iterator) stops the fan-out.

- **Many accounts, one pool.** ``with_token(token)`` returns an ``AccountView``: the same calls
  for another account (its own limiter, pause, retry budget and ``stats``) over this client's
  loop, session and pool, as ``AsyncCommbox.with_token``. One ``Commbox`` per worker process
  then serves every account; closing it ends its views. ``pause_remaining()`` tells how long
  an account (or the client's own) stays paused after a 429.

``watch`` is async only: a long poll belongs in async code.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import threading
import weakref
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
)
from types import TracebackType
from typing import Any, TypeVar

from ._client import AsyncCommbox, FanOutProgress, FetchResult
from ._errors import ClientClosedError, InvalidArgumentError
from ._models import UserObject, UserObjectsPage
from ._stats import StatsSnapshot
from ._throttle import Limiter

__all__ = ["AccountView", "Commbox"]

T = TypeVar("T")

_FORKED = (
    "this Commbox was made in process {made} and used in process {now}: its event-loop thread "
    "does not survive fork(); make one in each worker process after it starts (Celery: in "
    "worker_process_init or on first use in the task)"
)


class _Calls:
    """The blocking calls, on ``_client``, run by ``_check``, ``_call`` and ``_iterate``."""

    _client: AsyncCommbox

    def _check(self) -> None:
        raise NotImplementedError

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        raise NotImplementedError

    def _iterate(self, results: AsyncIterator[T]) -> Iterator[T]:
        raise NotImplementedError

    @property
    def stats(self) -> StatsSnapshot:
        """The async client's counters (``StatsSnapshot``); readable after ``close()`` too."""
        return self._client.stats

    def pause_remaining(self) -> float:
        """Seconds until this account's pause ends (a 429's ``Retry-After``), as far as this
        process knows: 0 when not paused. Read-only: a task may give its worker back while the
        account is paused, instead of waiting in it (``examples/celery_app.py``)."""
        self._check()
        client = self._client
        return self._call(_apply(lambda: client.limiter.pause_remaining()))

    def get_user_objects(self, identity_id: int, **options: Any) -> UserObjectsPage:
        """One page of an identity's conversations: ``AsyncCommbox.get_user_objects``."""
        self._check()
        return self._call(self._client.get_user_objects(identity_id, **options))

    def unread_counts(self, identity_ids: Iterable[Any], **options: Any) -> dict[int, int]:
        """Total unread chat messages per identity: ``AsyncCommbox.unread_counts``."""
        self._check()
        return self._call(self._client.unread_counts(identity_ids, **options))

    def fetch_many(
        self,
        identity_ids: Iterable[Any] | AsyncIterable[Any],
        *,
        on_progress: Callable[[FanOutProgress], None] | None = None,
        **options: Any,
    ) -> Iterator[FetchResult]:
        """One ``FetchResult`` per identity as each completes: ``AsyncCommbox.fetch_many``.

        An iterator fed from the loop: ids are read lazily there (a generator of ids runs on the
        loop's thread, as does ``on_progress``), so memory stays bounded by ``concurrency``.
        Arguments are checked here; ``list(...)`` it for a list.
        """
        self._check()
        client = self._client
        results = self._call(
            _apply(lambda: client.fetch_many(identity_ids, on_progress=on_progress, **options))
        )
        return self._iterate(results)

    def iter_user_objects(self, identity_id: int, **options: Any) -> Iterator[UserObject]:
        """Every conversation of an identity, page by page: ``AsyncCommbox.iter_user_objects``."""
        self._check()
        return self._iterate(self._client.iter_user_objects(identity_id, **options))


class Commbox(_Calls):
    """A blocking client for CommBox's v2 "Get User Objects" API; see the module docstring.

    Takes ``AsyncCommbox``'s arguments (``token``, ``base_url``, ``rate_limit``, ``retries``,
    ``limiter``...), except ``session`` (the client owns its session on its own loop), and
    ``limiter_factory``: a function run on the client's loop that returns the limiter, which
    the client closes when it closes (a ``RedisLimiter`` from ``RedisLimiter.from_url``).
    Arguments are checked here: a wrong one raises before the constructor returns.
    """

    def __init__(
        self,
        token: str | None = None,
        *,
        limiter_factory: Callable[[], Limiter] | None = None,
        **options: Any,
    ) -> None:
        if "session" in options:
            raise InvalidArgumentError(
                "session= is not taken by the blocking Commbox: it owns its session on its "
                "own event loop"
            )
        if limiter_factory is not None and options.get("limiter") is not None:
            raise InvalidArgumentError("pass limiter= or limiter_factory=, not both")
        if limiter_factory is not None and not callable(limiter_factory):
            raise InvalidArgumentError("limiter_factory must be callable")
        self._pid = os.getpid()
        # Reentrant: an abandoned iterator in a reference cycle is closed by the garbage
        # collector in whichever thread collects, which may be one inside _call's lock (its
        # close submits to the loop too; a plain Lock would wait for itself there forever).
        self._lock = threading.RLock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=_serve, args=(self._loop,), name="commbox-blocking", daemon=True
        )
        self._thread.start()
        opening = asyncio.run_coroutine_threadsafe(
            _open(token, limiter_factory, options), self._loop
        )
        try:
            self._client, built = opening.result()
        except BaseException:
            _stop(self._loop, self._thread)
            raise
        # Runs once: on close(), when the object is collected, or at interpreter exit. It holds
        # no reference to self, so an unclosed Commbox can still be collected.
        self._finalizer = weakref.finalize(
            self, _shut_down, self._lock, self._pid, self._loop, self._thread, self._client, built
        )

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<blocking.Commbox {state} {self._client!r}>"

    # --- life -------------------------------------------------------------------------
    def __enter__(self) -> Commbox:
        self._check()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the client (and a limiter from ``limiter_factory``), then stop the thread.

        Calls still waiting raise ``ClientClosedError``; closing again does nothing. It runs at
        interpreter exit for a ``Commbox`` left open.
        """
        if threading.current_thread() is self._thread:
            raise RuntimeError("close() called from the Commbox's own event loop thread")
        self._finalizer()

    @property
    def closed(self) -> bool:
        """True once ``close()`` has run (or in a process forked from the one that made it)."""
        return not self._finalizer.alive or os.getpid() != self._pid

    def with_token(
        self, token: Any, *, account: str | None = None, rate_limit: Any = None
    ) -> AccountView:
        """The calls for another account over this client's loop and pool (see
        ``AsyncCommbox.with_token``): ``token`` is a string or a provider, ``rate_limit``
        the account's own limit."""
        self._check()
        client = self._client
        view = _apply(lambda: client.with_token(token, account=account, rate_limit=rate_limit))
        return AccountView(self, self._call(view))

    # --- the loop's side ----------------------------------------------------------------
    def _check(self) -> None:
        if os.getpid() != self._pid:
            raise ClientClosedError(_FORKED.format(made=self._pid, now=os.getpid()))
        if not self._finalizer.alive:
            raise ClientClosedError("this Commbox is closed; create a new one")
        if threading.current_thread() is self._thread:
            # Waiting on the loop from the loop itself (say, in on_progress) would never end.
            raise RuntimeError(
                "a blocking Commbox call from its own event loop thread (an on_progress "
                "callback?) would wait forever; use the AsyncCommbox there"
            )

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for it in this thread."""
        with self._lock:  # so that nothing is queued behind the shutdown, where it would hang
            if not self._finalizer.alive:
                coro.close()
                raise ClientClosedError("this Commbox is closed; create a new one")
            future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            if not self._finalizer.alive:
                raise ClientClosedError("this Commbox was closed while the call ran") from None
            raise
        except BaseException:
            future.cancel()  # a KeyboardInterrupt in the waiting thread stops the call too
            raise

    def _iterate(self, results: AsyncIterator[T]) -> Iterator[T]:
        """A plain iterator over an async generator that lives on the loop."""
        try:
            while True:
                items = self._call(_next(results))
                if not items:
                    return
                yield items[0]
        finally:
            self._close_generator(results)

    def _close_generator(self, results: AsyncIterator[Any]) -> None:
        if not isinstance(results, AsyncGenerator):
            return
        if os.getpid() != self._pid or not self._finalizer.alive:
            return  # the shutdown closed it with the loop's other async generators
        if threading.current_thread() is self._thread:
            self._loop.create_task(results.aclose())  # collected on the loop: do not wait
            return
        with contextlib.suppress(ClientClosedError, RuntimeError):
            self._call(results.aclose())


class AccountView(_Calls):
    """One account's blocking calls over a ``Commbox``'s loop and pool: ``Commbox.with_token``.

    Its ``stats`` are the account's own; it lives while referenced, and ends with its
    ``Commbox`` (a call after ``close()`` raises ``ClientClosedError``)."""

    def __init__(self, parent: Commbox, client: AsyncCommbox) -> None:
        self._parent = parent
        self._client = client

    def __repr__(self) -> str:
        return f"<blocking.AccountView {self._client!r}>"

    def _check(self) -> None:
        self._parent._check()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._parent._call(coro)

    def _iterate(self, results: AsyncIterator[T]) -> Iterator[T]:
        return self._parent._iterate(results)


async def _open(
    token: str | None, factory: Callable[[], Limiter] | None, options: dict[str, Any]
) -> tuple[AsyncCommbox, Limiter | None]:
    """On the loop: the limiter from the factory, then the client, opened."""
    limiter = factory() if factory is not None else None
    try:
        client = (
            AsyncCommbox(token, limiter=limiter, **options)
            if limiter is not None
            else AsyncCommbox(token, **options)
        )
        await client.open()
    except BaseException:
        if limiter is not None:
            await limiter.aclose()
        raise
    return client, limiter


async def _apply(function: Callable[[], T]) -> T:
    return function()


async def _next(results: AsyncIterator[T]) -> list[T]:
    """The next item in a list of one, or an empty list at the end."""
    try:
        return [await anext(results)]
    except StopAsyncIteration:
        return []


async def _close_on_loop(client: AsyncCommbox, limiter: Limiter | None) -> None:
    """Close the client and the built limiter, then end every call still running."""
    try:
        await client.aclose()
        if limiter is not None:
            await limiter.aclose()
    finally:
        running = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    """The thread: run the loop until stopped, then finish its async generators and close it."""
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


def _stop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    loop.call_soon_threadsafe(loop.stop)
    if thread is not threading.current_thread():
        thread.join()


def _shut_down(
    lock: contextlib.AbstractContextManager[Any],
    pid: int,
    loop: asyncio.AbstractEventLoop,
    thread: threading.Thread,
    client: AsyncCommbox,
    limiter: Limiter | None,
) -> None:
    """The finalizer: close on the loop and stop it (in a forked child there is nothing to stop)."""
    if os.getpid() != pid:
        return
    if thread is threading.current_thread():  # collected on the loop itself: do not wait
        task = loop.create_task(_close_on_loop(client, limiter))
        task.add_done_callback(lambda _: loop.stop())
        return
    with lock:  # a call that got in before this is queued ahead of the shutdown
        closing = asyncio.run_coroutine_threadsafe(_close_on_loop(client, limiter), loop)
    try:
        closing.result()
    finally:
        _stop(loop, thread)
