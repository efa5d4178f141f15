"""The shortcuts of the hot path (issue 19 item 5) keep what the long way did."""

from __future__ import annotations

import asyncio

from yarl import URL

from commbox_async import RateLimit
from commbox_async._fanout import _Slots
from commbox_async._pacing import Outcome
from commbox_async._protocol import RequestUrls
from commbox_async._throttle import LocalLimiter
from commbox_async.testing import VirtualClock


def test_request_urls_keep_the_base_path_prefix_and_the_query() -> None:
    """A URL from the base's parts read once: the base, its prefix, the path, the query."""
    gateway = RequestUrls(URL("https://gateway.example.com/commbox/"))
    assert str(gateway.url(558355, "pageSize=10&statuses=1%2C2")) == (
        "https://gateway.example.com/commbox/v2/users/identities/558355/objects"
        "?pageSize=10&statuses=1%2C2"
    )
    plain = RequestUrls(URL("http://127.0.0.1:8080"))
    assert str(plain.url(7, "")) == "http://127.0.0.1:8080/v2/users/identities/7/objects"


async def test_a_free_slot_is_taken_at_once_and_a_pause_still_waits() -> None:
    """With a slot free the attempt goes at the clock's instant, waiting nothing; after a 429
    the next attempt still waits the whole pause first."""
    clock = VirtualClock()
    limiter = LocalLimiter(
        RateLimit(max_rate=1000.0, adaptive=False), clock=clock.time, sleep=clock.sleep
    )
    first = await limiter.acquire()
    assert first.sent == clock.now
    second = await limiter.acquire()
    assert second.sent == clock.now and limiter.waited == (0.0, 0.0)
    limiter.report(first, Outcome.ACCEPTED)
    limiter.report(second, Outcome.THROTTLED, 2.0)
    paused_at = clock.now
    third = await limiter.acquire()
    assert third.sent >= paused_at + 2.0
    assert limiter.waited[1] >= 2.0


async def test_slots_given_back_wake_every_waiting_worker() -> None:
    """Workers waiting for a slot all get one when the consumer gives slots back, whether it
    gives them back together or one at a time."""
    slots = _Slots(2)
    assert slots.take_now() and slots.take_now() and not slots.take_now()
    waiting = [asyncio.ensure_future(slots.take()) for _ in range(3)]
    await asyncio.sleep(0)
    slots.give_back()
    slots.give_back()
    await asyncio.sleep(0)
    assert sum(w.done() for w in waiting) == 2
    slots.give_back()
    await asyncio.wait_for(asyncio.gather(*waiting), 5)
    assert slots.free == 0
