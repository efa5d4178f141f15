"""A short, bounded cache of pages for web apps: least recently used out, entries expire.

Off by default (``AsyncCommbox(cache=Cache(ttl=2.0))`` turns it on). A web page that asks for
one identity's badge in 200 tabs within ``ttl`` seconds costs one request; memory is bounded by
``max_entries``. Keys are the identity, the encoded query and the account, so different
filters and different accounts never share an entry. The clock is injected so that tests move
time instead of sleeping.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from ._models import UserObjectsPage
from ._validate import check_callable, check_int, check_number

__all__ = ["Cache"]

#: The identity first; then the encoded query and, from a client, the account's scope.
Key = tuple[int, str] | tuple[int, str, str]


class Cache:
    """Pages by (identity, filters) for ``ttl`` seconds, at most ``max_entries`` of them.

    The pages handed out are shared by every caller that reads the entry: treat them as
    read-only. ``hits`` and ``misses`` count lookups, for a dashboard or a test.
    ``generation(identity_id)`` changes at every ``invalidate`` that covers the identity: a
    page fetched by a call that began before it is not kept, and a caller after it does not
    join such a call.
    """

    __slots__ = (
        "_clock", "_entries", "_epoch", "_invalidated", "hits", "max_entries", "misses", "ttl"
    )  # fmt: skip

    def __init__(
        self,
        *,
        ttl: float = 2.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = check_number("ttl", ttl, allow_low=False, high=1e9)
        self.max_entries = check_int("max_entries", max_entries, low=1)
        check_callable("clock", clock)
        self._clock = clock
        # Insertion order is recency order: a hit moves its entry to the end, eviction pops
        # from the front, both O(1).
        self._entries: OrderedDict[Key, tuple[float, UserObjectsPage]] = OrderedDict()
        self.hits = 0
        self.misses = 0
        # Generations: every identity's (a whole invalidate), and those of the identities
        # invalidated one by one since (at most max_entries of them; beyond, a whole one).
        self._epoch = 0
        self._invalidated: dict[int, int] = {}

    def generation(self, identity_id: int) -> tuple[int, int]:
        """Changes whenever ``invalidate`` covers ``identity_id``."""
        return self._epoch, self._invalidated.get(identity_id, 0)

    def __repr__(self) -> str:
        return f"<Cache ttl={self.ttl:g}s entries={len(self)}/{self.max_entries}>"

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Key) -> UserObjectsPage | None:
        """The fresh page for ``key``, or None (an expired entry is dropped on the way)."""
        entry = self._entries.get(key)
        if entry is not None:
            if entry[0] > self._clock():
                self._entries.move_to_end(key)
                self.hits += 1
                return entry[1]
            del self._entries[key]
        self.misses += 1
        return None

    def put(
        self, key: Key, page: UserObjectsPage, generation: tuple[int, int] | None = None
    ) -> None:
        """Keep ``page`` for ``ttl`` seconds from now, evicting the least recently used;
        not if it was fetched in an earlier ``generation`` (it may predate an invalidate)."""
        if generation is not None and generation != self.generation(key[0]):
            return
        entries = self._entries
        entries[key] = (self._clock() + self.ttl, page)
        entries.move_to_end(key)
        while len(entries) > self.max_entries:
            entries.popitem(last=False)

    def invalidate(self, identity_id: int | None = None) -> int:
        """Forget one identity's pages (all filters), or everything; returns how many. Calls
        already running keep their pages to themselves (see ``generation``)."""
        if identity_id is not None and len(self._invalidated) < self.max_entries:
            self._invalidated[identity_id] = self._invalidated.get(identity_id, 0) + 1
        else:  # everything, or too many one by one to remember: every identity's at once
            self._epoch += 1
            self._invalidated.clear()
        if identity_id is None:
            count = len(self._entries)
            self._entries.clear()
            return count
        stale = [key for key in self._entries if key[0] == identity_id]
        for key in stale:
            del self._entries[key]
        return len(stale)
