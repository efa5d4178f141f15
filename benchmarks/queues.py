"""The job-queue examples run for real: fake servers per account, redis-server, worker processes.

Used by ``bench_queues.py`` (each account's time against its ideal) and by the tests of the
Celery and Arq examples (every id fetched once, each account within its limit):

- ``ServerThread``: fake CommBox servers on their own event loop in a thread, so that blocking
  code (a Celery client, a test) can drive them and read their request logs;
- ``Fleet``: one fake server per account, each with its own token and its own throttle (the
  fake server's throttle is server-wide, so one server per account is one limit per token);
- ``start_workers`` / ``stop_workers``: worker processes, each stopped by its pid;
- ``account_report``: from a server's log, each id's successful fetches, the 429s, the most
  requests in any one second, and the time of the last answer.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from commbox_async.testing import FakeCommbox, Throttling

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
T = TypeVar("T")


class ServerThread:
    """An event loop in a daemon thread that runs fake servers until ``close()``."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._servers: list[FakeCommbox] = []

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the servers' loop and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def call(self, function: Callable[[], T]) -> T:
        """Call ``function`` on the servers' loop (to read a log while they serve)."""

        async def apply() -> T:
            return function()

        return self.run(apply())

    def start(self, server: FakeCommbox) -> FakeCommbox:
        """Start ``server`` on the loop; it stops at ``close()``."""
        self.run(server.start())
        self._servers.append(server)
        return server

    def close(self) -> None:
        """Stop every server, then the loop and its thread."""
        for server in self._servers:
            self.run(server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()

    def __enter__(self) -> ServerThread:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@dataclass(frozen=True)
class Account:
    """One CommBox account of the example: its name, its server's limit and its ids."""

    name: str
    rate: float
    ids: tuple[int, ...]

    @property
    def token(self) -> str:
        return f"token-{self.name}-5f3a9c"

    @property
    def ideal(self) -> float:
        """Seconds that its ids take at its limit."""
        return len(self.ids) / self.rate


def make_accounts(rates: Sequence[float], seconds: float) -> list[Account]:
    """One account per rate, each with ``rate x seconds`` ids of its own (ideal: ``seconds``)."""
    accounts = []
    for number, rate in enumerate(rates):
        first = 100_000 * (number + 1)
        count = round(rate * seconds)
        accounts.append(Account(f"acct{number}", rate, tuple(range(first, first + count))))
    return accounts


class Fleet:
    """One fake server per account on a ``ServerThread``: its own token, its own throttle."""

    def __init__(self, servers: ServerThread, accounts: Sequence[Account], burst: float) -> None:
        self.servers = servers
        self.accounts = list(accounts)
        self.by_name = {
            account.name: servers.start(
                FakeCommbox(
                    token=account.token,
                    conversations=3,
                    childs=1,
                    throttling=Throttling(rate=account.rate, burst=burst, retry_after="1"),
                )
            )
            for account in accounts
        }

    def environment(self) -> dict[str, str]:
        """What the example's workers read: the accounts, each one's token and base URL."""
        env = {"COMMBOX_ACCOUNTS": ",".join(f"{a.name}={a.rate:g}" for a in self.accounts)}
        for account in self.accounts:
            suffix = account.name.upper()
            env[f"COMMBOX_TOKEN_{suffix}"] = account.token
            env[f"COMMBOX_BASE_URL_{suffix}"] = self.by_name[account.name].url
        return env

    def clear(self) -> None:
        """Forget what the servers logged (between two runs of the benchmark)."""

        def clear() -> None:
            for server in self.by_name.values():
                server.requests.clear()
                server.outcomes.clear()

        self.servers.call(clear)

    def now(self) -> float:
        """The servers' clock (their logs' ``at``)."""
        return self.servers.call(time.monotonic)

    def report(self, account: Account) -> AccountReport:
        """What ``account``'s server saw."""
        server = self.by_name[account.name]
        return self.servers.call(lambda: account_report(server))


@dataclass(frozen=True)
class AccountReport:
    """What one account's server saw."""

    ok_per_id: Mapping[int, int]
    throttled: int
    busiest_second: int
    last_ok: float


def account_report(server: FakeCommbox) -> AccountReport:
    """Successful fetches per id, 429s, the most requests in one second, the last answer."""
    ok = [r for r in server.requests if r.outcome == "ok"]
    times = sorted(r.at for r in server.requests)
    busiest, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= 1.0:
            start += 1
        busiest = max(busiest, end - start + 1)
    return AccountReport(
        ok_per_id=Counter(r.identity_id for r in ok if r.identity_id is not None),
        throttled=server.outcomes["throttled"],
        busiest_second=busiest,
        last_ok=max((r.at for r in ok), default=float("nan")),
    )


def chunks(accounts: Sequence[Account], per_account: int) -> list[tuple[str, list[int]]]:
    """Each account's ids in ``per_account`` tasks, interleaved across accounts."""

    def part(account: Account, index: int) -> list[int]:
        size = len(account.ids)
        return list(account.ids[index * size // per_account : (index + 1) * size // per_account])

    split = [[(a.name, part(a, i)) for i in range(per_account)] for a in accounts]
    return [task for round_ in zip(*split, strict=True) for task in round_ if task[1]]


def start_workers(
    commands: Sequence[Sequence[str]], env: Mapping[str, str], logs: Path
) -> list[subprocess.Popen[bytes]]:
    """Start each command in examples/ with ``env`` added, its output in ``logs/worker-N.log``."""
    workers = []
    for number, command in enumerate(commands):
        with (logs / f"worker-{number}.log").open("wb") as log:
            workers.append(
                subprocess.Popen(
                    list(command),
                    cwd=EXAMPLES,
                    env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
    return workers


def wait_for_lines(
    logs: Sequence[Path], text: str, workers: Sequence[subprocess.Popen[bytes]], limit: float
) -> None:
    """Wait until every log holds ``text`` (each worker is ready): a hang guard, not a timing."""
    give_up = time.monotonic() + limit
    while not all(text in path.read_text(errors="replace") for path in logs):
        for worker in workers:
            if worker.poll() is not None:
                raise RuntimeError(f"a worker exited with {worker.returncode}: see {logs}")
        if time.monotonic() > give_up:
            raise RuntimeError(f"the workers never logged {text!r}: see {logs}")
        time.sleep(0.05)


def stop_workers(workers: Sequence[subprocess.Popen[bytes]], timeout: float = 20.0) -> None:
    """SIGTERM each worker's process group (a Celery worker's pool children too), then wait."""
    for worker in workers:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


def python_module(*args: str) -> list[str]:
    """``python -m ARGS`` with this interpreter."""
    return [sys.executable, "-m", *args]


#: What a Celery worker logs once it takes tasks, and an Arq worker once it started up.
CELERY_READY = "ready."


def celery_workers(count: int, concurrency: int) -> list[list[str]]:
    """``count`` Celery workers of examples/celery_app.py, each a thread pool of ``concurrency``."""
    return [
        python_module(
            "celery",
            "-A",
            "celery_app",
            "worker",
            "--pool",
            "threads",
            "--concurrency",
            str(concurrency),
            "--hostname",
            f"w{number}@%h",
            "--loglevel",
            "INFO",
            # No chatter between workers: each starts at once and needs none of it here.
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        )
        for number in range(count)
    ]


@dataclass(frozen=True)
class Round:
    """One run of the example: what the tasks answered and what each account's server saw."""

    answers: list[dict[str, Any]]
    reports: dict[str, AccountReport]
    ratios: dict[str, float]


def run_round(
    fleet: Fleet, send: Callable[[list[tuple[str, list[int]]]], list[dict[str, Any]]], tasks: int
) -> Round:
    """Send every account's ids in ``tasks`` tasks each, wait for the answers, read the logs.

    An account's ratio is the time from sending to its server's last answer, over its ideal.
    """
    fleet.clear()
    start = fleet.now()
    answers = send(chunks(fleet.accounts, tasks))
    reports = {a.name: fleet.report(a) for a in fleet.accounts}
    ratios = {a.name: (reports[a.name].last_ok - start) / a.ideal for a in fleet.accounts}
    return Round(answers, reports, ratios)


def token_leaks(fleet: Fleet, redis_url: str, logs: Sequence[Path]) -> list[str]:
    """Where an account's token shows in Redis (any key or value) or in a worker's log."""
    import redis

    tokens = [a.token.encode() for a in fleet.accounts]
    found = []
    with redis.Redis.from_url(redis_url) as client:
        for key in client.scan_iter():
            blob = key + (client.dump(key) or b"")
            found += [f"redis {key!r}" for token in tokens if token in blob]
    for path in logs:
        text = path.read_bytes()
        found += [str(path) for token in tokens if token in text]
    return found


ARQ_READY = "redis_version="


def arq_workers(count: int) -> list[list[str]]:
    """``count`` Arq workers of examples/arq_worker.py."""
    return [python_module("arq", "arq_worker.WorkerSettings") for _ in range(count)]


def celery_sender(
    example: Any, timeout: float
) -> Callable[[list[tuple[str, list[int]]]], list[dict[str, Any]]]:
    """Send tasks with examples/celery_app.py (loaded as ``example``) and wait for the answers."""

    def send(tasks: list[tuple[str, list[int]]]) -> list[dict[str, Any]]:
        answers: list[dict[str, Any]] = example.enqueue(tasks).get(timeout=timeout)
        return answers

    return send


def arq_sender(
    example: Any, timeout: float
) -> Callable[[list[tuple[str, list[int]]]], list[dict[str, Any]]]:
    """Send jobs with examples/arq_worker.py (loaded as ``example``) and wait for the answers."""

    async def send_all(tasks: list[tuple[str, list[int]]]) -> list[dict[str, Any]]:
        pool = await example.create_pool(example.RedisSettings.from_dsn(example.BROKER_URL))
        try:
            answers: list[dict[str, Any]] = await example.enqueue(pool, tasks, timeout)
            return answers
        finally:
            await pool.aclose()

    return lambda tasks: asyncio.run(send_all(tasks))
