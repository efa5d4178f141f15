"""Buckets of many sizes, each written apart from the project: time / floor from a cold start.

The token bucket of ``../shared/checks/throttle_zoo.py`` (beside this checkout), served by a
plain aiohttp app in this process: for each rate, burst and ``Retry-After`` of the grid, one
client at 1,000/s (32 at a time) fetches ``SECONDS`` of ids at the bucket's rate. The floor is
what a cold start cannot avoid (``tests/pacing_sim.floor_time``): the ideal, plus two pauses,
less the burst at each of the three starts. Prints each job's time / floor and 429s, then the
median, the worst, and how many jobs took more than twice their floor (a job cut off at 15 times
its floor counts 15, and is counted apart; its ids not fetched are not "lost"). The simulator
runs a larger grid (``tests/test_pacing_kinds.py``); this is the same kind of limit over
loopback.

    .venv/bin/python benchmarks/bench_buckets_apart.py --checks ../shared/checks [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._zoo import limited_app, load_zoo
from commbox_async import AsyncCommbox, RateLimit

RATES = (17.0, 31.0, 170.0, 300.0)
BURSTS = (2.0, 5.0)
RETRY_AFTERS = ("1", "5")
SECONDS = 10.0  # of ids at the bucket's rate
TOKEN = "bucket-grid-key-0123456789"
CUT_OFF = 15.0  # times the floor; a job cut off is reported at this ratio, and apart


def floor_time(ids: int, rate: float, burst: float, retry_after: float) -> float:
    """The ideal time plus the two pauses a cold start cannot avoid, less three bursts."""
    return (ids - 3 * burst) / rate + 2 * retry_after


async def one_job(zoo: Any, rate: float, burst: float, retry_after: str) -> tuple[float, int, int]:
    """(time / floor, 429s, ids lost) of one cold start against one bucket."""
    ids = int(rate * SECONDS)
    bucket = zoo.TokenBucket(rate, burst, zoo.ra_const(retry_after))
    runner, url = await zoo.start_server(
        limited_app(zoo, lambda auth: bucket if auth == f"Bearer {TOKEN}" else None)
    )
    try:
        async with AsyncCommbox(
            token=TOKEN, base_url=url, rate_limit=RateLimit(max_rate=1000)
        ) as client:
            start = time.monotonic()
            bucket.start(start)
            floor = floor_time(ids, rate, burst, float(retry_after))
            ok = 0

            async def fetch() -> None:
                nonlocal ok
                async for result in client.fetch_many(range(1, ids + 1), concurrency=32):
                    ok += result.ok

            try:
                # A pacing that goes wrong can take minutes: cut it off, counted at the limit.
                await asyncio.wait_for(fetch(), timeout=CUT_OFF * floor)
            except (asyncio.TimeoutError, TimeoutError):  # (two classes before Python 3.11)
                return CUT_OFF, client.stats.throttled, ids - ok
            took = time.monotonic() - start
            return took / floor, client.stats.throttled, ids - ok
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=Path, required=True, help="the folder of throttle_zoo.py")
    parser.add_argument("--runs", type=int, default=1, help="passes over the grid")
    args = parser.parse_args()
    zoo = load_zoo(args.checks)
    zoo.bodies_up_to(int(max(RATES) * SECONDS))
    ratios, lost = [], 0
    for run in range(args.runs):
        for rate, burst, retry_after in itertools.product(RATES, BURSTS, RETRY_AFTERS):
            ratio, throttled, missing = asyncio.run(one_job(zoo, rate, burst, retry_after))
            ratios.append(ratio)
            cut = ratio >= CUT_OFF
            lost += 0 if cut else missing
            print(
                f"run {run + 1}: {rate:g}/s, burst {burst:g}, Retry-After {retry_after}: "
                + (
                    f"cut off at {CUT_OFF:g}x the floor, {missing} ids not fetched"
                    if cut
                    else f"{ratio:.2f}x the floor, {throttled} 429s, {missing} lost"
                ),
                flush=True,
            )
    beyond = sum(r > 2.0 for r in ratios)
    cut_off = sum(r >= CUT_OFF for r in ratios)
    print(
        f"{len(ratios)} jobs: median {statistics.median(ratios):.2f}x the floor, worst "
        f"{max(ratios):.2f}x, {beyond} beyond 2x ({cut_off} cut off), {lost} ids lost "
        "(in the jobs that finished)"
    )


if __name__ == "__main__":
    main()
