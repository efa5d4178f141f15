"""watch: the change tracker and scheduler (no I/O), and watching the fake server."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import pytest
from conftest import FAST_RETRIES

from commbox_async import (
    AsyncCommbox,
    Baseline,
    ClientClosedError,
    ConversationClosed,
    InvalidArgumentError,
    NewConversation,
    Outcome,
    PollFailed,
    Ticket,
    UnreadUp,
    UserObject,
    UserObjectsPage,
    WatchChange,
    WatchState,
)
from commbox_async._watch import HOT_SHARE, MAX_UNREAD, Tracker, restore_state
from commbox_async.testing import FakeCommbox, VirtualClock, unread_of


def _page(*conversations: tuple[int, int, int]) -> UserObjectsPage:
    """A page of (object_id, unread, status) conversations."""
    return UserObjectsPage(
        data=[
            UserObject(object_id=oid, unread_messages=unread, status_id=status)  # type: ignore[arg-type]
            for oid, unread, status in conversations
        ]
    )


def _tracker(ids: list[int], **options: Any) -> Tracker:
    return Tracker(ids, page_size=options.pop("page_size", 100), hot_window=300.0, **options)


# --- what changed ---------------------------------------------------------------------------
def test_first_page_is_the_baseline_and_yields_nothing() -> None:
    """An identity's first page sets its snapshot without any change."""
    tracker = _tracker([5])
    assert tracker.observe(0, _page((1, 2, 1), (2, 0, 1)), 0.0) == []
    assert tracker.observe(0, _page((1, 2, 1), (2, 0, 1)), 1.0) == []


def test_unread_up_down_new_and_closed_are_told_apart() -> None:
    """Each kind of difference becomes its own typed change, with before and after."""
    tracker = _tracker([5])
    tracker.observe(0, _page((1, 2, 1), (2, 0, 1), (3, 4, 1)), 0.0)
    changes = tracker.observe(0, _page((1, 5, 1), (2, 0, 1), (3, 1, 1), (4, 1, 1)), 1.0)
    simple = [(type(c).__name__, c.object_id, c.before, c.after) for c in changes]  # type: ignore[union-attr]
    assert simple == [
        ("UnreadUp", 1, 2, 5),
        ("UnreadDown", 3, 4, 1),
        ("NewConversation", 4, None, 1),
    ]
    assert all(c.identity_id == 5 for c in changes)
    closed = tracker.observe(0, _page((1, 5, 2), (2, 0, 1), (3, 1, 1), (4, 1, 1)), 2.0)
    assert closed == [
        ConversationClosed(
            identity_id=5,
            object_id=1,
            before=1,
            after=2,
            conversation=_page((1, 5, 2)).data[0],
            identity_unread=7,
        )
    ]
    # A closed conversation is no longer tracked: its later pages say nothing.
    assert tracker.observe(0, _page((1, 9, 2), (2, 0, 1), (3, 1, 1), (4, 1, 1)), 3.0) == []


def test_a_conversation_gone_from_a_short_page_is_closed() -> None:
    """Missing from a page that is not full: closed, with no status after."""
    tracker = _tracker([5], page_size=3)
    tracker.observe(0, _page((1, 0, 1), (2, 0, 1)), 0.0)
    [change] = tracker.observe(0, _page((2, 0, 1)), 1.0)
    assert change == ConversationClosed(
        identity_id=5, object_id=1, before=1, after=None, conversation=None, identity_unread=0
    )


def test_a_conversation_gone_from_a_full_page_is_dropped_quietly() -> None:
    """Missing from a full page may mean moved to page two: no change, and no memory kept."""
    tracker = _tracker([5], page_size=2)
    tracker.observe(0, _page((1, 0, 1), (2, 0, 1)), 0.0)
    assert tracker.observe(0, _page((2, 0, 1), (3, 0, 1)), 1.0) == [
        NewConversation(
            identity_id=5,
            object_id=3,
            after=0,
            conversation=_page((3, 0, 1)).data[0],
            identity_unread=0,
        )
    ]
    assert len(tracker.snapshots[0] or ()) == 4  # two conversations, two ints each


def test_closed_conversations_are_not_kept() -> None:
    """Memory holds open conversations only: a closed one in the baseline is not stored."""
    tracker = _tracker([5])
    tracker.observe(0, _page((1, 3, 2), (2, 0, 4), (3, 1, 1)), 0.0)
    assert list(tracker.snapshots[0] or ()) == [3, (1 << 16) | 1]


def test_state_round_trips_through_bytes() -> None:
    """A saved state, encoded and decoded, restores the snapshots exactly."""
    tracker = _tracker([5, 6, 7])
    tracker.observe(0, _page((1, 3, 1), (2, 70000, 1)), 0.0)
    tracker.observe(1, UserObjectsPage(data=[UserObject(object_id=9)]), 0.0)
    state = WatchState.decode(tracker.state("q=1").encode())
    assert state.identities == {5: [1, 3, 1, 2, 70000, 1], 6: [9, 0, -1]}
    restored = _tracker([7, 6, 5], state=state)
    assert restored.snapshots[2] == tracker.snapshots[0]
    assert restored.snapshots[1] == tracker.snapshots[1]
    assert restored.snapshots[0] is None
    with pytest.raises(InvalidArgumentError):
        WatchState.decode(b"not msgpack")


@pytest.mark.parametrize(
    ("flat", "why"),
    [
        ([1, 3], "cut short"),  # the tail dropped read later as a new conversation
        ([2**63, 0, -1], "out of range"),  # fits MessagePack's uint64, not a snapshot
        ([1, 2**48, 1], "out of range"),  # an unread count that overflowed the packing
        ([1, -5, 1], "out of range"),
    ],
)
def test_a_damaged_state_is_refused_with_a_clear_error(flat: list[int], why: str) -> None:
    """A state whose snapshot is not (object id, unread, status) triples in range is an
    InvalidArgumentError when restored, not an OverflowError or a snapshot cut short."""
    data = WatchState(query="", identities={5: flat}).encode()
    with pytest.raises(InvalidArgumentError, match=why):
        restore_state(data, "")


def test_an_absurd_unread_count_does_not_end_the_watch() -> None:
    """A page with 2**50 unread messages is capped in the snapshot: no OverflowError."""
    tracker = _tracker([5])
    tracker.observe(0, _page((1, 2**50, 1)), 0.0)
    tracker.observe(0, _page((1, 2**50 + 1, 1)), 1.0)
    assert tracker.state("").identities == {5: [1, MAX_UNREAD, 1]}


# --- what to poll next ----------------------------------------------------------------------
def test_round_robin_polls_every_identity_once_per_cycle() -> None:
    """With nothing hot, n consecutive polls are the n identities, in order."""
    tracker = _tracker(list(range(1, 11)))
    picks = [tracker.next_index(t * 0.1) for t in range(30)]
    assert picks == list(range(10)) * 3


def test_an_identity_being_polled_is_not_picked_again() -> None:
    """Busy identities are skipped (hot ones too); with every identity busy there is no pick."""
    tracker = _tracker([1, 2, 3])
    for index in range(3):
        tracker.observe(index, _page((1, 0, 1)), 0.0)
    tracker.observe(1, _page((1, 1, 1)), 0.0)  # index 1 is hot
    picks = [tracker.next_index(1.0 + n, busy={1}) for n in range(40)]
    assert 1 not in picks and set(picks) == {0, 2}
    assert tracker.next_index(50.0, busy={0, 1, 2}) is None


def test_recently_changed_identities_are_polled_more_often() -> None:
    """A hot identity gets HOT_SHARE of the polls on top of round-robin; all others still come."""
    ids = list(range(1, 101))
    tracker = _tracker(ids)
    for index in range(100):
        tracker.observe(index, _page((1, 0, 1)), 0.0)
    tracker.observe(7, _page((1, 1, 1)), 0.0)  # index 7 changed: it is hot
    picks = [tracker.next_index(1.0 + n / 10.0) for n in range(1000)]
    counts = Counter(picks)
    assert counts[7] >= 1000 * HOT_SHARE  # polled far more than its 10 round-robin turns
    assert min(counts.values()) >= 9
    # No identity waits longer than the cycle stretched by the hot share.
    last: dict[int, int] = {}
    for n, index in enumerate(picks):
        if index in last:
            assert n - last[index] <= 100 / (1 - HOT_SHARE) + 1
        last[index] = n


def test_the_most_recent_change_gets_most_of_the_extra_polls() -> None:
    """Of two hot identities, the one that changed seconds ago is polled far more often."""
    tracker = _tracker(list(range(1, 101)))
    for index in range(100):
        tracker.observe(index, _page((1, 0, 1)), 0.0)
    tracker.observe(3, _page((1, 1, 1)), 0.0)  # changed 4 minutes before the picks
    tracker.observe(5, _page((1, 1, 1)), 240.0)  # changed just before them
    counts = Counter(tracker.next_index(240.0 + n / 10.0) for n in range(1000))
    extra_3, extra_5 = counts[3] - 10, counts[5] - 10  # beyond their round-robin turns
    assert extra_3 + extra_5 == pytest.approx(1000 * HOT_SHARE, abs=1)
    assert extra_5 > 3 * extra_3


def test_a_change_that_went_quiet_stops_being_hot() -> None:
    """Past hot_window the identity is back to round-robin only."""
    tracker = _tracker([1, 2])
    tracker.observe(0, _page((1, 0, 1)), 0.0)
    tracker.observe(0, _page((1, 1, 1)), 0.0)
    assert 0 in tracker.hot
    for n in range(40):
        tracker.next_index(301.0 + n)
    assert tracker.hot == {}


# --- watching the fake server ---------------------------------------------------------------
class SteadyLimiter:
    """A Limiter that never waits, with a current_rate the test sets."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.waited = (0.0, 0.0)

    async def acquire(self) -> Ticket:
        return Ticket(0.0)

    def report(self, ticket: Ticket, outcome: Outcome, retry_after: float | None = None) -> None:
        pass

    def pause_remaining(self) -> float:
        return 0.0

    @property
    def current_rate(self) -> float:
        return self.rate

    async def aclose(self) -> None:
        pass


def _body(identity_id: int, unread: list[int]) -> tuple[int, dict[str, str], bytes]:
    """A scripted 200 page of open conversations with these unread counts."""
    data = [
        {"objectId": identity_id * 1000 + i, "unreadMessages": n, "statusId": 1}
        for i, n in enumerate(unread)
    ]
    return 200, {}, msgspec.json.encode({"status": 200, "data": data})


@asynccontextmanager
async def _watching(
    server: FakeCommbox, ids: list[int], *, rate: float = 100.0, **options: Any
) -> AsyncIterator[tuple[Any, VirtualClock, SteadyLimiter]]:
    clock = VirtualClock()
    limiter = SteadyLimiter(rate)
    async with AsyncCommbox(
        token=server.token, base_url=server.url, retries=FAST_RETRIES, limiter=limiter
    ) as commbox:
        async with commbox.watch(ids, clock=clock, sleep=clock.sleep, **options) as watch:
            yield watch, clock, limiter


async def _take(watch: Any, count: int) -> list[WatchChange]:
    return [await asyncio.wait_for(watch.__anext__(), 10) for _ in range(count)]


async def test_watch_yields_changes_after_the_baseline() -> None:
    """The first pass yields nothing; a page that differs then yields typed changes."""
    async with FakeCommbox() as server, _watching(server, [1, 2], share=1.0) as (watch, _, _):
        for _ in range(3):  # the baseline pass, then a pass with changes for identity 2
            server.script(2, _body(2, [0, 1]))
        server.script(2, _body(2, [0, 4, 1]))
        changes = await _take(watch, 2)
        assert changes[0] == UnreadUp(
            identity_id=2,
            object_id=2001,
            before=1,
            after=4,
            conversation=changes[0].conversation,  # type: ignore[union-attr]
            identity_unread=5,
        )
        assert isinstance(changes[1], NewConversation) and changes[1].object_id == 2002
        assert server.count(identity_id=2) >= 4 and server.count(identity_id=1) >= 2


async def test_a_failed_poll_is_a_value_and_polling_goes_on() -> None:
    """A poll that fails yields PollFailed; the identity is polled again."""
    async with FakeCommbox() as server, _watching(server, [3], share=1.0) as (watch, _, _):
        server.script(3, _body(3, [1]), 404, _body(3, [2]))
        failed, up = await _take(watch, 2)
        assert isinstance(failed, PollFailed) and failed.identity_id == 3
        assert failed.error.status == 404  # type: ignore[attr-defined]
        assert isinstance(up, UnreadUp) and (up.before, up.after) == (1, 2)
        assert watch.failures == 1


async def test_a_restored_state_skips_the_baseline() -> None:
    """Given the saved state, the first poll after a restart reports what changed meanwhile."""
    async with FakeCommbox() as server:
        server.script(4, _body(4, [1, 1]), _body(4, [1, 2]))
        async with _watching(server, [4], share=1.0) as (watch, _, _):
            [change] = await _take(watch, 1)
            saved = watch.state().encode()
        assert isinstance(change, UnreadUp)
        server.script(4, _body(4, [3, 2]))
        async with _watching(server, [4], share=1.0, state=saved) as (watch, _, _):
            [change] = await _take(watch, 1)
        assert isinstance(change, UnreadUp) and (change.object_id, change.after) == (4000, 3)


async def test_polls_are_paced_at_share_of_the_current_rate() -> None:
    """Polls go out at share x the limiter's rate, read anew as that rate moves."""
    async with FakeCommbox() as server:
        async with _watching(server, [1, 2, 3, 4], share=0.5, rate=40.0) as (watch, vc, limiter):
            watch._start()
            await _until_requests(server, 20)
            slow = list(vc.sleeps)
            limiter.rate = 400.0
            await _until_requests(server, 60)
            fast = vc.sleeps[len(slow) + 1 :]
            await watch.aclose()
        # The pacer's only waits: one interval between polls, 1/(0.5 x 40) s, then 1/(0.5 x 400).
        assert slow and all(gap == pytest.approx(1 / 20) for gap in slow)
        assert fast and all(gap == pytest.approx(1 / 200) for gap in fast)
        assert watch.polls >= 60


async def _until_requests(server: FakeCommbox, count: int) -> None:
    for _ in range(100_000):
        if len(server.requests) >= count:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never reached {count} requests")


async def test_closing_the_client_ends_the_watch_with_a_clear_error() -> None:
    """A watch whose client closed raises ClientClosedError instead of hanging."""
    async with FakeCommbox() as server:
        commbox = AsyncCommbox(token=server.token, base_url=server.url, rate_limit=1000)
        await commbox.open()
        watch = commbox.watch([1])
        watch._start()
        await commbox.aclose()
        with pytest.raises(ClientClosedError):
            await watch.__anext__()


@pytest.mark.parametrize(
    ("ids", "options"),
    [
        ([], {}),
        (["x"], {}),
        ("12", {}),
        ([1], {"share": 0}),
        ([1], {"share": 1.5}),
        ([1], {"concurrency": 0}),
        ([1], {"hot_window": -1}),
        ([1], {"state": b"junk"}),
        ([1], {"state": WatchState(query="other", identities={})}),
        ([1], {"page_sise": 3}),
    ],
)
async def test_bad_watch_arguments_fail_before_any_request(
    ids: Any, options: dict[str, Any]
) -> None:
    """Bad ids, share, concurrency, window, state or filter raise InvalidArgumentError at once."""
    async with FakeCommbox() as server:
        async with AsyncCommbox(token=server.token, base_url=server.url) as commbox:
            with pytest.raises(InvalidArgumentError):
                commbox.watch(ids, **options)
        assert server.requests == []


async def test_watch_surfaces_a_message_added_on_the_fake_server() -> None:
    """A message added after the baseline comes out as UnreadUp on that conversation."""
    async with FakeCommbox() as server, _watching(server, [7, 8], share=1.0) as (watch, _, _):
        watch._start()
        await _until_requests(server, 2)  # both baselines were answered
        object_id = server.add_message(8, count=3)
        [change] = await _take(watch, 1)
        assert isinstance(change, UnreadUp)
        assert (change.identity_id, change.object_id) == (8, object_id)
        assert change.after == change.before + 3


async def test_baseline_true_yields_each_identity_s_first_total() -> None:
    """With baseline=True the first pass yields one Baseline per identity, with its total."""
    async with FakeCommbox() as server:
        async with _watching(server, [21, 22], share=1.0, baseline=True) as (watch, _, _):
            first = await _take(watch, 2)
    assert sorted((b.identity_id, b.identity_unread) for b in first) == [  # type: ignore[union-attr]
        (21, unread_of(21, 10)),
        (22, unread_of(22, 10)),
    ]
    assert all(isinstance(b, Baseline) for b in first)


async def test_a_slow_consumer_pauses_the_polls() -> None:
    """With MAX_PENDING changes waiting, polls stop until the consumer takes some."""
    async with FakeCommbox() as server:
        ids = list(range(1, 51))
        options = {"share": 1.0, "baseline": True, "concurrency": 2}
        async with _watching(server, ids, **options) as (watch, _, _):
            watch.MAX_PENDING = 3
            watch._start()
            await _until_requests(server, 5)
            for _ in range(2000):
                await asyncio.sleep(0)
            stuck = len(server.requests)
            assert len(watch._pending) == 3
            assert stuck <= 3 + 2 + 1  # the waiting changes, the two polls holding them, one
            await _take(watch, 3)
            await _until_requests(server, stuck + 1)


async def test_a_closed_watch_ends_the_loop() -> None:
    """After aclose, iteration ends (StopAsyncIteration), and the polls are gone."""
    async with FakeCommbox() as server, _watching(server, [1, 2], share=1.0) as (watch, _, _):
        watch._start()
        await _until_requests(server, 2)
        await watch.aclose()
        with pytest.raises(StopAsyncIteration):
            await watch.__anext__()
        polled = len(server.requests)
        for _ in range(200):
            await asyncio.sleep(0)
        assert len(server.requests) == polled
