"""examples/celery_app.py and examples/arq_worker.py for real: two workers of each engine, four
accounts, one redis-server; the same job and the same checks for both."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from example_loading import load_example

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

if TYPE_CHECKING:
    from redis_server import RedisServer

from benchmarks.queues import (
    ARQ_READY,
    CELERY_READY,
    Fleet,
    ServerThread,
    arq_sender,
    arq_workers,
    celery_sender,
    celery_workers,
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


@dataclass(frozen=True)
class Engine:
    """What differs between the two job queues: the rest of the test is one."""

    example: str
    broker_variable: str
    workers: Callable[[], Any]
    ready: str
    sender: Callable[..., Any]
    close: Callable[[Any], None] = lambda example: None


ENGINES = {
    "celery": Engine(
        "celery_app",
        "CELERY_BROKER_URL",
        lambda: celery_workers(2, concurrency=4),
        CELERY_READY,
        celery_sender,
        close=lambda example: example.app.close(),
    ),
    "arq": Engine("arq_worker", "ARQ_REDIS_URL", lambda: arq_workers(2), ARQ_READY, arq_sender),
}


@pytest.mark.parametrize("name", list(ENGINES))
def test_two_workers_fetch_four_accounts_once_each_within_its_limit(
    name: str, redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every id is fetched exactly once, no server answers 429 or sees more than its limit in
    any second, and no token reaches Redis or a worker's log."""
    if name == "arq":
        # .ci/run installs arq (with --no-deps: it pins redis<6, the dev group has a newer one).
        pytest.importorskip("arq", reason="arq not installed: pip install --no-deps 'arq>=0.26'")
    engine = ENGINES[name]
    accounts = make_accounts(RATES, seconds=2.5)
    with ServerThread() as servers:
        fleet = Fleet(servers, accounts, burst=2)
        env = {
            **fleet.environment(),
            engine.broker_variable: redis_server.url,
            "COMMBOX_WORKERS": "2",
        }
        for variable, value in env.items():
            monkeypatch.setenv(variable, value)
        example = load_example(engine.example)  # the enqueueing side reads the same broker
        workers = start_workers(engine.workers(), env, tmp_path)
        logs = [tmp_path / f"worker-{n}.log" for n in range(2)]
        try:
            wait_for_lines(logs, engine.ready, workers, limit=60)
            done = run_round(fleet, engine.sender(example, timeout=120), tasks=4)
        finally:
            stop_workers(workers)
            engine.close(example)
        for account in accounts:
            report = done.reports[account.name]
            assert report.ok_per_id == dict.fromkeys(account.ids, 1), account.name
            assert report.throttled == 0, account.name
            assert report.busiest_second <= account.rate + 1, account.name
        fetched = [ident for answer in done.answers for ident, _ in answer["unread"]]
        assert sorted(fetched) == sorted(i for a in accounts for i in a.ids)
        assert [a["failed"] for a in done.answers if a["failed"]] == []
        assert token_leaks(fleet, redis_server.url, logs) == []
        print({account: round(ratio, 3) for account, ratio in done.ratios.items()})
