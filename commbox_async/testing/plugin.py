"""The pytest plugin: ``pytest_plugins = ["commbox_async.testing"]`` gives these fixtures.

- ``fake_commbox``: a started ``FakeCommbox`` with the default settings.
- ``fake_commbox_factory``: ``await fake_commbox_factory(**settings)`` starts a server with
  any ``FakeCommbox`` settings (``throttling=``, ``faults=``, ``not_found=``, ...); every server
  it started is stopped at the end of the test.

It needs pytest-asyncio (the ``testing`` extra installs both).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Any, Protocol

import pytest_asyncio

from ._server import FakeCommbox

__all__ = ["FakeCommboxFactory", "fake_commbox", "fake_commbox_factory"]


class FakeCommboxFactory(Protocol):
    """The type of the ``fake_commbox_factory`` fixture."""

    def __call__(self, **settings: Any) -> Awaitable[FakeCommbox]: ...


@pytest_asyncio.fixture
async def fake_commbox_factory() -> AsyncIterator[FakeCommboxFactory]:
    """Start fake servers with any settings; all of them stop when the test ends."""
    started: list[FakeCommbox] = []

    async def start(**settings: Any) -> FakeCommbox:
        server = FakeCommbox(**settings)
        await server.start()
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in reversed(started):
            await server.stop()


@pytest_asyncio.fixture
async def fake_commbox(fake_commbox_factory: FakeCommboxFactory) -> FakeCommbox:
    """A started ``FakeCommbox`` on a free loopback port, with the default settings."""
    return await fake_commbox_factory()
