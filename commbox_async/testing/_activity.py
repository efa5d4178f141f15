"""The fake server's conversations as they change: new messages, messages read, closings.

``Changes`` is the state (no I/O): per identity, the conversations that differ from the
deterministic data, as (unread, status), and a version per identity so that the server's page
cache never serves a page from before a change. ``Activity`` describes messages that arrive on
their own, and ``run_activity`` is the loop that delivers them.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from ._data import Override, base_status, base_unread

__all__ = ["Activity", "Changes", "Message", "run_activity"]

CLOSED = 2  # "resolved"


@dataclass(frozen=True)
class Message:
    """One message the server added: when (on the server's clock), to which conversation."""

    at: float
    identity_id: int
    object_id: int
    unread: int  # the conversation's unread count after it


@dataclass(kw_only=True)
class Activity:
    """Messages that arrive by themselves: ``rate`` a second, each on one identity.

    ``identities`` are the ones that get messages (None: any identity the server was asked
    about lately); ``seed`` makes the sequence repeatable.
    """

    rate: float = 1.0
    identities: Sequence[int] | None = None
    seed: int | None = 0

    def __post_init__(self) -> None:
        if not 0 < self.rate <= 10_000:
            raise ValueError("activity rate must be in (0, 10000] messages a second")
        if self.identities is not None and not self.identities:
            raise ValueError("activity identities must not be empty (None: any asked about)")


class Changes:
    """What changed per identity since the server started."""

    def __init__(self, log_size: int = 10_000) -> None:
        self._overrides: dict[int, dict[int, Override]] = {}
        self._versions: dict[int, int] = {}
        #: The last messages added (bounded), oldest first.
        self.messages: deque[Message] = deque(maxlen=log_size)
        #: Identities asked about lately: where activity without a list of its own goes.
        self.seen: deque[int] = deque(maxlen=1000)

    def version(self, identity_id: int) -> int:
        return self._versions.get(identity_id, 0)

    def overrides(self, identity_id: int) -> dict[int, Override] | None:
        return self._overrides.get(identity_id)

    def _index(self, identity_id: int, object_id: int | None, conversations: int) -> int:
        if object_id is None:
            # The first conversation that is open now: where a customer writes next.
            for index in range(conversations):
                if self._state(identity_id, index)[1] != CLOSED:
                    return index
            raise ValueError(f"identity {identity_id} has no open conversation")
        index = object_id - identity_id * 1000
        if not 0 <= index < conversations:
            raise ValueError(f"conversation {object_id} is not one of identity {identity_id}'s")
        return index

    def _state(self, identity_id: int, index: int) -> Override:
        changed = self._overrides.get(identity_id, {})
        return changed.get(index, (base_unread(identity_id, index), base_status(index)))

    def _set(self, identity_id: int, index: int, state: Override) -> None:
        self._overrides.setdefault(identity_id, {})[index] = state
        self._versions[identity_id] = self.version(identity_id) + 1

    def add_message(
        self, identity_id: int, object_id: int | None, count: int, conversations: int, now: float
    ) -> int:
        if count < 1:
            raise ValueError("count must be at least 1")
        index = self._index(identity_id, object_id, conversations)
        unread, status = self._state(identity_id, index)
        self._set(identity_id, index, (unread + count, status))
        oid = identity_id * 1000 + index
        self.messages.append(Message(now, identity_id, oid, unread + count))
        return oid

    def read_messages(self, identity_id: int, object_id: int | None, conversations: int) -> int:
        index = self._index(identity_id, object_id, conversations)
        self._set(identity_id, index, (0, self._state(identity_id, index)[1]))
        return identity_id * 1000 + index

    def close(self, identity_id: int, object_id: int, conversations: int) -> None:
        index = self._index(identity_id, object_id, conversations)
        self._set(identity_id, index, (self._state(identity_id, index)[0], CLOSED))


async def run_activity(
    activity: Activity,
    add_message: Callable[[int], object],
    seen: Sequence[int],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Add a message every ``1 / rate`` seconds on average (exponential gaps), until cancelled."""
    rng = random.Random(activity.seed)
    while True:
        await sleep(rng.expovariate(activity.rate))
        pool = activity.identities if activity.identities is not None else seen
        if not pool:
            continue  # nobody asked about any identity yet
        identity = pool[rng.randrange(len(pool))]
        try:
            add_message(identity)
        except ValueError:
            continue  # every conversation of this one is closed
