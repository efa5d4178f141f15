"""Issue 20's many-accounts goal against a limiter written apart from the project.

The token bucket of ``../shared/checks/throttle_zoo.py`` (beside this checkout), one per
account token, served by a plain aiohttp app in this process (not ``commbox_async.testing``):
20 accounts at 5-25/s, burst 5, ``Retry-After: 1``; one client at 250/s; a view per account;
200 ids each at once, 32 workers each, over one pool. Prints each run's worst account / its
ideal and the ids lost; the goal is 1.35x. ``bench_accounts.py`` measures the same on the
project's own fake server.

    .venv/bin/python benchmarks/bench_accounts_apart.py --checks ../shared/checks 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._zoo import limited_app, load_zoo
from commbox_async import AsyncCommbox

RATES = [5.0 + 20.0 * i / 19 for i in range(20)]
IDS = 200


zoo: Any = None  # the independent checks' throttle_zoo module, loaded by main()


async def run_once() -> tuple[float, list[float], int]:
    tokens = [f"acct-{i}-key-0123456789" for i in range(20)]
    buckets = {
        f"Bearer {token}": zoo.TokenBucket(rate, 5, zoo.ra_const("1"))
        for token, rate in zip(tokens, RATES, strict=True)
    }
    runner, url = await zoo.start_server(limited_app(zoo, buckets.get))
    try:
        t0 = time.monotonic()
        for b in buckets.values():
            b.start(t0)
        ratios, lost = [], 0
        async with AsyncCommbox(
            token="parent-key-0123456789", base_url=url, rate_limit=250
        ) as parent:

            async def job(token: str, rate: float) -> None:
                nonlocal lost
                view = parent.with_token(token)
                start = time.perf_counter()
                ok = 0
                async for result in view.fetch_many(range(1, IDS + 1), concurrency=32):
                    ok += result.ok
                lost += IDS - ok
                ratios.append((time.perf_counter() - start) / (IDS / rate))

            await asyncio.gather(*(job(t, r) for t, r in zip(tokens, RATES, strict=True)))
        return max(ratios), ratios, lost
    finally:
        await runner.cleanup()


def main() -> None:
    global zoo
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=Path, required=True, help="the folder of throttle_zoo.py")
    parser.add_argument("runs", type=int, nargs="?", default=3)
    args = parser.parse_args()
    zoo = load_zoo(args.checks)
    zoo.bodies_up_to(IDS)
    worsts = []
    for n in range(args.runs):
        worst, ratios, lost = asyncio.run(run_once())
        worsts.append(worst)
        within = sum(r <= 1.35 for r in ratios)
        print(
            f"run {n + 1}: worst {worst:.3f}x, median account {statistics.median(ratios):.3f}x, "
            f"{within} of 20 within 1.35x, lost {lost}",
            flush=True,
        )
    print(
        f"worst account per run: median {statistics.median(worsts):.3f}x, worst {max(worsts):.3f}x"
    )


if __name__ == "__main__":
    main()
