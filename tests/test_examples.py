"""The runnable examples of the README, each run against the fake server."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from example_loading import EXAMPLES, load_example

from commbox_async import AsyncCommbox
from commbox_async.testing import FakeCommbox, unread_of
from commbox_async.testing._data import error_body

ROOT = EXAMPLES.parent

TOKEN = "examples-token-5b1e"


async def _run(script: str, *args: str, url: str, stdin: bytes = b"") -> tuple[int, str, str]:
    env = {**os.environ, "COMMBOX_TOKEN": TOKEN, "COMMBOX_BASE_URL": url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / script),
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_web_app_shows_unread_badges() -> None:
    """The aiohttp.web example serves badge counts and reports a missing identity as unavailable."""
    web_badges = load_example("web_badges")
    async with FakeCommbox(token=TOKEN, not_found={404}) as server:
        app = web_badges.create_app(token=TOKEN, base_url=server.url, rate_limit=1000)
        async with TestClient(TestServer(app)) as client:
            response = await client.get("/badges", params={"ids": "558355,7,404,7"})
            assert response.status == 200
            body = await response.json()
            assert body == {
                "badges": {"558355": unread_of(558355, 10), "7": unread_of(7, 10)},
                "unavailable": [404],
            }
            page = await client.get("/inbox/558355")
            assert page.status == 200
            text = await page.text()
            assert f'Inbox <span class="badge">{unread_of(558355, 10)}</span>' in text
            assert text.count('<span class="badge">') == 11
            assert (await client.get("/inbox/404")).status == 404
            assert (await client.get("/badges", params={"ids": "x"})).status == 400
            # An id CommBox cannot have is the caller's mistake (400), not an outage (502).
            assert (await client.get("/inbox/0")).status == 400
            assert (await client.get("/inbox/-5")).status == 400
            assert (await client.get("/badges", params={"ids": "0"})).status == 400


async def test_live_badges_stream_changes_as_server_sent_events() -> None:
    """The live page's event stream sends each badge, then the change a new message makes."""
    web_badges = load_example("web_badges")
    async with FakeCommbox(token=TOKEN) as server:
        app = web_badges.create_app(
            [558355, 7], share=1.0, token=TOKEN, base_url=server.url, rate_limit=1000
        )
        async with TestClient(TestServer(app)) as client:
            events = await client.get("/events")
            assert events.headers["Content-Type"] == "text/event-stream"
            seen: dict[int, int] = {}
            while len(seen) < 2:
                seen.update([await _next_badge(events)])
            assert seen == {558355: unread_of(558355, 10), 7: unread_of(7, 10)}
            page = await (await client.get("/live")).text()
            assert 'id="identity-7"' in page and 'new EventSource("/events")' in page
            server.add_message(7, count=2)
            assert await _next_badge(events) == (7, unread_of(7, 10) + 2)
            events.close()


async def _next_badge(events: Any) -> tuple[int, int]:
    """The next ``badge`` event of a server-sent event stream."""
    lines: list[str] = []
    while True:
        line = (await asyncio.wait_for(events.content.readline(), 30)).decode().rstrip("\n")
        if line:
            lines.append(line)
            continue
        if "event: badge" in lines:
            data = json.loads(lines[-1].removeprefix("data: "))
            return data["identity_id"], data["unread"]
        lines.clear()


async def test_fanout_job_prints_one_line_per_identity() -> None:
    """The fan-out example prints every identity once, a bad id as a failure, and exits 1."""
    async with FakeCommbox(token=TOKEN) as server:
        code, out, err = await _run(
            "fanout_job.py", "-", "--rate", "1000", url=server.url, stdin=b"1\n2\nx\n3\n"
        )
    lines = sorted(out.splitlines())
    assert lines == sorted(
        [f"{i}\t{unread_of(i, 10)}" for i in (1, 2, 3)] + ["x\terror\tinvalid_argument"]
    )
    assert code == 1
    assert "3 ok, 1 failed" in err


async def test_bot_loop_reacts_once_to_new_unread_messages() -> None:
    """The bot reacts to each open conversation with unread messages once, then to nothing new."""
    async with FakeCommbox(token=TOKEN, conversations=10) as server:
        code, out, err = await _run(
            "bot_loop.py", "558355", "--interval", "0", "--rounds", "2", url=server.url
        )
        polled = server.count("ok")
    assert code == 0, err
    open_with_unread = [i for i in range(0, 10, 3) if (558355 + i) % 4]  # statusId 1 = open
    assert f"look 1: reacted to {len(open_with_unread)} conversation(s)" in out
    assert "look 2: reacted to 0 conversation(s)" in out
    assert polled == 2


async def test_bot_loop_forgets_conversations_that_are_no_longer_open() -> None:
    """The bot's memory holds the open conversations only: one it saw before that is closed
    now (or never was open) is dropped after a look, so the memory never grows."""
    bot = load_example("bot_loop")
    async with FakeCommbox(token=TOKEN, conversations=10) as server:
        async with AsyncCommbox(TOKEN, base_url=server.url, rate_limit=1000) as commbox:
            seen = {1: 5}  # a conversation the identity no longer has open
            with contextlib.redirect_stdout(io.StringIO()):
                await bot.look(commbox, 558355, seen)
                open_now = {558355000 + i for i in range(0, 10, 3)}  # statusId 1 = open
                assert set(seen) == open_now
                closed = min(open_now)
                server.close_conversation(558355, closed)
                await bot.look(commbox, 558355, seen)
    assert set(seen) == open_now - {closed}


def _script_429(server: FakeCommbox, identity_id: int, retry_after: str) -> None:
    server.script(identity_id, (429, {"Retry-After": retry_after}, error_body(429)))


async def test_web_app_badges_answer_within_the_deadline() -> None:
    """A 429 asking for 20 s: /badges answers at once with the identity unavailable (without
    the page deadline it waited 20 s and showed the count)."""
    web_badges = load_example("web_badges")
    assert web_badges.PAGE_DEADLINE < 20
    async with FakeCommbox(token=TOKEN) as server:
        _script_429(server, 7, "20")
        app = web_badges.create_app(token=TOKEN, base_url=server.url, rate_limit=1000)
        async with TestClient(TestServer(app)) as client:
            response = await client.get("/badges", params={"ids": "7"})
            assert await response.json() == {"badges": {}, "unavailable": [7]}


async def test_web_app_inbox_answers_503_with_the_retry_after() -> None:
    """A 429 asking for 20 s: /inbox answers 503 at once, passing the Retry-After on."""
    web_badges = load_example("web_badges")
    async with FakeCommbox(token=TOKEN) as server:
        _script_429(server, 7, "20")
        app = web_badges.create_app(token=TOKEN, base_url=server.url, rate_limit=1000)
        async with TestClient(TestServer(app)) as client:
            page = await client.get("/inbox/7")
            assert page.status == 503
            assert page.headers["Retry-After"] == "20"
            assert "try again" in await page.text()


def _quickstart(path: Path) -> str:
    """The first Python block after the "Quickstart" heading of a Markdown file (or the top)."""
    text = path.read_text()
    start = text.find("## Quickstart")
    block = re.search(r"```python\n(.*?)```", text[max(start, 0) :], re.DOTALL)
    assert block is not None
    return block.group(1)


async def test_the_quickstart_runs_and_prints_the_unread_total(tmp_path: Path) -> None:
    """The README's Quickstart (the same code as the docs' home page) prints the page's unread
    total, never None: `unread_total`, as the guides use."""
    readme = _quickstart(ROOT / "README.md")
    assert readme == _quickstart(ROOT / "docs" / "index.md")
    assert "unread_total" in readme and "total_unread_chat_messages" not in readme
    script = tmp_path / "quickstart.py"
    script.write_text(readme)
    async with FakeCommbox(token=TOKEN, conversations=2, childs=0) as server:
        env = {**os.environ, "COMMBOX_TOKEN": TOKEN, "COMMBOX_BASE_URL": server.url}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(script), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert out.decode().splitlines()[0] == str(unread_of(558355, 2))
