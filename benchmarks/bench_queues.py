"""Each account's time against its ideal when job-queue workers fetch many accounts' ids.

Two worker processes of examples/celery_app.py (``--pool threads --concurrency 4``) or of
examples/arq_worker.py, each with one client for every account, fetch four accounts' ids
through one redis-server from one fake server, which throttles each account's token at its own
limit (10, 15, 20 and 25 requests/s, burst 2, ``Retry-After: 1``); each account has as many
ids as that limit allows in the ideal time. Each account's ids go out as four tasks,
interleaved across accounts. An account's time runs from sending the tasks to the server's
last answer to it; its ideal is its ids over its limit. Printed per account: the median and
worst ratio over the runs, the 429s, the most of its requests the server saw in any one
second, and whether every id was fetched exactly once.

Goal (issue 20): with Celery, 2 workers and 4 accounts, each account within 1.35x of its ideal
and every id fetched exactly once.

    .venv/bin/python benchmarks/bench_queues.py              # 5 runs, 10 s ideal per account
    .venv/bin/python benchmarks/bench_queues.py --quick      # 2 runs, 3 s ideal
    .venv/bin/python benchmarks/bench_queues.py --queue arq

A throwaway ``redis-server`` is started on a free loopback port (``apt-get install
redis-server``); the workers run from this checkout's examples/.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from example_loading import load_example  # noqa: E402
from redis_server import RedisServer  # noqa: E402

from benchmarks.queues import (  # noqa: E402
    ARQ_READY,
    CELERY_READY,
    Fleet,
    Round,
    ServerThread,
    arq_sender,
    arq_workers,
    celery_sender,
    celery_workers,
    make_accounts,
    run_round,
    start_workers,
    stop_workers,
    wait_for_lines,
)

RATES = (10.0, 15.0, 20.0, 25.0)
WORKERS = 2
GOAL = 1.35


def queue_parts(queue: str, redis_url: str) -> tuple[dict[str, str], list[list[str]], str]:
    """The broker's variable, the worker commands and their ready line."""
    if queue == "celery":
        return {"CELERY_BROKER_URL": redis_url}, celery_workers(WORKERS, 4), CELERY_READY
    return {"ARQ_REDIS_URL": redis_url}, arq_workers(WORKERS), ARQ_READY


def run(queue: str, runs: int, seconds: float, directory: Path) -> list[Round]:
    """Start everything, run ``runs`` rounds on the same workers, stop everything."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found; install it with: apt-get install redis-server")
    redis = RedisServer(binary, directory)
    redis.start()
    accounts = make_accounts(RATES, seconds)
    try:
        with ServerThread() as servers:
            fleet = Fleet(servers, accounts, burst=2)
            broker, commands, ready = queue_parts(queue, redis.url)
            env = {**fleet.environment(), **broker, "COMMBOX_WORKERS": str(WORKERS)}
            os.environ.update(env)  # the example reads the broker's URL when loaded
            example = load_example("celery_app" if queue == "celery" else "arq_worker")
            sender: Callable[[Any, float], Any] = celery_sender if queue == "celery" else arq_sender
            workers = start_workers(commands, env, directory)
            try:
                logs = [directory / f"worker-{n}.log" for n in range(WORKERS)]
                wait_for_lines(logs, ready, workers, limit=120)
                send = sender(example, 60 + 10 * seconds)
                return [run_round(fleet, send, tasks=4) for _ in range(runs)]
            finally:
                stop_workers(workers)
    finally:
        redis.stop()


def exactly_once(done: Round, fleet_ids: dict[str, tuple[int, ...]]) -> bool:
    """Every id answered once by the server and returned once by the tasks, none failed."""
    returned = sorted(i for answer in done.answers for i, _ in answer["unread"])
    servers_ok = all(
        done.reports[name].ok_per_id == dict.fromkeys(ids, 1) for name, ids in fleet_ids.items()
    )
    failed = any(answer["failed"] for answer in done.answers)
    return (
        servers_ok
        and not failed
        and returned == sorted(i for ids in fleet_ids.values() for i in ids)
    )


def report(queue: str, rounds: list[Round], seconds: float) -> None:
    """The table: per account, then all accounts together."""
    accounts = make_accounts(RATES, seconds)
    ids = {a.name: a.ids for a in accounts}
    print(f"{queue}: {WORKERS} workers, {len(accounts)} accounts, {len(rounds)} runs")
    print("account  limit  ids  ideal   median  worst   429s  busiest second")
    for a in accounts:
        ratios = [r.ratios[a.name] for r in rounds]
        throttled = sum(r.reports[a.name].throttled for r in rounds)
        busiest = max(r.reports[a.name].busiest_second for r in rounds)
        print(
            f"{a.name:7}  {a.rate:5.0f}  {len(a.ids):3}  {a.ideal:4.1f} s  "
            f"{statistics.median(ratios):5.3f}x {max(ratios):5.3f}x  {throttled:4}  "
            f"{busiest:3} (limit {a.rate:.0f})"
        )
    every = [ratio for r in rounds for ratio in r.ratios.values()]
    once = all(exactly_once(r, ids) for r in rounds)
    print(
        f"all accounts: median {statistics.median(every):.3f}x, worst {max(every):.3f}x "
        f"(goal <= {GOAL}x); every id fetched exactly once in every run: {once}"
    )


def main() -> None:
    """Parse the options, run, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queue", choices=("celery", "arq"), default="celery")
    parser.add_argument("--quick", action="store_true", help="2 runs of 3 s ideal")
    parser.add_argument("--runs", type=int, default=None)
    args = parser.parse_args()
    runs = args.runs or (2 if args.quick else 5)
    seconds = 3.0 if args.quick else 10.0
    with tempfile.TemporaryDirectory(prefix="bench-queues-") as directory:
        rounds = run(args.queue, runs, seconds, Path(directory))
    report(args.queue, rounds, seconds)


if __name__ == "__main__":
    main()
