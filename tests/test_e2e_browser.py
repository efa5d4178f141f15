"""End to end: the live badges page in a real headless Chromium, fed by the fake server.

Skipped when no Chromium is installed (``apt-get install chromium``), except under CI=true;
``make e2e`` runs it alone.
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from aiohttp import web
from browser import Chromium, find_chromium
from example_loading import load_example

from commbox_async.testing import FakeCommbox, unread_of

# Skipped without a browser, except in CI (CI=true), whose .ci/run installs one: there a
# missing browser is a failure, not a silent skip.
pytestmark = pytest.mark.skipif(
    find_chromium() is None and os.environ.get("CI") != "true",
    reason="chromium is not installed (apt-get install chromium)",
)

TOKEN = "e2e-token-77c1"
WATCHED = [558355, 558356, 558357]
RATE = 6.0  # CommBox requests a second: a cycle of half a second over the three


async def _badge_becomes(browser: Chromium, identity_id: int, expected: str) -> None:
    """Wait until the page's badge for ``identity_id`` reads ``expected`` (a hang guard)."""
    script = f"document.querySelector('#identity-{identity_id} .badge')?.textContent"
    give_up = time.monotonic() + 60
    text = None
    while time.monotonic() < give_up:
        text = await browser.evaluate(script)
        if text == expected:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"badge {identity_id} shows {text!r}, never {expected!r}")


async def test_a_message_on_the_server_changes_the_badge_in_the_browser() -> None:
    """The fake server adds a message; the badge on the open page changes by itself."""
    web_badges = load_example("web_badges")
    async with FakeCommbox(token=TOKEN, childs=0) as server:
        app = web_badges.create_app(
            WATCHED, share=1.0, token=TOKEN, base_url=server.url, rate_limit=RATE
        )
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            async with Chromium.launch() as browser:
                await browser.navigate(f"http://127.0.0.1:{port}/live")
                for identity in WATCHED:  # each identity's first poll reached the page
                    await _badge_becomes(browser, identity, str(unread_of(identity, 10)))
                requests_before = len(server.requests)
                server.add_message(558356, count=4)
                added = time.monotonic()
                await _badge_becomes(browser, 558356, str(unread_of(558356, 10) + 4))
                seen_after = time.monotonic() - added
                # The others did not move, and the page made no CommBox request of its own:
                # the app's one watch did all the polling.
                assert await browser.evaluate(
                    "document.querySelector('#identity-558355 .badge').textContent"
                ) == str(unread_of(558355, 10))
                assert all(r.identity_id in WATCHED for r in server.requests[requests_before:])
                cycle = len(WATCHED) / RATE
                print(f"\nbadge changed {seen_after:.2f} s after the message (cycle {cycle:g} s)")
        finally:
            await runner.cleanup()
