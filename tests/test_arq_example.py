"""examples/arq_worker.py for real: two Arq workers, four accounts, one redis-server."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from example_loading import load_example

# .ci/run installs arq (with --no-deps: it pins redis<6, the dev group has a newer one).
pytest.importorskip("arq", reason="arq not installed: pip install --no-deps 'arq>=0.26'")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

if TYPE_CHECKING:
    from redis_server import RedisServer

from benchmarks.queues import (
    ARQ_READY,
    Fleet,
    ServerThread,
    arq_sender,
    arq_workers,
    make_accounts,
    run_round,
    start_workers,
    stop_workers,
    token_leaks,
    wait_for_lines,
)

# arq 0.28 passes redis-py 6+ an argument it deprecated; harmless here.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Call to '__init__' function with deprecated usage:DeprecationWarning"
)

# The `redis_server` fixture: a real redis-server on a free loopback port.
pytest_plugins = ["redis_server"]

RATES = (8.0, 12.0, 16.0, 20.0)


def test_two_workers_fetch_four_accounts_once_each_within_its_limit(
    redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every id is fetched exactly once, no server answers 429 or sees more than its limit in
    any second, and no token reaches Redis or a worker's log."""
    accounts = make_accounts(RATES, seconds=2.5)
    with ServerThread() as servers:
        fleet = Fleet(servers, accounts, burst=2)
        env = {**fleet.environment(), "ARQ_REDIS_URL": redis_server.url, "COMMBOX_WORKERS": "2"}
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        example = load_example("arq_worker")  # the enqueueing side reads the same broker
        workers = start_workers(arq_workers(2), env, tmp_path)
        logs = [tmp_path / f"worker-{n}.log" for n in range(2)]
        try:
            wait_for_lines(logs, ARQ_READY, workers, limit=60)
            done = run_round(fleet, arq_sender(example, timeout=120), tasks=4)
        finally:
            stop_workers(workers)
        for account in accounts:
            report = done.reports[account.name]
            assert report.ok_per_id == dict.fromkeys(account.ids, 1), account.name
            assert report.throttled == 0, account.name
            assert report.busiest_second <= account.rate + 1, account.name
        fetched = [ident for answer in done.answers for ident, _ in answer["unread"]]
        assert sorted(fetched) == sorted(i for a in accounts for i in a.ids)
        assert [a["failed"] for a in done.answers if a["failed"]] == []
        assert token_leaks(fleet, redis_server.url, logs) == []
        print({name: round(ratio, 3) for name, ratio in done.ratios.items()})
