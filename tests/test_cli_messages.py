"""Messages that name the problem and the fix, and a lighter command line (issue 22, items 4
and 6): each driven as a user drives it, in a subprocess against the fake server."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from cli_process import start_cli

from commbox_async._stats import ClientStats
from commbox_async.cli._input import parse_identity
from commbox_async.cli._output import JobReport, summary_rows
from commbox_async.testing import FakeCommbox

TOKEN = "cli-messages-token-2b8a"
MISSING = 404_404
ROOT = Path(__file__).resolve().parent.parent


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMBOX_")}
    env["COMMBOX_TOKEN"] = TOKEN
    env.update(extra)
    return env


async def _cli(
    *args: str, stdin: bytes = b"", env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    proc = await start_cli(*args, env=env if env is not None else _env())
    out, err = await asyncio.wait_for(proc.communicate(stdin), 120)
    assert proc.returncode is not None
    assert TOKEN not in out.decode() + err.decode()
    assert "Traceback" not in err.decode()
    return proc.returncode, out.decode(), err.decode()


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeCommbox]:
    async with FakeCommbox(token=TOKEN, conversations=2, childs=1, not_found={MISSING}) as server:
        yield server


# --- a bad base URL: where it came from, its value, what is wrong ------------------------------


@pytest.mark.parametrize(
    ("url", "wrong", "meant"),
    [
        ("htps://api.commbox.io", "the scheme 'htps' is neither https nor http", "https://"),
        ("http//localhost:8765", "':' is missing after 'http'", "http://localhost:8765"),
        ("localhost:8765", "it has no scheme", "http://localhost:8765"),
        ("api.example.com/commbox", "it has no scheme", "https://api.example.com/commbox"),
    ],
)
async def test_a_bad_base_url_from_the_variable_names_it(url: str, wrong: str, meant: str) -> None:
    """COMMBOX_BASE_URL is named (not --base-url), with its value, what is wrong, and the URL
    that was probably meant; exit 2 before any request."""
    code, _, err = await _cli("get", "1", env=_env(COMMBOX_BASE_URL=url))
    assert code == 2
    assert err.startswith(f"commbox-async: COMMBOX_BASE_URL is {url!r}: {wrong}"), err
    assert f"did you mean '{meant}" in err
    assert "--base-url" not in err


async def test_a_bad_base_url_flag_names_the_flag() -> None:
    """The same URL given with --base-url names the flag."""
    code, _, err = await _cli("fetch", "-", "--base-url", "htps://api.commbox.io", stdin=b"1\n")
    assert code == 2
    assert "--base-url is 'htps://api.commbox.io': the scheme 'htps'" in err


# --- the token ----------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["COMMBOX_TOKEN", "--token"])
async def test_a_bearer_prefix_is_named_with_its_fix(source: str) -> None:
    """A token given as "Bearer <token>" is refused with the advice to drop the prefix, naming
    where it came from; the token itself is not shown."""
    value = f"Bearer {TOKEN}"
    if source == "--token":
        code, _, err = await _cli("get", "1", "--token", value)
    else:
        code, _, err = await _cli("get", "1", env=_env(COMMBOX_TOKEN=value))
    assert code == 2
    assert err.startswith(f"commbox-async: {source} starts with 'Bearer': give the token alone")


@pytest.mark.parametrize("command", ["get", "fetch"])
async def test_a_refused_flag_token_says_check_the_flag(fake: FakeCommbox, command: str) -> None:
    """A refused --token says to check --token; a refused COMMBOX_TOKEN says COMMBOX_TOKEN."""
    args = ["get", "1"] if command == "get" else ["fetch", "-"]
    code, _, err = await _cli(
        *args, "--base-url", fake.url, "--token", "wrong-token-x", stdin=b"1\n"
    )
    assert code == 2
    assert "the server refused the token" in err and "check --token" in err
    assert "COMMBOX_TOKEN" not in err
    code, _, err = await _cli(
        *args, "--base-url", fake.url, env=_env(COMMBOX_TOKEN="wrong-token-y"), stdin=b"1\n"
    )
    assert code == 2 and "check COMMBOX_TOKEN" in err


async def test_the_summary_json_says_why_a_job_stopped(fake: FakeCommbox, tmp_path: Path) -> None:
    """A job stopped by a refused token still writes --summary-json: outcome "error" and the
    message, never the token."""
    summary = tmp_path / "summary.json"
    code, _, err = await _cli(
        "fetch", "-", "--base-url", fake.url, "--summary-json", str(summary),
        env=_env(COMMBOX_TOKEN="wrong-token-z"), stdin=b"1\n2\n",
    )  # fmt: skip
    assert code == 2, err
    report = json.loads(summary.read_text())
    assert report["outcome"] == "error"
    assert report["error"].startswith("the server refused the token")
    assert "wrong-token-z" not in summary.read_text()


# --- a timeout names the host and the flag ----------------------------------------------------


async def test_a_timeout_names_the_host_and_suggests_timeout(fake: FakeCommbox) -> None:
    """A server slower than --timeout: the error names host:port and says to raise --timeout,
    for `get` and for `fetch`'s first-failure line."""
    fake.latency = 1.0
    host = fake.url.removeprefix("http://")
    args = ["--base-url", fake.url, "--timeout", "0.1", "--retries", "1"]
    code, _, err = await _cli("get", "5", *args)
    assert code == 1
    assert f"no answer from {host} within 0.1 s per attempt; raise --timeout" in err
    code, _, err = await _cli("fetch", "-", *args, stdin=b"5\n")
    assert code == 1
    first = err.splitlines()[0]
    assert first.startswith("identity 5 failed: timed out")
    assert f"no answer from {host} within 0.1 s per attempt; raise --timeout" in first
    assert "(identity 5)" not in first


# --- the resume refusal can be pasted ----------------------------------------------------------


async def test_the_resume_refusal_shows_flags_that_can_be_pasted(
    fake: FakeCommbox, tmp_path: Path
) -> None:
    """A resume with other filters shows them as flags: --no-include-childs, not
    "--include-childs False"."""
    (tmp_path / "ids.txt").write_text("1\n2\n")
    out = tmp_path / "out.ndjson"
    args = ["fetch", str(tmp_path / "ids.txt"), "-o", str(out), "--base-url", fake.url]
    code, _, err = await _cli(*args, "--no-include-childs", "--status", "open,2")
    assert code == 0, err
    code, _, err = await _cli(*args, "--include-childs", "--resume")
    assert code == 2
    assert "it ran with --include-childs" not in err
    assert "it ran with --no-include-childs --status 1,2, this run has --include-childs;" in err
    assert "False" not in err and "True" not in err


# --- an empty input is an error ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "extra"),
    [("", []), ("# only a comment\n\n", []), ("name,identity_id\n", ["--column", "identity_id"])],
)
async def test_an_empty_input_file_exits_1_before_any_output(
    fake: FakeCommbox, tmp_path: Path, text: str, extra: list[str]
) -> None:
    """An empty file, or a CSV with a header and no rows: exit 1 with a line that says so and
    names --allow-empty; no output file is created. With --allow-empty: exit 0."""
    ids = tmp_path / "ids.csv"
    ids.write_text(text)
    out = tmp_path / "out.ndjson"
    args = ["fetch", str(ids), "-o", str(out), "--base-url", fake.url, *extra]
    code, _, err = await _cli(*args)
    assert code == 1
    assert err.strip() == (
        f"commbox-async: {ids} held no identity id (an empty file, or a CSV header with no "
        "rows): nothing was fetched; --allow-empty accepts an empty input"
    )
    assert not out.exists()
    code, _, err = await _cli(*args, "--allow-empty")
    assert code == 0, err
    assert "0 ok, 0 failed" in err


async def test_an_empty_stdin_exits_1_after_the_summary(fake: FakeCommbox, tmp_path: Path) -> None:
    """Nothing on stdin (a failed export piped in): the summary, then exit 1 with a line that
    says no id came; the summary JSON says "empty"."""
    summary = tmp_path / "summary.json"
    code, _, err = await _cli(
        "fetch", "-", "--column", "identity_id", "--base-url", fake.url,
        "--summary-json", str(summary), stdin=b"identity_id\n",
    )  # fmt: skip
    assert code == 1
    assert "0 ok, 0 failed" in err
    assert err.splitlines()[-1] == (
        "commbox-async: stdin held no identity id (no line held one): nothing was fetched; "
        "--allow-empty accepts an empty input"
    )
    assert json.loads(summary.read_text())["outcome"] == "empty"
    assert fake.requests == []


# --- SIGHUP ends a job like SIGTERM -----------------------------------------------------------


async def test_sighup_ends_with_the_summary_and_the_resume_hint(
    fake: FakeCommbox, tmp_path: Path
) -> None:
    """SIGHUP (the terminal or the session closed) leaves whole lines, prints the summary and
    the resume hint, and exits 129."""
    ids = tmp_path / "ids.txt"
    ids.write_text("".join(f"{i}\n" for i in range(3000, 3300)))
    out = tmp_path / "out.ndjson"
    fake.latency = 0.02  # slow enough that the job is still running when the signal comes
    proc = await start_cli(
        "fetch", str(ids), "-o", str(out), "--base-url", fake.url, "--rate", "1000",
        "--concurrency", "4", env=_env(),
    )  # fmt: skip
    try:
        deadline = asyncio.get_running_loop().time() + 60
        while not out.exists() or out.read_bytes().count(b"\n") < 20:
            assert proc.returncode is None, "the job ended before the signal could be sent"
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)  # waiting for the subprocess's output
        proc.send_signal(signal.SIGHUP)
        _, err_bytes = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()
    err = err_bytes.decode()
    assert proc.returncode == 129, err
    assert "fetch interrupted" in err and "identities" in err
    assert "hung up (SIGHUP):" in err and "run the same command with --resume" in err
    text = out.read_text()
    assert text.endswith("\n")
    written = [json.loads(line)["identity_id"] for line in text.splitlines()]
    assert 20 <= len(written) < 300 and len(set(written)) == len(written)


# --- the summary and the input's details ---------------------------------------------------------


async def test_failed_ids_are_listed_in_order(tmp_path: Path) -> None:
    """The summary lists the failed ids sorted, whatever order they failed in."""
    async with FakeCommbox(token=TOKEN, not_found={9, 3, 7}, childs=0) as server:
        code, _, err = await _cli(
            "fetch", "-", "--base-url", server.url, "--concurrency", "1", stdin=b"9\n3\n5\n7\n"
        )
    assert code == 1
    assert re.search(r"^  failed ids +3, 7, 9$", err, re.MULTILINE), err


def test_the_smallest_failed_ids_are_kept() -> None:
    """Beyond the 1,000 ids kept for the summary, the smallest are kept, in order."""
    from commbox_async._client import FetchResult
    from commbox_async._errors import NotFoundError

    report = JobReport()
    for ident in range(3000, 0, -1):
        error = NotFoundError("Not found", identity_id=ident, status=404)
        report.add(FetchResult(identity_id=ident, response=None, error=error))
    assert report.failed_ids == list(range(1, 1001))
    rows = dict(summary_rows(report))
    assert rows["failed ids"].startswith("1, 2, 3, ")
    assert rows["failed ids"].endswith("20 and 2,980 more (see the output)")


async def test_one_conversation_is_singular() -> None:
    """A full page of one conversation says "1 conversation", not "1 conversations"."""
    async with FakeCommbox(token=TOKEN, conversations=3, childs=0) as server:
        code, _, err = await _cli("get", "9", "--base-url", server.url, "--page-size", "1")
        assert code == 0, err
        assert "the page is full (1 conversation): there may be more" in err
        code, _, err = await _cli(
            "fetch", "-", "--base-url", server.url, "--page-size", "1", stdin=b"9\n"
        )
        assert code == 0, err
        assert "the page is full (1 conversation), there may be more" in err


def test_one_retry_is_singular() -> None:
    """The summary's requests row says "1 retry", not "1 retries"."""
    report = JobReport(stats=ClientStats(requests=2, retries=1).snapshot())
    assert dict(summary_rows(report))["requests"] == "2 (1 retry, 0 answered 429)"


@pytest.mark.parametrize(
    ("column", "hint"),
    [
        (["--column", "identity_id"], "the header looks ';'-separated: add --delimiter ';'"),
        ([], "--column 'identity_id' --delimiter ';'"),
    ],
)
async def test_a_semicolon_csv_gets_the_delimiter_hint(
    fake: FakeCommbox, column: list[str], hint: str
) -> None:
    """A semicolon-separated CSV (a spreadsheet where the comma is the decimal mark) is
    refused before any request with a hint naming --delimiter ';'."""
    code, _, err = await _cli(
        "fetch", "-", "--base-url", fake.url, *column, stdin=b"name;identity_id\nada;21\n"
    )
    assert code == 2
    assert hint in err, err
    assert fake.requests == []
    code, out, err = await _cli(
        "fetch", "-", "--base-url", fake.url, "--column", "identity_id", "--delimiter", ";",
        stdin=b"name;identity_id\nada;21\n",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["identity_id"] == 21


async def test_a_spreadsheet_float_is_read_as_the_id(fake: FakeCommbox) -> None:
    """558358.0 (a spreadsheet's number format) is the id 558358; 1.5 is still refused."""
    assert (parse_identity("558358.0"), parse_identity("7.00"), parse_identity("1.5")) == (
        558358,
        7,
        None,
    )
    code, out, err = await _cli("fetch", "-", "--base-url", fake.url, stdin=b"558358.0\n31\n")
    assert code == 0, err
    assert sorted(json.loads(line)["identity_id"] for line in out.splitlines()) == [31, 558358]
    assert "not an identity id" not in err


# --- lighter: get without rich, make docs without dev tools, --include-childs on by default -----


async def test_get_runs_without_the_cli_extra(fake: FakeCommbox) -> None:
    """`get` draws nothing but the page, so it runs without rich (the 'cli' extra)."""
    script = (
        "import sys; sys.modules['rich'] = None\n"
        "from commbox_async.cli import main\n"
        f"raise SystemExit(main(['get', '31', '--base-url', {fake.url!r}]))"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=_env(),
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert json.loads(out)["data"][0]["objectId"] == 31000


def test_make_docs_installs_only_the_docs_group() -> None:
    """`make docs` installs the docs group alone: not the dev and bench groups (matplotlib,
    fastapi...) that the tests and benchmarks need."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    dry = subprocess.run(
        [make, "-n", "-B", "docs"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    installs = [line for line in dry.splitlines() if "pip install" in line]
    assert any("--group docs" in line for line in installs), dry
    assert not any(group in dry for group in ("--group dev", "--group bench")), dry
    assert "mkdocs build" in dry


async def test_fetch_help_says_childs_are_on_by_default() -> None:
    """`fetch --help` says --include-childs is on unless --no-include-childs, and what it costs."""
    code, out, _ = await _cli("fetch", "--help", env=_env(COLUMNS="1000"))  # no wrapping
    assert code == 0
    text = " ".join(out.split())
    assert "ON unless --no-include-childs" in text
    assert "119 KB a line against 11 KB without" in text
