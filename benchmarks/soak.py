"""Soak: tens of thousands of requests through ``fetch_many`` with faults of every kind.

The fake server (in this process, on a loopback port) injects a fault into 10% of the requests,
drawn evenly from every kind it knows (``commbox_async.testing.FAULT_KINDS``): error statuses,
HTML bodies, 429s with absent or absurd Retry-After, resets before headers and mid-body,
truncated bodies, malformed status lines, stalls past the client's read timeout, oversized
bodies and windows where the server stops listening (connections refused). One identity in a
thousand is permanently missing (404). At the end the script checks what must hold:

- every identity yields exactly one result (none lost, none duplicated), and every success
  carries that identity's own data;
- the only failures are the permanent ones: the 404s, and one per oversized body served
  (an oversized body is refused at the cap and never retried);
- the pool holds no acquired connection, no library task is left, and nothing reported an
  "Unclosed" session, connector, response, transport or socket (warnings and the loop's
  exception handler are captured for the whole run, with a ``gc.collect()`` at the end);
- memory stays flat: RSS is sampled every 500 results.

Usage::

    .venv/bin/python benchmarks/soak.py            # 50,000 identities (~55,000 requests)
    .venv/bin/python benchmarks/soak.py --quick    # 3,000 identities (what the tests run)
    .venv/bin/python benchmarks/soak.py --json     # one JSON line of figures

    .venv/bin/python benchmarks/soak.py --quick --compare 5   # adaptive vs adaptive=False

The exit status is 0 only when every check holds. The client uses its default tries (8), retry
budget and adaptive rate (the injected 429s are random: the pacing model must recognise them as
noise and not slow down; ``--compare N`` runs N interleaved pairs, adaptive and not, and reports
the median time ratio). It shortens the pause after a 429 (``default_retry_after`` and
``max_retry_after`` of 0.05 s, so that a huge Retry-After is capped to that), and its read
timeout (0.15 s) is shorter than the stalls (0.3 s) so that every stall is a timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import resource
import sys
import time
import warnings
from collections import Counter
from typing import Any

from commbox_async import (
    AsyncCommbox,
    CommboxDecodeError,
    NotFoundError,
    PoolConfig,
    RateLimit,
    Retries,
    Timeout,
)
from commbox_async.testing import FAULT_KINDS, FakeCommbox, Faults, unread_of

TOKEN = "soak-token-not-a-secret-0c4f"
CONVERSATIONS = 2
PAGE_BYTES_CAP = 256 * 1024
OVERSIZED_BYTES = 1024 * 1024
SAMPLE_EVERY = 500


def rss_mib() -> float:
    """Resident set size now, from /proc (Linux); falls back to the peak so far."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def is_missing(identity_id: int) -> bool:
    """The permanently missing identities (404): one in a thousand."""
    return identity_id % 1000 == 0


async def soak(
    ids: int, fault_rate: float, concurrency: int, seed: int, adaptive: bool = True
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    loop_reports: list[str] = []
    loop.set_exception_handler(lambda _loop, ctx: loop_reports.append(str(ctx.get("message"))))
    faults = Faults(
        rate=fault_rate,
        kinds=FAULT_KINDS,
        seed=seed,
        slow_seconds=0.3,
        retry_after="0",
        oversized_bytes=OVERSIZED_BYTES,
        refuse_seconds=0.02,
    )
    server = FakeCommbox(
        token=TOKEN,
        conversations=CONVERSATIONS,
        childs=1,
        not_found=is_missing,
        faults=faults,
        record=False,  # the outcome counters are enough, and keep memory flat
    )
    # One byte per identity (not a dict): the soak's own bookkeeping must not hide a leak.
    seen = bytearray(ids + 1)
    failures: Counter[str] = Counter()
    unexpected: list[str] = []
    wrong = 0
    rss: list[tuple[int, float]] = [(0, rss_mib())]
    started = time.perf_counter()
    async with server:
        client = AsyncCommbox(
            token=TOKEN,
            base_url=server.url,
            rate_limit=RateLimit(max_rate=100_000, burst=64, adaptive=adaptive),
            timeout=Timeout(total=5.0, connect=2.0, sock_read=0.15),
            retries=Retries(default_retry_after=0.05, max_retry_after=0.05),
            pool=PoolConfig(max_body_bytes=PAGE_BYTES_CAP),
        )
        async with client:
            done = 0
            async for result in client.fetch_many(range(1, ids + 1), concurrency=concurrency):
                ident = result.identity_id
                if isinstance(ident, int) and 0 < ident <= ids:
                    seen[ident] = min(255, seen[ident] + 1)
                done += 1
                if result.error is None:
                    page = result.response
                    assert page is not None
                    if page.unread_total != unread_of(ident, CONVERSATIONS) or any(
                        item.user_identity != ident for item in page.data
                    ):
                        wrong += 1
                elif isinstance(result.error, NotFoundError) and is_missing(ident):
                    failures["not_found"] += 1
                elif isinstance(result.error, CommboxDecodeError) and "max_body_bytes" in str(
                    result.error
                ):
                    failures["oversized"] += 1
                else:
                    unexpected.append(f"{ident}: {result.error!r}")
                if done % SAMPLE_EVERY == 0:
                    rss.append((done, rss_mib()))
            elapsed = time.perf_counter() - started
            stats = client.stats
            session = client._transport.session  # the connector's own counters
            assert session is not None and session.connector is not None
            connector: Any = session.connector
            acquired = len(connector._acquired)
            idle = sum(len(conns) for conns in connector._conns.values())
            library_tasks = len(client._tasks)
        connector_closed = bool(connector.closed)
    rss.append((ids, rss_mib()))
    current = asyncio.current_task()
    tasks_left = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    outcomes = dict(server.outcomes)
    return {
        "ids": ids,
        "adaptive_rate": adaptive,
        "concurrency": concurrency,
        "fault_rate": fault_rate,
        "seed": seed,
        "elapsed_s": round(elapsed, 2),
        "requests_server": sum(outcomes.values()),
        "requests_client": stats.requests,
        "refused_connects": stats.requests - sum(outcomes.values()),
        "retries": stats.retries,
        "throttled_429": stats.throttled,
        "errors_by_kind": dict(sorted(stats.errors_by_kind.items())),
        "faults_by_kind": {k: outcomes.get(k, 0) for k in FAULT_KINDS},
        "faults_total": sum(outcomes.get(k, 0) for k in FAULT_KINDS),
        "refused_windows": server.refusals,
        "results": done,
        "lost": sum(1 for n in seen[1:] if n == 0),
        "duplicated": sum(1 for n in seen[1:] if n > 1),
        "wrong": wrong,
        "succeeded": done - sum(failures.values()) - len(unexpected),
        "failed_not_found": failures["not_found"],
        "expected_not_found": sum(1 for i in range(1, ids + 1) if is_missing(i)),
        "failed_oversized": failures["oversized"],
        "oversized_served": outcomes.get("oversized", 0) + outcomes.get("oversized_chunked", 0),
        "unexpected_failures": len(unexpected),
        "unexpected_examples": unexpected[:5],
        "acquired_at_end": acquired,
        "idle_pooled_at_end": idle,
        "connector_closed": connector_closed,
        "library_tasks_at_end": library_tasks,
        "tasks_left": len(tasks_left),
        "loop_reports": loop_reports,
        "rss_samples_mib": [(n, round(m, 1)) for n, m in rss],
    }


def check(figures: dict[str, Any], reports: list[str]) -> list[str]:
    """The conditions that must hold; each broken one is described."""
    problems = []
    for name in ("lost", "duplicated", "wrong", "unexpected_failures", "acquired_at_end"):
        if figures[name]:
            problems.append(f"{name} = {figures[name]}")
    if figures["tasks_left"] or figures["library_tasks_at_end"]:
        problems.append(f"tasks left: {figures['tasks_left']}")
    if not figures["connector_closed"]:
        problems.append("the connector is not closed after aclose()")
    if figures["failed_not_found"] != figures["expected_not_found"]:
        problems.append("404s do not match the missing identities")
    if figures["failed_oversized"] != figures["oversized_served"]:
        problems.append("oversized failures do not match the oversized bodies served")
    if reports:
        problems.append(f"unclosed reports: {reports[:3]}")
    missing_kinds = [k for k, n in figures["faults_by_kind"].items() if n == 0]
    if missing_kinds:
        problems.append(f"fault kinds never injected: {missing_kinds}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3,000 identities instead of 50,000")
    parser.add_argument("--ids", type=int, default=None)
    parser.add_argument("--fault-rate", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print one JSON line of figures")
    parser.add_argument(
        "--no-adaptive",
        dest="adaptive",
        action="store_false",
        help="pin the rate (RateLimit(adaptive=False)); the default is the adaptive rate",
    )
    parser.add_argument(
        "--compare",
        type=int,
        default=0,
        metavar="N",
        help="run N interleaved pairs (adaptive, not) and print the median time ratio",
    )
    args = parser.parse_args(argv)
    ids = args.ids or (3_000 if args.quick else 50_000)
    if args.compare:
        return compare(ids, args)

    # The fake server logs every request it could not finish (resets, stalls the client gave
    # up on); those are the injected faults themselves, not findings.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        figures = asyncio.run(
            soak(ids, args.fault_rate, args.concurrency, args.seed, args.adaptive)
        )
        gc.collect()
    reports = [f"{w.category.__name__}: {w.message}" for w in caught]
    reports += [r for r in figures["loop_reports"] if "nclosed" in r]
    figures["unclosed_reports"] = [r for r in reports if "nclosed" in r or "Resource" in r]
    figures["warnings"] = reports[:10]
    samples = [m for _, m in figures["rss_samples_mib"]]
    tenth = max(1, len(samples) // 10)
    figures["rss_after_warmup_mib"] = round(max(samples[: tenth + 1]), 1)
    figures["rss_peak_mib"] = round(max(samples), 1)
    figures["rss_end_mib"] = round(samples[-1], 1)
    figures["rss_peak_ru_maxrss_mib"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
    )
    problems = check(figures, figures["unclosed_reports"])
    figures["problems"] = problems
    if args.json:
        compact = {k: v for k, v in figures.items() if k != "rss_samples_mib"}
        print(json.dumps(compact, sort_keys=True))
    else:
        for key in sorted(figures):
            if key not in ("rss_samples_mib", "loop_reports"):
                print(f"{key:26} {figures[key]}")
        print("rss (results, MiB):", figures["rss_samples_mib"][:: max(1, len(samples) // 12)])
        print("OK" if not problems else "FAILED: " + "; ".join(problems))
    return 0 if not problems else 1


def compare(ids: int, args: argparse.Namespace) -> int:
    """Interleaved pairs with and without adaptation: do-no-harm as a median ratio."""
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    ratios, lost = [], 0
    for n in range(args.compare):
        times = {}
        for adaptive in (True, False) if n % 2 == 0 else (False, True):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                figures = asyncio.run(
                    soak(ids, args.fault_rate, args.concurrency, args.seed + n, adaptive)
                )
            times[adaptive] = figures["elapsed_s"]
            lost += figures["lost"] + figures["duplicated"] + figures["unexpected_failures"]
        ratios.append(times[True] / times[False])
        print(f"pair {n + 1}: adaptive {times[True]:.2f} s, fixed {times[False]:.2f} s")
    ratios.sort()
    median, worst = ratios[len(ratios) // 2], ratios[-1]
    print(f"adaptive / fixed: median {median:.3f}, worst {worst:.3f}; lost or wrong: {lost}")
    return 0 if lost == 0 and median <= 1.10 else 1


if __name__ == "__main__":
    sys.exit(main())
