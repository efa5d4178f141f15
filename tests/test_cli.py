"""The ``commbox-async`` command, driven as a user drives it: a subprocess against the fake server.

Every run checks that the token shows nowhere: not on stdout, not on stderr, not in the output.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from cli_process import read_pty, start_cli

from commbox_async.cli._args import DEFAULT_MOCK_PORT, build_parser
from commbox_async.testing import FAULT_KINDS, FakeCommbox, unread_of

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
    return await start_cli(*args, env=env if env is not None else _env())


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
        (["get", "12", "--page-size", "500"], {}, 2, ": --page-size must be between 1 and 100"),
        (["get", "12", "--page-size", "0"], {}, 2, ": --page-size must be between 1 and 100"),
        (["fetch", "--page-size", "101"], {}, 2, ": --page-size must be between 1 and 100"),
        (["get", "12"], {"COMMBOX_TOKEN": ""}, 2, "pass --token or set COMMBOX_TOKEN"),
        (
            ["fetch", "--concurrency", "0"],
            {},
            2,
            "--concurrency: must be between 1 and 10000, got 0",
        ),
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
    # The killed run had written its job record, as every run does.
    (tmp_path / "full.ndjson.job.json").rename(tmp_path / "out.ndjson.job.json")
    run = await cli("fetch", str(tmp_path / "ids.txt"), "-o", str(out), "--resume", *args)
    assert run.code == 0, run.err
    assert "dropped an incomplete last line" in run.err
    assert "resuming: 10 identities already" in run.err
    assert "30 ok, 0 failed" in run.err
    written = _ids_in(out)
    assert sorted(written) == ids
    assert written[:10] == [json.loads(line)["identity_id"] for line in lines[:10]]


async def _signalled_midway(
    fake: FakeCommbox, tmp_path: Path, ids: list[int], signum: int
) -> tuple[Run, Path, list[str]]:
    """A slow `fetch` of ``ids`` sent ``signum`` once 20 lines are written, run to its end;
    returns the run, the output file and the command (to run it again with --resume)."""
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("".join(f"{i}\n" for i in ids))
    out = tmp_path / "out.ndjson"
    args = ["fetch", str(ids_file), "-o", str(out), "--base-url", fake.url, "--rate", "1000"]
    fake.latency = 0.02  # slow enough that the job is still running when the signal comes
    async with _running(*args, "--concurrency", "4") as proc:
        deadline = asyncio.get_running_loop().time() + 60
        while not out.exists() or out.read_bytes().count(b"\n") < 20:
            assert proc.returncode is None, "the job ended before the signal could be sent"
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)  # waiting for the subprocess's output
        proc.send_signal(signum)
        return await _finish(proc), out, args


async def test_ctrl_c_then_resume_loses_and_repeats_nothing(
    fake: FakeCommbox, tmp_path: Path
) -> None:
    """SIGINT mid-job leaves whole lines and exits 130; --resume completes every id exactly once."""
    ids = list(range(1000, 1400))
    interrupted, out, args = await _signalled_midway(fake, tmp_path, ids, signal.SIGINT)
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


async def test_mock_prints_an_export_line_that_a_client_can_use() -> None:
    """`mock` prints its token and an export line; `get` with just those works; SIGINT stops it."""
    async with _running("mock", "--port", "0") as server:
        assert server.stdout is not None
        banner = [(await asyncio.wait_for(server.stdout.readline(), 30)).decode() for _ in range(3)]
        assert "with token 'test-token'" in banner[0]
        exports = banner[2].split()
        assert exports[0] == "export"
        env = dict(item.split("=", 1) for item in exports[1:])
        assert env["COMMBOX_BASE_URL"].startswith("http://127.0.0.1:")
        run = await cli("get", "31", env=_env(**env))
        assert run.code == 0, run.err
        assert json.loads(run.out)["totalUnreadChatMessages"] == unread_of(31, 10)
        missing = await cli("get", "404404", env=_env(**env))  # the README's example 404
        assert (missing.code, "HTTP 404" in missing.err) == (1, True)
        server.send_signal(signal.SIGINT)
        stopped = await _finish(server)
    assert stopped.code == 0
    assert "stopped" in stopped.err


async def test_mock_help_shows_the_defaults_and_the_port_is_not_8080() -> None:
    """`mock --help` names the default token and port, neither 8080 nor web_badges' 8090."""
    run = await cli("mock", "--help")
    assert run.code == 0
    assert "(test-token)" in run.out and "(8765)" in run.out
    assert DEFAULT_MOCK_PORT not in (8080, 8090)


async def test_mock_answers_404_for_the_ids_it_is_given() -> None:
    """`mock --not-found 5,6` answers 404 for those ids and 200 for the others."""
    async with _running("mock", "--port", "0", "--not-found", "5,6", "--token", TOKEN) as server:
        assert server.stdout is not None
        banner = (await asyncio.wait_for(server.stdout.readline(), 30)).decode()
        url = banner.split(" on ")[1].split()[0]
        runs = [await cli("get", ident, "--base-url", url) for ident in ("5", "6", "7")]
        server.send_signal(signal.SIGINT)
        await server.communicate()
    assert [run.code for run in runs] == [1, 1, 0]
    assert "HTTP 404" in runs[0].err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--throttle-rate", "-1"], "argument --throttle-rate: '-1' must be a positive number"),
        (["--fault-rate", "1.5"], "argument --fault-rate: must be between 0 and 1, got 1.5"),
        (["--conversations", "-2"], "argument --conversations: '-2' must be 0 or more"),
        (["--fault-kinds", "500,nope"], "unknown kind nope; use 'default', 'all', or a"),
    ],
)
async def test_mock_refuses_bad_settings(args: list[str], message: str) -> None:
    """A bad mock setting is a usage error (exit 2) that says what is allowed."""
    run = await cli("mock", "--port", "0", *args)
    assert run.code == 2
    assert message in run.err


async def test_mock_fault_kinds_lists_them_all() -> None:
    """`--fault-kinds list` prints every kind; a wrong kind's error lists them too."""
    listed = await cli("mock", "--fault-kinds", "list")
    assert listed.out.split() == list(FAULT_KINDS)
    wrong = await cli("mock", "--port", "0", "--fault-kinds", "bogus")
    assert all(kind in wrong.err for kind in FAULT_KINDS)


async def test_demo_fetches_2000_identities_and_exits_0(tmp_path: Path) -> None:
    """`demo` (what `make demo` runs) fetches 2,000 identities through a throttling server."""
    out = tmp_path / "demo.ndjson"
    run = await cli("demo", "-o", str(out), env=_env(COMMBOX_TOKEN="unused-by-the-demo"))
    assert run.code == 0, run.err
    assert "2,000 ok, 0 failed" in run.out
    # The server's limit is below the client's ceiling: the client meets it and paces itself.
    answered = re.search(r"([0-9,]+) answered 429", run.out)
    assert answered and int(answered.group(1).replace(",", "")) > 0
    found = re.search(r"client rate +([0-9,.]+) req/s found", run.out)
    assert found and float(found.group(1).replace(",", "")) < 600
    # The point of the demo: the time against what the server's limit allows, the rate found.
    assert re.search(r"time +[0-9.]+ s; ideal 6\.6 s at the server's limit of 300 req/s", run.out)
    assert re.search(r"client rate +[0-9,]+ req/s found, from a ceiling of 600", run.out)
    ids = _ids_in(out)
    assert len(ids) == len(set(ids)) == 2000


# --- paging ---------------------------------------------------------------------------------


@pytest_asyncio.fixture
async def five() -> AsyncIterator[FakeCommbox]:
    """A fake server where every identity has five conversations."""
    async with FakeCommbox(token=TOKEN, conversations=5, childs=0) as server:
        yield server


async def test_get_says_when_the_page_is_full(five: FakeCommbox) -> None:
    """A full page prints a note on stderr naming --all-pages; a short page does not."""
    full = await cli("get", "9", "--base-url", five.url, "--page-size", "5")
    assert full.code == 0, full.err
    assert "the page is full (5 conversations)" in full.err and "--all-pages" in full.err
    short = await cli("get", "9", "--base-url", five.url, "--page-size", "6")
    assert short.err == ""


async def test_get_all_pages_joins_every_page(five: FakeCommbox) -> None:
    """`get --all-pages` reads pages until a short one and prints every conversation once."""
    run = await cli("get", "9", "--base-url", five.url, "--page-size", "2", "--all-pages")
    assert run.code == 0, run.err
    page = json.loads(run.out)
    assert [c["objectId"] for c in page["data"]] == [9000, 9001, 9002, 9003, 9004]
    assert page["totalUnreadChatMessages"] == unread_of(9, 5)
    assert [r.query["pageNumber"] for r in five.requests] == ["0", "1", "2"]
    assert "full" not in run.err


async def test_fetch_all_pages_and_the_full_page_warning(five: FakeCommbox, tmp_path: Path) -> None:
    """`fetch` warns about full pages and counts them; with --all-pages each line has them all."""
    (tmp_path / "ids.txt").write_text("1\n2\n3\n")
    one = tmp_path / "one.ndjson"
    args = [str(tmp_path / "ids.txt"), "--base-url", five.url, "--page-size", "2"]
    run = await cli("fetch", *args, "-o", str(one))
    assert run.code == 0, run.err
    assert run.err.count("the page is full") == 1  # the first one is shown, the rest counted
    assert re.search(
        r"full pages +3 identities may have more conversations: add --all-pages", run.err
    )
    every = tmp_path / "every.ndjson"
    run = await cli("fetch", *args, "-o", str(every), "--all-pages")
    assert run.code == 0, run.err
    lines = [json.loads(line) for line in every.read_text().splitlines()]
    assert sorted(len(line["response"]["data"]) for line in lines) == [5, 5, 5]
    assert "full pages" not in run.err


# --- resume checks the filters --------------------------------------------------------------


async def test_resume_refuses_other_filters(fake: FakeCommbox, tmp_path: Path) -> None:
    """A resume with other filters is refused before the output is touched; the same ones run."""
    (tmp_path / "ids.txt").write_text("1\n2\n3\n")
    out = tmp_path / "out.ndjson"
    args = ["fetch", str(tmp_path / "ids.txt"), "-o", str(out), "--base-url", fake.url]
    assert (await cli(*args, "--status", "open")).code == 0
    before = out.read_bytes()
    (tmp_path / "ids.txt").write_text("1\n2\n3\n4\n")
    other = await cli(*args, "--status", "2", "--resume")
    assert other.code == 2
    assert "--resume with other filters than the job" in other.err
    assert "it ran with --status 1, this run has --status 2" in other.err
    assert out.read_bytes() == before
    no_filter = await cli(*args, "--resume")
    assert no_filter.code == 2 and "this run has no filters" in no_filter.err
    same = await cli(*args, "--status", "1", "--resume")
    assert same.code == 0, same.err
    assert sorted(_ids_in(out)) == [1, 2, 3, 4]


async def test_resume_without_the_job_record_is_refused(fake: FakeCommbox, tmp_path: Path) -> None:
    """An output whose job record is gone cannot be checked, so it is not resumed."""
    (tmp_path / "ids.txt").write_text("1\n2\n")
    out = tmp_path / "out.ndjson"
    args = ["fetch", str(tmp_path / "ids.txt"), "-o", str(out), "--base-url", fake.url]
    assert (await cli(*args)).code == 0
    (tmp_path / "out.ndjson.job.json").unlink()
    run = await cli(*args, "--resume")
    assert run.code == 2
    assert "out.ndjson.job.json (its record of the filters) is missing" in run.err


# --- failures are visible, SIGTERM ends cleanly ---------------------------------------------


async def test_first_failure_of_each_kind_is_shown_at_once(fake: FakeCommbox) -> None:
    """Without a terminal, the first failure of a kind is a line on stderr, not only the
    summary, and it names the identity once."""
    run = await cli("fetch", "-", "--base-url", fake.url, stdin=f"{MISSING}\n1\n".encode())
    assert run.code == 1
    first = run.err.splitlines()[0]
    assert first == (
        f"identity {MISSING} failed: HTTP 404: Not found (not_found); "
        "further not_found failures are counted"
    )


async def test_the_progress_bar_counts_failures(tmp_path: Path) -> None:
    """On a terminal the bar shows how many identities failed."""
    async with FakeCommbox(token=TOKEN, not_found=lambda i: i % 2 == 0, childs=0) as server:
        (tmp_path / "ids.txt").write_text("".join(f"{i}\n" for i in range(1, 11)))
        master, terminal = os.openpty()
        try:
            proc = await start_cli(
                "fetch", str(tmp_path / "ids.txt"), "-o", str(tmp_path / "out.ndjson"),
                "--base-url", server.url,
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=terminal, env=_env(COLUMNS="200"),
            )  # fmt: skip
        finally:
            os.close(terminal)
        screen = await asyncio.get_running_loop().run_in_executor(None, read_pty, master)
        assert await asyncio.wait_for(proc.wait(), 60) == 1
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    assert "10/10 failed 5 " in plain
    _no_token(plain)


async def test_sigterm_ends_like_ctrl_c(fake: FakeCommbox, tmp_path: Path) -> None:
    """SIGTERM leaves whole lines, prints the summary and the resume hint, and exits 143."""
    ids = list(range(2000, 2300))
    stopped, out, _ = await _signalled_midway(fake, tmp_path, ids, signal.SIGTERM)
    assert stopped.code == 143, stopped.err
    assert "fetch interrupted" in stopped.err and "identities" in stopped.err
    assert "terminated:" in stopped.err and "run the same command with --resume" in stopped.err
    assert "Traceback" not in stopped.err
    first = _ids_in(out)
    assert 20 <= len(first) < len(ids) and len(set(first)) == len(first)


# --- input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("identity_id\n1\n2\n", "--column 'identity_id'"),
        ("name,identity_id\nada,1\n", "--column 'identity_id'"),
    ],
)
async def test_a_header_without_column_says_use_column(
    fake: FakeCommbox, tmp_path: Path, text: str, hint: str
) -> None:
    """A first line that looks like a header stops the job before any request, naming --column."""
    (tmp_path / "ids.csv").write_text(text)
    run = await cli("fetch", str(tmp_path / "ids.csv"), "--base-url", fake.url)
    assert run.code == 2
    assert "line 1" in run.err and "looks like a header: use --column" in run.err
    assert hint in run.err
    assert fake.requests == []
    piped = await cli("fetch", "-", "--base-url", fake.url, stdin=text.encode())
    assert piped.code == 2 and "looks like a header" in piped.err
    assert fake.requests == []


@pytest.mark.parametrize("text", [b"201\r202\r203\r", b"201\r\n202\r203"])
async def test_ids_ended_by_a_lone_cr_read_alike_from_a_file_and_a_pipe(
    fake: FakeCommbox, tmp_path: Path, text: bytes
) -> None:
    """Lines ended by CR alone (old Mac exports) are lines on a pipe as in a file."""
    (tmp_path / "ids.txt").write_bytes(text)
    from_file = await cli("fetch", str(tmp_path / "ids.txt"), "--base-url", fake.url)
    piped = await cli("fetch", "-", "--base-url", fake.url, stdin=text)
    for run in (from_file, piped):
        assert run.code == 0, run.err
        assert sorted(json.loads(line)["identity_id"] for line in run.out.splitlines()) == [
            201,
            202,
            203,
        ]
    csv = await cli("fetch", "-", "--column", "id", "--base-url", fake.url, stdin=b"id\r" + text)
    assert csv.code == 0, csv.err


async def test_empty_cells_are_skipped_and_counted(fake: FakeCommbox) -> None:
    """An empty CSV cell is skipped and counted, not a bad line: the job exits 0."""
    csv_text = b"name,identity_id\nada,21\nbob,\ncy,22\n"
    run = await cli("fetch", "-", "--column", "identity_id", "--base-url", fake.url, stdin=csv_text)
    assert run.code == 0, run.err
    assert sorted(json.loads(line)["identity_id"] for line in run.out.splitlines()) == [21, 22]
    assert re.search(r"skipped +1 empty cell\n", run.err)
    assert "bad input" not in run.err


async def test_a_note_after_an_id_is_allowed(fake: FakeCommbox) -> None:
    """`558355  # vip` is the id 558355."""
    run = await cli("fetch", "-", "--base-url", fake.url, stdin=b"31  # vip\n# a comment\n32\n")
    assert run.code == 0, run.err
    assert sorted(json.loads(line)["identity_id"] for line in run.out.splitlines()) == [31, 32]


# --- messages and flags ---------------------------------------------------------------------


async def test_messages_name_the_flags(fake: FakeCommbox) -> None:
    """The library's keywords come out as flags: --base-url and --token, not base_url=/token=;
    a URL's credentials are never shown."""
    run = await cli("get", "12", "--base-url", "http://user:pw@127.0.0.1:1")
    assert run.err.strip() == (
        "commbox-async: --base-url is 'http://***@127.0.0.1:1': it must not carry credentials; "
        "use --token"
    )
    run = await cli("get", "12", "--base-url", "http://example.com")
    assert "commbox-async: --base-url is 'http://example.com': it must use https" in run.err
    assert "--allow-insecure-http" in run.err


async def test_get_output_refuses_to_overwrite(fake: FakeCommbox, tmp_path: Path) -> None:
    """`get -o` never overwrites a file, and says so before any request."""
    out = tmp_path / "page.json"
    first = await cli("get", "12", "-o", str(out), "--base-url", fake.url)
    assert first.code == 0, first.err
    before, sent = out.read_bytes(), len(fake.requests)
    again = await cli("get", "13", "-o", str(out), "--base-url", fake.url)
    assert again.code == 2
    assert f"{out} already exists" in again.err
    assert out.read_bytes() == before and len(fake.requests) == sent


async def test_uvloop_after_the_subcommand() -> None:
    """`get 12 --uvloop` reads the flag after the subcommand (here: asks for the extra)."""
    run = await _main_in_python(
        "import sys; sys.modules['uvloop'] = None", ["get", "12", "--uvloop"]
    )
    assert run.code == 2
    assert "pip install 'commbox-async[uvloop]'" in run.err


async def test_get_help_describes_the_command_and_every_filter() -> None:
    """`get --help` has a description, and each filter flag a help line."""
    run = await cli("get", "--help")
    assert "Fetch one identity's conversations" in run.out
    parser = build_parser()
    get = next(
        action.choices["get"]
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    filters = next(g for g in get._action_groups if g.title and g.title.startswith("filters"))
    assert len(filters._group_actions) == 13
    for action in filters._group_actions:
        assert action.help, f"{action.option_strings} has no help"
        assert action.option_strings[0] in run.out


# --- the layout -----------------------------------------------------------------------------


async def test_only_mock_and_demo_import_the_fake_server() -> None:
    """`get` and `fetch` load neither commbox_async.testing nor aiohttp.web; mock does."""
    script = (
        "import sys\n"
        "from commbox_async.cli._main import _command\n"
        "_command('get'); _command('fetch')\n"
        "print(sorted(m for m in sys.modules if m.startswith(('commbox_async.testing', "
        "'aiohttp.web'))))\n"
        "_command('mock')\n"
        "print('commbox_async.testing' in sys.modules)\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE, env=_env()
    )
    out, _ = await proc.communicate()
    assert out.decode().split("\n")[:2] == ["[]", "True"]


async def test_mock_runs_without_the_cli_extra() -> None:
    """`mock` draws nothing, so it runs without rich (the 'cli' extra)."""
    run = await _main_in_python(
        "import sys; sys.modules['rich'] = None", ["mock", "--fault-kinds", "list"]
    )
    assert run.code == 0, run.err
    assert run.out.split() == list(FAULT_KINDS)
