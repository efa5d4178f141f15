"""AsyncCommbox: the session's life, and get / iterate / fan out. The only module that awaits I/O.

Data flows one way: arguments are checked and turned into a request by ``_protocol``, the
attempt takes a slot from the limiter (``_throttle``), aiohttp sends it, ``_protocol`` classifies
the response and ``_models`` decodes it. ``backoff`` drives the retry loop around one attempt;
whether and how long to wait is decided in one place, ``_retry.decide_retry``.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import os
import random
import socket
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Generator,
    Iterable,
    Mapping,
)
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import aiohttp
import backoff
from yarl import URL

from ._cache import Cache
from ._config import (
    DEFAULT_BASE_URL,
    PoolConfig,
    RateLimit,
    Retries,
    Timeout,
    as_rate_limit,
    as_retries,
    as_timeout,
)
from ._errors import (
    ClientClosedError,
    CommboxConnectionError,
    CommboxDecodeError,
    CommboxError,
    CommboxTimeoutError,
    InvalidArgumentError,
    RateLimitError,
)
from ._fanout import FanOutError, FanOutProgress, FetchResult, fan_out
from ._inflight import InFlight
from ._models import UserObject, UserObjectsPage
from ._pacing import Outcome, PausePolicy
from ._protocol import (
    MAX_PAGE_SIZE,
    Query,
    build_headers,
    check_base_url,
    check_identity_id,
    check_token,
    is_insecure_remote,
    parse_response,
    user_objects_path,
)
from ._retry import CallState, RetryBudget, decide_retry
from ._stats import ClientStats, StatsSnapshot
from ._throttle import Limiter, LocalLimiter
from ._version import __version__
from ._watch import Watch, WatchState, check_ids

if TYPE_CHECKING:
    # Unpack is in typing from Python 3.11; only type checkers read it here, so the package
    # needs no typing_extensions at run time.
    from typing_extensions import Unpack

    from ._protocol import Filters, PagingFilters

__all__ = ["AsyncCommbox", "FanOutError", "FanOutProgress", "FetchResult"]

logger = logging.getLogger("commbox_async")
#: One INFO record per scheduled retry, so that a caller (the command line on a terminal) can
#: show a slow call's progress instead of silence.
retry_logger = logging.getLogger("commbox_async.retries")


def _retry_waits() -> Generator[float, Any, None]:
    """backoff's wait generator: each failed attempt's exception says how long to wait."""
    exc = yield 0.0
    while True:
        exc = yield getattr(exc, "retry_delay", 0.0)


class AsyncCommbox:
    """An asyncio client for CommBox's v2 "Get User Objects" API.

    One instance owns one aiohttp session (a pooled ``TCPConnector``) and one limiter shared by
    all of its requests. Use it as an async context manager:

        async with AsyncCommbox(token=..., rate_limit=20) as commbox:
            page = await commbox.get_user_objects(558355)

    The token comes from ``token`` or ``COMMBOX_TOKEN``; the base URL from ``base_url``,
    ``COMMBOX_BASE_URL`` or the production default. ``rate_limit`` is requests per second or a
    ``RateLimit``; ``timeout`` is seconds, a ``Timeout`` or an ``aiohttp.ClientTimeout``;
    ``retries`` is a count of tries or a ``Retries``. Pass ``session`` to use your own
    ``aiohttp.ClientSession`` (it is then yours to close), ``limiter`` to share a limiter
    (``RedisLimiter`` for many processes), ``pool`` to size the connection pool.
    ``base_url`` may carry a path prefix (``https://gateway.example.com/commbox``, for an API
    gateway); plain ``http`` is refused off loopback unless ``allow_insecure_http=True`` (a
    fake server in another container), which logs a warning when the client opens.
    """

    def __init__(
        self,
        token: str | None = None,
        *,
        base_url: str | None = None,
        rate_limit: RateLimit | float | None = None,
        timeout: Timeout | float | aiohttp.ClientTimeout | None = None,
        retries: Retries | int | None = None,
        session: aiohttp.ClientSession | None = None,
        pool: PoolConfig | None = None,
        limiter: Limiter | None = None,
        verify_tls: bool = True,
        allow_insecure_http: bool = False,
        user_agent: str | None = None,
        rng: random.Random | None = None,
        cache: Cache | None = None,
        share_calls: bool = True,
    ) -> None:
        token = token if token is not None else os.environ.get("COMMBOX_TOKEN")
        if token is None:
            raise InvalidArgumentError("no token: pass token= or set COMMBOX_TOKEN")
        check_token(token)
        base = base_url if base_url is not None else os.environ.get("COMMBOX_BASE_URL")
        if not isinstance(allow_insecure_http, bool):
            raise InvalidArgumentError("allow_insecure_http must be a bool")
        self._base_url = check_base_url(
            base or DEFAULT_BASE_URL, allow_insecure_http=allow_insecure_http
        )
        self._rate_limit = as_rate_limit(rate_limit)
        self._timeout = as_timeout(timeout)
        self._retries = as_retries(retries)
        if pool is not None and not isinstance(pool, PoolConfig):
            raise InvalidArgumentError("pool must be a PoolConfig")
        self._pool = pool or PoolConfig()
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise InvalidArgumentError("session must be an aiohttp.ClientSession")
        if not isinstance(verify_tls, bool):
            raise InvalidArgumentError("verify_tls must be a bool")
        self._verify_tls = verify_tls
        if cache is not None and not isinstance(cache, Cache):
            raise InvalidArgumentError("cache must be a Cache (or None: no cache)")
        if not isinstance(share_calls, bool):
            raise InvalidArgumentError("share_calls must be a bool")
        self._cache = cache
        self._share_calls = share_calls
        self._in_flight: InFlight[tuple[int, str], UserObjectsPage] = InFlight(
            lambda: ClientClosedError("this AsyncCommbox was closed during the call")
        )
        self._headers = build_headers(token, user_agent or f"commbox-async/{__version__}")
        # Headers go with every request only on a caller's session; an owned session carries
        # them as its defaults, which spares aiohttp a merge per request (about 2 us).
        self._request_headers = self._headers if session is not None else None
        root = URL(self._base_url)
        self._scheme, self._authority = root.scheme, root.raw_authority
        self._prefix = root.raw_path.rstrip("/")  # a gateway's path prefix, or ""
        self._given_session = session
        self._given_limiter = limiter
        self._session: aiohttp.ClientSession | None = None
        self._limiter: Limiter | None = None
        self._state = "new"
        self._rng = rng or random.Random()
        self._budget = RetryBudget(self._retries.budget_ratio, self._retries.budget_reserve)
        self._stats = ClientStats()
        self._answered = 0  # answers that were not 429s (a 429 asks whether others got through)
        self._tasks: set[asyncio.Task[None]] = set()
        self._aiohttp_timeout = aiohttp.ClientTimeout(
            total=self._timeout.total,
            connect=self._timeout.connect,
            sock_read=self._timeout.sock_read,
        )
        self._with_retries = backoff.on_exception(
            _retry_waits,
            CommboxError,
            max_tries=None,  # decide_retry ends every call (tries, 429s in a row, deadline)
            giveup=lambda exc: not getattr(exc, "retryable", False),
            on_backoff=self._on_backoff,
            jitter=None,
            logger=None,  # backoff's own log lines would carry call arguments
        )(self._attempt)

    def __repr__(self) -> str:
        return (
            f"<AsyncCommbox base_url={self._base_url!r} "
            f"rate_limit={self._rate_limit.max_rate:g}/s state={self._state}>"
        )

    # --- life -------------------------------------------------------------------------
    async def __aenter__(self) -> AsyncCommbox:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def open(self) -> None:
        """Create the session and the limiter (``async with`` calls this)."""
        if self._state == "open":
            return
        if self._state == "closed":
            raise ClientClosedError("this AsyncCommbox is closed; create a new one")
        if not self._verify_tls:
            logger.warning("TLS certificate verification is OFF for %s", self._base_url)
        if is_insecure_remote(self._base_url):
            logger.warning(
                "plain http to a remote host (%s): the token travels unencrypted", self._base_url
            )
        if self._given_session is not None:
            self._session = self._given_session
        else:
            connector = aiohttp.TCPConnector(
                limit=self._pool.limit,
                limit_per_host=self._pool.limit_per_host,
                keepalive_timeout=self._pool.keepalive_timeout,
                ssl=self._verify_tls,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._aiohttp_timeout,
                headers=self._headers,  # see _request_headers
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
            )
            # aiohttp resends an idempotent request once, unseen, when a reused connection
            # drops; our own retry loop already does that, through the limiter and counted.
            if hasattr(self._session, "_retry_connection"):
                self._session._retry_connection = False
        self._limiter = self._given_limiter or LocalLimiter(
            self._rate_limit,
            pause_policy=PausePolicy(
                default_retry_after=self._retries.default_retry_after,
                max_retry_after=self._retries.max_retry_after,
            ),
        )
        self._state = "open"

    async def aclose(self) -> None:
        """Stop running fan-outs, close the owned session, release the limiter."""
        if self._state == "closed":
            return
        self._state = "closed"
        tasks: list[asyncio.Task[Any]] = [*self._tasks, *self._in_flight.cancel_all()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        session, self._session = self._session, None
        if session is not None and self._given_session is None:
            await session.close()
        if self._limiter is not None and self._given_limiter is None:
            await self._limiter.aclose()

    @property
    def closed(self) -> bool:
        """True once ``aclose()`` has run; a closed client cannot be opened again."""
        return self._state == "closed"

    @property
    def limiter(self) -> Limiter:
        """The limiter in use (open clients only)."""
        self._check_open()
        assert self._limiter is not None
        return self._limiter

    @property
    def cache(self) -> Cache | None:
        """The page cache given as ``cache=`` (None: no cache)."""
        return self._cache

    @property
    def stats(self) -> StatsSnapshot:
        """Counters since the client was created; cheap enough to read on every progress tick."""
        limiter = self._limiter
        if limiter is None:
            return self._stats.snapshot()
        change = getattr(limiter, "last_change", None)  # a user's own limiter may lack it
        return self._stats.snapshot(
            limiter.current_rate, limiter.waited, str(change) if change is not None else ""
        )

    def _check_open(self) -> None:
        if self._state != "open":
            if self._state == "new":
                raise ClientClosedError("use the client inside 'async with AsyncCommbox(...)'")
            raise ClientClosedError("this AsyncCommbox is closed")

    # --- one call -----------------------------------------------------------------------
    def _url(self, identity_id: int, query_string: str) -> URL:
        # Built from parts: parsing a whole URL string costs twice as much (about 1 us).
        return URL.build(
            scheme=self._scheme,
            authority=self._authority,
            path=self._prefix + user_objects_path(identity_id),
            query_string=query_string,
            encoded=True,
        )

    async def get_user_objects(
        self,
        identity_id: int,
        *,
        deadline: float | None = None,
        cache: bool = True,
        **filters: Unpack[Filters],
    ) -> UserObjectsPage:
        """One page of an identity's conversations with unread counts.

        ``filters`` are the fields of ``Query`` (``page_size``, ``page_number``, ``statuses``,
        ``include_childs``...). ``deadline`` bounds the whole call in seconds, retries included
        (default: ``retries.max_time``). Raises a ``CommboxError`` subclass on failure.

        Concurrent calls for the same identity and filters make one request and all get its
        page (the same object: treat it as read-only) or its error; cancelling one caller does
        not cancel the request for the others. With the client's ``cache=``, a fresh cached
        page is returned without a request; ``cache=False`` skips the lookup for this call
        (its page still refreshes the cache).
        """
        ident = check_identity_id(identity_id)
        # No filters is the common web case: skip building and encoding an empty Query.
        query_string = _encode(Query.from_filters(filters)) if filters else ""
        limit = _check_deadline(deadline, self._retries.max_time)
        if not isinstance(cache, bool):
            raise InvalidArgumentError("cache must be a bool")
        self._check_open()
        return await self._shared(ident, query_string, limit, cache)

    def _shared_request(
        self, identity_id: int, query_string: str, deadline: float, use_cache: bool = True
    ) -> Coroutine[Any, Any, UserObjectsPage]:
        """A call through the cache and the shared in-flight calls (when they are on)."""
        if self._cache is None and not self._share_calls:
            return self._request(identity_id, query_string, deadline)
        return self._shared(identity_id, query_string, deadline, use_cache)

    async def _shared(
        self, identity_id: int, query_string: str, deadline: float, use_cache: bool
    ) -> UserObjectsPage:
        key = (identity_id, query_string)
        cache = self._cache
        if cache is not None and use_cache:
            page = cache.get(key)
            if page is not None:
                return page
        if not self._share_calls:
            return await self._fetch_and_keep(key, deadline)
        started = time.monotonic()
        shared, waiter, joined = self._in_flight.join(
            key, lambda: self._fetch_and_keep(key, deadline)
        )
        if not joined:
            shared.ends = started + deadline
        try:
            # A joiner's own deadline bounds its wait only when it is shorter than the default
            # (wait_for costs a little, and a default-deadline call ends by then anyway).
            if joined and deadline < self._retries.max_time:
                return await asyncio.wait_for(waiter, deadline)
            return await waiter
        except CommboxError as exc:
            # A failure the retry loop would have tried again may have been final only by the
            # starter's shorter deadline: this caller's own runs later, so it tries again
            # within what is left of it.
            left = started + deadline - time.monotonic()
            mine = started + deadline
            if joined and type(exc).retryable and shared.ends < mine - 0.1 * deadline and left > 0:
                return await self._shared(identity_id, query_string, left, use_cache)
            raise
        except asyncio.TimeoutError:
            self._in_flight.leave(key, shared, waiter)
            # This caller joined a call with a later deadline, and its own passed first.
            raise CommboxTimeoutError(
                f"deadline of {deadline:g} s passed waiting for a shared call",
                identity_id=identity_id,
            ) from None
        except asyncio.CancelledError:
            self._in_flight.leave(key, shared, waiter)
            raise

    async def _fetch_and_keep(self, key: tuple[int, str], deadline: float) -> UserObjectsPage:
        page = await self._request(key[0], key[1], deadline)
        if self._cache is not None:
            self._cache.put(key, page)
        return page

    def _request(
        self, identity_id: int, query_string: str, deadline: float
    ) -> Coroutine[Any, Any, UserObjectsPage]:
        """One call, retries included: its first attempt, which hands a retryable failure to
        ``_retry``. A plain function returning that coroutine, so that a call is one
        coroutine, not two, on every resume of every request."""
        now = time.monotonic()
        call = CallState(identity_id, self._url(identity_id, query_string), now + deadline, now)
        self._budget.earn()
        return self._attempt(call, first=True)

    async def _retry(self, call: CallState, exc: CommboxError) -> UserObjectsPage:
        """The rest of a call whose first attempt failed with a retryable error."""
        # Most calls succeed at once and skip backoff's per-call set-up (two datetime.now(),
        # a details dict, a wait generator, handler calls: about 6 us); a retryable failure
        # hands the call to it after the wait _plan_retry chose.
        self._stats.retries += 1
        try:
            await asyncio.sleep(exc.retry_delay)
            page: UserObjectsPage = await self._with_retries(call)
        except CommboxError as final:
            self._stats.failures += 1
            _count_attempts(final, call)
            raise
        return page

    async def _attempt(self, call: CallState, first: bool = False) -> UserObjectsPage:
        """One attempt. The first one of a call (``first``) also ends the call: it counts a
        failure or hands over to ``_retry``; later ones are backoff's, which decides."""
        session, limiter = self._session, self._limiter
        if session is None or limiter is None or session.closed:
            if first:
                self._stats.failures += 1
            raise ClientClosedError("this AsyncCommbox is closed", identity_id=call.identity_id)
        ticket = await limiter.acquire()
        call.attempts += 1
        stats = self._stats
        stats.requests += 1
        started = time.perf_counter()
        stats.in_flight += 1
        try:
            try:
                response = await session.get(
                    call.url,
                    headers=self._request_headers,
                    allow_redirects=False,
                    timeout=self._attempt_timeout(call),
                )
                # Not `async with`: its __aenter__/__aexit__ coroutines only add release(),
                # which the finally does (a body not read to the end closes the connection).
                try:
                    status = response.status
                    length = response.content_length
                    if (
                        length is not None
                        and length <= self._pool.max_body_bytes
                        and "Content-Encoding" not in response.headers
                    ):
                        body = await response.read()  # the usual case, without a call level
                    else:
                        body = await self._read_body(response, call.identity_id)
                    headers = response.headers
                finally:
                    response.release()
            except CommboxError:  # a body over max_body_bytes: the server did answer
                limiter.report(ticket, Outcome.ACCEPTED)
                raise
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                limiter.report(ticket, Outcome.FAILED)
                raise _translate(exc, call.identity_id, call.url) from exc
            finally:
                stats.in_flight -= 1
            elapsed = time.perf_counter() - started
            stats.record_latency(elapsed)
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "GET %s -> %d in %.1f ms (attempt %d)",
                    call.url.path,
                    status,
                    elapsed * 1000,
                    call.attempts,
                )
            try:
                page = parse_response(status, headers, body, call.identity_id)
            except RateLimitError as exc:
                # One verdict: a 429 in the status or in the body's envelope is the same event
                # for the limiter (a pause, evidence for the rate) and for the retry decision.
                limiter.report(ticket, Outcome.THROTTLED, exc.retry_after)
                raise
            except CommboxError:
                limiter.report(ticket, Outcome.ACCEPTED)
                self._answered += 1
                raise
            limiter.report(ticket, Outcome.ACCEPTED)
            self._answered += 1
            stats.successes += 1
            return page
        except CommboxError as exc:
            stats.errors_by_kind[exc.kind] += 1
            if isinstance(exc, RateLimitError):
                stats.throttled += 1
            if exc.identity_id is None:
                exc.identity_id = call.identity_id
            self._plan_retry(call, exc)
            if not first:
                raise
            failed = exc
        # The first attempt failed (outside the except block, so that a retry's own errors
        # are not chained to this one).
        if not failed.retryable:
            stats.failures += 1
            if type(failed).retryable:  # a transient kind of failure that was not retried
                _count_attempts(failed, call)
            raise failed
        return await self._retry(call, failed)

    def _attempt_timeout(self, call: CallState) -> aiohttp.ClientTimeout:
        remaining = call.deadline - time.monotonic()
        if remaining >= self._timeout.total:
            return self._aiohttp_timeout
        # Near the caller's deadline: the attempt may not outlive it.
        return aiohttp.ClientTimeout(
            total=max(remaining, 0.001),
            connect=self._timeout.connect,
            sock_read=self._timeout.sock_read,
        )

    async def _read_body(self, response: aiohttp.ClientResponse, identity_id: int) -> bytes:
        """The body that ``_attempt`` cannot read at once (no length, over the cap, or
        compressed), refused past ``max_body_bytes``: counted as aiohttp hands it over, i.e.
        after decompression, since Content-Length counts compressed bytes and a small gzip
        body can unpack to gigabytes."""
        cap = self._pool.max_body_bytes
        length = response.content_length
        if length is not None and length > cap:
            raise CommboxDecodeError(
                f"response body of {length} bytes exceeds max_body_bytes={cap}",
                identity_id=identity_id,
                status=response.status,
            )
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(65536):
            size += len(chunk)
            if size > cap:
                raise CommboxDecodeError(
                    f"response body exceeds max_body_bytes={cap}",
                    identity_id=identity_id,
                    status=response.status,
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def _plan_retry(self, call: CallState, exc: CommboxError) -> None:
        """Ask ``decide_retry`` whether ``exc`` ends the call; mark the error with its answer."""
        limiter = self._limiter
        pause = limiter.pause_remaining() if limiter is not None else 0.0
        decision = decide_retry(
            call,
            exc,
            self._retries,
            self._budget,
            self._rng,
            now=time.monotonic(),
            pause_remaining=pause,
            accepted_total=self._answered,
        )
        if decision.delay is None:
            exc.retryable = False
            return
        exc.retry_delay = decision.delay
        if retry_logger.isEnabledFor(logging.INFO):
            # The wait includes the client-wide pause that a 429 started.
            retry_logger.info(
                "identity %s: retrying in %.1f s: %s",
                call.identity_id,
                pause + decision.delay,
                _reason(exc),
            )

    def _on_backoff(self, details: Any) -> None:
        self._stats.retries += 1

    # --- all pages ----------------------------------------------------------------------
    async def iter_user_objects(
        self,
        identity_id: int,
        *,
        page_size: int = MAX_PAGE_SIZE,
        first_page: int = 0,
        max_pages: int = 10_000,
        deadline: float | None = None,
        **filters: Unpack[PagingFilters],
    ) -> AsyncIterator[UserObject]:
        """Every conversation of an identity, page by page, stopping on a short page.

        The vendor does not document whether ``pageNumber`` starts at 0 or 1, so the first page
        is explicit (``first_page``, default 0). Conversations are de-duplicated by object id,
        so a server that counts from 1 (and reads 0 as 1) costs one request, not duplicates;
        two pages in a row made only of conversations already seen end the iteration.
        """
        ident = check_identity_id(identity_id)
        if "page_number" in filters:
            raise InvalidArgumentError("iter_user_objects sets page_number; use first_page")
        Query.from_filters({**filters, "page_size": page_size, "page_number": first_page})
        limit = _check_deadline(deadline, self._retries.max_time)
        if isinstance(max_pages, bool) or not isinstance(max_pages, int) or max_pages < 1:
            raise InvalidArgumentError("max_pages must be a positive int")
        self._check_open()
        seen: set[int] = set()
        repeats = 0
        for number in range(first_page, first_page + max_pages):
            query = Query.from_filters({**filters, "page_size": page_size, "page_number": number})
            page = await self._request(ident, _encode(query), limit)
            fresh = 0
            for item in page.data:
                if item.object_id is not None:
                    if item.object_id in seen:
                        continue
                    seen.add(item.object_id)
                fresh += 1
                yield item
            if page.invalid_items:
                logger.warning(
                    "identity %d page %d: %d conversation(s) could not be decoded",
                    ident,
                    number,
                    len(page.invalid_items),
                )
            if len(page.data) + len(page.invalid_items) < page_size:
                return
            # One page of repeats is a server counting from 1 that read page 0 as page 1;
            # two in a row is a server that ignores pageNumber: then nothing new will come.
            repeats = repeats + 1 if fresh == 0 else 0
            if repeats == 2:
                logger.warning("identity %d: pages repeat; stopping at page %d", ident, number)
                return
        logger.warning("identity %d: stopped after max_pages=%d pages", ident, max_pages)

    # --- many identities ----------------------------------------------------------------
    def fetch_many(
        self,
        identity_ids: Iterable[Any] | AsyncIterable[Any],
        *,
        concurrency: int = 32,
        dedupe: bool = False,
        on_progress: Callable[[FanOutProgress], None] | None = None,
        deadline: float | None = None,
        **filters: Unpack[Filters],
    ) -> AsyncGenerator[FetchResult, None]:
        """Fetch one page for each identity, yielding results as they complete.

        ``identity_ids`` (any iterable or async iterable) is read lazily, so memory is bounded
        by ``concurrency`` (at most twice that many results exist), not by the number of ids.
        Every id yields exactly one ``FetchResult``; a failure is a value in ``result.error``,
        never an exception that ends the loop. After a 401 (the token is refused) the ids not
        yet sent get the same ``AuthenticationError`` without a request. ``dedupe=True``
        fetches a repeated id once (and
        remembers every id seen). Leaving the loop early, or cancelling it, stops the workers
        and releases their connections; use ``contextlib.aclosing`` to make that happen at the
        ``break``. Arguments are checked here, when it is called, before any request.
        """
        return self._fetch_many(
            identity_ids,
            concurrency=concurrency,
            dedupe=dedupe,
            on_progress=on_progress,
            deadline=deadline,
            shared=False,
            filters=filters,
        )

    def _fetch_many(
        self,
        identity_ids: Iterable[Any] | AsyncIterable[Any],
        *,
        concurrency: int,
        dedupe: bool,
        on_progress: Callable[[FanOutProgress], None] | None,
        deadline: float | None,
        shared: bool,
        filters: Mapping[str, Any],
    ) -> AsyncGenerator[FetchResult, None]:
        query_string = _encode(Query.from_filters(filters))
        limit = _check_deadline(deadline, self._retries.max_time)
        if (
            isinstance(concurrency, bool)
            or not isinstance(concurrency, int)
            or not (1 <= concurrency <= 10_000)
        ):
            raise InvalidArgumentError("concurrency must be an int between 1 and 10000")
        if isinstance(identity_ids, (str, bytes)) or not isinstance(
            identity_ids, (Iterable, AsyncIterable)
        ):
            raise InvalidArgumentError("identity_ids must be an iterable of ints")
        if on_progress is not None and not callable(on_progress):
            raise InvalidArgumentError("on_progress must be callable")
        self._check_open()
        # A partial, not a wrapper coroutine: one frame less on every resume of every request.
        # (A job's fan-out skips the cache and the shared calls: its ids are distinct.)
        method = self._shared_request if shared else self._request
        request = functools.partial(method, query_string=query_string, deadline=limit)
        return fan_out(
            identity_ids,
            request,
            concurrency=concurrency,
            dedupe=dedupe,
            on_progress=on_progress,
            tasks=self._tasks,
            stopped_from_outside=lambda: self._state == "closed",
        )

    async def unread_counts(
        self,
        identity_ids: Iterable[Any] | AsyncIterable[Any],
        *,
        concurrency: int = 32,
        raise_on_error: bool = True,
        **filters: Unpack[Filters],
    ) -> dict[int, int]:
        """Total unread chat messages per identity.

        With ``raise_on_error`` (the default) any failure raises ``FanOutError`` carrying the
        counts that did arrive and the errors by identity; otherwise failed identities are left
        out of the dict, so a failure never reads as zero unread. Unlike ``fetch_many`` it goes
        through the client's cache and shares in-flight calls, as ``get_user_objects`` does: a
        web app asks for the same badges again and again.
        """
        counts: dict[int, int] = {}
        errors: dict[Any, CommboxError] = {}
        results = self._fetch_many(
            identity_ids,
            concurrency=concurrency,
            dedupe=False,
            on_progress=None,
            deadline=None,
            shared=True,
            filters=filters,
        )
        async for result in results:
            if result.response is not None:
                counts[result.identity_id] = result.response.unread_total
            elif result.error is not None:
                errors[result.identity_id] = result.error
        if errors and raise_on_error:
            raise FanOutError(counts, errors)
        return counts

    # --- watching for changes ----------------------------------------------------------------
    def watch(
        self,
        identity_ids: Iterable[Any],
        *,
        share: float = 0.5,
        state: WatchState | bytes | None = None,
        baseline: bool = False,
        concurrency: int = 32,
        hot_window: float = 300.0,
        deadline: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        **filters: Unpack[Filters],
    ) -> Watch:
        """Poll identities and yield what changed: ``async for change in commbox.watch(ids):``.

        Polls use at most ``share`` (0 to 1] of the limiter's current rate, each through the
        client's limiter and retries, so every identity is polled about once per cycle of
        ``len(ids) / (share x rate)`` seconds; identities that changed within ``hot_window``
        seconds are polled more often. The first poll of an identity sets its baseline and
        yields nothing (with ``baseline=True``, a ``Baseline`` carrying its unread total);
        after that each poll yields typed changes (``NewConversation``, ``UnreadUp``,
        ``UnreadDown``, ``ConversationClosed``), and a failed poll yields a ``PollFailed``
        value instead of raising. ``state`` (from ``Watch.state()``, or its ``encode()``d
        bytes) restores what a previous run saw, so a restart yields only what changed
        meanwhile. ``filters`` are ``Query``'s; by default a poll asks for the largest page
        without children (``page_size=100, include_childs=False``). ``clock`` and ``sleep``
        pace the polls (inject them in tests). Stop it with ``aclose()`` or ``async with``;
        closing the client stops it too.
        """
        ids = check_ids(identity_ids)
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
            raise InvalidArgumentError("share must be a number in (0, 1]")
        if (
            isinstance(concurrency, bool)
            or not isinstance(concurrency, int)
            or not 1 <= concurrency <= 10_000
        ):
            raise InvalidArgumentError("concurrency must be an int between 1 and 10000")
        if (
            isinstance(hot_window, bool)
            or not isinstance(hot_window, (int, float))
            or not 0 <= hot_window < 1e9
        ):
            raise InvalidArgumentError("hot_window must be a number of seconds >= 0")
        if not isinstance(baseline, bool):
            raise InvalidArgumentError("baseline must be a bool")
        if not callable(clock) or not callable(sleep):
            raise InvalidArgumentError("clock and sleep must be callable")
        limit = _check_deadline(deadline, self._retries.max_time)
        query = Query.from_filters({"page_size": MAX_PAGE_SIZE, "include_childs": False, **filters})
        query_string = _encode(query)
        if isinstance(state, bytes):
            state = WatchState.decode(state)
        if state is not None:
            if not isinstance(state, WatchState):
                raise InvalidArgumentError("state must be a WatchState or its encoded bytes")
            if state.query != query_string:
                raise InvalidArgumentError(
                    "state was saved by a watch with other filters; it cannot be reused here"
                )
        self._check_open()
        limiter = self._limiter
        assert limiter is not None
        return Watch(
            ids,
            functools.partial(self._request, query_string=query_string, deadline=limit),
            rate=lambda: limiter.current_rate,
            share=float(share),
            concurrency=concurrency,
            query=query_string,
            page_size=query.page_size or MAX_PAGE_SIZE,
            hot_window=float(hot_window),
            state=state,
            baseline=baseline,
            tasks=self._tasks,
            closed=lambda: self._state == "closed",
            clock=clock,
            sleep=sleep,
        )


def _encode(query: Query) -> str:
    return urlencode(query.params(), quote_via=quote, safe="")


def _check_deadline(value: object, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise InvalidArgumentError("deadline must be a positive number of seconds")
    if value != value or value == float("inf"):
        raise InvalidArgumentError("deadline must be finite")
    return float(value)


#: Short reasons for the usual ways a connection fails, by errno.
_CONNECT_REASONS = {
    errno.ECONNREFUSED: "connection refused",
    errno.ETIMEDOUT: "connection timed out",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
    errno.ECONNRESET: "connection reset",
    errno.ECONNABORTED: "connection aborted",
}
# aiohttp >= 3.10 names a failed lookup; before, it is a ClientConnectorError over a gaierror.
_DNS_ERROR: tuple[type[BaseException], ...] = tuple(
    cls for cls in (getattr(aiohttp, "ClientConnectorDNSError", None), socket.gaierror) if cls
)


def _connect_reason(exc: aiohttp.ClientConnectorError) -> str:
    """Why a connection could not be made, in a few words."""
    if isinstance(exc, _DNS_ERROR) or isinstance(exc.os_error, socket.gaierror):
        return "the host name does not resolve"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return "TLS certificate not accepted"
    if isinstance(exc, aiohttp.ClientSSLError):
        return "TLS handshake failed"
    os_error = exc.os_error
    reason = _CONNECT_REASONS.get(os_error.errno or -1)
    if reason is None and isinstance(os_error, (TimeoutError, asyncio.TimeoutError)):
        reason = "connection timed out"
    return reason or os_error.strerror or type(os_error).__name__


def _reason(exc: CommboxError) -> str:
    """A failure in a few words, for the retry log: "connection refused", "HTTP 503"."""
    if exc.reason is not None:
        return exc.reason
    status = getattr(exc, "status", None)
    return f"HTTP {status}" if isinstance(status, int) else exc.message


def _count_attempts(exc: CommboxError, call: CallState) -> None:
    """Say in the final error of a call how many attempts it made and over how long."""
    elapsed = time.monotonic() - call.started
    plural = "s" if call.attempts != 1 else ""
    exc.message = f"{exc.message} ({call.attempts} attempt{plural} over {elapsed:.1f} s)"


def _translate(exc: BaseException, identity_id: int, url: URL | None = None) -> CommboxError:
    """The one place where aiohttp's and the OS's exceptions become the library's."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError) and url is not None:
        # A firewall that drops packets: name the host, as a refused connection does.
        timed_out = CommboxTimeoutError(
            f"timed out connecting to {url.host}:{url.port}", identity_id=identity_id
        )
        timed_out.reason = "connection timed out"
        return timed_out
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return CommboxTimeoutError(f"timed out: {type(exc).__name__}", identity_id=identity_id)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return CommboxConnectionError(
            "the response body was cut short or malformed", identity_id=identity_id
        )
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return CommboxConnectionError("the server closed the connection", identity_id=identity_id)
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = _connect_reason(exc)
        error = CommboxConnectionError(
            f"cannot connect to {exc.host}:{exc.port}: {reason}", identity_id=identity_id
        )
        error.reason = reason
        return error
    if isinstance(exc, aiohttp.ClientResponseError):
        # A response aiohttp could not parse (bad status line, bad headers).
        return CommboxConnectionError(
            f"malformed HTTP response: {exc.message[:200]}", identity_id=identity_id
        )
    return CommboxConnectionError(
        f"connection failed: {type(exc).__name__}", identity_id=identity_id
    )
