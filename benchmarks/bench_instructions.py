"""Instructions per request of each part of the hot path, counted by callgrind.

Time on a shared 2-core machine moves by more than the parts of a request cost; the number of
instructions a part executes does not. Each part runs in a loop of its own (the building blocks
as ``bench_hotpath`` assembles them, the 2 KB page), twice under ``valgrind --tool=callgrind``,
N1 and N2 times; (count(N2) - count(N1)) / (N2 - N1) is its cost, start-up cancelled out. Only
user-space instructions are counted (a socket's kernel work is not), and repeated runs agree
within about 100 instructions for one coroutine's loop, 500 for a fan-out's 32 tasks and 4,000
for an exchange with nginx (how the bytes arrive varies).

    python -m benchmarks.bench_instructions limiter account        # some parts
    python -m benchmarks.bench_instructions --all                  # every part (many minutes)
    python -m benchmarks.bench_instructions --run limiter 1000     # one run, no valgrind

Needs valgrind (``apt-get install valgrind``); nginx for the two ``nginx ...`` parts.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import random
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from aiolimiter import AsyncLimiter

from commbox_async import AsyncCommbox, RateLimit, Retries
from commbox_async import _account as account_module
from commbox_async._account import Account
from commbox_async._fanout import fan_out
from commbox_async._pacing import Outcome, PacingModel, Ticket
from commbox_async._protocol import build_headers, parse_response
from commbox_async._throttle import LocalLimiter
from commbox_async._tokens import TokenSource
from commbox_async._transport import Response

from . import bench_hotpath, bench_throughput, reference, servers
from .bench_hotpath import BASE, TOKEN, InstantTransport
from .payloads import serve_payloads

BODY = serve_payloads(["2 KB"])[0].body
PAGE = parse_response(200, {}, BODY, 1)
NO_THROTTLING = RateLimit(max_rate=1e9, adaptive=False)


class _AtOnce:
    """A transport that answers without a turn of the event loop: one coroutine's loop."""

    closed = False

    def __init__(self) -> None:
        self.response = Response(200, {}, BODY)

    def lane(self) -> None:
        return None  # no pool to share

    async def send(self, url: Any, headers: Any, deadline: float, *args: Any, **kw: Any) -> Any:
        return self.response


class _NoLimiter:
    """A limiter that never waits and remembers nothing: the account without its limiter."""

    async def acquire(self) -> Ticket:
        return Ticket(0.0)

    def report(self, ticket: Ticket, outcome: Outcome, retry_after: float | None = None) -> None:
        return None

    def pause_remaining(self) -> float:
        return 0.0


async def limiter(n: int, adaptive: bool = False) -> None:
    """``LocalLimiter.acquire`` + ``report`` of an accepted answer, at a rate never reached."""
    local = LocalLimiter(RateLimit(max_rate=1e9, adaptive=adaptive))
    for _ in range(n):
        ticket = await local.acquire()
        local.report(ticket, Outcome.ACCEPTED)


async def bucket(n: int) -> None:
    """aiolimiter alone, as the limiter uses it: ``has_capacity()`` then ``acquire()``."""
    slots = AsyncLimiter(2_000_000, 0.002)
    for _ in range(n):
        if slots.has_capacity():
            await slots.acquire()


async def bucket_once(n: int) -> None:
    """aiolimiter at its least: ``acquire()`` alone, one look at the bucket."""
    slots = AsyncLimiter(2_000_000, 0.002)
    for _ in range(n):
        await slots.acquire()


async def model(n: int, adaptive: bool = False) -> None:
    """The pacing model's ``on_send`` + ``on_answer``, 5,000 sends a second."""
    pacing = PacingModel(1e9, adaptive=adaptive)
    now = 0.0
    for _ in range(n):
        now += 0.0002
        pacing.on_answer(pacing.on_send(now), now, Outcome.ACCEPTED)


async def account(n: int) -> None:
    """One call of an account around one attempt: URL, call state, attempt, verdict, stats;
    no limiter (``_NoLimiter``) and no decoding (the page is decoded once, before)."""
    headers = functools.partial(build_headers, user_agent="bench", extra=None)
    one = Account(
        _AtOnce(),  # type: ignore[arg-type]
        base_url=BASE,
        token=TokenSource(TOKEN, headers),
        retries=Retries(),
        rng=random.Random(1),
    )
    one.limiter = _NoLimiter()
    decode = account_module.parse_response
    account_module.parse_response = lambda *args: PAGE  # type: ignore[assignment]
    try:
        for ident in range(1, n + 1):
            await one.request(ident, "", 30.0)
    finally:
        account_module.parse_response = decode


async def decode(n: int) -> None:
    """``parse_response`` of the 2 KB page."""
    for ident in range(n):
        parse_response(200, {}, BODY, ident)


async def _page(ident: int) -> Any:
    return PAGE


async def _page_after_a_turn(ident: int) -> Any:
    await asyncio.sleep(0)  # one turn of the event loop, as any real request gives
    return PAGE


async def fanout(n: int, request: Callable[[int], Coroutine[Any, Any, Any]] = _page) -> None:
    """The fan-out engine per id, around a request that returns a page at once (or, as
    ``fan-out, yielding``, after a turn of the event loop)."""
    async for _ in fan_out(
        range(1, n + 1),
        request,
        concurrency=32,
        dedupe=False,
        on_progress=None,
        tasks=set(),
        stopped_from_outside=lambda: False,
    ):
        pass


async def raw_workers(n: int) -> None:
    """What the raw loop does instead of a fan-out (``bench_throughput.raw_aiohttp``): 32
    tasks over one iterator of ids, around the same request as ``fan-out, yielding``. The
    difference of the two is the least a fan-out with results to iterate costs over it."""
    source = iter(range(1, n + 1))

    async def worker() -> None:
        for ident in source:
            await _page_after_a_turn(ident)

    await asyncio.gather(*(worker() for _ in range(32)))


async def call(n: int, keywords: bool) -> None:
    """How ``fetch_many`` hands each id to its call: a partial with keywords, or a plain
    function that passes them positionally (this branch)."""

    async def request(identity_id: int, query_string: str, deadline: float) -> int:
        return identity_id

    if keywords:
        each: Callable[[int], Coroutine[Any, Any, int]] = functools.partial(
            request, query_string="", deadline=30.0
        )
    else:

        def each(ident: int) -> Coroutine[Any, Any, int]:
            return request(ident, "", 30.0)

    for ident in range(n):
        await each(ident)


async def _client(n: int, shared: bool) -> None:
    async with AsyncCommbox(token=TOKEN, base_url=BASE, rate_limit=NO_THROTTLING) as commbox:
        commbox._account._transport = InstantTransport(BODY)  # type: ignore[assignment]
        if shared:
            await commbox.unread_counts(range(1, n + 1), concurrency=32)
        else:
            async for _ in commbox.fetch_many(range(1, n + 1), concurrency=32):
                pass


async def response(n: int) -> None:
    """The transport's ``Response`` for one answer."""
    for _ in range(n):
        Response(200, {}, BODY)


def _hotpath(name: str) -> Callable[[int], Coroutine[Any, Any, None]]:
    async def run(n: int) -> None:
        page = reference.decode(BODY)
        check = bench_throughput.Check(len(page.data), page.data[0].content["guidRT"])
        await bench_hotpath.CONTENDERS[name](BODY, n, 32, check)

    return run


def _nginx(name: str) -> Callable[[int], Coroutine[Any, Any, None]]:
    async def run(n: int) -> None:
        # nginx runs in a process of its own, which callgrind does not follow.
        payload = serve_payloads(["2 KB"])[0]
        entries = {e.name: e for e in bench_throughput.contenders(goal_only=True)[0]}
        page = reference.decode(payload.body)
        want = bench_throughput.Check(len(page.data), page.data[0].content["guidRT"])
        with servers.start([payload], "nginx", install=False) as server:
            await asyncio.to_thread(
                bench_throughput.measure, entries[name], server, payload, n, 32, want
            )

    return run


#: name: (what runs, N1, N2)
PARTS: dict[str, tuple[Callable[[int], Coroutine[Any, Any, None]], int, int]] = {
    "limiter": (limiter, 500, 5500),
    "limiter adaptive": (functools.partial(limiter, adaptive=True), 500, 5500),
    "aiolimiter": (bucket, 500, 5500),
    "aiolimiter, acquire only": (bucket_once, 500, 5500),
    "model": (model, 500, 5500),
    "model adaptive": (functools.partial(model, adaptive=True), 500, 5500),
    "account": (account, 500, 5500),
    "decode": (decode, 500, 5500),
    "fan-out": (fanout, 500, 5500),
    "fan-out, yielding": (functools.partial(fanout, request=_page_after_a_turn), 500, 5500),
    "raw workers, yielding": (raw_workers, 500, 5500),
    "response": (response, 500, 5500),
    "call, keywords": (functools.partial(call, keywords=True), 1000, 101000),
    "call, positional": (functools.partial(call, keywords=False), 1000, 101000),
    "fetch_many": (functools.partial(_client, shared=False), 500, 5500),
    "unread_counts": (functools.partial(_client, shared=True), 500, 5500),
    "hotpath library": (_hotpath("commbox_async"), 200, 2200),
    "hotpath raw loop": (_hotpath("raw loop"), 200, 2200),
    "nginx library": (_nginx(bench_throughput.LIBRARY), 200, 1200),
    "nginx raw loop": (_nginx(bench_throughput.RAW), 200, 1200),
}


def count(part: str, n: int) -> int:
    """Instructions callgrind counts for one run of ``part`` n times (start-up included)."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            "-m",
            "benchmarks.bench_instructions",
            "--run",
            part,
            str(n),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    match = re.search(r"Collected : (\d+)", done.stderr)
    if match is None:
        raise RuntimeError(f"no count from callgrind: {done.stderr[-2000:]}")
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parts", nargs="*", metavar="PART", help=", ".join(PARTS))
    parser.add_argument("--all", action="store_true", help="every part")
    parser.add_argument("--run", nargs=2, metavar=("PART", "N"), help="one run, no valgrind")
    args = parser.parse_args()
    if args.run:
        part, n = args.run
        asyncio.run(PARTS[part][0](int(n)))
        return
    unknown = [part for part in args.parts if part not in PARTS]
    if unknown or not (args.parts or args.all):
        parser.error(f"name parts among: {', '.join(PARTS)} (unknown: {unknown})")
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed (apt-get install valgrind)")
    for part in list(PARTS) if args.all else args.parts:
        _, low, high = PARTS[part]
        each = (count(part, high) - count(part, low)) / (high - low)
        print(f"{part}: {each:,.0f} instructions each", flush=True)


if __name__ == "__main__":
    main()
