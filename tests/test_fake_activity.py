"""The fake server's activity: messages added, read and closed show in the pages it serves."""

from __future__ import annotations

import pytest
from conftest import FAST_RETRIES
from waiting import until

from commbox_async import AsyncCommbox, ObjectStatus
from commbox_async.testing import Activity, FakeCommbox, VirtualClock, unread_of
from commbox_async.testing._activity import Changes, run_activity


def _client(server: FakeCommbox) -> AsyncCommbox:
    return AsyncCommbox(
        token=server.token, base_url=server.url, rate_limit=10_000, retries=FAST_RETRIES
    )


async def test_add_message_raises_the_unread_count_in_later_pages() -> None:
    """A message lands on the first open conversation; the next page (not a cached one) shows it."""
    async with FakeCommbox() as server, _client(server) as commbox:
        before = await commbox.get_user_objects(8)
        object_id = server.add_message(8, count=2)
        assert object_id == 8000  # conversation 0 is open (status 1)
        after = await commbox.get_user_objects(8)
        assert after.unread_total == before.unread_total + 2 == unread_of(8, 10) + 2
        assert after.data[0].unread_messages == before.data[0].unread_messages + 2
        assert [m.object_id for m in server.messages] == [8000]
        assert server.messages[0].unread == after.data[0].unread_messages


async def test_read_and_close_change_the_count_and_the_status() -> None:
    """Reading zeroes a conversation's count; closing resolves it, so an open filter drops it."""
    async with FakeCommbox() as server, _client(server) as commbox:
        server.add_message(9, 9003, count=5)
        server.read_messages(9, 9003)
        page = await commbox.get_user_objects(9, object_id=9003)
        assert page.data[0].unread_messages == 0
        server.close_conversation(9, 9003)
        page = await commbox.get_user_objects(9, statuses=[ObjectStatus.OPEN])
        assert 9003 not in [c.object_id for c in page.data]
        everything = await commbox.get_user_objects(9)
        assert everything.data[3].status_id == ObjectStatus.RESOLVED
        # The next message goes to the first conversation still open.
        server.close_conversation(9, 9000)
        assert server.add_message(9) == 9002


def test_a_conversation_of_another_identity_is_refused() -> None:
    """add_message checks that the object id belongs to the identity."""
    changes = Changes()
    with pytest.raises(ValueError, match="not one of"):
        changes.add_message(9, 8000, 1, 10, 0.0)
    with pytest.raises(ValueError, match="count"):
        changes.add_message(9, None, 0, 10, 0.0)


async def test_activity_adds_messages_at_its_rate_on_its_identities() -> None:
    """run_activity adds one message per (virtual) gap, only on the identities given."""
    clock = VirtualClock()
    added: list[int] = []

    def add(identity: int) -> None:
        added.append(identity)
        if len(added) == 200:
            raise KeyboardInterrupt  # ends the loop: it has no end of its own

    activity = Activity(rate=4.0, identities=[3, 5], seed=1)
    with pytest.raises(KeyboardInterrupt):
        await run_activity(activity, add, [], sleep=clock.sleep)
    assert set(added) == {3, 5}
    assert 200 / (clock.now - 1000.0) == pytest.approx(4.0, rel=0.2)


async def test_activity_mode_of_a_running_server_goes_to_identities_asked_about() -> None:
    """With no identities of its own, activity picks among those the server was asked about."""
    async with FakeCommbox(activity=Activity(rate=5000.0)) as server, _client(server) as commbox:
        await commbox.get_user_objects(12)
        await until(lambda: len(server.messages) >= 3, "messages arrive by themselves")
        assert {m.identity_id for m in server.messages} == {12}


@pytest.mark.parametrize("options", [{"rate": 0}, {"identities": []}])
def test_activity_rejects_bad_settings(options: dict[str, object]) -> None:
    """A zero rate or an empty list of identities is refused."""
    with pytest.raises(ValueError):
        Activity(**options)  # type: ignore[arg-type]
