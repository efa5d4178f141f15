"""What `fetch` remembers of a server's limit between runs: saved per base URL and token
fingerprint (never the token), with its age; the next run starts there; --fresh ignores it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from cli_process import start_cli

from commbox_async._protocol import token_fingerprint
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


def test_spellings_of_one_server_share_what_was_remembered(state: Path) -> None:
    """Host case, an explicit default port and a trailing slash name the same server; another
    port, scheme or path prefix does not."""
    memory.remember("HTTPS://API.Example.com:443/", TOKEN, 77.0, now=1000.0)
    for same in (
        "https://api.example.com",
        "https://API.EXAMPLE.COM/",
        "https://api.example.com:443",
    ):
        found = memory.recall(same, TOKEN, now=1001.0)
        assert found is not None and found.rate == 77.0, same
    for other in (
        "https://api.example.com:8443",
        "http://api.example.com",
        "https://api.example.com/Gateway",
    ):
        assert memory.recall(other, TOKEN, now=1001.0) is None, other
    memory.remember("http://[::1]:80/gw/", TOKEN, 5.0, now=1000.0)
    found = memory.recall("http://[::1]/gw", TOKEN, now=1001.0)
    assert found is not None and found.rate == 5.0


def test_the_token_never_reaches_the_file(state: Path) -> None:
    """The file names the token by its fingerprint only."""
    memory.remember(URL, TOKEN, 50.0)
    text = (state / "limits.json").read_text()
    assert TOKEN not in text and "memory-test" not in text


def test_an_old_rate_is_not_trusted(state: Path) -> None:
    """A limit saved longer ago than MAX_AGE is ignored."""
    memory.remember(URL, TOKEN, 50.0, now=0.0)
    assert memory.recall(URL, TOKEN, now=memory.MAX_AGE + 1.0) is None


def _entry(rate: str, saved: str) -> str:
    """A file with one entry for URL and TOKEN, its values written as given."""
    key = f"{URL} {token_fingerprint(TOKEN)}"
    return f'{{"{key}": {{"rate": {rate}, "saved": {saved}}}}}'


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[1, 2]",
        '{"x": {"rate": "fast"}}',
        _entry("1" + "0" * 400, str(int(time.time()))),  # an int too large for a float
        _entry("5", "1" + "0" * 400),
        _entry("NaN", "1"),
        _entry("true", "1"),
        _entry("5", str(int(time.time()) + 10**6)),  # saved in 12 days: kept for ever
        "[" * 100_000 + "]" * 100_000,  # too deep for the parser
    ],
)
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


def test_jobs_ending_together_each_keep_their_entry(state: Path) -> None:
    """Twenty saves at once, for twenty servers: every entry is in the file (a lock around
    each read-change-write; without it the last writer dropped the others')."""
    start = threading.Barrier(20)

    def save(n: int) -> None:
        start.wait()
        memory.remember(f"http://127.0.0.1:{9000 + n}", TOKEN, 10.0 + n)

    threads = [threading.Thread(target=save, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(json.loads((state / "limits.json").read_text())) == 20


def test_a_failed_save_leaves_no_temporary_file(state: Path) -> None:
    """limits.json a directory: the save is skipped, and its temporary file removed."""
    (state / "limits.json").mkdir()
    memory.remember(URL, TOKEN, 20.0)
    assert sorted(p.name for p in state.iterdir()) == ["limits.json", "limits.lock"]


def test_a_write_that_fails_leaves_no_temporary_file(
    state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk that fills up while the file is written: the save is skipped, nothing left."""

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(memory.json, "dump", full)
    memory.remember(URL, TOKEN, 20.0)
    assert sorted(p.name for p in state.iterdir()) == ["limits.lock"]


def test_a_relative_xdg_state_home_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """The XDG spec: a relative XDG_STATE_HOME is invalid, and ignored."""
    monkeypatch.delenv("COMMBOX_STATE_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", "relative/state")
    assert memory.state_dir() == Path.home() / ".local" / "state" / "commbox-async"
    monkeypatch.setenv("XDG_STATE_HOME", "/var/state")
    assert memory.state_dir() == Path("/var/state/commbox-async")


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


async def _run_remembering(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    remembered: float,
    *extra: str,
    saved_at: float | None = None,
) -> tuple[str, list[dict[str, float]]]:
    """A fetch of 10 ids (no 429) after ``remembered`` was saved (at ``saved_at``) for its
    server and token: its stderr, and the entries saved when it ended."""
    ids = tmp_path / "ids.txt"
    ids.write_text("".join(f"{558300 + n}\n" for n in range(10)))
    state = tmp_path / "state"
    async with FakeCommbox(token=TOKEN, conversations=1, childs=0) as server:
        monkeypatch.setenv("COMMBOX_STATE_DIR", str(state))
        memory.remember(server.url, TOKEN, remembered, now=saved_at)
        code, err = await _fetch(server, ids, state, *extra)
        assert code == 0, err
    saved = json.loads((state / "limits.json").read_text())
    return err, list(saved.values())


async def test_a_run_below_the_remembered_limit_keeps_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run whose --rate is below the remembered limit starts at --rate, says so, and leaves
    the remembered limit as it was: its rate is the caller's, not the server's."""
    err, saved = await _run_remembering(tmp_path, monkeypatch, 51.4, "--rate", "20")
    assert "20/s, --rate (a limit of 51.4/s remembered" in err
    assert [entry["rate"] for entry in saved] == [51.4]


async def test_a_run_that_held_the_remembered_rate_keeps_its_age(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that started from the remembered rate and measured nothing (no 429, no probe)
    leaves the entry as it was, its time included: MAX_AGE counts from the last measurement,
    not from the last run (a daily job too short to probe kept a week-old rate for ever)."""
    an_hour_ago = round(time.time() - 3600.0, 1)
    err, saved = await _run_remembering(tmp_path, monkeypatch, 51.4, saved_at=an_hour_ago)
    assert "51.4/s, remembered from a run 1 h ago" in err
    assert saved == [{"rate": 51.4, "saved": an_hour_ago}]


async def test_a_fresh_run_with_no_429_forgets_what_was_remembered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--fresh starts at --rate; with no 429 its end rate is the caller's --rate, which says
    nothing of the server (a --fresh --rate 5 saved 5/s, and the next full-speed run started
    there): it forgets the remembered rate instead, so the next run starts at its --rate."""
    _, saved = await _run_remembering(tmp_path, monkeypatch, 3.0, "--fresh", "--rate", "50")
    assert saved == []


async def test_an_interrupted_run_saves_nothing(tmp_path: Path) -> None:
    """A run stopped by Ctrl-C may be halfway through a search, far below the limit: what it
    ended at is not saved, though it met 429s (which a run to its end would save)."""
    ids = tmp_path / "ids.txt"
    ids.write_text("".join(f"{558300 + n}\n" for n in range(2000)))
    out, state = tmp_path / "out.ndjson", tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMBOX_")}
    env.update(COMMBOX_TOKEN=TOKEN, COMMBOX_STATE_DIR=str(state))
    throttle = Throttling(rate=100.0, burst=5.0, retry_after="1")
    async with FakeCommbox(
        token=TOKEN, conversations=1, childs=0, throttling=throttle, latency=0.02
    ) as server:
        proc = await start_cli(
            "fetch", str(ids), "-o", str(out), "--base-url", server.url, "--rate", "2000",
            "--concurrency", "4", env=env,
        )  # fmt: skip
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while server.count("throttled") == 0 or not out.exists() or out.stat().st_size == 0:
            assert proc.returncode is None, "the job ended before it could be interrupted"
            assert loop.time() < deadline
            await asyncio.sleep(0.01)  # waiting for the subprocess's first 429 and lines
        proc.send_signal(signal.SIGINT)
        try:
            _, err = await asyncio.wait_for(proc.communicate(b""), 60)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.communicate()
    assert proc.returncode == 130, err.decode()
    assert not (state / "limits.json").exists()


def test_a_missing_home_directory_is_no_state_directory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No HOME and no passwd entry (an arbitrary user id in a container): nothing is
    remembered or recalled, and the job is not failed by it (Path.home() raised RuntimeError,
    which reached the command line's last-resort handler)."""
    monkeypatch.delenv("COMMBOX_STATE_DIR", raising=False)
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    memory.remember(URL, TOKEN, 12.5)
    memory.forget(URL, TOKEN)
    memory.forget_all()
    assert memory.recall(URL, TOKEN) is None
