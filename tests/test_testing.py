"""``commbox_async.testing`` as users meet it: the fault table, the fixtures, the README's test."""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from pathlib import Path

from commbox_async import AsyncCommbox
from commbox_async.testing import (
    FAST_RATE_LIMIT,
    FAST_RETRIES,
    FAULT_KINDS,
    FakeCommbox,
    Faults,
    fast_client_settings,
    unread_of,
)
from commbox_async.testing._faults import FAULTS
from commbox_async.testing.plugin import FakeCommboxFactory

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "test_unread_report.py"


def test_every_fault_kind_has_a_handler() -> None:
    """The fault table and the list of kinds name the same faults, each once."""
    assert sorted(FAULTS) == sorted(FAULT_KINDS)
    assert len(set(FAULT_KINDS)) == len(FAULT_KINDS)


async def test_each_fault_kind_is_answered_by_its_handler(
    fake_commbox_factory: FakeCommboxFactory,
) -> None:
    """A server faulting every request logs each request under the kind it injected."""
    for kind in ("503", "html_500", "429_garbage", "empty_200"):
        server = await fake_commbox_factory(faults=Faults(rate=1.0, kinds=(kind,), limit=1))
        async with server.client(retries=2) as commbox:
            await commbox.get_user_objects(5)
        assert [r.outcome for r in server.requests] == [kind, "ok"]


async def test_the_factory_fixture_configures_and_stops_its_servers(
    fake_commbox_factory: FakeCommboxFactory,
) -> None:
    """``fake_commbox_factory`` passes any setting through, and its servers are started."""
    server = await fake_commbox_factory(not_found={7}, conversations=3)
    async with server.client() as commbox:
        page = await commbox.get_user_objects(8)
        results = [r async for r in commbox.fetch_many([7])]
    assert len(page.data) == 3 and page.unread_total == unread_of(8, 3)
    assert results[0].error is not None and results[0].error.kind == "not_found"
    assert server.listening


async def test_the_default_fixture_is_a_started_server(fake_commbox: FakeCommbox) -> None:
    """``fake_commbox`` is a server with the default settings, already listening."""
    async with fake_commbox.client() as commbox:
        page = await commbox.get_user_objects(3)
    assert page.unread_total == unread_of(3, 10)


def test_fast_client_settings_and_their_overrides() -> None:
    """The test settings lift the rate limit and the back-off; an override replaces one."""
    assert fast_client_settings() == {"rate_limit": FAST_RATE_LIMIT, "retries": FAST_RETRIES}
    assert FAST_RETRIES.base_delay == FAST_RETRIES.max_delay == 0.0
    assert FAST_RETRIES.default_retry_after == 0.0
    assert fast_client_settings(rate_limit=5)["rate_limit"] == 5


async def test_server_client_retries_a_429_without_waiting(fake_commbox: FakeCommbox) -> None:
    """``server.client()`` is a client for the server with the fast settings, and retries 429s."""
    fake_commbox.script(4, 429, 429, 429)
    client = fake_commbox.client()
    assert isinstance(client, AsyncCommbox)
    async with client as commbox:
        assert commbox.limiter.config == FAST_RATE_LIMIT
        page = await commbox.get_user_objects(4)
        stats = commbox.stats
    assert page.unread_total == unread_of(4, 10)
    assert (stats.throttled, stats.retries) == (3, 3)
    assert stats.pause_wait_s < 0.1  # three pauses of at most 10 ms each


def test_a_number_of_tries_keeps_the_fast_waits() -> None:
    """``fast_client_settings(retries=3)`` changes the tries, not the fast back-off."""
    retries = fast_client_settings(retries=3)["retries"]
    assert retries.tries == 3
    assert (retries.base_delay, retries.max_delay, retries.max_retry_after) == (0.0, 0.0, 0.01)


def test_the_readme_testing_example_is_the_example_file() -> None:
    """The README's testing example is examples/test_unread_report.py, as written."""
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    assert EXAMPLE.read_text() in blocks


async def test_the_testing_example_passes_in_a_project_of_its_own(tmp_path: Path) -> None:
    """The example file, alone in a directory (no conftest, no settings), passes under pytest."""
    shutil.copy(EXAMPLE, tmp_path / EXAMPLE.name)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", EXAMPLE.name,
        cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, out.decode()
    assert "2 passed" in out.decode()


async def test_python_m_commbox_async_testing_still_serves() -> None:
    """``python -m commbox_async.testing`` runs the mock, as it did before the package split."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "commbox_async.testing", "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        banner = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
    finally:
        proc.terminate()
        await proc.communicate()
    assert banner.startswith("fake CommBox serving on http://127.0.0.1:")


def test_the_public_names_of_commbox_async_testing() -> None:
    """``commbox_async.testing.__all__`` is what we mean to publish, and each name exists."""
    import commbox_async.testing as testing

    assert set(testing.__all__) == {
        "ABSURD_RETRY_AFTER",
        "DEFAULT_FAULT_KINDS",
        "FAST_RATE_LIMIT",
        "FAST_RETRIES",
        "FAULT_KINDS",
        "PERMANENT_FAULTS",
        "TRANSIENT_FAULTS",
        "Activity",
        "Blackhole",
        "FakeCommbox",
        "Faults",
        "Message",
        "RequestRecord",
        "Throttling",
        "VirtualClock",
        "conversation",
        "fast_client_settings",
        "unread_of",
        "unused_port",
    }
    assert all(hasattr(testing, name) for name in testing.__all__)
    assert callable(testing.fake_commbox) and callable(testing.fake_commbox_factory)


async def test_pytest_plugins_still_loads_the_fixtures(tmp_path: Path) -> None:
    """``pytest_plugins = ["commbox_async.testing"]`` works next to the installed entry point."""
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["commbox_async.testing"]\n')
    (tmp_path / "test_it.py").write_text(
        "import pytest\n\n"
        "@pytest.mark.asyncio\n"
        "async def test_it(fake_commbox):\n"
        "    async with fake_commbox.client() as commbox:\n"
        "        assert (await commbox.get_user_objects(2)).data\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
        cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, out.decode()
    assert "1 passed" in out.decode()
