"""A bot loop: watch one identity's open conversations and react when unread messages arrive.

    COMMBOX_TOKEN=... python examples/bot_loop.py 558355 --interval 15

Every ``interval`` seconds the bot pages through the identity's open conversations (one client,
kept open for the life of the bot) and reacts to each conversation whose unread count went up
since the last look; here, reacting is printing a line. It remembers the open conversations
only, so its memory stays bounded. Transient failures are retried inside the client; an error
that outlasts the retries is logged and the bot tries again next time.
``--rounds`` stops it after that many looks (Ctrl-C stops it too).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import sys

from commbox_async import AsyncCommbox, CommboxError, ObjectStatus


async def look(commbox: AsyncCommbox, identity_id: int, seen: dict[int, int]) -> int:
    """One look at the identity; returns how many conversations the bot reacted to.

    ``seen`` holds the last unread count of each open conversation. After a whole look it
    holds only the conversations that are still open (one closed or gone is forgotten), so it
    never grows beyond the identity's open conversations, however long the bot runs.
    """
    reacted = 0
    still_open: set[int] = set()
    async for conversation in commbox.iter_user_objects(
        identity_id, statuses=[ObjectStatus.OPEN], include_childs=False
    ):
        if conversation.object_id is None:
            continue
        still_open.add(conversation.object_id)
        unread = conversation.unread_messages
        before = seen.get(conversation.object_id, 0)
        seen[conversation.object_id] = unread
        if unread > before:
            reacted += 1
            print(f"conversation {conversation.object_id}: {unread - before} new unread message(s)")
    # Only after a whole look: a look that failed half-way saw only some of them.
    for gone in seen.keys() - still_open:
        del seen[gone]
    return reacted


async def watch(identity_id: int, *, interval: float, rounds: int | None, rate: float) -> None:
    seen: dict[int, int] = {}
    async with AsyncCommbox(rate_limit=rate) as commbox:
        for number in itertools.count(1):
            try:
                reacted = await look(commbox, identity_id, seen)
                print(f"look {number}: reacted to {reacted} conversation(s)", flush=True)
            except CommboxError as exc:
                print(f"look {number} failed, trying again later: {exc}", file=sys.stderr)
            if rounds is not None and number >= rounds:
                return
            await asyncio.sleep(interval)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("identity_id", type=int)
    parser.add_argument("--interval", type=float, default=15.0, help="seconds between looks")
    parser.add_argument("--rounds", type=int, default=None, help="stop after this many looks")
    parser.add_argument("--rate", type=float, default=2.0, help="requests per second")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            watch(args.identity_id, interval=args.interval, rounds=args.rounds, rate=args.rate)
        )


if __name__ == "__main__":
    main()
