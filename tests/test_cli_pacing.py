"""A job that slows down says why (issue 22, item 1): the pauses and the rate the client found,
in the bar as they happen, in a progress line when stderr is not a terminal, in the summary and
in ``--summary-json``; ``-v`` shows the library's pacing and retry lines, ``-q`` only errors.

The counting and the wording are tested in-process on a virtual clock; the command itself in
subprocesses against the fake server, with pauses of a second or less.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import pty
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from cli_process import read_pty, start_cli

from commbox_async import AsyncCommbox, RateLimit, Retries
from commbox_async._pacing import Outcome, RateChange, Reason
from commbox_async._stats import ClientStats
from commbox_async._throttle import LocalLimiter
from commbox_async.cli._pace import Pacing, pacing_of, status_text, summary_rows
from commbox_async.cli._progress import JobView
from commbox_async.testing import FakeCommbox, Throttling, VirtualClock
from commbox_async.testing._data import error_body

TOKEN = "cli-pacing-token-7e41"
MISSING = 404_404


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMBOX_")}
    env["COMMBOX_TOKEN"] = TOKEN
    env.update(extra)
    return env


async def _cli(*args: str, stdin: bytes = b"") -> tuple[int, str, str]:
    proc = await start_cli(*args, env=_env())
    out, err = await asyncio.wait_for(proc.communicate(stdin), 120)
    assert proc.returncode is not None
    assert TOKEN not in out.decode() + err.decode()
    return proc.returncode, out.decode(), err.decode()


def _throttled(retry_after: str) -> Throttling:
    """A server limited to 20 requests/s with a burst of 5: a client at 100/s meets it."""
    return Throttling(rate=20, burst=5, retry_after=retry_after)


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeCommbox]:
    async with FakeCommbox(token=TOKEN, conversations=1, childs=0, not_found={MISSING}) as server:
        yield server


# --- the limiter counts its pauses ------------------------------------------------------------


async def test_the_limiter_counts_pauses_and_wall_clock_time_paused() -> None:
    """A 429 begins a pause, one during it extends it (not one more), Retry-After: 0 pauses
    nothing; `paused` is wall-clock time, and `pause_asked` the server's Retry-After."""
    clock = VirtualClock(start=0.0)
    limiter = LocalLimiter(RateLimit(max_rate=1000.0), clock=clock.time, sleep=clock.sleep)
    assert (limiter.pauses, limiter.paused, limiter.pause_asked) == (0, 0.0, None)
    first, second = await limiter.acquire(), await limiter.acquire()
    limiter.report(first, Outcome.THROTTLED, 10.0)
    assert (limiter.pauses, limiter.pause_asked) == (1, 10.0)
    clock.now = 4.0
    assert limiter.paused == pytest.approx(4.0)
    limiter.report(second, Outcome.THROTTLED, 10.0)  # during the pause: extends it to 14 s
    assert limiter.pauses == 1
    clock.now = 20.0
    assert limiter.paused == pytest.approx(14.0, abs=0.06)  # jitter adds up to 50 ms
    zero = await limiter.acquire()
    limiter.report(zero, Outcome.THROTTLED, 0.0)  # Retry-After: 0 pauses nothing
    assert limiter.pauses == 1
    third = await limiter.acquire()
    limiter.report(third, Outcome.THROTTLED, None)  # no header: the default pause (1 s)
    assert (limiter.pauses, limiter.pause_asked) == (2, None)
    clock.now = 30.0
    assert limiter.paused == pytest.approx(15.0, abs=0.11)


async def test_a_long_pause_is_in_the_summary_without_real_time() -> None:
    """A 429 asking for 120 s: the summary's rows say 1 pause of 120 s and the Retry-After
    (the client ran on a virtual clock: no real wait)."""
    clock = VirtualClock()
    async with FakeCommbox(token=TOKEN) as server:
        server.script(7, (429, {"Retry-After": "120"}, error_body(429)))
        limiter = LocalLimiter(RateLimit(max_rate=50.0), clock=clock.time, sleep=clock.sleep)
        async with AsyncCommbox(
            token=TOKEN, base_url=server.url, limiter=limiter, retries=Retries(max_delay=0.0)
        ) as commbox:
            await commbox.get_user_objects(7)
            rows = dict(summary_rows(pacing_of(commbox.limiter, 50.0)))
    assert re.fullmatch(
        r"1 pause, 120 s in all \(nothing sent\); the last one: server asked Retry-After 120",
        rows["paused"],
    ), rows


async def test_a_lowered_rate_says_to_what_and_why() -> None:
    """After a 429 lowers the rate, the summary names the rate found, the ceiling, the reason
    and the evidence; the bar's phrase names the rate and the reason."""
    clock = VirtualClock()
    limiter = LocalLimiter(RateLimit(max_rate=1000.0), clock=clock.time, sleep=clock.sleep)
    tickets = []
    for _ in range(10):
        tickets.append(await limiter.acquire())
        clock.now += 0.001
    for ticket in tickets[:-1]:
        limiter.report(ticket, Outcome.ACCEPTED)
    limiter.report(tickets[-1], Outcome.THROTTLED, 1.0)
    clock.now += 2.0  # the pause is over
    pacing = pacing_of(limiter, 1000.0)
    change = limiter.last_change
    assert change.new < change.old == 1000.0
    rate = f"{pacing.rate:.2g}" if pacing.rate < 10 else f"{pacing.rate:.1f}"
    text = dict(summary_rows(pacing))["client rate"]
    assert text.startswith(f"{rate} req/s found, from a ceiling of 1000; lowered 1,000 -> ")
    assert f", {change.reason.value}: {change.evidence}" in text
    assert status_text(pacing) == f"rate {rate}/s of 1000 ({change.reason.value})"


def test_a_limiter_that_counts_no_pauses_still_gives_a_rate() -> None:
    """A user's limiter without pause counts or a last change (read through getattr): the
    summary gives the rate and leaves the pauses out, the bar its rate."""

    class Plain:
        current_rate = 40.0

        def pause_remaining(self) -> float:
            return 0.0

    pacing = pacing_of(Plain(), 40.0)  # type: ignore[arg-type]
    assert summary_rows(pacing) == [("client rate", "40.0 req/s, the ceiling: never lowered")]
    assert status_text(pacing) == "rate 40.0/s"


def test_the_pause_phrase_names_the_wait_and_the_retry_after() -> None:
    """A pause in progress reads "paused 87 s: server asked Retry-After 120"."""
    change = RateChange(0.0, 50.0, 50.0, Reason.START, "configured")
    paused = Pacing(ceiling=50.0, rate=50.0, change=change, pause_left=87.2, asked=120.0)
    assert status_text(paused) == "paused 87 s: server asked Retry-After 120"
    no_header = Pacing(ceiling=50.0, rate=50.0, pause_left=0.5)
    assert status_text(no_header) == "paused 0.5 s: a 429 with no Retry-After"


# --- progress lines without a terminal ----------------------------------------------------------


async def test_without_a_terminal_one_progress_line_every_30_s() -> None:
    """stderr not a terminal: the view writes one progress line per 30 s it sleeps, with the
    pause in progress (a virtual sleep: no real wait)."""
    stream, clock, slept = io.StringIO(), VirtualClock(), asyncio.Event()

    async def sleep(seconds: float) -> None:
        await clock.sleep(seconds)
        if len(clock.sleeps) == 4:
            slept.set()

    view = JobView(
        total=10, label="fetch", stream=stream, progress_every=30.0, clock=clock.time,
        sleep=sleep,
    )  # fmt: skip
    pacing = Pacing(ceiling=50.0, rate=50.0, pause_left=87.0, asked=120.0)
    stats = ClientStats(retries=2, throttled=1).snapshot()
    async with view.ticking(lambda: stats, lambda: pacing):
        await asyncio.wait_for(slept.wait(), 30)  # a hang guard, not a timing
    assert clock.sleeps[:4] == [30.0] * 4
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 3
    assert lines[0] == (
        "fetch: 0 of 10 done, 0 failed, 0 identities/s, 2 retries, 1 answered 429; "
        "paused 87 s: server asked Retry-After 120"
    )


async def test_quiet_writes_no_progress_line() -> None:
    """With -q (quiet) no progress line is written, however long the job."""
    stream, clock = io.StringIO(), VirtualClock()
    view = JobView(
        total=None, label="fetch", stream=stream, quiet=True, progress_every=30.0,
        clock=clock.time, sleep=clock.sleep,
    )  # fmt: skip
    async with view.ticking(lambda: ClientStats().snapshot(), lambda: None):
        for _ in range(10):
            await asyncio.sleep(0)
    assert clock.sleeps == [] and stream.getvalue() == ""


# --- the command ------------------------------------------------------------------------------


async def test_a_throttled_job_says_why_it_slowed(fake: FakeCommbox, tmp_path: Path) -> None:
    """--rate 100 against a server limited to 20/s, stderr not a terminal: progress lines come
    during the job, and the summary and --summary-json give the rate, the pauses and the time
    paused."""
    fake.throttling = _throttled("0.5")
    ids = tmp_path / "ids.txt"
    ids.write_text("".join(f"{i}\n" for i in range(1, 31)))
    summary = tmp_path / "summary.json"
    code, out, err = await _cli(
        "fetch", str(ids), "--base-url", fake.url, "--rate", "100", "--concurrency", "8",
        "--progress-every", "0.2", "--summary-json", str(summary),
    )  # fmt: skip
    assert code == 0, err
    assert len(out.splitlines()) == 30
    assert re.search(r"^fetch: [0-9,]+ of 30 done, 0 failed, ", err, re.MULTILINE), err
    rate = re.search(r"^  client rate +([0-9.,]+) req/s(.*)$", err, re.MULTILINE)
    assert rate and "ceiling" in rate.group(2), err
    paused = re.search(r"^  paused +([0-9]+) pauses?, ([0-9.]+) s in all", err, re.MULTILINE)
    assert paused and int(paused.group(1)) >= 1, err
    assert "server asked Retry-After 0.5" in err
    report = json.loads(summary.read_text())
    assert report["outcome"] == "ok" and report["ok"] == 30
    assert report["pacing"]["ceiling"] == 100
    assert report["pacing"]["pauses"] == int(paused.group(1))
    assert report["pacing"]["paused_s"] > 0
    assert report["requests"]["throttled"] >= 1
    assert TOKEN not in summary.read_text()


async def test_verbose_shows_pacing_and_retry_lines(fake: FakeCommbox) -> None:
    """-v, stderr not a terminal: the library's retry line and its pacing line are shown."""
    fake.throttling = _throttled("0.2")
    ids = "".join(f"{i}\n" for i in range(1, 9)).encode()
    code, _, err = await _cli(
        "fetch", "-", "--base-url", fake.url, "--rate", "100", "--concurrency", "1", "-v",
        stdin=ids,
    )  # fmt: skip
    assert code == 0, err
    assert re.search(r"^identity [0-9]+: retrying in [0-9.]+ s: HTTP 429$", err, re.MULTILINE)
    assert re.search(r"^rate 100 -> [0-9.]+/s \([a-z-]+\): ", err, re.MULTILINE), err


async def test_default_without_a_terminal_shows_no_log_lines(fake: FakeCommbox) -> None:
    """Without -v and without a terminal, no retry or pacing line: the summary says it."""
    fake.throttling = _throttled("0.2")
    ids = "".join(f"{i}\n" for i in range(1, 9)).encode()
    code, _, err = await _cli(
        "fetch", "-", "--base-url", fake.url, "--rate", "100", "--concurrency", "1", stdin=ids
    )
    assert code == 0, err
    assert "retrying in" not in err and "rate 100 ->" not in err
    assert "  paused " in err


async def test_quiet_shows_only_errors(fake: FakeCommbox, tmp_path: Path) -> None:
    """-q: a failure's line and the final error only; no summary, notes or progress lines,
    even with a pause and progress lines asked for."""
    fake.script(2, (429, {"Retry-After": "0.3"}, error_body(429)))
    summary = tmp_path / "summary.json"
    code, out, err = await _cli(
        "fetch", "-", "--base-url", fake.url, "-q", "--progress-every", "0.05",
        "--summary-json", str(summary), stdin=f"1\n2\n{MISSING}\n".encode(),
    )  # fmt: skip
    assert code == 1
    assert len(out.splitlines()) == 3
    assert err.splitlines() == [
        f"identity {MISSING} failed: HTTP 404: Not found (not_found); further not_found "
        "failures are counted"
    ]
    report = json.loads(summary.read_text())
    assert (report["outcome"], report["failed_ids"], report["pacing"]["pauses"]) == (
        "failed",
        [MISSING],
        1,
    )


async def test_the_bar_shows_a_pause_and_the_rate_as_they_happen(
    fake: FakeCommbox, tmp_path: Path
) -> None:
    """On a terminal the bar shows the pause in progress with the server's Retry-After, then
    the rate the client lowered to with its reason (a 1 s pause; the bar ticks 4 times a s)."""
    fake.throttling = _throttled("1")
    ids = tmp_path / "ids.txt"
    ids.write_text("".join(f"{i}\n" for i in range(1, 21)))
    leader, follower = pty.openpty()
    proc = await start_cli(
        "fetch", str(ids), "-o", str(tmp_path / "out.ndjson"), "--base-url", fake.url,
        "--rate", "100", "--concurrency", "8",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=follower,
        env=_env(COLUMNS="250"),
    )  # fmt: skip
    os.close(follower)
    screen = await asyncio.get_running_loop().run_in_executor(None, read_pty, leader)
    assert await asyncio.wait_for(proc.wait(), 120) == 0, screen
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    assert TOKEN not in plain
    assert re.search(r"paused [0-9.]+ s: server asked Retry-After 1 ETA", plain), plain
    assert re.search(r"rate [0-9.]+/s of 100 \([a-z-]+\) ETA", plain), plain
    assert re.search(r"paused +[0-9]+ pauses?, [0-9.]+ s in all", plain), plain[-800:]
