"""Celery workers fetch many CommBox accounts' ids, each account within its limit on every machine.

The queue carries the work, Redis carries each account's limit: a task is an account's name and
some of its ids, never its token. Every worker process has ONE blocking client
(``commbox_async.blocking.Commbox``) with no account of its own (``accounts_only=True``), made
on first use in that process (after the fork, in a prefork pool), shared by its threads and
closed when the process ends. A task reaches its account through
``commbox.with_token(token, rate_limit=rate)``: that account's calls over the process's one
event loop and connection pool, with a ``RedisLimiter`` the client derives from its own, on
the key ``commbox:account:<token fingerprint>`` at the account's rate. Any number of workers on
any number of machines then keep every account within its limit, and a 429 on one pauses that
account everywhere. No key is built here, and Redis never sees a token.

A task whose account is paused (a 429's ``Retry-After`` of more than ``WAIT_IN_TASK`` seconds)
gives its worker back: it is sent again for when the pause ends, and the worker takes another
account's task meanwhile (see ``fetch_account_ids``). Only a pause its worker process has heard
of, though: one that process has not waits the pause out in its thread, within the limit.

Every worker's environment:

    CELERY_BROKER_URL      redis://127.0.0.1:6379/0; also the result backend
    COMMBOX_REDIS_URL      where the limiters live (default: the broker's URL)
    COMMBOX_ACCOUNTS       the accounts and their limits: acme=10,globex=20 (requests/s)
    COMMBOX_TOKEN_<NAME>   each account's token, COMMBOX_TOKEN_ACME (read in the worker only)
    COMMBOX_BASE_URL       the API of every account (default: CommBox's)
    COMMBOX_WORKERS        worker processes in all (4): each one's share while Redis is down

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

from celery import Celery, Task, group
from celery.result import GroupResult
from celery.signals import worker_process_shutdown

from commbox_async.blocking import AccountView, Commbox
from commbox_async.redis import RedisLimiter

BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
REDIS_URL = os.environ.get("COMMBOX_REDIS_URL", BROKER_URL)
TASK = "commbox.fetch_account_ids"
#: A pause shorter than this (seconds) is waited out in the task: sending the task again costs
#: a round trip through the broker, about what a pause of a second or two would cost.
WAIT_IN_TASK = 2.0

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


def make_client() -> Commbox:
    """The process's client: no account of its own, a ``RedisLimiter`` to derive theirs from."""
    # The parent key's limit, and the default of an account given none; every account here
    # is given its own, so the fastest one's is only a sensible bound.
    fastest = max(accounts().values())
    workers = int(os.environ.get("COMMBOX_WORKERS", "4"))
    return Commbox(
        accounts_only=True,
        base_url=os.environ.get("COMMBOX_BASE_URL"),
        rate_limit=fastest,
        # Runs on the client's own loop, which the limiter belongs to; closed with the client.
        limiter_factory=lambda: RedisLimiter.from_url(
            REDIS_URL, key="commbox", rate_limit=fastest, expected_workers=workers
        ),
    )


_client: Commbox | None = None
_client_pid = 0
_lock = threading.Lock()


def client() -> Commbox:
    """This process's client, made on first use (after any fork)."""
    global _client, _client_pid
    with _lock:
        if _client is None or _client_pid != os.getpid():  # one copied by fork is not ours
            _client = make_client()
            _client_pid = os.getpid()
        return _client


def account_view(account: str) -> AccountView:
    """``account``'s calls on this process's client: its token from the environment, its limit
    from ``COMMBOX_ACCOUNTS``. Cheap: the views of one account share its limiter and pause."""
    token = os.environ[f"COMMBOX_TOKEN_{account.upper()}"]
    return client().with_token(token, rate_limit=accounts()[account])


@worker_process_shutdown.connect
def close_client(**_: Any) -> None:
    """A prefork child's exit closes its client (atexit does it for the other pools)."""
    global _client
    with _lock:
        if _client is not None and _client_pid == os.getpid():
            _client.close()
        _client = None


# max_retries=None on the task, not in self.retry(): there None means "the task's default"
# (3), and an account paused a fourth time would fail its task, its ids never fetched.
@app.task(name=TASK, bind=True, max_retries=None)
def fetch_account_ids(self: Task[Any, Any], account: str, ids: list[int]) -> dict[str, Any]:
    """Fetch ``ids`` for ``account``; unread totals and failures by id.

    Before it fetches, a task whose account is paused for more than ``WAIT_IN_TASK`` seconds
    is sent again for when the pause ends (``self.retry(countdown=...)``) and gives its worker
    thread back: waiting in the task would hold the thread, idle, from every other account's
    tasks. The check sees the pauses this worker process has heard of: a 429 in it, or one in
    another process announced through Redis once this process has fetched for the account (its
    limiter listens from its first request). A task in a process that has not heard of the
    pause fetches, and its first request waits the pause out in its thread: the account's limit
    and pause are still kept, through Redis, but the thread is held.

    A task sent again fetched nothing, so it repeats nothing, and it may come back as often as
    the account is paused (the task is declared with ``max_retries=None``). A pause that starts
    while a task fetches is waited out in it: the task would otherwise have to hand back half
    its ids.
    """
    commbox = account_view(account)
    pause = commbox.pause_remaining()
    if pause > WAIT_IN_TASK:
        raise self.retry(countdown=pause)
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
