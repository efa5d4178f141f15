"""Many processes, one token: the Redis-shared limiter against one limiter per process.

Four worker processes (multiprocessing, spawn) each run an ``AsyncCommbox`` configured at
100 req/s and fetch their share of the ids from ONE fake server in this process, which
throttles at 100 req/s (burst 10, ``Retry-After: 1``) across all of them. Run twice:

- shared: every worker's client takes its slots from one ``RedisLimiter`` key;
- local: every worker has the in-process limiter (so together they offer about 4x the rate).

Printed for each: total time against the ideal (ids / server rate), the share of requests
answered 429, ids lost or duplicated, and Redis round trips per request.
Goals (issue 8): shared <= 1.15x the ideal and <= 1 % 429s, nothing lost or duplicated.

    .venv/bin/python benchmarks/bench_redis.py            # 4,000 ids (about 2 minutes)
    .venv/bin/python benchmarks/bench_redis.py --quick    # 800 ids
    .venv/bin/python benchmarks/bench_redis.py --redis-url redis://127.0.0.1:6379/0
    .venv/bin/python benchmarks/bench_redis.py --quick --only shared --client-rate 1000

With ``--client-rate 1000`` (10x the server's limit) the shared adaptive rate does the work: the
pacing leader's one model, fed with every process's attempts (issue 12). Measured on two cores,
3 runs each, interleaved with the Lua rule it replaced: 12.2-12.7 s against 14.6-14.7 s (in
ten runs in all, one took 15.9 s).

Without ``--redis-url`` it starts a throwaway ``redis-server`` on a free loopback port.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from commbox_async import AsyncCommbox
from commbox_async.testing import FakeCommbox, Throttling

SERVER_RATE = 100.0
CLIENT_RATE = 100.0
WORKERS = 4
CONCURRENCY = 32


@dataclass
class WorkerReport:
    ids: list[int]
    failed: int
    requests: int
    throttled: int
    round_trips: int
    fallback_slots: int


def worker(*args: Any) -> None:
    """One worker process (the arguments of ``_worker``): wait for the common start, fetch its
    ids, report."""
    asyncio.run(_worker(*args))


async def _worker(
    mode: str,
    redis_url: str,
    key: str,
    base_url: str,
    token: str,
    ids: list[int],
    rate: float,
    ready: Any,
    start: Any,
    out: Any,
) -> None:
    limiter = None
    if mode == "shared":
        from commbox_async.redis import RedisLimiter

        limiter = RedisLimiter.from_url(
            redis_url, key=key, rate_limit=rate, expected_workers=WORKERS
        )
    try:
        async with AsyncCommbox(
            token=token, base_url=base_url, rate_limit=rate, limiter=limiter
        ) as commbox:
            ready.set()
            await asyncio.to_thread(start.wait)
            seen: list[int] = []
            failed = 0
            async for result in commbox.fetch_many(ids, concurrency=CONCURRENCY):
                seen.append(result.identity_id)
                failed += result.error is not None
            stats = commbox.stats
            report = WorkerReport(
                ids=seen,
                failed=failed,
                requests=stats.requests,
                throttled=stats.throttled,
                round_trips=limiter.round_trips if limiter is not None else 0,
                fallback_slots=limiter.fallback_slots if limiter is not None else 0,
            )
    finally:
        if limiter is not None:
            await limiter.aclose()
    out.put(report)


@dataclass
class RunResult:
    mode: str
    seconds: float
    ideal: float
    requests: int
    throttled: int
    lost: int
    duplicated: int
    failed: int
    round_trips: int
    fallback_slots: int

    @property
    def ratio(self) -> float:
        return self.seconds / self.ideal

    @property
    def throttled_share(self) -> float:
        return self.throttled / max(self.requests, 1)


async def run(mode: str, ids: list[int], redis_url: str, rate: float) -> RunResult:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    start = ctx.Event()
    key = f"commbox:bench:{uuid.uuid4().hex[:8]}"
    throttling = Throttling(rate=SERVER_RATE, burst=10, retry_after="1")
    async with FakeCommbox(throttling=throttling) as server:
        readies = []
        processes = []
        for part in (ids[i::WORKERS] for i in range(WORKERS)):
            ready = ctx.Event()
            readies.append(ready)
            sync = (ready, start, out)
            processes.append(
                ctx.Process(
                    target=worker,
                    args=(mode, redis_url, key, server.url, server.token, part, rate, *sync),
                )
            )
        for process in processes:
            process.start()
        for ready in readies:
            await asyncio.to_thread(ready.wait, 60)
        # The server's bucket starts full; the clock starts with everyone at the line.
        server.throttling = throttling
        server.requests.clear()
        began = time.monotonic()
        start.set()
        reports: list[WorkerReport] = [
            await asyncio.to_thread(out.get, True, 600) for _ in processes
        ]
        seconds = time.monotonic() - began
        for process in processes:
            await asyncio.to_thread(process.join, 30)
        throttled = server.count("throttled")
        requests = len(server.requests)
    counts = Counter(i for report in reports for i in report.ids)
    return RunResult(
        mode=mode,
        seconds=seconds,
        ideal=len(ids) / SERVER_RATE,
        requests=requests,
        throttled=throttled,
        lost=len(set(ids) - set(counts)),
        duplicated=sum(n - 1 for n in counts.values() if n > 1),
        failed=sum(report.failed for report in reports),
        round_trips=sum(report.round_trips for report in reports),
        fallback_slots=sum(report.fallback_slots for report in reports),
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_redis(directory: str) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server not found: apt-get install redis-server (or pass --redis-url)")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", directory],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    process.kill()
    sys.exit("redis-server did not start")


def print_results(results: list[RunResult]) -> None:
    print(
        f"{'limiter':<8} {'time':>8} {'ideal':>7} {'ratio':>6} {'requests':>9} {'429s':>6} "
        f"{'429 %':>6} {'lost':>5} {'dup':>4} {'failed':>6} {'redis rt/req':>12}"
    )
    for r in results:
        trips = f"{r.round_trips / r.requests:.3f}" if r.round_trips else "-"
        print(
            f"{r.mode:<8} {r.seconds:7.2f}s {r.ideal:6.1f}s {r.ratio:5.2f}x {r.requests:9d} "
            f"{r.throttled:6d} {100 * r.throttled_share:5.1f}% {r.lost:5d} {r.duplicated:4d} "
            f"{r.failed:6d} {trips:>12}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="800 ids instead of 4,000")
    parser.add_argument("--ids", type=int, default=None, help="number of ids (overrides)")
    parser.add_argument("--redis-url", default=None, help="use this Redis (default: start one)")
    parser.add_argument("--only", choices=["shared", "local"], default=None)
    parser.add_argument(
        "--client-rate",
        type=float,
        default=CLIENT_RATE,
        help="each process's configured rate (above 100 exercises the shared adaptive rate)",
    )
    args = parser.parse_args(argv)
    rate = args.client_rate
    count = args.ids or (800 if args.quick else 4000)
    ids = list(range(100_001, 100_001 + count))
    modes = [args.only] if args.only else ["shared", "local"]
    print(
        f"{WORKERS} processes x {rate:g} req/s configured, concurrency {CONCURRENCY} each; "
        f"one fake server throttling at {SERVER_RATE:g} req/s, burst 10, Retry-After 1; "
        f"{count} ids"
    )
    with tempfile.TemporaryDirectory() as directory:
        redis_process = None
        url = args.redis_url
        if url is None:
            redis_process, url = start_redis(directory)
        try:
            results = [asyncio.run(run(mode, ids, url, rate)) for mode in modes]
        finally:
            if redis_process is not None:
                redis_process.terminate()
                redis_process.wait(10)
    print_results(results)
    by_mode = {r.mode: r for r in results}
    ok = True
    shared = by_mode.get("shared")
    if shared is not None:
        goals = {
            "time <= 1.15x ideal": shared.ratio <= 1.15,
            "429s <= 1%": shared.throttled_share <= 0.01,
            "nothing lost or duplicated": shared.lost == 0 and shared.duplicated == 0,
        }
        for name, met in goals.items():
            print(f"shared: {name}: {'met' if met else 'NOT MET'}")
            ok = ok and met
    local = by_mode.get("local")
    if shared is not None and local is not None:
        print(
            f"local / shared: {local.ratio / shared.ratio:.2f}x the time, "
            f"{local.throttled} vs {shared.throttled} 429s"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
