"""The library's own cost per request, without the network: what each send costs above aiohttp.

``bench_throughput`` measures the library against a raw aiohttp loop end to end, where aiohttp
and the event loop are most of a small page's CPU and the machine's noise is as large as the
library's whole cost. This benchmark takes them out: the account's transport is replaced by
one that answers every GET at once, after one pass through the event loop (a real exchange
suspends at least once), with the same recorded body. Contenders, interleaved round by round:

- ``commbox_async``: ``fetch_many(ids, concurrency=C)`` with no throttling, as in
  ``bench_throughput`` (every ``content`` touched);
- ``raw loop``: C tasks over the same instant transport, each building its URL and decoding
  with the msgspec reference, as the raw aiohttp loop does around ``session.get``.

The difference of their CPU time per request is the library's own cost: the fan-out and its
result objects, the call, the attempt, the limiter and the pacing model's ticket, the verdict
and the stats (``--profile`` says which, by module). Run: ``python -m benchmarks.bench_hotpath``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import statistics
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from yarl import URL

from commbox_async import AsyncCommbox
from commbox_async._transport import Response

from . import reference
from .bench_throughput import NO_THROTTLING, TOKEN, Check, check_results
from .common import markdown_table
from .payloads import SERVED, serve_payloads

BASE = "http://127.0.0.1:9"  # never connected to: the transport below answers instead


class InstantTransport:
    """Stands in for ``_transport.Transport``: every GET is answered with ``body`` after one
    pass through the event loop."""

    closed = False

    def __init__(self, body: bytes) -> None:
        self.response = Response(200, {"Content-Type": "application/json"}, body)

    async def send(self, url: URL, headers: Any, deadline: float, *args: Any, **kw: Any) -> Any:
        await asyncio.sleep(0)
        return self.response


async def library(body: bytes, n: int, concurrency: int, check: Check) -> float:
    async with AsyncCommbox(token=TOKEN, base_url=BASE, rate_limit=NO_THROTTLING) as commbox:
        # The account's transport is the only part replaced: every layer above it runs.
        commbox._account._transport = InstantTransport(body)  # type: ignore[assignment]
        gc.collect()
        cpu0 = time.process_time()
        await check_results(commbox.fetch_many(range(1, n + 1), concurrency=concurrency), check)
        return time.process_time() - cpu0


async def raw_loop(body: bytes, n: int, concurrency: int, check: Check) -> float:
    transport = InstantTransport(body)
    source = iter(range(1, n + 1))
    headers = {"Authorization": f"Bearer {TOKEN}"}

    async def worker() -> None:
        for ident in source:
            target = URL(f"{BASE}/v2/users/identities/{ident}/objects", encoded=True)
            response = await transport.send(target, headers, 0.0)
            if response.status != 200:
                check.bad += 1
                continue
            page = reference.decode(response.body)
            check.page(ident, page)

    gc.collect()
    cpu0 = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.process_time() - cpu0


Contender = Callable[[bytes, int, int, Check], Awaitable[float]]
CONTENDERS: dict[str, Contender] = {"commbox_async": library, "raw loop": raw_loop}


def measure(name: str, body: bytes, n: int, concurrency: int) -> float:
    """CPU microseconds per request of one run of one contender, its results checked."""
    page = reference.decode(body)
    check = Check(len(page.data), page.data[0].content["guidRT"])
    seconds = asyncio.run(CONTENDERS[name](body, n, concurrency, check))
    if check.bad or check.ok != n:
        raise AssertionError(f"{name}: {check.ok} good pages of {n}, {check.bad} bad")
    return seconds / n * 1e6


def by_module(body: bytes, n: int, concurrency: int, dump: str | None) -> list[list[str]]:
    """The library's run under cProfile: own time by module, as shares (C functions are
    counted in their caller's module)."""
    profiler = cProfile.Profile()
    profiler.enable()
    measure("commbox_async", body, n, concurrency)
    profiler.disable()
    if dump:
        profiler.dump_stats(dump)
    stats = pstats.Stats(profiler)
    shares: dict[str, float] = defaultdict(float)

    def module(filename: str) -> str:
        for marker in ("commbox_async/", "site-packages/", "benchmarks/", "python3.11/"):
            if marker in filename:
                return filename.rsplit(marker, 1)[1].split("/")[0].removesuffix(".py")
        return filename

    for (filename, _line, _name), (_cc, _calls, own, _cum, callers) in stats.stats.items():  # type: ignore[attr-defined]
        if filename == "~" and callers:
            for (c_file, _l, _n), caller in callers.items():
                shares[module(c_file)] += caller[2]
        else:
            shares[module(filename)] += own
    total = sum(shares.values())
    rows = sorted(shares.items(), key=lambda kv: -kv[1])
    return [[name, f"{own / total:.1%}"] for name, own in rows if own / total >= 0.005]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--body", choices=list(SERVED), default="2 KB")
    parser.add_argument("--profile", action="store_true", help="also the library's profile")
    parser.add_argument("--dump", metavar="FILE", help="save that profile (pstats) to FILE")
    args = parser.parse_args()
    payload = serve_payloads([args.body])[0]
    samples: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    for name in CONTENDERS:  # warm-up: imports, caches, the allocator
        measure(name, payload.body, args.requests // 10, args.concurrency)
    for r in range(args.rounds):
        names = list(CONTENDERS)[r % 2 :] + list(CONTENDERS)[: r % 2]
        for name in names:
            samples[name].append(measure(name, payload.body, args.requests, args.concurrency))
    lib, raw = samples["commbox_async"], samples["raw loop"]
    diffs = [a - b for a, b in zip(lib, raw, strict=True)]
    print(f"{payload.label}, {args.requests} requests a run, {args.rounds} interleaved rounds")
    rows = [
        [name, f"{statistics.median(s):.1f} ({min(s):.1f}-{max(s):.1f})"]
        for name, s in samples.items()
    ]
    rows.append(
        [
            "library's own cost (difference)",
            f"{statistics.median(diffs):+.1f} ({min(diffs):+.1f} to {max(diffs):+.1f})",
        ]
    )
    print(markdown_table(["contender", "CPU us/req median (min-max)"], rows))
    if args.profile or args.dump:
        print()
        print(
            markdown_table(
                ["module", "share of the library's profiled time"],
                by_module(payload.body, args.requests, args.concurrency, args.dump),
            )
        )


if __name__ == "__main__":
    main()
