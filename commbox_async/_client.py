"""AsyncCommbox: the public calls, each checked here and handed to the layers below.

The layers, top to bottom (docs/architecture.md draws them):

- ``AsyncCommbox`` (this module): the client's life (open, close, its running tasks) and the
  public calls: arguments checked before any request, paging, and the factories of the jobs
  built on one call (``_fanout``, ``_watch``);
- ``SharedCalls`` (``_sharing``): the cache and shared in-flight calls of ``get_user_objects``
  and ``unread_counts``;
- ``Account`` (``_account``): one token's calls, each a retry loop around one attempt, paced
  by its limiter (``_throttle``) and decided by ``_retry``;
- ``Transport`` (``_transport``): the aiohttp session, one ``send()``.

``_protocol`` builds every request and classifies every response; ``_models`` decodes pages.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import functools
import logging
import os
import random
import ssl
import time
import weakref
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
)
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import aiohttp

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
from ._errors import ClientClosedError, CommboxError, InvalidArgumentError
from ._fanout import UNREACHABLE_AFTER, FanOutError, FanOutProgress, FetchResult, fan_out
from ._members import Member, Members
from ._models import UserObject, UserObjectsPage
from ._protocol import (
    MAX_PAGE_SIZE,
    Query,
    build_headers,
    check_base_url,
    check_identity_id,
    is_insecure_remote,
)
from ._stats import StatsSnapshot
from ._throttle import Limiter
from ._tokens import Token, TokenSource
from ._transport import Transport
from ._validate import (
    check_bool,
    check_callable,
    check_concurrency,
    check_int,
    check_number,
    check_seconds,
    check_verify_tls,
    describe,
    tls_verification_off,
)
from ._version import __version__
from ._watch import Watch, WatchState, check_ids, restore_state

if TYPE_CHECKING:
    # Unpack is in typing from Python 3.11; only type checkers read it here, so the package
    # needs no typing_extensions at run time.
    from typing_extensions import Unpack

    from ._protocol import Filters, PagingFilters

__all__ = ["AsyncCommbox", "ClientState", "FanOutError", "FanOutProgress", "FetchResult"]

logger = logging.getLogger("commbox_async")


def _no_account_of_its_own() -> str:
    """The token provider of an ``accounts_only`` client: never asked (its calls are refused
    before any request), and raising if it were."""
    raise InvalidArgumentError("this AsyncCommbox has no account of its own")


class ClientState(enum.Enum):
    """Where a client is in its life: a client is opened once and closed once."""

    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


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
    ``default_headers`` are sent with every request (a tenant or tracing header); they may
    not set ``Authorization``, which comes from the token. ``proxy`` (``http://host:port``,
    credentials in the URL if any) sends every request of the owned session through an HTTP
    proxy; ``trust_env=True`` lets the owned session read ``HTTPS_PROXY``/``NO_PROXY`` (and
    ``~/.netrc``) from the environment, as aiohttp does. ``token`` may be a callable, plain
    or async, that returns the current token: after a 401 it is asked once for a fresh one.
    ``with_token`` gives a client for another account over the same session and pool;
    ``accounts_only=True`` makes a client with no token and no account of its own, whose
    every call goes through ``with_token`` (a service's pool and configuration for all its
    customers: with a ``RedisLimiter``, every account then gets its derived key).
    ``verify_tls`` checks the server's certificate against the system's CAs (``True``), not
    at all (``False``, with a warning), or as an ``ssl.SSLContext`` of yours does: a custom
    CA, such as a corporate proxy's that inspects TLS
    (``ssl.create_default_context(cafile="corp-ca.pem")``); with ``session=`` it must stay
    ``True`` (set ``ssl=`` on your session's connector).
    """

    def __init__(
        self,
        token: Token | None = None,
        *,
        base_url: str | None = None,
        rate_limit: RateLimit | float | None = None,
        timeout: Timeout | float | aiohttp.ClientTimeout | None = None,
        retries: Retries | int | None = None,
        session: aiohttp.ClientSession | None = None,
        pool: PoolConfig | None = None,
        limiter: Limiter | None = None,
        verify_tls: bool | ssl.SSLContext = True,
        allow_insecure_http: bool = False,
        user_agent: str | None = None,
        rng: random.Random | None = None,
        cache: Cache | None = None,
        share_calls: bool = True,
        default_headers: Mapping[str, str] | None = None,
        proxy: str | None = None,
        trust_env: bool = False,
        accounts_only: bool = False,
    ) -> None:
        self._accounts_only = check_bool("accounts_only", accounts_only)
        if accounts_only:
            if token is not None:
                raise InvalidArgumentError(
                    "accounts_only=True takes no token: each account's comes with with_token"
                )
            token = _no_account_of_its_own
        token = token if token is not None else os.environ.get("COMMBOX_TOKEN")
        if token is None:
            raise InvalidArgumentError(
                "no token: pass token= or set COMMBOX_TOKEN (or accounts_only=True for a "
                "client that serves accounts through with_token only)"
            )
        base = base_url if base_url is not None else os.environ.get("COMMBOX_BASE_URL")
        check_bool("allow_insecure_http", allow_insecure_http)
        self._base_url = check_base_url(
            base or DEFAULT_BASE_URL, allow_insecure_http=allow_insecure_http
        )
        self._rate_limit = as_rate_limit(rate_limit)
        self._retries = as_retries(retries)
        if pool is not None and not isinstance(pool, PoolConfig):
            raise InvalidArgumentError("pool must be a PoolConfig")
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise InvalidArgumentError("session must be an aiohttp.ClientSession")
        self._verify_tls = check_verify_tls(verify_tls, with_session=session is not None)
        if cache is not None and not isinstance(cache, Cache):
            raise InvalidArgumentError("cache must be a Cache (or None: no cache)")
        self._cache = cache
        agent = user_agent or f"commbox-async/{__version__}"
        build_headers("checked", agent, default_headers)  # refused here, before any token
        self._make_headers = functools.partial(
            build_headers, user_agent=agent, extra=default_headers
        )
        source = TokenSource(token, self._make_headers)
        self._transport = Transport(
            pool=pool or PoolConfig(), timeout=as_timeout(timeout), verify_tls=verify_tls,
            session=session, proxy=_check_proxy(proxy, session),
            trust_env=check_bool("trust_env", trust_env),
        )  # fmt: skip
        self._members = Members(
            self._transport, base_url=self._base_url, retries=self._retries,
            rng=rng or random.Random(), cache=cache,
            share_calls=check_bool("share_calls", share_calls),
            rate_limit=self._rate_limit, limiter=limiter,
        )  # fmt: skip
        self._root: AsyncCommbox = self
        self._views: weakref.WeakSet[AsyncCommbox] = weakref.WeakSet()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._adopt(self._members.member(source, own=True))

    def _adopt(self, member: Member) -> None:
        """Serve the account of ``member`` (a client its own, a view another's)."""
        self._member = member  # held: a member lives as long as a view of it
        self._account = member.account
        self._shared = member.shared
        self._state = ClientState.NEW
        self._tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        view = f" account={self._account.token.scope}" if self._root is not self else ""
        return (
            f"<AsyncCommbox base_url={self._base_url!r}{view} "
            f"rate_limit={self._rate_limit.max_rate:g}/s state={self._state.value}>"
        )

    def __reduce__(self) -> tuple[object, ...]:
        # Its token (and a session, a loop) cannot travel: make a client in the other process.
        raise TypeError("an AsyncCommbox is never pickled: make one in each process")

    # --- accounts -----------------------------------------------------------------------
    def with_token(
        self,
        token: Token,
        *,
        account: str | None = None,
        rate_limit: RateLimit | float | None = None,
    ) -> AsyncCommbox:
        """A client for another account that shares this client's session and pool.

        ``token`` is a string or a provider, as for ``AsyncCommbox``. The view has its own
        limiter (this client's configuration; with a ``RedisLimiter``, its key with the
        account's fingerprint appended), pause, retry budget, ``stats``, shared calls and
        cache entries: a 429 for one account pauses that account only, and two accounts never
        see each other's pages. Views of one account (the same string token, or the same
        ``account`` name, which a provider's account needs for a ``RedisLimiter``) share
        all of that while any of them lives. ``rate_limit`` (requests per second or a
        ``RateLimit``) is the account's own limit, a customer's plan, instead of this
        client's; the views of one account must agree on it while any of them lives. A view
        costs a few objects and is freed when unused; ``aclose()`` on a view stops its own
        fan-outs and watches only, and closing this client closes every view.
        """
        root = self._root
        if root._state is ClientState.CLOSED:
            raise ClientClosedError("this AsyncCommbox is closed")
        self._check_loop()
        opened_in = root._loop
        if opened_in is not None and opened_in.is_running() and not _in_loop(opened_in):
            # The accounts' registry belongs to the loop: changed from another thread at the
            # same time as the loop frees an account, it could give one account two limiters.
            raise ClientClosedError(
                "with_token() was called from another thread than the event loop this "
                "AsyncCommbox runs in: call it on that loop (asyncio.run_coroutine_threadsafe), "
                "or use commbox_async.blocking, whose with_token() may be called from any thread"
            )
        own_rate = None if rate_limit is None else as_rate_limit(rate_limit)
        source = TokenSource(token, root._make_headers)
        if account is not None:
            if not isinstance(account, str) or not account:
                raise InvalidArgumentError("account must be a non-empty str")
            source.name(account)
        elif source.refreshable and root._members.derives:
            raise InvalidArgumentError(
                "with a RedisLimiter, a token provider needs account= (its key's suffix)"
            )
        view = object.__new__(AsyncCommbox)
        view.__dict__.update(
            (name, value)
            for name, value in root.__dict__.items()
            if name not in ("_views", "_member", "_account", "_shared", "_tasks")
        )
        view._adopt(root._members.member(source, rate_limit=own_rate))
        view._rate_limit = view._member.rate_limit
        if root._state is ClientState.OPEN:
            view._state = ClientState.OPEN
        root._views.add(view)
        return view

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
        if self._state is ClientState.OPEN:
            return
        if self._state is ClientState.CLOSED:
            raise ClientClosedError("this AsyncCommbox is closed; create a new one")
        if self._root is not self:
            if self._root._state is not ClientState.OPEN:
                raise ClientClosedError("open the client this view came from first")
            self._state = ClientState.OPEN
            return
        tls_warning = tls_verification_off(self._verify_tls)
        if tls_warning is not None:
            logger.warning(tls_warning, self._base_url)
        if is_insecure_remote(self._base_url):
            logger.warning(
                "plain http to a remote host (%s): the token travels unencrypted", self._base_url
            )
        # The session carries the first token's headers (a provider is asked for it now);
        # a client with no account of its own has none: each view sends its own.
        own = None if self._accounts_only else await self._account.token.first()
        self._transport.open(own)
        self._members.open()
        self._loop = asyncio.get_running_loop()
        self._state = ClientState.OPEN
        for view in list(self._views):
            if view._state is ClientState.NEW:
                view._state = ClientState.OPEN

    async def aclose(self) -> None:
        """Stop running fan-outs, close the owned session, release the limiter.

        On a view: stop its own fan-outs and watches; the session stays its client's.
        """
        if self._state is ClientState.CLOSED:
            return
        # Its session's connections belong to the loop that opened it: closing them from
        # another could hang, or leave them open while saying nothing.
        self._check_loop()
        self._state = ClientState.CLOSED
        tasks: list[asyncio.Task[Any]] = [*self._tasks]
        if self._root is self:
            for view in list(self._views):
                view._state = ClientState.CLOSED
                tasks += view._tasks
            tasks += self._members.cancel_all()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._root is self:
            await self._transport.aclose()
            await self._members.aclose()

    @property
    def closed(self) -> bool:
        """True once ``aclose()`` has run; a closed client cannot be opened again."""
        return self._state is ClientState.CLOSED

    @property
    def limiter(self) -> Limiter:
        """The limiter in use (open clients only)."""
        self._check_open()
        assert self._account.limiter is not None
        return self._account.limiter

    @property
    def cache(self) -> Cache | None:
        """The page cache given as ``cache=`` (None: no cache)."""
        return self._cache

    @property
    def stats(self) -> StatsSnapshot:
        """Counters since the client was created; cheap enough to read on every progress tick."""
        limiter = self._account.limiter
        stats = self._account.stats
        if limiter is None:
            return stats.snapshot()
        change = getattr(limiter, "last_change", None)  # a user's own limiter may lack it
        return stats.snapshot(
            limiter.current_rate, limiter.waited, str(change) if change is not None else ""
        )

    def _check_open(self) -> None:
        if self._state is ClientState.NEW:
            raise ClientClosedError(
                "this AsyncCommbox is not open: use it inside 'async with AsyncCommbox(...)', "
                "or call 'await commbox.open()' first"
            )
        if self._state is ClientState.CLOSED:
            raise ClientClosedError("this AsyncCommbox is closed")
        self._check_loop()

    def _check_calls(self) -> None:
        """Before a call: the client is open, in its loop, and has an account to call for."""
        self._check_open()
        if self._accounts_only and self._root is self:
            raise InvalidArgumentError(
                "this AsyncCommbox has no account of its own (accounts_only=True): call "
                "through commbox.with_token(token)"
            )

    def _check_loop(self) -> None:
        opened_in = self._root._loop
        running = asyncio._get_running_loop()
        if opened_in is not None and running is not None and running is not opened_in:
            # aiohttp would fail with "Event loop is closed", or hang: say what is wrong.
            raise ClientClosedError(
                "this AsyncCommbox was opened in another event loop: its session and "
                "connections belong to that loop; open a client in each loop (a new "
                "asyncio.run() is a new loop)"
            )

    # --- one call -----------------------------------------------------------------------
    async def get_user_objects(
        self,
        identity_id: int,
        *,
        deadline: float | None = None,
        cache: bool = True,
        timeout: Timeout | float | aiohttp.ClientTimeout | None = None,
        retries: Retries | int | None = None,
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
        (its page still refreshes the cache). ``timeout`` and ``retries`` replace the
        client's for this call (such a call shares no running call with others).
        """
        ident = check_identity_id(identity_id)
        query_string = _encode(Query.from_filters(filters))
        own = _Overrides.of(timeout, retries)
        limit = check_seconds("deadline", deadline, (own.retries or self._retries).max_time)
        check_bool("cache", cache)
        self._check_calls()
        return await self._shared.get(ident, query_string, limit, cache, own.retries, own.timeout)

    # --- all pages ----------------------------------------------------------------------
    async def iter_user_objects(
        self,
        identity_id: int,
        *,
        page_size: int = MAX_PAGE_SIZE,
        first_page: int = 0,
        max_pages: int = 10_000,
        deadline: float | None = None,
        timeout: Timeout | float | aiohttp.ClientTimeout | None = None,
        retries: Retries | int | None = None,
        **filters: Unpack[PagingFilters],
    ) -> AsyncIterator[UserObject]:
        """Every conversation of an identity, page by page, stopping on a short page.

        The vendor does not document whether ``pageNumber`` starts at 0 or 1, so the first page
        is explicit (``first_page``, default 0). Conversations are de-duplicated by object id,
        so a server that counts from 1 (and reads 0 as 1) costs one request, not duplicates;
        two pages in a row made only of conversations already seen end the iteration.
        ``deadline``, ``timeout`` and ``retries`` apply to each page's call, as for
        ``get_user_objects``.
        """
        ident = check_identity_id(identity_id)
        if "page_number" in filters:
            raise InvalidArgumentError("iter_user_objects sets page_number; use first_page")
        Query.from_filters({**filters, "page_size": page_size, "page_number": first_page})
        own = _Overrides.of(timeout, retries)
        limit = check_seconds("deadline", deadline, (own.retries or self._retries).max_time)
        check_int("max_pages", max_pages, low=1)
        self._check_calls()
        seen: set[int] = set()
        repeats = 0
        for number in range(first_page, first_page + max_pages):
            query = Query.from_filters({**filters, "page_size": page_size, "page_number": number})
            page = await self._account.request(
                ident, _encode(query), limit, own.retries, own.timeout
            )
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
            if not page.is_full(page_size):
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
        unreachable_after: int | None = UNREACHABLE_AFTER,
        timeout: Timeout | float | aiohttp.ClientTimeout | None = None,
        retries: Retries | int | None = None,
        **filters: Unpack[Filters],
    ) -> AsyncGenerator[FetchResult, None]:
        """Fetch one page for each identity, yielding results as they complete.

        ``identity_ids`` (any iterable or async iterable) is read lazily, so memory is bounded
        by ``concurrency`` (at most twice that many results exist), not by the number of ids.
        Every id yields exactly one ``FetchResult``; a failure is a value in ``result.error``,
        never an exception that ends the loop. After a 401 (the token is refused) the ids not
        yet sent get the same ``AuthenticationError`` without a request. Likewise, when
        ``unreachable_after`` calls in a row could not connect at all (refused, a name that
        does not resolve, TLS, a connect timeout) before the server answered anything, the
        ids not yet sent get that error without a request (``None``: never stop).
        ``dedupe=True`` fetches a repeated id once (and remembers every id seen). Leaving the
        loop early, or cancelling it, stops the workers and releases their connections; use
        ``contextlib.aclosing`` to make that happen at the ``break``. ``timeout`` and
        ``retries`` replace the client's for this job's calls. Arguments are checked here,
        when it is called, before any request.
        """
        if unreachable_after is not None:
            check_int("unreachable_after", unreachable_after, low=1)
        return self._fetch_many(
            identity_ids,
            concurrency=concurrency,
            dedupe=dedupe,
            on_progress=on_progress,
            deadline=deadline,
            shared=False,
            filters=filters,
            unreachable_after=unreachable_after,
            own=_Overrides.of(timeout, retries),
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
        unreachable_after: int | None = None,
        own: _Overrides | None = None,
    ) -> AsyncGenerator[FetchResult, None]:
        query_string = _encode(Query.from_filters(filters))
        own = own or _NO_OVERRIDES
        limit = check_seconds("deadline", deadline, (own.retries or self._retries).max_time)
        if isinstance(identity_ids, (str, bytes)) or not isinstance(
            identity_ids, (Iterable, AsyncIterable)
        ):
            raise InvalidArgumentError("identity_ids must be an iterable of ints")
        if on_progress is not None:
            check_callable("on_progress", on_progress)
        self._check_calls()
        # A job's fan-out skips the cache and the shared calls: its ids are distinct.
        method = self._shared.get if shared else self._account.request
        request: Callable[[int], Awaitable[UserObjectsPage]]
        if own is _NO_OVERRIDES:

            def request(ident: int) -> Awaitable[UserObjectsPage]:
                # Positional: a partial with keywords merges them into a new dict on every call.
                return method(ident, query_string, limit)

        else:
            request = functools.partial(
                method,
                query_string=query_string,
                deadline=limit,
                retries=own.retries,
                timeout=own.timeout,
            )
        check_concurrency(concurrency)
        return self._fan_out(
            identity_ids, request, concurrency, dedupe, on_progress, unreachable_after
        )

    def _fan_out(
        self,
        identity_ids: Iterable[Any] | AsyncIterable[Any],
        request: Callable[[int], Awaitable[UserObjectsPage]],
        concurrency: int,
        dedupe: bool = False,
        on_progress: Callable[[FanOutProgress], None] | None = None,
        unreachable_after: int | None = UNREACHABLE_AFTER,
    ) -> AsyncGenerator[FetchResult, None]:
        """The fan-out engine over any one-identity call (the command line's ``--all-pages``
        reads every page of each), its workers in this client's registry, so that closing
        the client stops them."""
        self._check_calls()
        return fan_out(
            identity_ids,
            request,
            concurrency=concurrency,
            dedupe=dedupe,
            on_progress=on_progress,
            tasks=self._tasks,
            stopped_from_outside=lambda: self.closed,
            unreachable_after=unreachable_after,
        )

    async def unread_counts(
        self,
        identity_ids: Iterable[Any] | AsyncIterable[Any],
        *,
        concurrency: int = 32,
        raise_on_error: bool = True,
        deadline: float | None = None,
        timeout: Timeout | float | aiohttp.ClientTimeout | None = None,
        retries: Retries | int | None = None,
        **filters: Unpack[Filters],
    ) -> dict[int, int]:
        """Total unread chat messages per identity.

        With ``raise_on_error`` (the default) any failure raises ``FanOutError`` carrying the
        counts that did arrive and the errors by identity; otherwise failed identities are left
        out of the dict, so a failure never reads as zero unread. Unlike ``fetch_many`` it goes
        through the client's cache and shares in-flight calls, as ``get_user_objects`` does: a
        web app asks for the same badges again and again. ``deadline`` bounds each identity's
        call in seconds (a page view wants a few, not the default ``retries.max_time``);
        ``timeout`` and ``retries`` replace the client's for these calls.
        """
        counts: dict[int, int] = {}
        errors: dict[Any, CommboxError] = {}
        results = self._fetch_many(
            identity_ids,
            concurrency=concurrency,
            dedupe=False,
            on_progress=None,
            deadline=deadline,
            shared=True,
            filters=filters,
            own=_Overrides.of(timeout, retries),
        )
        async for result in results:
            if result.response is not None:
                counts[result.identity_id] = result.response.unread_total
            elif result.error is not None:
                errors[_error_key(result.identity_id)] = result.error
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
        check_number("share", share, allow_low=False, high=1.0)
        check_concurrency(concurrency)
        check_number("hot_window", hot_window, high=1e9)
        check_bool("baseline", baseline)
        check_callable("clock", clock)
        check_callable("sleep", sleep)
        limit = check_seconds("deadline", deadline, self._retries.max_time)
        query = Query.from_filters({"page_size": MAX_PAGE_SIZE, "include_childs": False, **filters})
        query_string = _encode(query)
        restored = restore_state(state, query_string)
        self._check_calls()
        limiter = self._account.limiter
        assert limiter is not None
        return Watch(
            ids,
            functools.partial(self._account.request, query_string=query_string, deadline=limit),
            rate=lambda: limiter.current_rate,
            share=float(share),
            concurrency=concurrency,
            query=query_string,
            page_size=query.page_size or MAX_PAGE_SIZE,
            hot_window=float(hot_window),
            state=restored,
            baseline=baseline,
            tasks=self._tasks,
            closed=lambda: self.closed,
            clock=clock,
            sleep=sleep,
        )


@dataclasses.dataclass(frozen=True)
class _Overrides:
    """A call's own ``timeout`` and ``retries`` (None: the client's)."""

    timeout: Timeout | None = None
    retries: Retries | None = None

    @classmethod
    def of(
        cls,
        timeout: Timeout | float | aiohttp.ClientTimeout | None,
        retries: Retries | int | None,
    ) -> _Overrides:
        if timeout is None and retries is None:
            return _NO_OVERRIDES
        return cls(
            as_timeout(timeout) if timeout is not None else None,
            as_retries(retries) if retries is not None else None,
        )


_NO_OVERRIDES = _Overrides()


def _check_proxy(proxy: object, session: aiohttp.ClientSession | None) -> str | None:
    """A proxy URL for the owned session (never with the caller's own session)."""
    if proxy is None:
        return None
    if not isinstance(proxy, str) or not proxy.startswith(("http://", "https://")):
        raise InvalidArgumentError("proxy must be an http:// or https:// URL")
    if session is not None:
        raise InvalidArgumentError("proxy= applies to the owned session: set it on yours")
    return proxy


def _encode(query: Query) -> str:
    return urlencode(query.params(), quote_via=quote, safe="")


def _error_key(raw: Any) -> Any:
    """``raw`` as a key of ``unread_counts``' errors: itself, or its repr when it cannot be a
    key (an invalid id such as a list must get its error, not crash the whole call)."""
    try:
        hash(raw)
    except TypeError:
        return describe(raw, None)
    return raw


def _in_loop(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether this code runs in ``loop``'s thread, as one of its callbacks or tasks."""
    return asyncio._get_running_loop() is loop
