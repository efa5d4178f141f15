"""What `fetch` remembers of a server's limit between runs: saved per base URL and token
fingerprint (never the token), with its age; the next run starts there; --fresh ignores it."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from cli_process import start_cli

from commbox_async.cli import _memory as memory
from commbox_async.testing import FakeCommbox, Throttling

TOKEN = "memory-test-token-7c1e"
URL = "http://127.0.0.1:8765"


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A state directory of the test's own."""
    monkeypatch.setenv("COMMBOX_STATE_DIR", str(tmp_path))
    return tmp_path


def test_a_saved_rate_is_recalled_for_the_same_server_and_token_only(state: Path) -> None:
    """The rate comes back for the same base URL and token; another token or URL gets none."""
    memory.remember(URL, TOKEN, 98.5, now=1000.0)
    found = memory.recall(URL, TOKEN, now=1060.0)
    assert found is not None and found.rate == 98.5 and found.age(1060.0) == "1 min"
    assert memory.recall(URL, "another-token", now=1060.0) is None
    assert memory.recall("http://127.0.0.1:9999", TOKEN, now=1060.0) is None


def test_the_token_never_reaches_the_file(state: Path) -> None:
    """The file names the token by its fingerprint only."""
    memory.remember(URL, TOKEN, 50.0)
    text = (state / "limits.json").read_text()
    assert TOKEN not in text and "memory-test" not in text


def test_an_old_rate_is_not_trusted(state: Path) -> None:
    """A limit saved longer ago than MAX_AGE is ignored."""
    memory.remember(URL, TOKEN, 50.0, now=0.0)
    assert memory.recall(URL, TOKEN, now=memory.MAX_AGE + 1.0) is None


@pytest.mark.parametrize("content", ["not json", "[1, 2]", '{"x": {"rate": "fast"}}'])
def test_a_damaged_file_is_an_empty_memory(state: Path, content: str) -> None:
    """A file that is not what we wrote is ignored, then replaced on the next save."""
    (state / "limits.json").write_text(content)
    assert memory.recall(URL, TOKEN) is None
    memory.remember(URL, TOKEN, 20.0)
    assert memory.recall(URL, TOKEN) is not None


def test_an_unwritable_state_directory_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A state directory that cannot be created costs the memory, never the job."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("COMMBOX_STATE_DIR", str(blocker / "state"))
    memory.remember(URL, TOKEN, 20.0)
    assert memory.recall(URL, TOKEN) is None


async def _fetch(server: FakeCommbox, ids: Path, state: Path, *extra: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMBOX_")}
    env.update(COMMBOX_TOKEN=TOKEN, COMMBOX_STATE_DIR=str(state))
    proc = await start_cli(
        "fetch", str(ids), "--base-url", server.url, "--rate", "2000", *extra, env=env
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert TOKEN not in out.decode() + err.decode()
    assert proc.returncode is not None
    return proc.returncode, err.decode()


async def test_the_second_run_starts_from_the_first_runs_limit(tmp_path: Path) -> None:
    """A throttled first run saves its end rate; the second says it started there; --fresh
    says it ignored it; the summary JSON carries which."""
    ids = tmp_path / "ids.txt"
    ids.write_text("".join(f"{558300 + n}\n" for n in range(60)))
    state = tmp_path / "state"
    throttle = Throttling(rate=400.0, burst=5.0, retry_after="0")
    async with FakeCommbox(token=TOKEN, conversations=1, childs=0, throttling=throttle) as server:
        code, err = await _fetch(server, ids, state)
        assert code == 0 and "no limit remembered" in err
        saved = json.loads((state / "limits.json").read_text())
        assert len(saved) == 1 and TOKEN not in json.dumps(saved)
        code, err = await _fetch(server, ids, state, "--summary-json", str(tmp_path / "s.json"))
        assert code == 0 and "remembered from a run" in err
        summary = json.loads((tmp_path / "s.json").read_text())
        assert "remembered" in summary["start_rate"]
        code, err = await _fetch(server, ids, state, "--fresh")
        assert code == 0 and "--fresh" in err
