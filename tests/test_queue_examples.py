"""examples/celery_app.py and examples/arq_worker.py for real: two workers of each engine, four
accounts on one fake server (each with its own limit), one redis-server; the same job and the
same checks for both. Then a Celery task's choice to give its worker back while paused."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis
from example_loading import load_example

from commbox_async import RateLimitError, Retries, token_fingerprint
from commbox_async.testing import FakeCommbox, Throttling

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
    """Every id is fetched exactly once, the server answers no account 429 nor sees more than
    its limit from any account in any second, and no token reaches Redis or a worker's log."""
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
        # Each account's limit lives on the key its client derived: <key>:account:<fingerprint>.
        with redis.Redis.from_url(redis_server.url) as client:
            keys = {key.decode() for key in client.scan_iter("commbox:account:*")}
        for account in accounts:
            prefix = f"commbox:account:{token_fingerprint(account.token)}"
            assert any(key.startswith(prefix) for key in keys), account.name
        print({account: round(ratio, 3) for account, ratio in done.ratios.items()})


def celery_example(
    monkeypatch: pytest.MonkeyPatch,
    redis_server: RedisServer,
    server: FakeCommbox,
    accounts: dict[str, tuple[str, float]],
) -> Any:
    """examples/celery_app.py loaded in this process, its environment set for one worker
    process: ``accounts`` by name, each its token and limit."""
    environment = {
        "CELERY_BROKER_URL": redis_server.url,
        "COMMBOX_BASE_URL": server.url,
        "COMMBOX_ACCOUNTS": ",".join(f"{name}={rate:g}" for name, (_, rate) in accounts.items()),
        "COMMBOX_WORKERS": "1",
    }
    for name, (token, _) in accounts.items():
        environment[f"COMMBOX_TOKEN_{name.upper()}"] = token
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    return load_example("celery_app")


def test_a_celery_task_whose_account_is_paused_gives_its_worker_back(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The task reads its account's pause before it fetches: paused for longer than
    WAIT_IN_TASK, it asks Celery to send it again (``Retry``) and fetches nothing; another
    account's task runs. Called directly, as Celery's own tests do: ``self.retry`` then raises
    ``Retry`` instead of sending the task."""
    from celery.exceptions import Retry

    acme, globex = "token-acme-paused-7c1e", "token-globex-free-2a9d"
    with ServerThread() as servers:
        server = servers.start(FakeCommbox(token="token-unused-4f0b", conversations=3, childs=1))
        # acme's bucket holds one request, then answers 429 with Retry-After: 60.
        bucket = Throttling(rate=0.001, burst=1, retry_after="60")
        server.add_token(acme, account="acme", throttling=bucket)
        server.add_token(globex, account="globex")
        example = celery_example(
            monkeypatch, redis_server, server, {"acme": (acme, 5), "globex": (globex, 5)}
        )
        try:
            view = example.account_view("acme")
            view.get_user_objects(1)
            with pytest.raises(RateLimitError):  # one try: the 429 pauses acme in Redis
                view.get_user_objects(2, retries=Retries(throttled_tries=1))
            assert view.pause_remaining() > example.WAIT_IN_TASK
            # In a thread with a bound: a task that waited out the pause instead would fail
            # here after 30 s rather than hang for the 60 s pause and the 429s after it.
            pool = ThreadPoolExecutor(1)
            try:
                with pytest.raises(Retry):
                    pool.submit(example.fetch_account_ids, "acme", [3, 4]).result(timeout=30)
            finally:
                pool.shutdown(wait=False)  # a task still waiting ends as the client closes
            answer = example.fetch_account_ids("globex", [5])
        finally:
            example.close_client()
            example.app.close()
        assert [ident for ident, _ in answer["unread"]] == [5] and answer["failed"] == []
        assert servers.call(lambda: server.count("ok", account="acme")) == 1
        assert servers.call(lambda: server.count("throttled", account="acme")) == 1


class PausedAtFirst:
    """An account's view that reads as paused (60 s) the first ``runs`` times its task asks, then
    as the account really is: the task's retries without waiting out real pauses."""

    def __init__(self, view: Any, runs: int) -> None:
        self.view = view
        self.runs = runs
        self.asked = 0

    def pause_remaining(self) -> float:
        self.asked += 1
        return 60.0 if self.asked <= self.runs else float(self.view.pause_remaining())

    def fetch_many(self, ids: list[int], **options: Any) -> Any:
        return self.view.fetch_many(ids, **options)


def test_a_celery_task_is_retried_as_often_as_its_account_is_paused(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Paused more times than Celery's default ``max_retries`` (3), the task is still sent
    again each time and fetches its ids once the pause ends, rather than failing with
    ``MaxRetriesExceededError``. Run eagerly (``apply``): each retry runs at once, in this
    thread, whatever its countdown."""
    paused_runs = 5
    acme = "token-acme-retried-3b8e"
    with ServerThread() as servers:
        server = servers.start(FakeCommbox(token="token-unused-9d21", conversations=1, childs=1))
        server.add_token(acme, account="acme")
        example = celery_example(monkeypatch, redis_server, server, {"acme": (acme, 20)})
        try:
            view = PausedAtFirst(example.account_view("acme"), runs=paused_runs)
            monkeypatch.setattr(example, "account_view", lambda account: view)
            # In a thread with a bound, so that a task that fetched in a loop fails here.
            pool = ThreadPoolExecutor(1)
            try:
                task = pool.submit(example.fetch_account_ids.apply, args=("acme", [1, 2]))
                result = task.result(timeout=30)
            finally:
                pool.shutdown(wait=False)
        finally:
            example.close_client()
            example.app.close()
        assert result.state == "SUCCESS", repr(result.result)
        assert view.asked == paused_runs + 1
        answer = result.result
        # fetch_many yields in the order the answers come.
        assert sorted(ident for ident, _ in answer["unread"]) == [1, 2] and answer["failed"] == []
        assert servers.call(lambda: server.count("ok", account="acme")) == 2


def test_token_leaks_finds_a_token_inside_a_long_value_of_each_type(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """``DUMP`` LZF-compresses a longer value, hiding a token in it; ``token_leaks`` reads
    each value by its type instead. The values are long and repetitive (what LZF
    compresses), like a Celery result holding many errors' reprs."""
    accounts = make_accounts((5.0,), seconds=1)
    with ServerThread() as servers:
        fleet = Fleet(servers, accounts, burst=1)
        token = accounts[0].token
        filler = "".join(f"AuthenticationError({n}) refused; " for n in range(100))
        # A result whose errors each name the token: LZF writes all but the first as
        # back-references, and cuts the first with a control byte (a literal run is at most
        # 32 bytes long).
        errors = [[n, f"AuthenticationError('{token} refused')"] for n in range(20)]
        leaked = json.dumps({"status": "SUCCESS", "result": {"failed": errors}})
        with redis.Redis.from_url(redis_server.url) as client:
            client.set("clean", filler)
            assert token_leaks(fleet, redis_server.url, []) == []
            client.set("string", leaked)
            # The case this guards against: the token does not show in the DUMP blob.
            assert token.encode() not in (client.dump("string") or b"")
            client.hset("hash", mapping={"field": leaked})
            client.rpush("list", filler, leaked)
            client.sadd("set", leaked)
            client.zadd("zset", {leaked: 1.0})
            client.xadd("stream", {"field": leaked})
        log = tmp_path / "worker.log"
        log.write_text(f"clean {filler}\n")
        found = token_leaks(fleet, redis_server.url, [log])
    assert sorted(found) == sorted(
        f"redis {key!r}" for key in (b"string", b"hash", b"list", b"set", b"zset", b"stream")
    )


async def test_an_arq_job_whose_account_is_paused_gives_its_slot_back(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Arq job reads its account's pause before it fetches: paused for longer than
    WAIT_IN_JOB, it raises ``Retry(defer=pause)`` and fetches nothing; another account's job
    runs; and the worker allows retries enough for an account paused again and again."""
    arq = pytest.importorskip("arq", reason="arq not installed: pip install --no-deps 'arq>=0.26'")
    acme, globex = "token-acme-arq-paused-61d0", "token-globex-arq-free-0e4b"
    server = FakeCommbox(token="token-unused-8a2c", conversations=3, childs=1)
    server.add_token(
        acme, account="acme", throttling=Throttling(rate=0.001, burst=1, retry_after="60")
    )
    server.add_token(globex, account="globex")
    async with server:
        for variable, value in {
            "ARQ_REDIS_URL": redis_server.url,
            "COMMBOX_BASE_URL": server.url,
            "COMMBOX_ACCOUNTS": "acme=5,globex=5",
            "COMMBOX_TOKEN_ACME": acme,
            "COMMBOX_TOKEN_GLOBEX": globex,
            "COMMBOX_WORKERS": "1",
        }.items():
            monkeypatch.setenv(variable, value)
        example = load_example("arq_worker")
        ctx: dict[str, Any] = {}
        await example.startup(ctx)
        try:
            view = example.account_view(ctx, "acme")
            await view.get_user_objects(1)
            with pytest.raises(RateLimitError):  # one try: the 429 pauses acme
                await view.get_user_objects(2, retries=Retries(throttled_tries=1))
            # Bounded: a job that waited out the 60 s pause instead fails here, not hangs.
            with pytest.raises(arq.Retry) as retry:
                await asyncio.wait_for(example.fetch_account_ids(ctx, "acme", [3, 4]), 30)
            answer = await example.fetch_account_ids(ctx, "globex", [5])
        finally:
            await example.shutdown(ctx)
    assert retry.value.defer_score is not None and retry.value.defer_score > 2_000  # ms
    assert [ident for ident, _ in answer["unread"]] == [5] and answer["failed"] == []
    assert server.count("ok", account="acme") == 1
    assert server.count("throttled", account="acme") == 1
    assert example.WorkerSettings.max_tries >= 1_000
