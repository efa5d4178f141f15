"""A fan-out job: unread counts for many identities, streamed as they complete.

    COMMBOX_TOKEN=... python examples/fanout_job.py ids.txt
    seq 558000 558999 | COMMBOX_TOKEN=... python examples/fanout_job.py - --rate 50

Prints ``identity<TAB>unread`` for each identity as its result arrives (or
``identity<TAB>error<TAB>kind``) and a summary on stderr; exits 1 when any identity failed.
The ids are read lazily, so memory stays flat for millions of them; every request, retries
included, goes through one rate limit, and a 429 pauses the whole job, not one request.
(``commbox-async fetch`` is this job with NDJSON output, a progress bar and ``--resume``.)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from commbox_async import AsyncCommbox


def read_ids(lines: Iterable[str]) -> Iterator[Any]:
    """Ids as ints; anything else is passed on, and comes back as a failed result."""
    for line in lines:
        text = line.strip()
        if text:
            yield int(text) if text.isdigit() else text


async def run(lines: Iterable[str], *, rate: float, concurrency: int) -> int:
    ok = failed = unread = 0
    async with AsyncCommbox(rate_limit=rate) as commbox:
        results = commbox.fetch_many(read_ids(lines), concurrency=concurrency, include_childs=False)
        async for result in results:
            if result.response is not None:
                ok += 1
                unread += result.response.unread_total
                print(f"{result.identity_id}\t{result.response.unread_total}")
            elif result.error is not None:
                failed += 1
                print(f"{result.identity_id}\terror\t{result.error.kind}")
        stats = commbox.stats
    print(
        f"{ok} ok, {failed} failed, {unread} unread in total; {stats.requests} requests "
        f"({stats.retries} retries, {stats.throttled} answered 429)",
        file=sys.stderr,
    )
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ids_file", help="one id per line; '-' for stdin")
    parser.add_argument("--rate", type=float, default=10.0, help="requests per second")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    if args.ids_file == "-":
        return asyncio.run(run(sys.stdin, rate=args.rate, concurrency=args.concurrency))
    with open(args.ids_file) as lines:
        return asyncio.run(run(lines, rate=args.rate, concurrency=args.concurrency))


if __name__ == "__main__":
    sys.exit(main())
