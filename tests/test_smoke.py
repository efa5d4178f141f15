"""The single-call path end to end against the fake server."""

from __future__ import annotations

from commbox_async import AsyncCommbox
from commbox_async.testing import FakeCommbox, unread_of


async def test_get_user_objects_returns_the_identity_page(
    server: FakeCommbox, client: AsyncCommbox
) -> None:
    """One call decodes the page, its unread total and the double-encoded content."""
    page = await client.get_user_objects(558355, include_childs=True)
    assert page.total_unread_chat_messages == unread_of(558355, 10)
    assert len(page.data) == 10
    assert page.data[0].childs[0].content["seq"] == 0
    assert server.count("ok") == 1
