"""The command line and the network: a gateway's path prefix, the opt-in for plain http to
another host, the mock server's URL on every interface, each retry shown on a terminal, and
stdin jobs that end early without a stray warning. Driven as a user drives it: a subprocess."""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import os
import pty
import signal
import threading
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from cli_process import start_cli
from gateway import serve_gateway

from commbox_async._protocol import FILTER_NAMES, Query, check_base_url
from commbox_async.cli._args import build_parser, filters_from_args
from commbox_async.cli._sources import in_thread
from commbox_async.testing import FakeCommbox, unread_of, unused_port

TOKEN = "cli-network-token-51d7"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMBOX_")}
    env["COMMBOX_TOKEN"] = TOKEN
    env.update(extra)
    return env


async def _cli(
    *args: str, stdin: bytes = b"", env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    proc = await start_cli(*args, env=env or _env())
    out, err = await asyncio.wait_for(proc.communicate(stdin), 120)
    assert proc.returncode is not None
    assert TOKEN not in out.decode() + err.decode()
    return proc.returncode, out.decode(), err.decode()


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeCommbox]:
    async with FakeCommbox(token=TOKEN, conversations=2, childs=1) as server:
        yield server


@pytest_asyncio.fixture
async def gateway(fake: FakeCommbox) -> AsyncIterator[str]:
    """A gateway serving the fake server under /commbox; yields its base URL."""
    async with serve_gateway(fake.url) as (url, _):
        yield url


# --- item 1: a gateway's path prefix --------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", "/"])
async def test_get_through_a_gateway_path_prefix(
    fake: FakeCommbox, gateway: str, suffix: str
) -> None:
    """`get --base-url http://host/commbox[/]` reaches the API under the gateway's prefix."""
    code, out, err = await _cli("get", "31", "--base-url", gateway + suffix)
    assert code == 0, err
    assert json.loads(out)["totalUnreadChatMessages"] == unread_of(31, 2)
    assert fake.requests[-1].target.startswith("/v2/users/identities/31/objects")


async def test_fetch_with_the_prefix_in_the_env_var(fake: FakeCommbox, gateway: str) -> None:
    """COMMBOX_BASE_URL with a path prefix works for `fetch` too."""
    code, out, err = await _cli("fetch", "-", stdin=b"1\n2\n", env=_env(COMMBOX_BASE_URL=gateway))
    assert code == 0, err
    assert sorted(json.loads(line)["identity_id"] for line in out.splitlines()) == [1, 2]


async def test_a_base_url_with_a_query_is_a_usage_error() -> None:
    """A query in --base-url is still refused, as a usage error, before any request."""
    code, _, err = await _cli("get", "1", "--base-url", "https://gw.example.com/commbox?x=1")
    assert code == 2
    assert "--base-url is 'https://gw.example.com/commbox?x=1': it must not have a query" in err


# --- item 4: plain http to another host ------------------------------------------------------


async def test_remote_http_is_refused_without_the_flag_and_warned_with_it() -> None:
    """http to a non-loopback host: refused, naming the flag; with --allow-insecure-http the
    client starts and warns (0.0.0.0 is not a loopback name; connecting to it reaches this
    machine, where nothing listens on port 9)."""
    code, _, err = await _cli("get", "1", "--base-url", "http://fake-commbox:8080")
    assert code == 2 and "--allow-insecure-http)" in err and "allow_insecure_http" not in err
    code, _, err = await _cli(
        "get", "1", "--base-url", "http://0.0.0.0:9", "--allow-insecure-http", "--retries", "1"
    )
    assert "plain http to a remote host (http://0.0.0.0:9): the token travels unencrypted" in err


async def test_mock_on_every_interface_prints_a_url_the_client_accepts() -> None:
    """`mock --host 0.0.0.0` prints a loopback URL that `get` accepts as it is, and the host
    name URL for other machines with the opt-in, which the client accepts with it."""
    proc = await start_cli(
        "mock", "--host", "0.0.0.0", "--port", "0", "--token", TOKEN, stdin=None, env=_env()
    )
    try:
        assert proc.stdout is not None
        banner = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        local = banner.split(" on ")[1].split()[0]
        remote = banner.split("COMMBOX_BASE_URL=")[1].split()[0]
        assert local.startswith("http://127.0.0.1:") and "0.0.0.0" not in banner
        assert check_base_url(local) == local
        assert check_base_url(remote, allow_insecure_http=True) == remote
        code, out, err = await _cli("get", "31", "--base-url", local)
        assert code == 0, err
        assert json.loads(out)["totalUnreadChatMessages"] == unread_of(31, 10)
    finally:
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.communicate(), 30)


# --- item 5: each retry shown on a terminal --------------------------------------------------


async def _with_terminal_stderr(*args: str) -> tuple[int, str, str]:
    """Run the command with stderr on a pseudo-terminal; returns status, stdout, stderr."""
    leader, follower = pty.openpty()
    proc = await start_cli(
        *args, stdin=asyncio.subprocess.DEVNULL, stderr=follower, env=_env(COLUMNS="200")
    )
    os.close(follower)
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the terminal's other side is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), b"".join(chunks).decode(errors="replace")


async def test_get_shows_each_retry_on_a_terminal() -> None:
    """Nothing listening, stderr a terminal: the retry is shown as it is scheduled, and the
    final error names host, port, reason and attempts (the one retry waits under 0.2 s of
    real back-off; nothing is timed)."""
    port = unused_port()
    code, _, err = await _with_terminal_stderr(
        "get", "558355", "--base-url", f"http://127.0.0.1:{port}", "--retries", "2"
    )
    assert code == 1
    assert "identity 558355: retrying in " in err and " s: connection refused" in err
    assert f"cannot connect to 127.0.0.1:{port}: connection refused (2 attempts over " in err


async def test_no_retry_lines_when_stderr_is_not_a_terminal() -> None:
    """With stderr piped (a script, a log file) the retries are not shown; the error is."""
    port = unused_port()
    code, _, err = await _cli(
        "get", "558355", "--base-url", f"http://127.0.0.1:{port}", "--retries", "2"
    )
    assert code == 1
    assert "retrying in" not in err
    assert "(2 attempts over " in err


# --- item 6: one list of the filters ----------------------------------------------------------


def test_every_filter_is_an_option_of_get_and_fetch() -> None:
    """Each of Query's fields is an option of `get` and `fetch`, and all of them together
    reach the wire under the vendor's names."""
    argv = [
        "--stream-provider-id", "a", "--stream-provider-type", "1", "--stream-id", "2",
        "--sub-stream-id", "3", "--page-number", "4", "--page-size", "5", "--status", "open,2",
        "--order", "closedtime desc", "--object-id", "7", "--module-id", "8",
        "--include-childs", "--no-include-activity-log",
    ]  # fmt: skip
    for command in (["get", "1"], ["fetch", "-"]):
        args = build_parser().parse_args([*command, *argv])
        filters = filters_from_args(args)
        assert list(filters) == list(FILTER_NAMES)
        assert len(Query.from_filters(filters).params()) == len(FILTER_NAMES)


# --- item 7: a stdin job that ends early --------------------------------------------------------


async def test_a_stdin_job_refused_early_prints_no_runtime_warning(fake: FakeCommbox) -> None:
    """A wrong token on a job reading many ids from a pipe: exit 2 with one line, and no
    "coroutine 'Queue.put' was never awaited" from the reader thread."""
    ids = b"".join(b"%d\n" % i for i in range(1, 20_001))
    code, _, err = await _cli(
        "fetch", "-", "--base-url", fake.url, stdin=ids, env=_env(COMMBOX_TOKEN="wrong-token-x")
    )
    assert code == 2, err
    assert "refused the token" in err
    assert "never awaited" not in err and "RuntimeWarning" not in err and "Traceback" not in err


async def test_a_stdin_job_on_a_full_disk_prints_no_runtime_warning(fake: FakeCommbox) -> None:
    """Output to a full disk (/dev/full, Linux) ends the job early: no stray warning either."""
    ids = b"".join(b"%d\n" % i for i in range(1, 20_001))
    code, _, err = await _cli("fetch", "-", "--base-url", fake.url, "-o", "/dev/full", stdin=ids)
    assert code == 1
    assert "cannot write the output: No space left on device" in err
    assert "never awaited" not in err and "RuntimeWarning" not in err and "Traceback" not in err


async def test_a_stdin_job_read_by_head_prints_no_runtime_warning(fake: FakeCommbox) -> None:
    """`... | commbox-async fetch - | head -1`: the reader leaves after one line; the job
    stops quietly, with no stray warning on stderr."""
    read_end, write_end = os.pipe()
    proc = await start_cli("fetch", "-", "--base-url", fake.url, stdout=write_end, env=_env())
    os.close(write_end)

    def head() -> bytes:
        with os.fdopen(read_end, "rb") as reader:
            return reader.readline()

    ids = b"".join(b"%d\n" % i for i in range(1, 50_001))
    first, (_, err) = await asyncio.wait_for(
        asyncio.gather(asyncio.to_thread(head), proc.communicate(ids)), 120
    )
    assert json.loads(first)["identity_id"] >= 1
    assert proc.returncode == 1
    text = err.decode()
    assert "never awaited" not in text and "RuntimeWarning" not in text and "Traceback" not in text


def test_the_stdin_reader_thread_leaves_no_coroutine_behind() -> None:
    """The reader thread of a job that stops early (its consumer gone, then the loop closed
    while the thread waits for room) creates no coroutine that is never awaited."""

    def endless() -> Iterator[int]:
        yield from itertools.count(1)

    async def job() -> None:
        ids = in_thread(endless(), buffer=4)
        async for _ in ids:
            break
        await ids.aclose()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(job())
        for thread in threading.enumerate():
            if thread.name == "commbox-async-input":
                thread.join(timeout=10)
                assert not thread.is_alive(), "the reader thread never stopped"
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)] == []


@pytest.mark.parametrize("pages", [[], ["--all-pages"]])
async def test_fetch_stops_sending_when_nothing_can_connect(
    tmp_path: Path, pages: list[str]
) -> None:
    """Nothing listening: fetch of 60 ids (one page or all pages) writes 60 error lines, most
    of them unsent, exits 3 (not 1) and says to check --base-url and resume."""
    port = unused_port()
    ids = tmp_path / "ids.txt"
    out = tmp_path / "out.ndjson"
    ids.write_text("".join(f"{558300 + n}\n" for n in range(60)))
    code, _, err = await _cli(
        "fetch", str(ids), "-o", str(out), "--base-url", f"http://127.0.0.1:{port}",
        "--retries", "1", "--concurrency", "4", *pages,
    )  # fmt: skip
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert code == 3
    assert len(lines) == 60 and all("error" in line for line in lines)
    assert sum("not sent" in line["error"]["description"] for line in lines) >= 60 - (8 + 4)
    assert "nothing could connect" in err and "--base-url" in err and "--resume" in err


def test_the_command_line_reads_status_names_as_the_library_does() -> None:
    """`--status in-process,Open,2` reads as the library reads those names; a typo is a usage
    error naming it."""
    args = build_parser().parse_args(["get", "1", "--status", "in-process,Open,2"])
    assert filters_from_args(args)["statuses"] == (8, 1, 2)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["get", "1", "--status", "opn"])
