"""The fan-out engine: ids read lazily, bounded work, exactly one result per id, a clean stop.

``AsyncCommbox.fetch_many`` checks its arguments and hands this module a ``request`` callable
(one identity's call, retries included); everything about workers, back-pressure and stopping
lives here. Ids from a plain iterable are read without a coroutine, the hand-off between
workers and the consumer is a deque and one future, and no worker waits for the consumer
unless the consumer falls behind (what each saves: benchmarks/RESULTS.md).
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import logging
from collections import Counter, deque
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import msgspec

from ._errors import AuthenticationError, ClientClosedError, CommboxError, drop_tracebacks
from ._models import UserObjectsPage
from ._protocol import check_identity_id
from ._validate import describe

__all__ = [
    "UNREACHABLE",
    "UNREACHABLE_AFTER",
    "FanOutError",
    "FanOutProgress",
    "FetchResult",
    "fan_out",
]

logger = logging.getLogger("commbox_async")


class FetchResult(msgspec.Struct, frozen=True):
    """One identity's outcome in a fan-out: exactly one of ``response`` and ``error`` is set.

    ``identity_id`` is the id as given; for an input that is not a valid id it is the raw value
    and ``error`` is an ``InvalidArgumentError``. A library error arrives without its traceback
    (see ``_failure``).
    """

    # Tracked by the garbage collector (no gc=False): it holds an exception and the caller's
    # raw id, either of which can lead back to it through frames; an untracked result on such
    # a cycle kept the whole client alive after every early exit from a failing fan-out.

    identity_id: Any
    response: UserObjectsPage | None = None
    error: CommboxError | None = None

    @property
    def ok(self) -> bool:
        """True when the identity was fetched: ``response`` is set and ``error`` is None."""
        return self.error is None


@dataclass(slots=True)
class FanOutProgress:
    """Progress of a running fan-out, passed to ``on_progress`` after each result."""

    done: int = 0
    succeeded: int = 0
    failed: int = 0
    total: int | None = None


class FanOutError(CommboxError):
    """Some identities of ``unread_counts`` failed; the counts that did arrive are kept.

    The message says what the failures were: how many of each kind, and the first few
    errors; ``by_kind`` holds the same counts and ``errors`` every error by identity.
    """

    kind = "fan_out"
    #: How many failures the message shows in full.
    EXAMPLES = 3

    def __init__(self, counts: dict[int, int], errors: dict[Any, CommboxError]) -> None:
        self.counts = counts
        self.errors = errors
        self.by_kind: dict[str, int] = dict(
            Counter(error.kind for error in errors.values()).most_common()
        )
        kinds = ", ".join(f"{number} {kind}" for kind, number in self.by_kind.items())
        examples = "; ".join(
            str(error) for error in itertools.islice(errors.values(), self.EXAMPLES)
        )
        more = ", ..." if len(errors) > self.EXAMPLES else ""
        super().__init__(
            f"{len(errors)} of {len(counts) + len(errors)} identities failed ({kinds}): "
            f"{examples}{more}"
        )


Request = Callable[[int], Awaitable[UserObjectsPage]]
#: Calls in a row that could not connect, before any answer, after which a fan-out stops
#: sending (``fetch_many``'s default): a wrong base URL or a server down costs seconds, and
#: a blip is rarely that many calls long, each with its own retries.
UNREACHABLE_AFTER = 8
#: The ``reason`` of the error given to an id not sent because nothing could connect.
UNREACHABLE = "not sent: no connection could be made"

_END = object()  # a worker has stopped; also "no more ids"


class _SourceFailed:
    """The caller's id iterable raised; the fan-out re-raises it in the caller's task."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class _IdReader:
    """The caller's ids, read one at a time as workers free up, each id once with ``dedupe``.

    A plain iterable cannot suspend between two ids, so ``take`` reads it with no lock and no
    coroutine; an async iterable needs both (``take_async``).
    """

    def __init__(self, ids: Iterable[Any] | AsyncIterable[Any], dedupe: bool) -> None:
        self.exhausted = False
        self.taken = 0  # ids handed to workers: each owes the consumer one result
        self._seen: set[Any] | None = set() if dedupe else None
        self._aiter = ids.__aiter__() if isinstance(ids, AsyncIterable) else None
        self.sync = self._aiter is None
        self._next: Callable[[], Any] = (
            iter(ids).__next__ if self._aiter is None else self._aiter.__anext__  # type: ignore[arg-type]
        )
        self._lock = asyncio.Lock()

    def _admit(self, raw: Any) -> bool:
        """Count ``raw`` as taken, unless it was taken before (with ``dedupe``)."""
        if self._seen is not None:
            # True == 1 (and hashes alike): a bool is keyed apart, or the invalid True would
            # take the place of the valid 1, which would then get no result at all.
            usable = isinstance(raw, int) and not isinstance(raw, bool)
            key = int(raw) if usable else describe(raw, None)
            if key in self._seen:
                return False
            self._seen.add(key)
        self.taken += 1
        return True

    def _stop(self, exc: Exception | None = None) -> Any:
        """No more ids: ``_END``, or the caller's iterable failed with ``exc``."""
        self.exhausted = True
        return _END if exc is None else _SourceFailed(exc)

    def take(self) -> Any:
        """The next id, ``_END``, or ``_SourceFailed`` (plain iterables)."""
        while not self.exhausted:
            try:
                raw = self._next()
            except StopIteration:
                break
            except Exception as exc:
                return self._stop(exc)
            if self._admit(raw):
                return raw
        return self._stop()

    async def take_async(self) -> Any:
        """The same, for async iterables: one reader at a time."""
        async with self._lock:
            while not self.exhausted:
                try:
                    raw = await self._next()
                except StopAsyncIteration:
                    break
                except Exception as exc:
                    return self._stop(exc)
                if self._admit(raw):
                    return raw
            return self._stop()

    async def aclose(self) -> None:
        """Close the caller's async generator, if that is what the ids came from."""
        aclose = getattr(self._aiter, "aclose", None)
        if aclose is not None:
            await aclose()


class _Mailbox:
    """Results on their way to the consumer: many workers post, one consumer takes.

    Unbounded, so a worker can always post (its end marker too, even when cancelled); the
    slots in ``fan_out`` bound how much it can ever hold.
    """

    __slots__ = ("_waiter", "items")

    def __init__(self) -> None:
        self.items: deque[Any] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def post(self, item: Any) -> None:
        self.items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def take(self) -> Any:
        while not self.items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self.items.popleft()


class _Slots:
    """How many more results may exist (in flight or waiting for the consumer).

    ``close()`` ends every wait for a slot, for good: a worker that survived its cancellation
    (one swallowed by ``asyncio.wait_for`` before Python 3.12, by a caller's limiter or token
    provider) would otherwise wait for a slot that the consumer, gone, never gives back, and
    the fan-out's clean-up would wait for that worker forever.
    """

    __slots__ = ("_room", "closed", "free")

    def __init__(self, count: int) -> None:
        self.free = count
        self.closed = False
        self._room = asyncio.Event()

    def take_now(self) -> bool:
        """Take a slot if one is free, without a coroutine (the usual case)."""
        if self.free > 0 and not self.closed:
            self.free -= 1
            return True
        return False

    async def take(self) -> None:
        """Wait for a slot; ``CancelledError`` once closed (the fan-out is over)."""
        while not self.take_now():
            if self.closed:
                raise asyncio.CancelledError
            self._room.clear()
            await self._room.wait()

    def close(self) -> None:
        self.closed = True
        self._room.set()

    def give_back(self) -> None:
        self.free += 1
        self._room.set()


def _refused(ident: int, first: AuthenticationError) -> FetchResult:
    """The result for an id not sent because the token was refused earlier in the fan-out."""
    error = AuthenticationError(
        f"{first.message} (not sent: the token was refused for identity {first.identity_id})",
        status=first.status,
        description=first.description,
        response_time=first.response_time,
        identity_id=ident,
    )
    return FetchResult(identity_id=ident, error=error)


def _unreachable(ident: int, first: CommboxError, count: int) -> FetchResult:
    """The result for an id not sent because no call of the fan-out could connect."""
    error = copy.copy(first)
    error.message = (
        f"{first.message} (not sent: {count} identities in a row could not connect, and none "
        "was answered)"
    )
    error.identity_id = ident
    error.reason = UNREACHABLE
    error.__cause__ = error.__context__ = error.__traceback__ = None
    return FetchResult(identity_id=ident, error=error)


def _failure(raw: Any, exc: Exception) -> FetchResult:
    """The result for an identity whose call raised ``exc``."""
    if isinstance(exc, CommboxError):
        drop_tracebacks(exc)
        return FetchResult(identity_id=raw, error=exc)
    # A bug must cost one identity, never the whole fan-out.
    error = CommboxError(f"unexpected {type(exc).__name__}", identity_id=raw)
    error.__cause__ = exc
    logger.error(
        "identity %s: unexpected %s", describe(raw, None), type(exc).__name__, exc_info=exc
    )
    drop_tracebacks(error)  # logged above; the kept value need not pin the call's frames
    return FetchResult(identity_id=raw, error=error)


class _Workers:
    """The workers of one fan-out: each takes a slot, reads an id, calls, posts one result."""

    def __init__(
        self,
        source: _IdReader,
        request: Request,
        concurrency: int,
        unreachable_after: int | None = None,
    ) -> None:
        self.source = source
        self.request = request
        # A worker takes a slot before it reads an id and the consumer gives it back when it
        # takes the result, so at most 2 x `concurrency` results exist at once. Twice, not
        # once: with one slot per worker, every worker that posts a result would wait for the
        # consumer to take it; the second set lets the consumer lag by `concurrency` results
        # before anyone waits (benchmarks/RESULTS.md, section 5).
        self.slots = _Slots(2 * concurrency)
        self.mailbox = _Mailbox()
        # The first 401: the token is refused, so every later id would be refused too. Those
        # ids get the same error without a request (one result per id still); calls already
        # in flight finish as they will.
        self.refused: AuthenticationError | None = None
        # Until the server answers once, calls that could not connect at all are counted;
        # after `unreachable_after` of them the rest are not sent (a wrong base URL, a server
        # down): they get the error at once instead of minutes of retries each.
        self.unreachable_after = unreachable_after
        self.answered = False
        self.unreachable_count = 0
        self.unreachable: CommboxError | None = None

    async def run(self) -> None:
        """One worker: until the ids run out; its end marker is posted however it ends."""
        source, slots, mailbox = self.source, self.slots, self.mailbox
        try:
            while True:
                if not slots.take_now():
                    await slots.take()
                raw = source.take() if source.sync else await source.take_async()
                if raw is _END:
                    break
                if isinstance(raw, _SourceFailed):
                    mailbox.post(raw)
                    break
                ident = self._to_send(raw)
                if isinstance(ident, FetchResult):  # no request for this one
                    mailbox.post(ident)
                    continue
                try:
                    page = await self.request(ident)
                except Exception as exc:
                    self._learn(exc)
                    mailbox.post(_failure(ident, exc))
                else:
                    self.answered = True
                    mailbox.post(FetchResult(identity_id=ident, response=page))
        finally:
            mailbox.post(_END)

    def _to_send(self, raw: Any) -> int | FetchResult:
        """The id to send, or the result of one that gets no request (not a valid id, a
        refused token, no server to connect to)."""
        try:
            ident = check_identity_id(raw)
        except Exception as exc:  # InvalidArgumentError, or an id whose repr fails
            return _failure(raw, exc)
        if self.refused is not None:
            return _refused(ident, self.refused)
        if self.unreachable is not None:
            return _unreachable(ident, self.unreachable, self.unreachable_count)
        return ident

    def _learn(self, exc: Exception) -> None:
        """What a failed call says of the calls not sent yet: a refused token, no server. (Not
        a call that its deadline ended while the token was being fetched: the next may get it.)"""
        if (
            self.refused is None
            and isinstance(exc, AuthenticationError)
            and not exc.ended_by_deadline
        ):
            self.refused = exc
        if not isinstance(exc, CommboxError) or not exc.could_not_connect:
            self.answered = True  # the server (or something in between) did answer
            return
        self.unreachable_count += 1
        limit = self.unreachable_after
        if not self.answered and limit is not None and self.unreachable_count >= limit:
            self.unreachable = self.unreachable or exc


async def fan_out(
    ids: Iterable[Any] | AsyncIterable[Any],
    request: Request,
    *,
    concurrency: int,
    dedupe: bool,
    on_progress: Callable[[FanOutProgress], None] | None,
    tasks: set[asyncio.Task[None]],
    stopped_from_outside: Callable[[], bool],
    unreachable_after: int | None = None,
) -> AsyncGenerator[FetchResult, None]:
    """Run ``request`` for every id with ``concurrency`` workers; yield results as they come.

    ``tasks`` is the client's set of running workers (so that closing the client stops them);
    ``stopped_from_outside`` tells whether the client was closed (before the start, or when
    the workers end while ids are still owed a result).
    """
    if stopped_from_outside():
        raise ClientClosedError("the client was closed before the fan-out started")
    source = _IdReader(ids, dedupe)
    total = len(ids) if hasattr(ids, "__len__") else None  # type: ignore[arg-type]
    progress = FanOutProgress(total=total)
    job = _Workers(source, request, concurrency, unreachable_after)
    workers = [asyncio.create_task(job.run()) for _ in range(concurrency)]
    tasks.update(workers)
    finished = 0
    failed: _SourceFailed | None = None
    items = job.mailbox.items
    try:
        while finished < len(workers):
            item = items.popleft() if items else await job.mailbox.take()
            if item is _END:
                finished += 1
                continue
            if isinstance(item, _SourceFailed):
                # The caller's ids failed: none is read after it, and the calls already made
                # still give their results (every id read gets one); then it is raised.
                failed = item
                continue
            job.slots.give_back()
            progress.done += 1
            if item.error is None:
                progress.succeeded += 1
            else:
                progress.failed += 1
            if on_progress is not None:
                on_progress(progress)
            yield item
        if failed is not None:
            raise failed.exc
        _check_all_answered(progress, source, stopped_from_outside)
    finally:
        job.slots.close()  # before the cancel: a worker that outlives it takes no more ids
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        tasks.difference_update(workers)
        await source.aclose()


def _check_all_answered(
    progress: FanOutProgress, source: _IdReader, stopped_from_outside: Callable[[], bool]
) -> None:
    """Never end as if all were done while ids were left unread, or taken without a result."""
    if progress.done >= source.taken and source.exhausted:
        return
    if stopped_from_outside():
        raise ClientClosedError(
            f"the client was closed during a fan-out, after {progress.done} results"
        )
    raise CommboxError(
        f"the fan-out's workers stopped after {progress.done} results "
        f"({source.taken - progress.done} ids without one)"
    )
