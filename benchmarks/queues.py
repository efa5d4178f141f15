"""The job-queue examples run for real: one fake server for every account, redis-server, workers.

Used by ``bench_queues.py`` (each account's time against its ideal) and by the tests of the
Celery and Arq examples (every id fetched once, each account within its limit):

- ``ServerThread``: fake CommBox servers on their own event loop in a thread, so that blocking
  code (a Celery client, a test) can drive them and read their request logs;
- ``Fleet``: one fake server, as CommBox is one API, that knows every account's token and
  gives each account its own token bucket (``add_token(..., throttling=...)``);
- ``start_workers`` / ``stop_workers``: worker processes, each stopped by its pid;
- ``account_report``: from the server's log, one account's successful fetches per id, its 429s,
  the most of its requests in any one second, and the time of its last answer.
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
    """One CommBox account of the example: its name, its limit at the server and its ids."""

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
    """One fake server on a ``ServerThread`` for every account: each account's token, each
    account's own throttle."""

    def __init__(self, servers: ServerThread, accounts: Sequence[Account], burst: float) -> None:
        self.servers = servers
        self.accounts = list(accounts)
        # The server's own token belongs to no account of the example: only theirs are used.
        self.server = servers.start(
            FakeCommbox(token="token-fleet-unused-0d4e", conversations=3, childs=1)
        )
        for account in accounts:
            self.server.add_token(
                account.token,
                account=account.name,
                throttling=Throttling(rate=account.rate, burst=burst, retry_after="1"),
            )

    def environment(self) -> dict[str, str]:
        """What the example's workers read: the accounts, each one's token, the base URL."""
        env = {
            "COMMBOX_ACCOUNTS": ",".join(f"{a.name}={a.rate:g}" for a in self.accounts),
            "COMMBOX_BASE_URL": self.server.url,
        }
        for account in self.accounts:
            env[f"COMMBOX_TOKEN_{account.name.upper()}"] = account.token
        return env

    def clear(self) -> None:
        """Forget what the server logged (between two runs of the benchmark)."""

        def clear() -> None:
            self.server.requests.clear()
            self.server.outcomes.clear()

        self.servers.call(clear)

    def now(self) -> float:
        """The server's clock (its log's ``at``)."""
        return self.servers.call(time.monotonic)

    def report(self, account: Account) -> AccountReport:
        """What the server saw of ``account``."""
        return self.servers.call(lambda: account_report(self.server, account.name))


@dataclass(frozen=True)
class AccountReport:
    """What the server saw of one account."""

    ok_per_id: Mapping[int, int]
    throttled: int
    busiest_second: int
    last_ok: float


def account_report(server: FakeCommbox, account: str) -> AccountReport:
    """``account``'s successful fetches per id, its 429s, the most of its requests in one
    second, its last answer (from the server's log, which names each request's account)."""
    mine = [r for r in server.requests if r.account == account]
    ok = [r for r in mine if r.outcome == "ok"]
    times = sorted(r.at for r in mine)
    busiest, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= 1.0:
            start += 1
        busiest = max(busiest, end - start + 1)
    return AccountReport(
        ok_per_id=Counter(r.identity_id for r in ok if r.identity_id is not None),
        throttled=sum(r.outcome == "throttled" for r in mine),
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
    """Start each command in examples/ with ``env`` added, its output in ``logs/worker-N.log``.

    The workers import this checkout's ``commbox_async`` (``ROOT`` first on ``PYTHONPATH``), as
    the test process does, even when the environment's editable install is another checkout's.
    """
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    workers = []
    for number, command in enumerate(commands):
        with (logs / f"worker-{number}.log").open("wb") as log:
            workers.append(
                subprocess.Popen(
                    list(command),
                    cwd=EXAMPLES,
                    env={**os.environ, **env, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path},
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
    """One run of the example: what the tasks answered and what the server saw of each account."""

    answers: list[dict[str, Any]]
    reports: dict[str, AccountReport]
    ratios: dict[str, float]


def run_round(
    fleet: Fleet, send: Callable[[list[tuple[str, list[int]]]], list[dict[str, Any]]], tasks: int
) -> Round:
    """Send every account's ids in ``tasks`` tasks each, wait for the answers, read the logs.

    An account's ratio is the time from sending to the server's last answer to it, over its ideal.
    """
    fleet.clear()
    start = fleet.now()
    answers = send(chunks(fleet.accounts, tasks))
    reports = {a.name: fleet.report(a) for a in fleet.accounts}
    ratios = {a.name: (reports[a.name].last_ok - start) / a.ideal for a in fleet.accounts}
    return Round(answers, reports, ratios)


def redis_value(client: Any, key: bytes) -> bytes:
    """Every byte of ``key``'s value, read by its type, joined. Not ``DUMP``: its RDB encoding
    LZF-compresses longer values, and a token inside one would not show in it."""
    kind = client.type(key)
    parts: list[bytes]
    if kind == b"string":
        parts = [client.get(key) or b""]
    elif kind == b"hash":
        parts = [item for pair in client.hgetall(key).items() for item in pair]
    elif kind == b"list":
        parts = client.lrange(key, 0, -1)
    elif kind == b"set":
        parts = list(client.smembers(key))
    elif kind == b"zset":
        parts = client.zrange(key, 0, -1)
    elif kind == b"stream":
        parts = [
            item
            for entry_id, fields in client.xrange(key)
            for item in (entry_id, *(part for pair in fields.items() for part in pair))
        ]
    elif kind == b"none":  # expired or deleted since SCAN listed it
        parts = []
    else:
        # A type this cannot read: fail rather than report a key it could not search as clean.
        raise ValueError(f"redis key {key!r}: cannot search a value of type {kind!r}")
    return b"\n".join(parts)


def token_leaks(fleet: Fleet, redis_url: str, logs: Sequence[Path]) -> list[str]:
    """Where an account's token shows in Redis (any key or value) or in a worker's log."""
    import redis

    tokens = [a.token.encode() for a in fleet.accounts]
    found = []
    with redis.Redis.from_url(redis_url) as client:
        for key in client.scan_iter():
            blob = key + redis_value(client, key)
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
