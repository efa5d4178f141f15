"""The ``commbox-async`` command, driven as a user drives it: a subprocess against the fake server.

Every run checks that the token shows nowhere: not on stdout, not on stderr, not in the output.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from commbox_async.testing import FakeCommbox, unread_of

TOKEN = "cli-secret-token-9f2c"
MISSING = 404_404  # the fake server answers 404 for this identity
CONVERSATIONS = 2


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeCommbox]:
    """A fake server with small pages and one identity that does not exist."""
    async with FakeCommbox(
        token=TOKEN, conversations=CONVERSATIONS, childs=1, not_found={MISSING}
    ) as server:
        yield server


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMBOX_")}
    env["COMMBOX_TOKEN"] = TOKEN
    env.update(extra)
    return env


def _no_token(*texts: str) -> None:
    for text in texts:
        assert TOKEN not in text


async def _start(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "commbox_async",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env if env is not None else _env(),
    )


@contextlib.asynccontextmanager
async def _running(*args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """A started command, killed if the test leaves it running (a failed assertion)."""
    proc = await _start(*args)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()


async def _finish(proc: asyncio.subprocess.Process, stdin: bytes = b"") -> Run:
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), 120)
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()
        raise
    assert proc.returncode is not None
    run = Run(proc.returncode, out.decode(), err.decode())
    _no_token(run.out, run.err)
    return run


async def cli(*args: str, stdin: bytes = b"", env: dict[str, str] | None = None) -> Run:
    return await _finish(await _start(*args, env=env), stdin)


def _ids_in(path: Path) -> list[int]:
    text = path.read_text()
    _no_token(text)
    assert text == "" or text.endswith("\n"), "the output ends with a partial line"
    return [json.loads(line)["identity_id"] for line in text.splitlines()]


# --- get ------------------------------------------------------------------------------------


async def test_get_prints_the_page_with_the_api_field_names(fake: FakeCommbox) -> None:
    """`get` prints the page as the API's JSON: camelCase names, content as the original string."""
    run = await cli("get", "558355", "--base-url", fake.url, "--include-childs")
    assert run.code == 0, run.err
    page = json.loads(run.out)
    assert page["totalUnreadChatMessages"] == unread_of(558355, CONVERSATIONS)
    first = page["data"][0]
    assert first["objectId"] == 558355000
    assert isinstance(first["content"], str)
    assert json.loads(first["content"])["guidRT"] == f"{558355000:032x}"
    assert isinstance(first["childs"][0]["content"], str)
    assert fake.requests[-1].query["includeChilds"] == "true"


async def test_get_sends_the_filters(fake: FakeCommbox) -> None:
    """Filter flags become the API's query parameters."""
    run = await cli(
        "get", "7", "--base-url", fake.url, "--page-size", "5", "--status", "open,2", "--rate", "50"
    )
    assert run.code == 0, run.err
    assert fake.requests[-1].query == {"pageSize": "5", "status": "1,2"}


# --- exit statuses --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "code", "message"),
    [
        (["get", "12"], {}, 0, ""),
        (["get", str(MISSING)], {}, 1, "HTTP 404"),
        (["get", "12", "--token", "wrong-token-abc"], {}, 2, "refused the token"),
        (["get", "12"], {"COMMBOX_TOKEN": "wrong-token-abc"}, 2, "refused the token"),
        (["get", "12"], {"COMMBOX_TOKEN": ""}, 2, "token is empty"),
        (["get", "abc"], {}, 2, "is not an identity id"),
        (["get", "12", "--page-size", "500"], {}, 2, "page_size must be between 1 and 100"),
        (["get", "12", TOKEN], {}, 2, "unrecognized arguments: ***"),
        (["fetch", "no-such-file.txt"], {}, 2, "cannot read no-such-file.txt"),
        (["fetch", "--resume"], {}, 2, "--resume needs -o/--output"),
        (["frobnicate"], {}, 2, "invalid choice"),
    ],
)
async def test_exit_statuses(
    fake: FakeCommbox, args: list[str], env: dict[str, str], code: int, message: str
) -> None:
    """0 all ok, 1 an identity failed, 2 a usage or configuration error; one line, no token."""
    run = await cli(*args, "--base-url", fake.url, env=_env(**env))
    assert run.code == code, run.err
    assert message in run.err
    assert "Traceback" not in run.err
    assert "wrong-token-abc" not in run.out + run.err


async def test_missing_token_is_a_usage_error(fake: FakeCommbox) -> None:
    """Without COMMBOX_TOKEN or --token, the command says how to give one and exits 2."""
    env = _env()
    del env["COMMBOX_TOKEN"]
    run = await cli("get", "12", "--base-url", fake.url, env=env)
    assert (run.code, run.err.strip()) == (
        2,
        "commbox-async: no token: set COMMBOX_TOKEN (or pass --token)",
    )


async def test_fetch_stops_when_the_token_is_refused(fake: FakeCommbox, tmp_path: Path) -> None:
    """A 401 ends the job at once (exit 2); no line is written for it, so --resume refetches."""
    out = tmp_path / "out.ndjson"
    run = await cli(
        "fetch", "-", "-o", str(out), "--base-url", fake.url, "--concurrency", "1",
        env=_env(COMMBOX_TOKEN="wrong-token-abc"), stdin=b"1\n2\n3\n",
    )  # fmt: skip
    assert run.code == 2
    assert "the server refused the token" in run.err
    assert "wrong-token-abc" not in run.out + run.err
    assert out.read_text() == ""


async def _main_in_python(prelude: str, args: list[str]) -> Run:
    """The command's main(args) in a fresh Python that first runs ``prelude``."""
    script = f"{prelude}\nfrom commbox_async.cli import main\nraise SystemExit(main({args!r}))"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env(),
    )
    return await _finish(proc)


async def test_without_rich_it_says_how_to_install_the_extra() -> None:
    """With rich missing, the command names the 'cli' extra and exits 2."""
    run = await _main_in_python("import sys; sys.modules['rich'] = None", ["demo"])
    assert run.code == 2
    assert "pip install 'commbox-async[cli]'" in run.err


async def test_uvloop_flag_without_the_extra_says_how_to_install_it() -> None:
    """--uvloop with uvloop missing names the 'uvloop' extra and exits 2."""
    run = await _main_in_python("import sys; sys.modules['uvloop'] = None", ["--uvloop", "demo"])
    assert run.code == 2
    assert "pip install 'commbox-async[uvloop]'" in run.err


# --- fetch ----------------------------------------------------------------------------------


async def test_fetch_writes_one_line_per_identity(fake: FakeCommbox, tmp_path: Path) -> None:
    """Each identity is one NDJSON line, a failure carries status, description and kind."""
    ids = [*range(1, 30), MISSING]
    (tmp_path / "ids.txt").write_text("".join(f"{i}\n" for i in ids))
    out = tmp_path / "out.ndjson"
    run = await cli(
        "fetch", str(tmp_path / "ids.txt"), "-o", str(out), "--base-url", fake.url, "--rate", "1000"
    )
    assert run.code == 1, run.err
    lines = {line["identity_id"]: line for line in map(json.loads, out.read_text().splitlines())}
    assert sorted(lines) == sorted(ids)
    assert lines[MISSING] == {
        "identity_id": MISSING,
        "error": {"status": 404, "description": "Not found", "kind": "not_found"},
    }
    assert lines[3]["response"]["totalUnreadChatMessages"] == unread_of(3, CONVERSATIONS)
    assert "29 ok, 1 failed" in run.err
    assert f"failed ids      {MISSING}" in run.err
    total = sum(unread_of(i, CONVERSATIONS) for i in ids if i != MISSING)
    assert f"total unread    {total:,}" in run.err
    assert "p50" in run.err and "p95" in run.err
    _no_token(out.read_text())


async def test_fetch_on_uvloop_writes_the_same_lines(fake: FakeCommbox, tmp_path: Path) -> None:
    """--uvloop runs the same job on uvloop's loop (installed by the bench extra)."""
    pytest.importorskip("uvloop")
    ids = [*range(1, 20), MISSING]
    (tmp_path / "ids.txt").write_text("".join(f"{i}\n" for i in ids))
    out = tmp_path / "out.ndjson"
    args = ["--uvloop", "fetch", str(tmp_path / "ids.txt"), "-o", str(out), "--rate", "1000"]
    args += ["--base-url", fake.url]
    # uvloop.run wrapped so that the run says which loop it used.
    prelude = (
        "import asyncio, sys, uvloop\n"
        "real = uvloop.run\n"
        "def run(coro):\n"
        "    async def report():\n"
        "        print('loop:', type(asyncio.get_running_loop()).__module__, file=sys.stderr)\n"
        "        return await coro\n"
        "    return real(report())\n"
        "uvloop.run = run"
    )
    run = await _main_in_python(prelude, args)
    assert run.code == 1, run.err
    assert "loop: uvloop" in run.err
    assert sorted(_ids_in(out)) == sorted(ids)
    assert "19 ok, 1 failed" in run.err


async def test_fetch_all_ok_exits_0_and_refuses_to_overwrite(
    fake: FakeCommbox, tmp_path: Path
) -> None:
    """An all-ok job exits 0; running it again without --resume leaves the output alone."""
    (tmp_path / "ids.txt").write_text("5\n6\n")
    out = tmp_path / "out.ndjson"
    args = ["fetch", str(tmp_path / "ids.txt"), "-o", str(out), "--base-url", fake.url]
    first = await cli(*args)
    assert first.code == 0, first.err
    before = out.read_bytes()
    again = await cli(*args)
    assert again.code == 2
    assert "add --resume" in again.err
    assert out.read_bytes() == before


async def test_bad_input_lines_are_reported_and_skipped(fake: FakeCommbox, tmp_path: Path) -> None:
    """Bad lines are named by number and skipped; the good ids are all fetched; exit 1."""
    lines = ["11", "abc", "", "# a comment", "12", "-4", "1.5", "99999999999999999999", "11", "13"]
    (tmp_path / "ids.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.ndjson"
    run = await cli(
        "fetch", str(tmp_path / "ids.txt"), "-o", str(out), "--base-url", fake.url, "--rate", "500"
    )
    assert run.code == 1
    for number, text in [(2, "abc"), (6, "-4"), (7, "1.5"), (8, "99999999999999999999")]:
        assert f"line {number}: {text!r} is not an identity id; skipped" in run.err
    assert "line 4" not in run.err and "line 3" not in run.err
    assert sorted(_ids_in(out)) == [11, 12, 13]
    assert "1 repeated id, 4 bad input lines" in run.err


async def test_fetch_reads_a_csv_column_from_stdin(fake: FakeCommbox) -> None:
    """`--column` reads ids from a CSV on stdin; NDJSON goes to stdout, the summary to stderr."""
    csv_text = b'name,identity_id\nada,21\nbob,oops\n"c, d",22\n'
    run = await cli(
        "fetch", "-", "--column", "identity_id", "--base-url", fake.url, "--rate", "500",
        stdin=csv_text,
    )  # fmt: skip
    assert run.code == 1
    assert sorted(json.loads(line)["identity_id"] for line in run.out.splitlines()) == [21, 22]
    assert "line 3: 'oops' is not an identity id" in run.err
    assert "2 ok, 0 failed" in run.err
    missing = await cli("fetch", "-", "--column", "id", "--base-url", fake.url, stdin=csv_text)
    assert missing.code == 2
    assert "column 'id' is not in the CSV header" in missing.err


async def test_resume_drops_a_partial_last_line(fake: FakeCommbox, tmp_path: Path) -> None:
    """A line cut short by a kill is dropped, and its id is fetched again exactly once."""
    ids = list(range(100, 140))
    (tmp_path / "ids.txt").write_text("".join(f"{i}\n" for i in ids))
    full = tmp_path / "full.ndjson"
    args = ["--base-url", fake.url, "--rate", "1000"]
    assert (await cli("fetch", str(tmp_path / "ids.txt"), "-o", str(full), *args)).code == 0
    lines = full.read_bytes().splitlines(keepends=True)
    out = tmp_path / "out.ndjson"
    out.write_bytes(b"".join(lines[:10]) + lines[10][: len(lines[10]) // 2])
    run = await cli("fetch", str(tmp_path / "ids.txt"), "-o", str(out), "--resume", *args)
    assert run.code == 0, run.err
    assert "dropped an incomplete last line" in run.err
    assert "resuming: 10 identities already" in run.err
    assert "30 ok, 0 failed" in run.err
    written = _ids_in(out)
    assert sorted(written) == ids
    assert written[:10] == [json.loads(line)["identity_id"] for line in lines[:10]]


async def test_ctrl_c_then_resume_loses_and_repeats_nothing(
    fake: FakeCommbox, tmp_path: Path
) -> None:
    """SIGINT mid-job leaves whole lines and exits 130; --resume completes every id exactly once."""
    ids = list(range(1000, 1400))
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("".join(f"{i}\n" for i in ids))
    out = tmp_path / "out.ndjson"
    args = ["fetch", str(ids_file), "-o", str(out), "--base-url", fake.url, "--rate", "1000"]
    fake.latency = 0.02  # slow enough that the job is still running when it is interrupted
    async with _running(*args, "--concurrency", "4") as proc:
        deadline = asyncio.get_running_loop().time() + 60
        while not out.exists() or out.read_bytes().count(b"\n") < 20:
            assert proc.returncode is None, "the job ended before it could be interrupted"
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)  # waiting for the subprocess's output
        proc.send_signal(signal.SIGINT)
        interrupted = await _finish(proc)
    assert interrupted.code == 130, interrupted.err
    assert "interrupted:" in interrupted.err and "--resume" in interrupted.err
    assert "Traceback" not in interrupted.err
    first = _ids_in(out)
    assert 20 <= len(first) < len(ids)
    assert len(set(first)) == len(first)

    fake.latency = 0.0
    resumed = await cli(*args, "--resume")
    assert resumed.code == 0, resumed.err
    final = _ids_in(out)
    assert final[: len(first)] == first
    assert sorted(final) == ids  # nothing lost, nothing twice


async def test_ctrl_c_while_stdin_is_still_open(fake: FakeCommbox, tmp_path: Path) -> None:
    """Ctrl-C stops a job reading a pipe whose writer has not finished (no hang on stdin)."""
    out = tmp_path / "out.ndjson"
    args = ["fetch", "-", "-o", str(out), "--base-url", fake.url, "--rate", "1000"]
    async with _running(*args) as proc:
        assert proc.stdin is not None
        proc.stdin.write(b"".join(b"%d\n" % i for i in range(1, 11)))
        await proc.stdin.drain()  # and the pipe stays open: the reader waits for more
        deadline = asyncio.get_running_loop().time() + 60
        while not out.exists() or out.read_bytes().count(b"\n") < 10:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)  # waiting for the subprocess's output
        proc.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(proc.wait(), 30)
        run = await _finish(proc)
    assert code == 130, run.err
    assert sorted(_ids_in(out)) == list(range(1, 11))


async def test_retry_failed_fetches_the_failures_again(fake: FakeCommbox, tmp_path: Path) -> None:
    """--resume --retry-failed removes the error lines and fetches those ids again."""
    (tmp_path / "ids.txt").write_text(f"1\n{MISSING}\n2\n")
    out = tmp_path / "out.ndjson"
    args = ["fetch", str(tmp_path / "ids.txt"), "-o", str(out), "--base-url", fake.url]
    assert (await cli(*args)).code == 1
    assert (await cli(*args, "--resume")).code == 0  # nothing left to do
    assert fake.count(identity_id=MISSING) == 1
    run = await cli(*args, "--resume", "--retry-failed")
    assert run.code == 1
    assert "removed 1 failed result" in run.err
    assert sorted(_ids_in(out)) == sorted([1, 2, MISSING])
    assert fake.count(identity_id=MISSING) == 2


# --- mock and demo --------------------------------------------------------------------------


async def test_mock_serves_until_ctrl_c() -> None:
    """`mock --port 0` prints its URL, answers `get`, and stops cleanly on SIGINT."""
    async with _running("mock", "--port", "0", "--token", TOKEN) as server:
        assert server.stdout is not None
        banner = (await asyncio.wait_for(server.stdout.readline(), 30)).decode()
        url = banner.split(" on ")[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        run = await cli("get", "31", "--base-url", url)
        assert run.code == 0, run.err
        assert json.loads(run.out)["totalUnreadChatMessages"] == unread_of(31, 10)
        server.send_signal(signal.SIGINT)
        stopped = await _finish(server)
    assert stopped.code == 0
    assert "stopped" in stopped.err


async def test_demo_fetches_2000_identities_and_exits_0(tmp_path: Path) -> None:
    """`demo` (what `make demo` runs) fetches 2,000 identities through a throttling server."""
    out = tmp_path / "demo.ndjson"
    run = await cli("demo", "-o", str(out), env=_env(COMMBOX_TOKEN="unused-by-the-demo"))
    assert run.code == 0, run.err
    assert "2,000 ok, 0 failed" in run.out
    assert "answered 429" in run.out
    ids = _ids_in(out)
    assert len(ids) == len(set(ids)) == 2000
