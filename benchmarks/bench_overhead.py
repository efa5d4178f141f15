"""Per-request CPU overhead of the library over the raw loop, and where it goes.

The overhead is the client's CPU time per request (``time.process_time``; the server runs in
another process) of ``fetch_many`` minus that of the raw aiohttp + msgspec loop, both fetching
and decoding the same small body from the same server (the throughput benchmark measures both,
interleaved). The profile runs each once more under ``cProfile`` and sorts every function's own
time into the parts of a request: the limiter, the retry wrapper, decoding, the fan-out and its
result objects, aiohttp, the event loop. cProfile slows Python-level calls more than C ones, so
the shares are scaled to the unprofiled CPU time and read as "where", not "exactly how much".

Run alone: ``python -m benchmarks.bench_overhead``.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from . import bench_throughput as bt
from . import reference, servers
from .common import fmt, markdown_table
from .payloads import SERVED, Payload, serve_payloads

# (category, what a function's file or name must contain), first match wins.
_RULES: list[tuple[str, tuple[str, ...]]] = [
    ("benchmark's own loop", ("benchmarks/",)),
    ("limiter", ("commbox_async/_throttle.py", "aiolimiter")),
    (
        "retry loop (backoff, the decision)",
        (
            "backoff",
            "_account.py:_decide",
            "_account.py:_on_backoff",
            "commbox_async/_retry.py",
        ),
    ),
    (
        "one request (call state, URL, attempt, body, stats)",
        (
            "commbox_async/_account.py",
            "commbox_async/_transport.py",
            "_protocol.py:url",
        ),
    ),
    (
        "decode",
        (
            "commbox_async/_models.py",
            "commbox_async/_protocol.py",
            "msgspec",
            "cached_property",
            "functools.py",
            "benchmarks/reference.py",
        ),
    ),
    (
        "fan-out and result objects",
        (
            "commbox_async/_fanout.py",
            "commbox_async/_client.py",
            "commbox_async/_stats.py",
            "asyncio/queues.py",
            "asyncio/locks.py",
            "<string>",
            "dataclasses",
        ),
    ),
    ("aiohttp, yarl, multidict", ("aiohttp", "yarl", "multidict", "propcache")),
    (
        "event loop and sockets",
        ("asyncio", "selectors", "socket", "uvloop", "<built-in method select"),
    ),
]
CATEGORIES = [name for name, _ in _RULES] + ["other"]


def _short(filename: str) -> str:
    """A file name without the machine's prefixes: site-packages, the stdlib, the checkout."""
    for marker in ("site-packages/", "/lib/python3."):
        if marker in filename:
            tail = filename.rsplit(marker, 1)[1]
            return tail if marker == "site-packages/" else tail.split("/", 1)[-1]
    root = str(Path(__file__).resolve().parents[1]) + "/"
    return filename.removeprefix(root)


def _category(filename: str, name: str) -> str:
    where = f"{filename}:{name}"
    for category, needles in _RULES:
        if category == "benchmark's own loop" and "benchmarks/reference.py" in filename:
            continue  # the raw loop's decoder belongs to "decode"
        if any(n in where for n in needles):
            return category
    return "other"


@dataclass
class Profile:
    name: str
    requests: int
    by_category: dict[str, float]  # profiled seconds
    top: list[tuple[str, float, int]]  # (function, own seconds, calls)

    @property
    def total(self) -> float:
        return sum(self.by_category.values())


def profile(
    entry: bt.Entry,
    server: servers.Server,
    payload: Payload,
    n: int,
    concurrency: int,
    dump: str | None = None,
) -> Profile:
    page = reference.decode(payload.body)
    want = bt.Check(len(page.data), page.data[0].content["guidRT"])
    profiler = cProfile.Profile()
    profiler.enable()
    bt.measure(entry, server, payload, n, concurrency, want)
    profiler.disable()
    if dump is not None:
        profiler.dump_stats(dump)
    stats = pstats.Stats(profiler)
    by_category: dict[str, float] = defaultdict(float)
    rows = []
    for (filename, _line, name), (_cc, calls, own, _cum, callers) in stats.stats.items():  # type: ignore[attr-defined]
        if filename == "~" and callers:
            # A builtin (a C function or method): its time belongs to whoever called it.
            for (c_file, _c_line, c_name), caller_stats in callers.items():
                by_category[_category(c_file, c_name)] += caller_stats[2]
        else:
            by_category[_category(filename, name)] += own
        if "gc.collect" in name:
            continue  # the benchmark's own collection before each timed run
        rows.append((f"{_short(filename)}:{name}", own, calls))
    rows.sort(key=lambda r: -r[1])
    return Profile(entry.name, n, dict(by_category), rows[:15])


def run(
    server: servers.Server,
    payload: Payload,
    n: int = 3000,
    concurrency: int = 32,
    dump: str | None = None,
) -> dict[str, Profile]:
    """Profiles of the library and of the raw loop on the same body (the library's saved to
    ``dump`` for pstats, when given)."""
    entries = {e.name: e for e in bt.contenders(with_uvloop=False)[0]}
    return {
        name: profile(
            entries[name], server, payload, n, concurrency, dump if name == bt.LIBRARY else None
        )
        for name in (bt.LIBRARY, bt.RAW)
    }


def table(
    profiles: dict[str, Profile], cpu_us: dict[str, float], gc_us: dict[str, float] | None = None
) -> str:
    """Microseconds per request by category: the profile's shares scaled to unprofiled CPU."""
    lib, raw = profiles[bt.LIBRARY], profiles[bt.RAW]
    headers = ["part of a request", "library us/req", "raw loop us/req", "difference"]
    rows = []
    for category in CATEGORIES:
        a = lib.by_category.get(category, 0.0) / lib.total * cpu_us[bt.LIBRARY]
        b = raw.by_category.get(category, 0.0) / raw.total * cpu_us[bt.RAW]
        if a < 0.05 and b < 0.05:
            continue
        rows.append([category, fmt(a), fmt(b), f"{a - b:+.1f}"])
    if gc_us is not None:
        a, b = gc_us[bt.LIBRARY], gc_us[bt.RAW]
        rows.append(
            [
                "(garbage collector, measured; inside the rows above)",
                fmt(a),
                fmt(b),
                f"{a - b:+.1f}",
            ]
        )
    rows.append(
        [
            "total (measured CPU)",
            fmt(cpu_us[bt.LIBRARY]),
            fmt(cpu_us[bt.RAW]),
            f"{cpu_us[bt.LIBRARY] - cpu_us[bt.RAW]:+.1f}",
        ]
    )
    return markdown_table(headers, rows)


def top_table(prof: Profile, cpu_us: float, count: int = 12) -> str:
    """The functions with the most own time, scaled to unprofiled us per request."""
    rows = [
        [f"`{name}`", f"{calls / prof.requests:.1f}", fmt(own / prof.total * cpu_us)]
        for name, own, calls in prof.top[:count]
    ]
    return markdown_table(["function", "calls/req", "own us/req"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--server", choices=["auto", "nginx", "raw"], default="auto")
    parser.add_argument("--body", choices=list(SERVED), default="small")
    parser.add_argument(
        "--dump", metavar="FILE", help="also save the library's raw profile (pstats) to FILE"
    )
    args = parser.parse_args()
    payload = serve_payloads([args.body])[0]
    with servers.start([payload], args.server) as server:
        results, _ = bt.run(server, rounds=3, payloads=[payload], quick=True, goal_only=True)
        cpu = {name: s.median for name, s in results[0].cpu_us.items()}
        gcs = {name: s.median for name, s in results[0].gc_us.items()}
        profiles = run(server, payload, args.requests, dump=args.dump)
    print(f"{payload.label}, CPU per request measured over 3 interleaved rounds")
    print(table(profiles, cpu, gcs))
    for name in (bt.LIBRARY, bt.RAW):
        print(f"\n{name}: top functions by own time")
        print(top_table(profiles[name], cpu[name]))


if __name__ == "__main__":
    main()
