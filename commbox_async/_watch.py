"""watch: poll identities under the client's limiter and yield what changed, as typed values.

Two parts: ``Tracker`` holds what was last seen per identity, turns a new page into changes
and decides which identity to poll next (no I/O, tested synchronously); ``Watch`` paces the
polls, runs them through the client's request path and hands the changes to the caller.

Scheduling. The poll budget is ``share`` x the limiter's current rate (read before every poll:
an adaptive limiter moves). Most polls go round-robin over all identities, so each is polled
once per cycle of ``N / (share x rate)`` seconds; ``HOT_SHARE`` of them go to identities that
changed within ``hot_window`` seconds, which are likely to change again (a conversation in
progress), the more recent the change the sooner. The round-robin cycle is then at most
``1 / (1 - HOT_SHARE)`` of the nominal one. (Round-robin does not skip an identity that a hot
poll just served: skipping stretches that identity's next gap by up to the time it saved.)

Memory: per identity, its open conversations as two machine ints each (object id; unread count
and status packed), plus three numbers for scheduling.
"""

from __future__ import annotations

import asyncio
import math
import time
from array import array
from collections import deque
from collections.abc import Awaitable, Callable, Container, Iterable, Iterator, Sequence
from typing import Any

import msgspec

from ._errors import ClientClosedError, CommboxError, InvalidArgumentError, drop_tracebacks
from ._models import ObjectStatus, UserObject, UserObjectsPage
from ._protocol import check_identity_id

__all__ = [
    "CLOSED_STATUSES",
    "HOT_SHARE",
    "Baseline",
    "ConversationClosed",
    "NewConversation",
    "PollFailed",
    "Tracker",
    "UnreadDown",
    "UnreadUp",
    "Watch",
    "WatchChange",
    "WatchState",
]

#: Statuses that end a conversation: leaving for one of them is a ``ConversationClosed``.
CLOSED_STATUSES = frozenset(
    {ObjectStatus.RESOLVED, ObjectStatus.IRRELEVANT, ObjectStatus.DELETED, ObjectStatus.ARCHIVE}
)
#: The fraction of polls spent on recently changed identities (when there are any).
HOT_SHARE = 0.03
#: At most this many identities count as recently changed (the oldest change drops out).
MAX_HOT = 1000

_NO_STATUS = 0xFFFF  # a conversation without a status id, packed
#: The most unread messages a snapshot holds for a conversation (47 bits: see ``_pack``).
MAX_UNREAD = 2**47 - 1
#: Object ids a snapshot holds: a signed 64-bit slot each.
_MAX_OBJECT_ID = 2**63 - 1


class NewConversation(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A conversation not seen before (or reopened): ``after`` is its unread count."""

    identity_id: int
    object_id: int
    before: None = None
    after: int
    conversation: UserObject
    #: The identity's total unread messages after this poll (what a badge shows).
    identity_unread: int


class UnreadUp(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A conversation's unread count went up from ``before`` to ``after``."""

    identity_id: int
    object_id: int
    before: int
    after: int
    conversation: UserObject
    #: The identity's total unread messages after this poll (what a badge shows).
    identity_unread: int


class UnreadDown(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A conversation's unread count went down (messages were read)."""

    identity_id: int
    object_id: int
    before: int
    after: int
    conversation: UserObject
    #: The identity's total unread messages after this poll (what a badge shows).
    identity_unread: int


class ConversationClosed(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A conversation closed: ``before`` and ``after`` are status ids.

    ``after`` is None (and ``conversation`` too) when the conversation left a page that was not
    full, so it is no longer among those the filters select (e.g. ``statuses=[OPEN]``).
    """

    identity_id: int
    object_id: int
    before: int | None
    after: int | None
    conversation: UserObject | None
    #: The identity's total unread messages after this poll (what a badge shows).
    identity_unread: int


class Baseline(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """An identity's first poll, yielded only by ``watch(..., baseline=True)``: what a badge
    shows before any change."""

    identity_id: int
    identity_unread: int


class PollFailed(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A poll that failed after the client's retries; the identity is polled again later."""

    identity_id: int
    error: CommboxError


WatchChange = NewConversation | UnreadUp | UnreadDown | ConversationClosed | PollFailed | Baseline


class WatchState(msgspec.Struct, frozen=True, kw_only=True):
    """What a watch last saw, to hand to the next ``watch(..., state=...)`` after a restart.

    ``identities`` maps an identity to its open conversations, flattened as
    ``[object_id, unread, status, ...]`` (status -1: none). ``query`` is the filters' query
    string: a state is only valid for the same filters.
    """

    query: str
    identities: dict[int, list[int]]
    version: int = 1

    def encode(self) -> bytes:
        """The state as MessagePack bytes (``WatchState.decode`` reads them back)."""
        return msgspec.msgpack.encode(self)

    @classmethod
    def decode(cls, data: bytes) -> WatchState:
        """A state from ``encode``'s bytes; a damaged one raises ``InvalidArgumentError``."""
        try:
            return msgspec.msgpack.decode(data, type=cls)
        except msgspec.DecodeError as exc:
            raise InvalidArgumentError(f"not a watch state: {exc}") from exc


def _pack(unread: int, status: int | None) -> int:
    """One signed 64-bit slot: the unread count (capped at ``MAX_UNREAD``: a count beyond is
    no count a person reads, and must not end the watch) above 16 bits of status."""
    code = _NO_STATUS if status is None else min(max(int(status), 0), _NO_STATUS - 1)
    return (min(max(unread, 0), MAX_UNREAD) << 16) | code


def _unpack_status(packed: int) -> int | None:
    code = packed & 0xFFFF
    return None if code == _NO_STATUS else code


class Tracker:
    """Per-identity snapshots and the poll schedule. No I/O; times come from the caller."""

    def __init__(
        self,
        ids: Sequence[int],
        *,
        page_size: int,
        hot_window: float,
        state: WatchState | None = None,
        baseline: bool = False,
    ) -> None:
        self.ids = array("q", ids)
        self.baseline = baseline
        self.page_size = page_size
        self.hot_window = hot_window
        # None until the identity's first page (its baseline) arrives.
        self.snapshots: list[array[int] | None] = [None] * len(ids)
        self.last_poll = array("d", [-math.inf]) * len(ids)
        self.hot: dict[int, float] = {}  # index -> time of its last change
        self._hot_credit = 0.0
        self._next = 0
        if state is not None:
            where = {ident: index for index, ident in enumerate(ids)}
            for ident, flat in state.identities.items():
                index = where.get(ident)
                if index is not None:
                    self.snapshots[index] = array(
                        "q",
                        (
                            v
                            for i in range(0, len(flat) - 2, 3)
                            for v in (
                                flat[i],
                                _pack(flat[i + 1], None if flat[i + 2] < 0 else flat[i + 2]),
                            )
                        ),
                    )

    def state(self, query: str) -> WatchState:
        """The snapshots as a ``WatchState`` (identities without a baseline are left out)."""
        identities: dict[int, list[int]] = {}
        for index, snapshot in enumerate(self.snapshots):
            if snapshot is None:
                continue
            flat: list[int] = []
            for i in range(0, len(snapshot), 2):
                status = _unpack_status(snapshot[i + 1])
                flat += (snapshot[i], snapshot[i + 1] >> 16, -1 if status is None else status)
            identities[self.ids[index]] = flat
        return WatchState(query=query, identities=identities)

    # --- what to poll next ----------------------------------------------------------------
    def next_index(self, now: float, busy: Container[int] = ()) -> int | None:
        """The identity to poll now (its index), marked as polled at ``now``; never one in
        ``busy`` (being polled: two polls of one identity could finish out of order, and the
        older page would undo the newer one's change). None when every identity is busy."""
        index = self._take_hot(now, busy) if self.hot else None
        if index is None:
            index = self._take_round_robin(busy)
        if index is not None:
            self.last_poll[index] = now
        return index

    def _take_hot(self, now: float, busy: Container[int]) -> int | None:
        self._hot_credit += HOT_SHARE
        if self._hot_credit < 1.0:
            return None
        hot = self.hot
        for index in [i for i, changed in hot.items() if now - changed > self.hot_window]:
            del hot[index]
        if not hot:
            self._hot_credit = 0.0  # no credit banked while nothing is hot
            return None
        # The identity waiting longest for a poll, relative to how long ago it changed: one
        # that changed 5 s ago is due far sooner than one that changed 4 minutes ago, so the
        # extra polls go mostly to the conversations in progress. (At most MAX_HOT entries,
        # a few times a second: a scan is cheap.)
        last_poll = self.last_poll
        ready = [i for i in hot if i not in busy]
        if not ready:
            return None
        index = max(ready, key=lambda i: (now - last_poll[i]) / (now - hot[i] + 1.0))
        self._hot_credit -= 1.0
        return index

    def _take_round_robin(self, busy: Container[int]) -> int | None:
        for _ in range(len(self.ids)):
            index = self._next
            self._next = index + 1 if index + 1 < len(self.ids) else 0
            if index not in busy:
                return index
        return None

    # --- what changed -----------------------------------------------------------------------
    def observe(self, index: int, page: UserObjectsPage, now: float) -> list[WatchChange]:
        """Compare ``page`` with the identity's snapshot: the changes, and the new snapshot.

        The first page of an identity sets its baseline and yields nothing (a ``Baseline``
        when ``baseline`` is on).
        """
        ident = self.ids[index]
        old = self.snapshots[index]
        before: dict[int, int] = {}
        if old is not None:
            before = {old[i]: old[i + 1] for i in range(0, len(old), 2)}
        changes: list[WatchChange] = []
        fresh: list[int] = []  # the new snapshot: the open conversations, packed
        total = page.unread_total
        for conversation in _distinct(page.data):
            oid = conversation.object_id
            assert oid is not None
            if not 0 <= oid <= _MAX_OBJECT_ID:
                continue  # no id the vendor issues; one that no snapshot can hold is not watched
            if conversation.status_id not in CLOSED_STATUSES:
                fresh += (oid, _pack(conversation.unread_messages, conversation.status_id))
            previous = before.pop(oid, None)
            if old is not None:
                change = _change(ident, conversation, previous, total)
                if change is not None:
                    changes.append(change)
        # A conversation missing from a page that is not full is gone from what the filters
        # select; from a full page it may just have moved to a later page, so it is dropped
        # from the snapshot without a word.
        if before and not page.is_full(self.page_size):
            changes += [
                ConversationClosed(
                    identity_id=ident,
                    object_id=oid,
                    before=_unpack_status(previous),
                    after=None,
                    conversation=None,
                    identity_unread=total,
                )
                for oid, previous in before.items()
            ]
        self.snapshots[index] = array("q", fresh)
        if old is None:
            if self.baseline:
                return [Baseline(identity_id=ident, identity_unread=total)]
            return []
        if changes:
            hot = self.hot
            if index not in hot and len(hot) >= MAX_HOT:
                del hot[min(hot, key=hot.__getitem__)]  # the one that changed longest ago
            hot[index] = now
        return changes


def _distinct(conversations: list[UserObject]) -> Iterator[UserObject]:
    """The conversations that have an id, each id once (the first one on the page)."""
    seen: set[int] = set()
    for conversation in conversations:
        oid = conversation.object_id
        if oid is not None and oid not in seen:
            seen.add(oid)
            yield conversation


def _change(
    ident: int, conversation: UserObject, previous: int | None, total: int
) -> WatchChange | None:
    """What changed in one conversation since its packed ``previous`` state (None: unseen)."""
    oid = conversation.object_id
    assert oid is not None
    status = conversation.status_id
    unread = conversation.unread_messages
    if previous is None:
        if status in CLOSED_STATUSES:
            return None
        return NewConversation(
            identity_id=ident,
            object_id=oid,
            after=unread,
            conversation=conversation,
            identity_unread=total,
        )
    if status in CLOSED_STATUSES:
        return ConversationClosed(
            identity_id=ident,
            object_id=oid,
            before=_unpack_status(previous),
            after=int(status) if status is not None else None,
            conversation=conversation,
            identity_unread=total,
        )
    was = previous >> 16
    if unread == was:
        return None
    kind = UnreadUp if unread > was else UnreadDown
    return kind(
        identity_id=ident,
        object_id=oid,
        before=was,
        after=unread,
        conversation=conversation,
        identity_unread=total,
    )


def restore_state(state: WatchState | bytes | None, query: str) -> WatchState | None:
    """A saved state (or its encoded bytes), checked to come from a watch with these filters."""
    if isinstance(state, bytes):
        state = WatchState.decode(state)
    if state is None:
        return None
    if not isinstance(state, WatchState):
        raise InvalidArgumentError("state must be a WatchState or its encoded bytes")
    if state.query != query:
        raise InvalidArgumentError(
            "state was saved by a watch with other filters; it cannot be reused here"
        )
    for ident, flat in state.identities.items():
        _check_snapshot(ident, flat)
    return state


def _check_snapshot(ident: int, flat: list[int]) -> None:
    """A saved identity's snapshot: (object id, unread, status or -1) triples, each within
    what a snapshot holds; anything else is a damaged state, said so rather than cut short
    (a tail dropped would read as a new conversation) or overflowing later."""
    if len(flat) % 3:
        raise InvalidArgumentError(f"damaged watch state: identity {ident}'s snapshot is cut short")
    for i in range(0, len(flat), 3):
        oid, unread, status = flat[i : i + 3]
        if not (0 <= oid <= _MAX_OBJECT_ID and 0 <= unread <= MAX_UNREAD and status >= -1):
            raise InvalidArgumentError(
                f"damaged watch state: identity {ident} holds values out of range"
            )


def check_ids(identity_ids: Iterable[Any]) -> list[int]:
    """The watched ids, checked and each once, in the order given."""
    if isinstance(identity_ids, (str, bytes)) or not isinstance(identity_ids, Iterable):
        raise InvalidArgumentError("identity_ids must be an iterable of ints")
    ids = list(dict.fromkeys(check_identity_id(i) for i in identity_ids))
    if not ids:
        raise InvalidArgumentError("identity_ids is empty: nothing to watch")
    return ids


Poll = Callable[[int], Awaitable[UserObjectsPage]]


class Watch:
    """An async iterator of changes; see ``AsyncCommbox.watch``.

    ``state()`` is what it has seen, for the next run; ``cycle`` the current round-robin
    cycle in seconds; ``polls`` and ``failures`` count polls made and polls that failed.
    Leaving the loop does not stop it: ``aclose()`` (or ``async with``) does.
    """

    #: Changes waiting for the caller before the polls pause (back-pressure).
    MAX_PENDING = 1000

    def __init__(
        self,
        ids: list[int],
        poll: Poll,
        *,
        rate: Callable[[], float],
        share: float,
        concurrency: int,
        query: str,
        page_size: int,
        hot_window: float,
        state: WatchState | None,
        baseline: bool,
        tasks: set[asyncio.Task[None]],
        closed: Callable[[], bool],
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._tracker = Tracker(
            ids, page_size=page_size, hot_window=hot_window, state=state, baseline=baseline
        )
        self._poll = poll
        self._rate = rate
        self._share = share
        self._concurrency = concurrency
        self._query = query
        self._tasks = tasks
        self._closed = closed
        self._clock = clock
        self._sleep = sleep
        self._pending: deque[WatchChange] = deque()
        self._polling: set[int] = set()  # identities (indices) with a poll in flight
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        self._stopped = False
        self.polls = 0
        self.failures = 0

    def __repr__(self) -> str:
        return f"<Watch ids={len(self._tracker.ids)} share={self._share:g} polls={self.polls}>"

    @property
    def cycle(self) -> float:
        """Seconds for one round-robin pass at the rate in force now."""
        return len(self._tracker.ids) / (self._share * self._rate())

    def state(self) -> WatchState:
        """What was last seen per identity; pass it as ``watch(..., state=...)`` next time."""
        return self._tracker.state(self._query)

    # --- the caller's side ------------------------------------------------------------------
    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> WatchChange:
        if self._runner is None and not self._stopped:
            self._start()
        pending = self._pending
        while not pending:
            if self._runner is None or self._runner.done():
                self._raise_end()
            self._ready.clear()
            await self._ready.wait()
        change = pending.popleft()
        if len(pending) < self.MAX_PENDING:
            self._room.set()
        return change

    def _raise_end(self) -> None:
        if self._error is not None:
            raise self._error
        if self._stopped:
            raise StopAsyncIteration
        raise ClientClosedError("the client was closed; the watch stopped")

    async def __aenter__(self) -> Watch:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop polling (waits for the polls in flight to be cancelled)."""
        self._stopped = True
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
        self._ready.set()

    # --- the polling side --------------------------------------------------------------------
    def _start(self) -> None:
        if self._closed():
            raise ClientClosedError("the client is closed")
        self._runner = asyncio.ensure_future(self._run())
        self._tasks.add(self._runner)
        self._runner.add_done_callback(self._tasks.discard)

    async def _run(self) -> None:
        polls: set[asyncio.Task[None]] = set()
        free = asyncio.Semaphore(self._concurrency)
        try:
            due = self._clock()
            while True:
                # Read every time: an adaptive limiter's rate moves (floored: never divide by 0).
                rate = max(self._share * self._rate(), 1e-3)
                now = self._clock()
                if due > now:
                    await self._sleep(due - now)
                    now = self._clock()
                # Late (the limiter or the loop held us up): no burst to catch up beyond one.
                due = max(due, now - 1.0 / rate) + 1.0 / rate
                if free.locked():  # every poll slot busy: wait, then pick the id as of then
                    await free.acquire()
                    now = self._clock()
                else:
                    await free.acquire()
                tracker = self._tracker
                index = tracker.next_index(now, self._polling)
                if index is None:  # every identity is being polled: one slot's wait
                    free.release()
                    continue
                self._polling.add(index)
                task = asyncio.ensure_future(self._one(index, free))
                polls.add(task)
                task.add_done_callback(polls.discard)
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                self._error = exc
            raise
        finally:
            for task in polls:
                task.cancel()
            if polls:
                await asyncio.gather(*polls, return_exceptions=True)
            self._ready.set()

    async def _one(self, index: int, free: asyncio.Semaphore) -> None:
        ident = self._tracker.ids[index]
        try:
            self.polls += 1
            try:
                page = await self._poll(ident)
            except CommboxError as exc:
                self.failures += 1
                drop_tracebacks(exc)  # a kept PollFailed must not keep the client's frames
                await self._hand_over([PollFailed(identity_id=ident, error=exc)])
                return
            changes = self._tracker.observe(index, page, self._clock())
            if changes:
                await self._hand_over(changes)
        except Exception as exc:  # a bug, not a failed poll: end the watch with it
            self._error = exc
            if self._runner is not None:
                self._runner.cancel()
        finally:
            self._polling.discard(index)
            free.release()

    async def _hand_over(self, changes: list[WatchChange]) -> None:
        while len(self._pending) >= self.MAX_PENDING:
            self._room.clear()
            await self._room.wait()
        self._pending.extend(changes)
        self._ready.set()
