"""Celery workers fetch many CommBox accounts' ids, each account within its limit on every machine.

The queue carries the work, Redis carries each account's limit: a task is an account's name and
some of its ids, never its token; every worker process has one blocking client per account
(``commbox_async.blocking.Commbox``), made on first use in that process (after the fork, in a
prefork pool) and shared by its threads, and each client's limiter is a ``RedisLimiter`` keyed
by the account's token fingerprint. Any number of workers on any number of machines then keep
every account within its limit, and a 429 on one pauses that account everywhere.

Every worker's environment:

    CELERY_BROKER_URL        redis://127.0.0.1:6379/0; also the result backend
    COMMBOX_REDIS_URL        where the limiters live (default: the broker's URL)
    COMMBOX_ACCOUNTS         the accounts and their limits: acme=10,globex=20 (requests/s)
    COMMBOX_TOKEN_<NAME>     each account's token, COMMBOX_TOKEN_ACME (read in the worker only)
    COMMBOX_BASE_URL_<NAME>  an account's API, else COMMBOX_BASE_URL, else CommBox's
    COMMBOX_WORKERS          worker processes in all (4): each one's share while Redis is down

Run a worker on each machine (in this folder), then enqueue from anywhere:

    celery -A celery_app worker --pool threads --concurrency 4 --loglevel INFO
    python celery_app.py acme ids.txt      # one id a line; prints id<TAB>unread per line
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from celery import Celery, group
from celery.result import GroupResult
from celery.signals import worker_process_shutdown

from commbox_async import token_fingerprint
from commbox_async.blocking import Commbox
from commbox_async.redis import RedisLimiter

BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
REDIS_URL = os.environ.get("COMMBOX_REDIS_URL", BROKER_URL)
TASK = "commbox.fetch_account_ids"

app = Celery("commbox_example", broker=BROKER_URL, backend=BROKER_URL)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    # A task holds its worker for seconds: take one at a time, and acknowledge it when done.
    worker_prefetch_multiplier=1,
    task_acks_late=True,
    broker_connection_retry_on_startup=True,
)


def accounts() -> dict[str, float]:
    """``COMMBOX_ACCOUNTS`` read: each account's name and requests per second."""
    limits = {}
    for item in os.environ.get("COMMBOX_ACCOUNTS", "").split(","):
        name, _, rate = item.strip().partition("=")
        if not re.fullmatch(r"[a-z0-9_]+", name) or not rate:
            raise ValueError(f"COMMBOX_ACCOUNTS: {item!r} is not name=requests_per_second")
        limits[name] = float(rate)
    return limits


def make_client(account: str) -> Commbox:
    """The account's blocking client: its token from the environment, its limit in Redis."""
    rate = accounts()[account]
    suffix = account.upper()
    token = os.environ[f"COMMBOX_TOKEN_{suffix}"]
    key = f"commbox:{token_fingerprint(token)}"  # one key per token, whatever its name here
    workers = int(os.environ.get("COMMBOX_WORKERS", "4"))
    return Commbox(
        token=token,
        base_url=os.environ.get(f"COMMBOX_BASE_URL_{suffix}") or os.environ.get("COMMBOX_BASE_URL"),
        rate_limit=rate,
        limiter_factory=lambda: RedisLimiter.from_url(
            REDIS_URL, key=key, rate_limit=rate, expected_workers=workers
        ),
    )


_clients: dict[str, Commbox] = {}
_clients_pid = 0
_lock = threading.Lock()


def client_for(account: str) -> Commbox:
    """This process's client for ``account``, made on first use (after any fork)."""
    global _clients_pid
    with _lock:
        if _clients_pid != os.getpid():  # a new process: clients copied by fork are not ours
            _clients.clear()
            _clients_pid = os.getpid()
        if account not in _clients:
            _clients[account] = make_client(account)
        return _clients[account]


@worker_process_shutdown.connect
def close_clients(**_: Any) -> None:
    """A prefork child's exit closes its clients (atexit does it for the other pools)."""
    with _lock:
        for commbox in _clients.values():
            commbox.close()
        _clients.clear()


@app.task(name=TASK)
def fetch_account_ids(account: str, ids: list[int]) -> dict[str, Any]:
    """Fetch ``ids`` with the account's client; unread totals and failures by id."""
    commbox = client_for(account)
    unread: list[tuple[int, int]] = []
    failed: list[tuple[int, str]] = []
    for result in commbox.fetch_many(ids, concurrency=8):
        if result.response is not None:
            unread.append((result.identity_id, result.response.unread_total))
        else:
            failed.append((result.identity_id, repr(result.error)))
    return {"account": account, "unread": unread, "failed": failed}


def enqueue(tasks: Iterable[tuple[str, Sequence[int]]]) -> GroupResult:
    """Send one task per (account, ids); wait with ``.get(timeout=...)``."""
    result: GroupResult = group(fetch_account_ids.s(name, list(ids)) for name, ids in tasks)()
    return result


def main(account: str, path: str, per_task: int = 100) -> None:
    """Enqueue a file's ids for one account in tasks of ``per_task``; print the results."""
    with open(path) as lines:
        ids = [int(line) for line in lines if line.strip()]
    tasks = [(account, ids[i : i + per_task]) for i in range(0, len(ids), per_task)]
    for answer in enqueue(tasks).get(timeout=3600):
        for ident, unread in answer["unread"]:
            print(f"{ident}\t{unread}")
        for ident, error in answer["failed"]:
            print(f"{ident}\terror: {error}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
