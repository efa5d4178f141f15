"""Calls for the same page made once: a fresh cached page first, then a call already running.

``get_user_objects`` and ``unread_counts`` go through ``SharedCalls``; a job's ``fetch_many``
does not (its ids are distinct, so there is nothing to share). The cache (``_cache``) and the
registry of running calls (``_inflight``) each do their own part; this module is the rule that
joins them, including what a caller that joined someone else's call does when that call ended
by the starter's shorter deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from ._cache import Cache
from ._config import Retries, Timeout
from ._errors import ClientClosedError, CommboxError, CommboxTimeoutError
from ._inflight import InFlight
from ._models import UserObjectsPage
from ._waiting import wait_for

__all__ = ["SharedCalls"]

#: Identity, encoded query, the account's scope (two accounts never share a page).
Key = tuple[int, str, str]
#: A running call: its key, and the cache's generation of the identity when it began (a call
#: begun before an invalidate is not joined after it).
Running = tuple[int, str, str, tuple[int, int]]
#: One call: identity, encoded query, deadline in seconds, and the call's own retries and
#: timeout (None: the account's).
Request = Callable[[int, str, float, Retries | None, Timeout | None], Awaitable[UserObjectsPage]]


class SharedCalls:
    """The cache and the in-flight calls of one account, in front of its ``request``."""

    def __init__(
        self,
        request: Request,
        *,
        cache: Cache | None,
        share: bool,
        scope: str = "",
    ) -> None:
        self._request = request
        self._scope = scope
        self._cache = cache
        self._share = share
        self._in_flight: InFlight[Running, UserObjectsPage] = InFlight(
            lambda: ClientClosedError("this AsyncCommbox was closed during the call")
        )

    def cancel_all(self) -> list[asyncio.Task[UserObjectsPage]]:
        """Cancel the running calls (the client is closing); their tasks, to await."""
        return self._in_flight.cancel_all()

    async def get(
        self,
        identity_id: int,
        query_string: str,
        deadline: float,
        use_cache: bool = True,
        retries: Retries | None = None,
        timeout: Timeout | None = None,
    ) -> UserObjectsPage:
        """The page from the cache, from a running call, or from a new one (kept in the cache).

        A call with its own ``retries`` or ``timeout`` shares no running call (they would not
        be its own); its page still goes into the cache."""
        key = (identity_id, query_string, self._scope)
        if self._cache is not None and use_cache:
            page = self._cache.get(key)
            if page is not None:
                return page
        if retries is not None or timeout is not None:
            return await self._fetch_and_keep(key, deadline, retries, timeout)
        if not self._share:
            return await self._fetch_and_keep(key, deadline)
        return await self._join(key, deadline, use_cache)

    async def _join(self, key: Key, deadline: float, use_cache: bool) -> UserObjectsPage:
        started = time.monotonic()
        cache = self._cache
        running = (*key, cache.generation(key[0]) if cache is not None else (0, 0))
        shared, waiter, joined = self._in_flight.join(
            running, lambda: self._fetch_and_keep(key, deadline)
        )
        if not joined:
            shared.ends = started + deadline
        try:
            # A joiner's own deadline bounds its wait when the shared call may outlast it.
            if joined and started + deadline < shared.ends:
                return await wait_for(waiter, deadline)
            return await waiter
        except CommboxError as exc:
            # The starter's call may have ended only by its own, shorter deadline: then it is
            # tried again within what is left of this caller's. Not a call that ended for any
            # other reason (its tries, a 401): this caller's request would end the same way.
            mine = started + deadline
            left = mine - time.monotonic()
            longer = shared.ends < mine - 0.1 * deadline
            if joined and exc.ended_by_deadline and longer and left > 0:
                return await self.get(key[0], key[1], left, use_cache)
            raise
        except asyncio.TimeoutError:
            self._in_flight.leave(running, shared, waiter)
            # This caller joined a call with a later deadline, and its own passed first.
            raise CommboxTimeoutError(
                f"deadline of {deadline:g} s passed waiting for a shared call",
                identity_id=key[0],
            ) from None
        except asyncio.CancelledError:
            self._in_flight.leave(running, shared, waiter)
            raise

    async def _fetch_and_keep(
        self,
        key: Key,
        deadline: float,
        retries: Retries | None = None,
        timeout: Timeout | None = None,
    ) -> UserObjectsPage:
        cache = self._cache
        generation = cache.generation(key[0]) if cache is not None else None
        page = await self._request(key[0], key[1], deadline, retries, timeout)
        if cache is not None:
            cache.put(key, page, generation)
        return page
