"""Many accounts, one pool: 20 accounts' jobs at once over one client's session (issue 20).

One fake server in this process gives each of 20 tokens a token bucket of its own, from 5 to
25 req/s (burst 5, ``Retry-After: 1``). One ``AsyncCommbox`` at 250 req/s (10x the fastest
account; its pacing learns each account's limit) makes a view per token (``with_token``), and
every account fetches its ids at once (``fetch_many``, 32 workers each) over the one pool.

- ``plain``: every account's time against its own ideal (ids / its rate); goal <= 1.35x, 0 lost.
- ``revoke+rotate``: the fastest account's key is revoked halfway through its ids (it must get
  ``AuthenticationError`` for the rest, nothing else), the next fastest account's key is
  rotated halfway (its provider gives the new one: it must lose nothing); the other 18 must
  be unaffected (the same goal as ``plain``).
- ``memory``: 10,000 views of distinct tokens that each made one call, measured with
  tracemalloc: retained while held, and after they are dropped.
- ``pool``: how the pool is shared. One account's bulk job (2,000 ids, 400 workers, no limit
  of its own) fills a pool of 8 connections to a server that answers in 20 ms; once its
  workers are all waiting, 4 other accounts each fetch 20 ids (4 workers) and a fifth makes 10
  calls one after another (a page view each). Each run measures it twice, with the pool shared
  fairly (``_fair``) and by aiohttp's connector alone (the gate switched off, as before it
  was built): the small jobs' times, a page view's time, the bulk job's rate, failed ids.

    .venv/bin/python benchmarks/bench_accounts.py              # 200 ids per account, 3 runs
    .venv/bin/python benchmarks/bench_accounts.py --quick      # 50 ids per account, 1 run
    .venv/bin/python benchmarks/bench_accounts.py --runs 5 --only plain
    .venv/bin/python benchmarks/bench_accounts.py --page full   # the server's 107 KiB pages
    .venv/bin/python benchmarks/bench_accounts.py --runs 3 --only pool

The fake server runs in this process, on the client's event loop: its pages are small by
default, because its own 107 KiB pages cost this process more CPU than one core has at the
accounts' 300 requests a second (the first line printed, ``capacity``, says what the process can
do with no limits at all; with full pages, about 120 req/s here), and the goal is about pacing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import multiprocessing
import statistics
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from commbox_async import AsyncCommbox, AuthenticationError, PoolConfig, RateLimit, _transport
from commbox_async._pacing import PacingModel
from commbox_async.testing import FakeCommbox, Throttling

ACCOUNTS = 20
CLIENT_RATE = 250.0
CONCURRENCY = 32
GOAL = 1.35
#: The fake server's page: "small" (one conversation, 1.5 KiB), or its default "full" one (ten
#: conversations of ten messages, 107 KiB), whose encoding in this process and decoding in the
#: client take more CPU than one core has at the accounts' 300 requests a second.
PAGES: dict[str, dict[str, int]] = {"small": {"conversations": 1, "childs": 0}, "full": {}}


def rates() -> list[float]:
    """The accounts' limits: 5 to 25 req/s, evenly spread."""
    return [5.0 + 20.0 * i / (ACCOUNTS - 1) for i in range(ACCOUNTS)]


@dataclass
class Outcome:
    """One account's job: how long, against its ideal, and what each id got."""

    rate: float
    ids: int
    seconds: float = 0.0
    ok: int = 0
    auth_errors: int = 0
    other_errors: int = 0
    role: str = "plain"
    throttled: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    #: The account's rate changes, seconds from the start of the jobs (``--explain``).
    changes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.seconds / (self.ids / self.rate)

    @property
    def lost(self) -> int:
        return self.ids - self.ok - self.auth_errors


async def _job(
    view: AsyncCommbox,
    outcome: Outcome,
    first_id: int,
    halfway: Callable[[], None] | None,
    started: float,
) -> None:
    """One account's fan-out; ``halfway`` runs once half of its ids have a result."""
    done = 0
    async for result in view.fetch_many(
        range(first_id, first_id + outcome.ids), concurrency=CONCURRENCY
    ):
        done += 1
        if result.ok:
            outcome.ok += 1
        elif isinstance(result.error, AuthenticationError):
            outcome.auth_errors += 1
        else:
            outcome.other_errors += 1
            kind = result.error.kind if result.error is not None else "?"
            outcome.kinds[kind] = outcome.kinds.get(kind, 0) + 1
        if halfway is not None and done == outcome.ids // 2:
            halfway()
    outcome.seconds = time.perf_counter() - started


def _tokens() -> list[str]:
    return [f"account-{i}-key" for i in range(ACCOUNTS)]


def _account_server(page: str, limited: bool) -> FakeCommbox:
    """The fake server with a bucket of its own for each account's token."""
    server = FakeCommbox(token="parent-key", **PAGES[page])
    for token, rate in zip(_tokens(), rates(), strict=True):
        throttling = Throttling(rate=rate, burst=5, retry_after="1") if limited else None
        server.add_token(token, throttling=throttling)
    return server


def _throttled(server: FakeCommbox) -> list[int]:
    """Each account's 429s, as the server counted them."""
    return [
        server.count("throttled", account=server.accounts.account_of(token)) for token in _tokens()
    ]


def _serve_apart(pipe: Connection, theirs: Connection, page: str, limited: bool) -> None:
    """The child process of ``--server process``: serve until told to stop (or until the
    parent is gone: its end of the pipe closes), then send back each account's 429s."""
    theirs.close()  # the parent's end: only the parent may hold it open

    async def serve() -> None:
        async with _account_server(page, limited) as server:
            pipe.send(server.url)
            with contextlib.suppress(EOFError):
                await asyncio.get_running_loop().run_in_executor(None, pipe.recv)
            with contextlib.suppress(OSError):
                pipe.send(_throttled(server))

    asyncio.run(serve())


#: Seconds the parent waits for the child's URL, and for its counts at the end.
_CHILD_PATIENCE = 60.0


def _receive(pipe: Connection) -> Any:
    """The child's next message; an error rather than a hang when it died first."""
    if not pipe.poll(_CHILD_PATIENCE):
        raise RuntimeError("the server process did not answer")
    return pipe.recv()


@contextlib.asynccontextmanager
async def _server_apart(page: str, limited: bool) -> AsyncIterator[tuple[str, list[int]]]:
    """The same server in a process of its own: its CPU is not the client's (as no real
    server's is), and its event loop does not delay the client's sends. Yields its URL and a
    list that holds each account's 429s once the block ends."""
    context = multiprocessing.get_context("fork")
    ours, theirs = context.Pipe()
    child = context.Process(target=_serve_apart, args=(theirs, ours, page, limited), daemon=True)
    child.start()
    theirs.close()  # the child's end: its death is then an EOF here, not a hang
    loop = asyncio.get_running_loop()
    throttled: list[int] = []
    try:
        url = await loop.run_in_executor(None, _receive, ours)
        yield url, throttled
        ours.send("stop")
        throttled.extend(await loop.run_in_executor(None, _receive, ours))
    finally:
        ours.close()
        child.join(timeout=10)
        if child.is_alive():
            child.kill()
            child.join()


async def run_jobs(
    ids: int, scenario: str, page: str = "small", limited: bool = True, apart: bool = False
) -> list[Outcome]:
    """All accounts at once; the roles of ``scenario``; each account's outcome. ``limited``
    False: no account has a limit (what this process can do at all, see ``capacity``).
    ``apart``: the server in a process of its own (``plain`` only: the other roles change
    the server's keys mid-job)."""
    if apart:
        assert scenario == "plain", "--server process measures the plain scenario only"
        async with _server_apart(page, limited) as (url, throttled):
            outcomes = await _run_accounts(url, ids, scenario, None)
    else:
        server = _account_server(page, limited)
        async with server:
            outcomes = await _run_accounts(server.url, ids, scenario, server)
            throttled = _throttled(server)
    for outcome, count in zip(outcomes, throttled, strict=True):
        outcome.throttled = count
    return outcomes


async def _run_accounts(
    url: str, ids: int, scenario: str, server: FakeCommbox | None
) -> list[Outcome]:
    """Every account's job over one client's pool; ``server`` (in this process) lets the
    revoke+rotate roles change keys mid-job."""
    tokens = _tokens()
    current = dict(zip(tokens, tokens, strict=True))  # what each account's provider returns now
    outcomes = [Outcome(rate, ids) for rate in rates()]
    views: list[AsyncCommbox] = []
    async with AsyncCommbox(token="parent-key", base_url=url, rate_limit=CLIENT_RATE) as commbox:
        jobs = []
        started = time.perf_counter()
        for i, token in enumerate(tokens):
            halfway: Callable[[], None] | None = None
            if scenario == "revoke+rotate" and i == ACCOUNTS - 1:
                assert server is not None
                outcomes[i].role = "revoked"
                halfway = lambda token=token: server.revoke(token)  # noqa: E731
            if scenario == "revoke+rotate" and i == ACCOUNTS - 2:
                assert server is not None
                outcomes[i].role = "rotated"

                def halfway(token: str = token) -> None:
                    assert server is not None
                    current[token] = server.rotate(token, new_token=f"{token}-2")

            view = commbox.with_token(lambda token=token: current[token])  # type: ignore[misc]
            views.append(view)
            jobs.append(_job(view, outcomes[i], 1 + i * ids, halfway, started))
        clock_started = time.monotonic()  # the limiters' clock
        await asyncio.gather(*jobs)
        for view, outcome in zip(views, outcomes, strict=True):
            # The pacing model's own record (an internal: a benchmark may look inside).
            model = getattr(view.limiter, "model", None)
            outcome.changes = (
                [f"{c.at - clock_started:6.2f} s  {c}" for c in model.changes] if model else []
            )
    return outcomes


def capacity(ids: int, page: str, apart: bool = False) -> float:
    """Requests a second this process serves and fetches over all accounts with no limits: the
    goal is about pacing only if this is well above the accounts' limits (300/s in all)."""
    outcomes = asyncio.run(run_jobs(ids, "plain", page, limited=False, apart=apart))
    return sum(o.ok for o in outcomes) / max(o.seconds for o in outcomes)


async def _one_call(view: AsyncCommbox) -> None:
    await view.get_user_objects(1)


async def memory(views: int, *, wait_sweep: bool = True) -> dict[str, float]:
    """Bytes per view of ``views`` views of distinct tokens that each made one call."""
    # Small pages, and each call's page dropped at once: the figure is the views' own.
    server = FakeCommbox(token="parent-key", record=False, conversations=1, childs=0)
    tokens = [f"view-{i}-key" for i in range(views)]
    for token in tokens:
        server.add_token(token)
    async with (
        server,
        AsyncCommbox(token=server.token, base_url=server.url, rate_limit=CLIENT_RATE) as commbox,
    ):
        await commbox.get_user_objects(1)  # the session, the pool, the server's page cache
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        held = []
        for start in range(0, views, 500):
            batch = [commbox.with_token(token) for token in tokens[start : start + 500]]
            await asyncio.gather(*(_one_call(view) for view in batch))
            held += batch
        gc.collect()
        retained = tracemalloc.get_traced_memory()[0] - base
        del held, batch
        gc.collect()
        # A freed account's limiter is handed to the loop (its finalizer may run in any
        # thread): let the loop take them, then count what is left.
        await asyncio.sleep(0)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0] - base
        live = len(commbox._views)
        # The limiters of accounts used within LOG_SPAN are kept for their next view (a view
        # per web request goes on at its pace); a quiet client sweeps them LOG_SPAN later.
        quiet = float("nan")
        if wait_sweep:
            await asyncio.sleep(PacingModel.LOG_SPAN + 1.0)
            gc.collect()
            quiet = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
    return {
        "views": views,
        "retained_bytes": retained,
        "per_view_bytes": retained / views,
        "after_drop_bytes": after,
        "after_quiet_bytes": quiet,
        "views_alive_after_drop": live,
    }


POOL = PoolConfig(limit=8)
LATENCY = 0.02
BULK_IDS, BULK_WORKERS = 2_000, 400
SMALL_ACCOUNTS, SMALL_IDS, SMALL_WORKERS = 4, 20, 4
PAGE_VIEWS = 10


@contextlib.contextmanager
def without_gate(on: bool) -> Iterator[None]:
    """With ``on``, the transport makes no gate: aiohttp's connector alone shares the pool,
    as in the client before ``_fair`` (its waiters are woken in the order they came, but a
    request that finds a connection just given back takes it before them)."""
    make = _transport._gate_for
    if on:
        _transport._gate_for = lambda connector: None
    try:
        yield
    finally:
        _transport._gate_for = make


async def _timed_job(view: AsyncCommbox, ids: range, workers: int) -> tuple[float, int]:
    """The job's seconds, and how many of its ids failed."""
    started = time.perf_counter()
    failed = 0
    async for result in view.fetch_many(ids, concurrency=workers):
        failed += not result.ok
    return time.perf_counter() - started, failed


async def _page_views(view: AsyncCommbox) -> list[float]:
    times = []
    for ident in range(1, PAGE_VIEWS + 1):
        started = time.perf_counter()
        await view.get_user_objects(ident)
        times.append(time.perf_counter() - started)
    return times


async def pool_share(fair: bool) -> dict[str, float]:
    """The ``pool`` scenario once (see the module docstring)."""
    server = FakeCommbox(token="bulk-key", latency=LATENCY, record=False)
    tokens = [f"small-{i}-key" for i in range(SMALL_ACCOUNTS + 1)]
    for token in tokens:
        server.add_token(token)
    unlimited = RateLimit(max_rate=1e9, adaptive=False)
    with without_gate(not fair):
        async with (
            server,
            AsyncCommbox(
                token=server.token, base_url=server.url, rate_limit=unlimited, pool=POOL
            ) as commbox,
        ):
            bulk = asyncio.ensure_future(_timed_job(commbox, range(1, BULK_IDS + 1), BULK_WORKERS))
            await asyncio.sleep(0.1)  # the bulk job's workers have all sent or queued a call
            assert commbox.stats.in_flight > BULK_WORKERS - POOL.limit, "the bulk job is late"
            views = [commbox.with_token(token) for token in tokens]
            small = [_timed_job(view, range(1, SMALL_IDS + 1), SMALL_WORKERS) for view in views[1:]]
            pages, *jobs = await asyncio.gather(_page_views(views[0]), *small)
            bulk_seconds, bulk_failed = await bulk
    times = [seconds for seconds, _ in jobs]
    return {
        "small_job_median_s": statistics.median(times),
        "small_job_worst_s": max(times),
        "page_view_median_s": statistics.median(pages),
        "page_view_worst_s": max(pages),
        "bulk_per_s": BULK_IDS / bulk_seconds,
        "bulk_failed": bulk_failed,
        "small_failed": sum(failed for _, failed in jobs),
    }


def report_pool(runs: int) -> None:
    """The ``pool`` scenario, with and without the gate interleaved, ``runs`` times each."""
    figures: dict[str, list[dict[str, float]]] = {"fair": [], "no gate": []}
    for _ in range(runs):
        figures["fair"].append(asyncio.run(pool_share(fair=True)))
        figures["no gate"].append(asyncio.run(pool_share(fair=False)))
    print(
        f"pool: 1 account's {BULK_IDS:,} ids ({BULK_WORKERS} workers) fill a pool of "
        f"{POOL.limit} (server latency {LATENCY * 1000:.0f} ms); {SMALL_ACCOUNTS} accounts x "
        f"{SMALL_IDS} ids ({SMALL_WORKERS} workers) and {PAGE_VIEWS} page views arrive; "
        f"{runs} run(s), median of runs (worst run):"
    )
    for name, runs_of in figures.items():

        def fig(key: str, runs_of: list[dict[str, float]] = runs_of) -> str:
            values = [f[key] for f in runs_of]
            worst = min(values) if key == "bulk_per_s" else max(values)
            return f"{statistics.median(values):.3g} ({worst:.3g})"

        print(
            f"  {name:>10}: small job {fig('small_job_median_s')} s, its worst account "
            f"{fig('small_job_worst_s')} s; page view {fig('page_view_median_s')} s, worst "
            f"{fig('page_view_worst_s')} s; bulk job {fig('bulk_per_s')} ids/s; failed ids in "
            f"all runs: bulk {sum(f['bulk_failed'] for f in runs_of):.0f}, small "
            f"{sum(f['small_failed'] for f in runs_of):.0f}"
        )


def summary(outcomes: list[Outcome]) -> dict[str, Any]:
    """The figures of one run: ratios of the unaffected accounts, what was lost."""
    plain = [o for o in outcomes if o.role == "plain"]
    ratios = [o.ratio for o in plain]
    roles = {o.role: o for o in outcomes if o.role != "plain"}
    result: dict[str, Any] = {
        "worst_ratio": max(ratios),
        "median_ratio": statistics.median(ratios),
        "lost": sum(o.lost for o in outcomes if o.role != "revoked"),
        "other_errors": sum(o.other_errors for o in outcomes),
        "within_goal": sum(r <= GOAL for r in ratios),
        "accounts": len(plain),
    }
    result["by_account"] = [f"{o.rate:.1f}/s {o.ratio:.2f}x {o.throttled}x429" for o in outcomes]
    if "revoked" in roles:
        revoked = roles["revoked"]
        result["revoked"] = {
            "ok": revoked.ok,
            "auth_errors": revoked.auth_errors,
            "other": revoked.other_errors,
        }
    if "rotated" in roles:
        rotated = roles["rotated"]
        result["rotated"] = {
            "ok": rotated.ok,
            "lost": rotated.lost,
            "ratio": round(rotated.ratio, 3),
        }
    return result


def explain(outcome_runs: list[list[Outcome]]) -> None:
    """Why each account over the goal was slow: its rate changes, run by run."""
    for run, outcomes in enumerate(outcome_runs, 1):
        for outcome in outcomes:
            if outcome.role == "plain" and outcome.ratio > GOAL:
                print(f"  run {run}, the {outcome.rate:.1f}/s account, {outcome.ratio:.2f}x:")
                for line in outcome.changes:
                    print(f"    {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="50 ids per account, 1 run, 2,000 views"
    )
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--ids", type=int, default=None, help="ids per account")
    parser.add_argument("--views", type=int, default=None)
    parser.add_argument(
        "--only", choices=["plain", "revoke+rotate", "memory", "pool"], action="append"
    )
    parser.add_argument(
        "--page",
        choices=sorted(PAGES),
        default="small",
        help="the fake server's page (default small: see PAGES)",
    )
    parser.add_argument(
        "--server",
        choices=["here", "process"],
        default="here",
        help="the fake server on the client's event loop (default), or in a process of its "
        "own (plain only)",
    )
    parser.add_argument(
        "--explain",
        action="store_true",
        help="print the rate changes of each account over the goal",
    )
    args = parser.parse_args()
    ids = args.ids or (50 if args.quick else 200)
    runs = args.runs or (1 if args.quick else 3)
    views = args.views or (2_000 if args.quick else 10_000)
    only = args.only or ["plain", "revoke+rotate", "memory", "pool"]
    apart = args.server == "process"
    if apart and only != ["plain"]:
        parser.error("--server process measures --only plain")
    if "plain" in only or "revoke+rotate" in only:
        print(
            f"capacity ({args.page} pages, server {args.server}): "
            f"{capacity(ids, args.page, apart):.0f} req/s over all "
            f"accounts with no limits; their limits sum to {sum(rates()):.0f}/s"
        )
    for scenario in ("plain", "revoke+rotate"):
        if scenario not in only:
            continue
        outcome_runs = [
            asyncio.run(run_jobs(ids, scenario, args.page, apart=apart)) for _ in range(runs)
        ]
        figures = [summary(outcomes) for outcomes in outcome_runs]
        worst = [f["worst_ratio"] for f in figures]
        print(
            f"{scenario}: {ACCOUNTS} accounts x {ids} ids, {runs} run(s): worst account "
            f"{statistics.median(worst):.3f}x its ideal (median of runs; max {max(worst):.3f}x), "
            f"median account {statistics.median(f['median_ratio'] for f in figures):.3f}x; "
            f"lost {sum(f['lost'] for f in figures)}"
        )
        for figure in figures:
            print(
                "  "
                + json.dumps(
                    {k: round(v, 3) if isinstance(v, float) else v for k, v in figure.items()}
                )
            )
        if args.explain:
            explain(outcome_runs)
    if "pool" in only:
        report_pool(runs)
    if "memory" in only:
        figure = asyncio.run(memory(views, wait_sweep=not args.quick))
        print(
            f"memory: {figure['views']:,} views that each made one call hold "
            f"{figure['retained_bytes'] / 1e6:.1f} MB ({figure['per_view_bytes']:,.0f} B a view); "
            f"after they are dropped {figure['after_drop_bytes'] / 1e3:.0f} kB remain "
            f"(their accounts' limiters, kept {PacingModel.LOG_SPAN:g} s for a next view), "
            f"{figure['after_quiet_bytes'] / 1e3:.0f} kB once the client was quiet that long; "
            f"{figure['views_alive_after_drop']} views alive"
        )


if __name__ == "__main__":
    main()
