"""The pytest plugin: ``pytest_plugins = ["commbox_async.testing"]`` gives these fixtures.

It needs pytest-asyncio (the ``testing`` extra installs both).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from ._server import FakeCommbox

__all__ = ["fake_commbox"]


@pytest_asyncio.fixture
async def fake_commbox() -> AsyncIterator[FakeCommbox]:
    """A started ``FakeCommbox`` on a free loopback port."""
    async with FakeCommbox() as server:
        yield server
