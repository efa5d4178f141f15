"""Throughput of a fan-out with no throttling: the library vs a raw loop vs httpx.

Every contender fetches the same identities with the same concurrency from the same loopback
server (``servers.py``: nginx serving the payload as a static file) and decodes every body,
double-encoded ``content`` included:

- ``commbox_async``: ``AsyncCommbox.fetch_many(ids, concurrency=C)`` with a rate limit far above
  anything reachable (``RateLimit(max_rate=1e9, adaptive=False)``), touching ``.content`` of
  every conversation, child and user;
- ``raw aiohttp + msgspec``: C tasks sharing one ``aiohttp.ClientSession`` and an iterator of
  ids, each ``GET`` read whole and decoded by the hand-tuned msgspec reference (the Python
  limit: no limiter, no retries, no result objects);
- ``httpx``: the same loop over ``httpx.AsyncClient`` with a pool of C connections;
- ``... + uvloop``: the library and the raw loop again on uvloop's event loop.

Each run checks every response (status 200, the number of conversations, the decoded
``guidRT`` of the first conversation's ``content``) and the number of results, so a fast wrong
answer cannot win. Rounds are interleaved; the ratio of a round compares runs made seconds
apart. Run alone: ``python -m benchmarks.bench_throughput``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from yarl import URL

from commbox_async import AsyncCommbox, FetchResult, RateLimit

from . import reference, servers
from .common import Series, fmt, markdown_table, ratio_text, rotate
from .payloads import SERVED, Payload, serve_payloads, touch_contents

LIBRARY = "commbox_async"
RAW = "raw aiohttp + msgspec"
RAW_TUNED = "raw aiohttp + msgspec, tuned"
HTTPX = "httpx"
UVLOOP = " + uvloop"
TOKEN = "benchmark-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"}
NO_THROTTLING = RateLimit(max_rate=1e9, adaptive=False)


@dataclass
class Check:
    """What a run must produce: one good page for each identity, each identity once (the
    server sends the same body for every path, so the ids are what tells them apart)."""

    conversations: int
    guid: str
    ok: int = 0
    bad: int = 0
    ids: set[int] = field(default_factory=set)

    def page(self, ident: int, page: Any) -> None:
        """A decoded page (the library's or the reference's): right, and for a new id?"""
        first = page.data[0].content if page.data else None
        guid = first["guidRT"] if first else None
        if len(page.data) == self.conversations and guid == self.guid and ident not in self.ids:
            self.ids.add(ident)
            self.ok += 1
        else:
            self.bad += 1


@dataclass
class Run:
    seconds: float
    cpu_seconds: float
    server_cpu: float | None
    requests: int
    gc_seconds: float  # time inside the cyclic garbage collector


class _GcTimer:
    """Time spent in the garbage collector, from ``gc.callbacks``."""

    def __init__(self) -> None:
        self.total = 0.0
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.total += time.perf_counter() - self._start


# --- contenders: each warms its pool up, then fetches ``ids`` under ``timed`` ---------------
Timed = Callable[[Callable[[], Awaitable[None]]], Awaitable[None]]


async def check_results(results: AsyncIterator[FetchResult], check: Check) -> None:
    """Every result of a fan-out checked, and its page's documents touched."""
    docs: list[Any] = []
    async for result in results:
        page = result.response
        if page is None:
            check.bad += 1
            continue
        # The decoded documents stay alive until the next result, as the raw loop's
        # eagerly decoded page does until its worker's next one.
        docs = touch_contents(page)
        check.page(result.identity_id, page)
    del docs


async def library(url: str, ids: range, concurrency: int, check: Check, timed: Timed) -> None:
    async with AsyncCommbox(token=TOKEN, base_url=url, rate_limit=NO_THROTTLING) as commbox:

        async def fetch(idents: range, check: Check) -> None:
            await check_results(commbox.fetch_many(idents, concurrency=concurrency), check)

        await fetch(range(1, concurrency + 1), Check(check.conversations, check.guid))
        await timed(lambda: fetch(ids, check))


async def raw_aiohttp(url: str, ids: range, concurrency: int, check: Check, timed: Timed) -> None:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=HEADERS) as session:

        async def fetch(idents: range, check: Check) -> None:
            source = iter(idents)

            async def worker() -> None:
                for ident in source:
                    target = URL(f"{url}/v2/users/identities/{ident}/objects", encoded=True)
                    async with session.get(target) as response:
                        body = await response.read()
                        status = response.status
                    if status != 200:
                        check.bad += 1
                        continue
                    page = reference.decode(body)
                    check.page(ident, page)

            await asyncio.gather(*(worker() for _ in range(concurrency)))

        await fetch(range(1, concurrency + 1), Check(check.conversations, check.guid))
        await timed(lambda: fetch(ids, check))


async def raw_tuned(url: str, ids: range, concurrency: int, check: Check, timed: Timed) -> None:
    """The raw loop with the library's two request-side tricks: URLs built from parts, and the
    response released directly instead of through ``async with``."""
    connector = aiohttp.TCPConnector(limit=concurrency)
    root = URL(url)
    async with aiohttp.ClientSession(connector=connector, headers=HEADERS) as session:

        async def fetch(idents: range, check: Check) -> None:
            source = iter(idents)

            async def worker() -> None:
                for ident in source:
                    target = URL.build(
                        scheme=root.scheme,
                        authority=root.raw_authority,
                        path=f"/v2/users/identities/{ident}/objects",
                        encoded=True,
                    )
                    response = await session.get(target)
                    try:
                        body = await response.read()
                        status = response.status
                    finally:
                        response.release()
                    if status != 200:
                        check.bad += 1
                        continue
                    page = reference.decode(body)
                    check.page(ident, page)

            await asyncio.gather(*(worker() for _ in range(concurrency)))

        await fetch(range(1, concurrency + 1), Check(check.conversations, check.guid))
        await timed(lambda: fetch(ids, check))


async def httpx_client(url: str, ids: range, concurrency: int, check: Check, timed: Timed) -> None:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, headers=HEADERS, timeout=30) as client:

        async def fetch(idents: range, check: Check) -> None:
            source = iter(idents)

            async def worker() -> None:
                for ident in source:
                    response = await client.get(f"{url}/v2/users/identities/{ident}/objects")
                    if response.status_code != 200:
                        check.bad += 1
                        continue
                    page = reference.decode(response.content)
                    check.page(ident, page)

            await asyncio.gather(*(worker() for _ in range(concurrency)))

        await fetch(range(1, concurrency + 1), Check(check.conversations, check.guid))
        await timed(lambda: fetch(ids, check))


Contender = Callable[[str, range, int, Check, Timed], Coroutine[Any, Any, None]]


@dataclass
class Entry:
    name: str
    fn: Contender
    uvloop: bool = False


def contenders(with_uvloop: bool = True, goal_only: bool = False) -> tuple[list[Entry], list[str]]:
    """The contenders installed; ``goal_only``: the library and the raw loop, nothing else."""
    if goal_only:
        return [Entry(LIBRARY, library), Entry(RAW, raw_aiohttp)], []
    out = [Entry(LIBRARY, library), Entry(RAW, raw_aiohttp), Entry(RAW_TUNED, raw_tuned)]
    skipped = []
    try:
        import httpx  # noqa: F401
    except ImportError:
        skipped.append("httpx (not installed)")
    else:
        out.append(Entry(HTTPX, httpx_client))
    if with_uvloop:
        try:
            import uvloop  # noqa: F401
        except ImportError:
            skipped.append("uvloop (not installed)")
        else:
            out.append(Entry(LIBRARY + UVLOOP, library, uvloop=True))
            out.append(Entry(RAW + UVLOOP, raw_aiohttp, uvloop=True))
    return out, skipped


def measure(
    entry: Entry, server: servers.Server, payload: Payload, n: int, concurrency: int, want: Check
) -> Run:
    """One run of one contender: a fresh event loop, a warm pool, then ``n`` timed requests."""
    check = Check(want.conversations, want.guid)
    result: dict[str, float | None] = {}

    gc_timer = _GcTimer()

    async def timed(body: Callable[[], Awaitable[None]]) -> None:
        gc.collect()
        gc.callbacks.append(gc_timer)
        cpu0, server0, t0 = time.process_time(), server.cpu(), time.perf_counter()
        try:
            await body()
        finally:
            t1, server1, cpu1 = time.perf_counter(), server.cpu(), time.process_time()
            gc.callbacks.remove(gc_timer)
        result["seconds"], result["cpu"] = t1 - t0, cpu1 - cpu0
        result["server"] = (
            (server1 - server0) / (t1 - t0) if server0 is not None and server1 is not None else None
        )

    coro = entry.fn(server.urls[payload.name], range(1, n + 1), concurrency, check, timed)
    if entry.uvloop:
        import uvloop

        uvloop.run(coro)
    else:
        asyncio.run(coro)
    if check.bad or check.ok != n or check.ids != set(range(1, n + 1)):
        raise AssertionError(
            f"{entry.name} on {payload.name}: {check.ok} good pages of {n}, {check.bad} bad"
        )
    seconds, cpu = result["seconds"], result["cpu"]
    assert seconds is not None and cpu is not None
    return Run(seconds, cpu, result["server"], n, gc_timer.total)


@dataclass
class ThroughputResult:
    payload: Payload
    concurrency: int
    series: dict[str, Series]  # requests per second
    cpu_us: dict[str, Series]  # client CPU microseconds per request
    gc_us: dict[str, Series]  # of which in the garbage collector
    server_load: dict[str, list[float]] = field(default_factory=dict)  # cores busy


def run(
    server: servers.Server,
    rounds: int = 7,
    sample_seconds: float = 0.6,
    concurrency: int = 32,
    quick: bool = False,
    payloads: list[Payload] | None = None,
    goal_only: bool = False,
) -> tuple[list[ThroughputResult], list[str]]:
    """All contenders on every payload, interleaved round by round."""
    entries, skipped = contenders(with_uvloop=not quick, goal_only=goal_only)
    results = []
    for payload in payloads or serve_payloads():
        page = reference.decode(payload.body)
        want = Check(len(page.data), page.data[0].content["guidRT"])
        # Calibrate on a short run so that each sample lasts about sample_seconds.
        sizes = {}
        for entry in entries:
            probe = measure(entry, server, payload, concurrency * 4, concurrency, want)
            rate = probe.requests / probe.seconds
            sizes[entry.name] = max(concurrency * 2, min(50_000, int(rate * sample_seconds)))
        series = {e.name: Series(e.name, "req/s") for e in entries}
        cpu = {e.name: Series(e.name, "us/req") for e in entries}
        gcs = {e.name: Series(e.name, "us/req") for e in entries}
        load: dict[str, list[float]] = {e.name: [] for e in entries}
        for r in range(rounds):
            for entry in rotate(entries, r):
                one = measure(entry, server, payload, sizes[entry.name], concurrency, want)
                series[entry.name].samples.append(one.requests / one.seconds)
                cpu[entry.name].samples.append(one.cpu_seconds / one.requests * 1e6)
                gcs[entry.name].samples.append(one.gc_seconds / one.requests * 1e6)
                if one.server_cpu is not None:
                    load[entry.name].append(one.server_cpu)
        results.append(ThroughputResult(payload, concurrency, series, cpu, gcs, load))
    return results, skipped


def table(results: list[ThroughputResult]) -> str:
    headers = [
        "body",
        "contender",
        "req/s median (min-max)",
        "library / contender",
        "client CPU us/req",
        "of which GC",
        "server busy",
    ]
    rows = []
    for result in results:
        for s in sorted(result.series.values(), key=lambda s: -s.median):
            lib_name = LIBRARY + UVLOOP if s.name.endswith(UVLOOP) else LIBRARY
            lib = result.series[lib_name]
            load = result.server_load.get(s.name) or []
            rows.append(
                [
                    result.payload.label,
                    s.name,
                    f"{fmt(s.median)} ({fmt(s.low)}-{fmt(s.high)})",
                    "-" if s is lib else ratio_text(lib, s),
                    fmt(result.cpu_us[s.name].median),
                    fmt(result.gc_us[s.name].median),
                    f"{max(load):.0%} of a core" if load else "n/a",
                ]
            )
    return markdown_table(headers, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--server", choices=["auto", "nginx", "raw"], default="auto")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--body",
        action="append",
        choices=list(SERVED),
        help="a body to serve (repeatable; default: small and synthetic)",
    )
    parser.add_argument(
        "--goal-only",
        action="store_true",
        help="only the library and the raw loop (the pair the goal compares)",
    )
    args = parser.parse_args()
    payloads = serve_payloads(args.body)
    with servers.start(payloads, args.server) as server:
        print(f"server: {server.note}")
        results, skipped = run(
            server,
            rounds=2 if args.quick else args.rounds,
            sample_seconds=0.2 if args.quick else 0.6,
            concurrency=args.concurrency,
            quick=args.quick,
            payloads=payloads,
            goal_only=args.goal_only,
        )
    print(table(results))
    for note in skipped:
        print(f"skipped: {note}")


if __name__ == "__main__":
    main()
