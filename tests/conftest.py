"""Shared fixtures: a fake CommBox server on a free loopback port, and a client pointed at it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator

import pytest_asyncio
from strict_ci import pytest_make_collect_report, pytest_runtest_makereport  # noqa: F401

from commbox_async import AsyncCommbox, Retries
from commbox_async.testing import FakeCommbox

# The two hooks above make a skipped test fail under CI=true (strict_ci.py); pytester runs a
# throwaway suite in the test that proves it.
pytest_plugins = ["pytester"]

# What `fetch` remembers of a server's limit goes to a state directory of this run's own (the
# command lines started by the tests inherit it), never the user's: no test starts from a limit
# that another test, or the user, met.
os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="commbox-async-state-")

# Tests never wait for real back-off: zero base delay, and fault 429s carry Retry-After: 0.
FAST_RETRIES = Retries(base_delay=0.0, max_delay=0.0, default_retry_after=0.0)


@pytest_asyncio.fixture
async def server() -> AsyncIterator[FakeCommbox]:
    """A started fake server with default synthetic data."""
    async with FakeCommbox() as fake:
        yield fake


@pytest_asyncio.fixture
async def client(server: FakeCommbox) -> AsyncIterator[AsyncCommbox]:
    """A client for ``server`` with a high rate limit and no real back-off waits."""
    async with AsyncCommbox(
        token=server.token, base_url=server.url, rate_limit=10_000, retries=FAST_RETRIES
    ) as commbox:
        yield commbox
