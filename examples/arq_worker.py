"""Arq workers fetch many CommBox accounts' ids, each account within its limit on every machine.

The Celery example (celery_app.py) in asyncio, with no blocking facade: an Arq worker is an
event loop, so each worker process has ONE ``AsyncCommbox`` with no account of its own
(``accounts_only=True``), opened in the worker's startup and closed in its shutdown, its
limiter a ``RedisLimiter``. A job is an account's name and some of its ids, never its token;
it reaches its account through ``commbox.with_token(token, rate_limit=rate)``, whose limiter
the client derives on the key ``commbox:account:<token fingerprint>`` at the account's rate.

A job whose account is paused for more than ``WAIT_IN_JOB`` seconds, as far as this worker
process has heard (a 429 here, or another process's through Redis once this one has fetched
for the account), gives its slot back before it fetches: it raises ``Retry(defer=pause)`` and
Arq runs it again after the pause. It has fetched nothing, so nothing is repeated. A shorter
pause, or one that begins during the job, is waited out in the job, holding one of the
worker's ``max_jobs`` slots (a coroutine, not a thread).

Every worker's environment:

    ARQ_REDIS_URL          redis://127.0.0.1:6379/0: the queue and the results
    COMMBOX_REDIS_URL      where the limiters live (default: the queue's URL)
    COMMBOX_ACCOUNTS       the accounts and their limits: acme=10,globex=20 (requests/s)
    COMMBOX_TOKEN_<NAME>   each account's token, COMMBOX_TOKEN_ACME (read in the worker only)
    COMMBOX_BASE_URL       the API of every account (default: CommBox's)
    COMMBOX_WORKERS        worker processes in all (4): each one's share while Redis is down

Run a worker on each machine (in this folder), then enqueue from anywhere:

    arq arq_worker.WorkerSettings
    python arq_worker.py acme ids.txt      # one id a line; prints id<TAB>unread per line
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import Iterable, Sequence
from contextlib import AsyncExitStack
from typing import Any, ClassVar

from arq import Retry, create_pool
from arq.connections import ArqRedis, RedisSettings

from commbox_async import AsyncCommbox
from commbox_async.redis import RedisLimiter

BROKER_URL = os.environ.get("ARQ_REDIS_URL", "redis://127.0.0.1:6379/0")
REDIS_URL = os.environ.get("COMMBOX_REDIS_URL", BROKER_URL)
#: A pause longer than this gives the job's slot back (see the module docstring).
WAIT_IN_JOB = 2.0


def accounts() -> dict[str, float]:
    """``COMMBOX_ACCOUNTS`` read: each account's name and requests per second."""
    limits = {}
    for item in os.environ.get("COMMBOX_ACCOUNTS", "").split(","):
        name, _, rate = item.strip().partition("=")
        if not re.fullmatch(r"[a-z0-9_]+", name) or not rate:
            raise ValueError(f"COMMBOX_ACCOUNTS: {item!r} is not name=requests_per_second")
        limits[name] = float(rate)
    return limits


async def startup(ctx: dict[str, Any]) -> None:
    """The worker's client: no account of its own, a ``RedisLimiter`` to derive theirs from."""
    # The parent key's limit, and the default of an account given none; every account here
    # is given its own, so the fastest one's is only a sensible bound.
    fastest = max(accounts().values())
    stack = ctx["commbox_stack"] = AsyncExitStack()
    limiter = await stack.enter_async_context(
        RedisLimiter.from_url(
            REDIS_URL,
            key="commbox",
            rate_limit=fastest,
            expected_workers=int(os.environ.get("COMMBOX_WORKERS", "4")),
        )
    )
    client = AsyncCommbox(
        accounts_only=True,
        base_url=os.environ.get("COMMBOX_BASE_URL"),
        rate_limit=fastest,
        limiter=limiter,
    )
    ctx["commbox"] = await stack.enter_async_context(client)


async def shutdown(ctx: dict[str, Any]) -> None:
    """Close the client (its accounts' derived limiters with it), then its limiter."""
    await ctx["commbox_stack"].aclose()


def account_view(ctx: dict[str, Any], account: str) -> AsyncCommbox:
    """``account``'s calls on this worker's client: its token from the environment, its limit
    from ``COMMBOX_ACCOUNTS``. Cheap: the views of one account share its limiter and pause."""
    token = os.environ[f"COMMBOX_TOKEN_{account.upper()}"]
    commbox: AsyncCommbox = ctx["commbox"]
    return commbox.with_token(token, rate_limit=accounts()[account])


async def fetch_account_ids(ctx: dict[str, Any], account: str, ids: list[int]) -> dict[str, Any]:
    """Fetch ``ids`` for ``account``; unread totals and failures by id. A paused account's
    job is sent again after the pause instead (``Retry``), its slot free meanwhile."""
    commbox = account_view(ctx, account)
    pause = commbox.limiter.pause_remaining()
    if pause > WAIT_IN_JOB:
        raise Retry(defer=pause)
    unread: list[tuple[int, int]] = []
    failed: list[tuple[int, str]] = []
    async for result in commbox.fetch_many(ids, concurrency=8):
        if result.response is not None:
            unread.append((result.identity_id, result.response.unread_total))
        else:
            failed.append((result.identity_id, repr(result.error)))
    return {"account": account, "unread": unread, "failed": failed}


class WorkerSettings:
    """``arq arq_worker.WorkerSettings``: four jobs at a time, the queue polled every 0.1 s."""

    functions: ClassVar[list[Any]] = [fetch_account_ids]
    on_startup = startup
    on_shutdown = shutdown
    redis_settings = RedisSettings.from_dsn(BROKER_URL)
    max_jobs = 4
    poll_delay = 0.1
    job_timeout = 3600
    # Each Retry counts as a try (Arq's default is 5): an account paused again and again must
    # not fail its job unfetched. Only Retry (and a worker stopped mid-job) tries again.
    max_tries = 1_000


async def enqueue(
    pool: ArqRedis, tasks: Iterable[tuple[str, Sequence[int]]], timeout: float
) -> list[dict[str, Any]]:
    """Send one job per (account, ids) and wait for every answer."""
    jobs = [await pool.enqueue_job("fetch_account_ids", name, list(ids)) for name, ids in tasks]
    return [await job.result(timeout=timeout) for job in jobs if job is not None]


async def send(tasks: list[tuple[str, list[int]]]) -> None:
    """Enqueue the tasks and print the results as they come."""
    pool = await create_pool(RedisSettings.from_dsn(BROKER_URL))
    try:
        for answer in await enqueue(pool, tasks, timeout=3600):
            for ident, unread in answer["unread"]:
                print(f"{ident}\t{unread}")
            for ident, error in answer["failed"]:
                print(f"{ident}\terror: {error}", file=sys.stderr)
    finally:
        await pool.aclose()


def main(account: str, path: str, per_task: int = 100) -> None:
    """Enqueue a file's ids for one account in jobs of ``per_task``; print the results."""
    with open(path) as lines:
        ids = [int(line) for line in lines if line.strip()]
    asyncio.run(send([(account, ids[i : i + per_task]) for i in range(0, len(ids), per_task)]))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
