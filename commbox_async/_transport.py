"""The HTTP transport: one aiohttp session, and ``send()`` that returns status, headers and body.

The only module that touches aiohttp's request API. It knows nothing of identities, tokens,
limiters or retries: an account hands it a URL, the headers that carry its token and the time
left to the call, and gets back a ``Response`` or a ``CommboxError`` that says why no answer
came. aiohttp's and the OS's exceptions become the library's in one place, ``translate``
(httpx's ``map_httpcore_exceptions`` is the pattern), so that every caller sees one error tree.
Many accounts can share one transport, and so one connection pool: ``send`` takes a slot of
the pool's ``_fair.Gate`` in the account's lane before aiohttp takes a connection, so that
accounts waiting for connections get equal shares, whoever asked first.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
import msgspec
from yarl import URL

from ._config import PoolConfig, Timeout
from ._errors import (
    ClientClosedError,
    CommboxConnectionError,
    CommboxDecodeError,
    CommboxError,
    CommboxTimeoutError,
)
from ._fair import Gate, Lane

__all__ = ["Response", "Transport", "translate"]


class Response(msgspec.Struct, frozen=True, gc=False):
    """What the server answered: the status, the headers and the whole body.

    A msgspec Struct, not a frozen dataclass: one is made per answer, and a frozen dataclass
    sets each field through ``object.__setattr__`` (6,000 instructions a request against
    1,000, benchmarks/RESULTS.md section 10). gc=False: it holds a status, a headers mapping
    and bytes, none of which can refer back to it.
    """

    status: int
    headers: Mapping[str, str]
    body: bytes


class Transport:
    """One aiohttp session (owned, or the caller's) and the rules for one exchange with it.

    ``open()`` makes the owned session (loop-bound, so never in ``__init__``); ``aclose()``
    closes it, and leaves a caller's session to its caller.
    """

    def __init__(
        self,
        *,
        pool: PoolConfig,
        timeout: Timeout,
        verify_tls: bool | ssl.SSLContext,
        session: aiohttp.ClientSession | None = None,
        proxy: str | None = None,
        trust_env: bool = False,
    ) -> None:
        self._pool = pool
        self._proxy = proxy
        self._trust_env = trust_env
        self._default_headers: Mapping[str, str] | None = None
        self._timeout = timeout
        self._verify_tls = verify_tls
        self._given_session = session
        self._session: aiohttp.ClientSession | None = None
        self._default_timeout = aiohttp.ClientTimeout(
            total=timeout.total, connect=timeout.connect, sock_read=timeout.sock_read
        )
        # The pool's slots, shared fairly by the accounts (None: a pool without a limit).
        self._gate: Gate | None = None
        self._lane = Lane()  # for a send() that names no account's lane

    def lane(self) -> Lane:
        """A new account's place in the queue for the pool's connections (``send(lane=)``)."""
        return Lane()

    @property
    def session(self) -> aiohttp.ClientSession | None:
        """The session in use while open (the tests look inside its pool)."""
        return self._session

    @property
    def closed(self) -> bool:
        """True before ``open()``, after ``aclose()``, and once the session itself closed."""
        return self._session is None or self._session.closed

    def open(self, default_headers: Mapping[str, str] | None = None) -> None:
        """Use the caller's session, or make ours: a pooled connector, no cookies.

        ``default_headers`` (the first account's) are set once on a session of our own:
        aiohttp merges per-request headers into the defaults on every request, which cost 2%
        of a small page's throughput (benchmarks/RESULTS.md, section 5); a request whose
        headers are these very ones skips the merge. Not with a proxy (``proxy=`` or
        ``trust_env``): there every request carries its own, so the token never reaches a
        CONNECT (see below).
        """
        if self._session is not None:
            return
        if self._given_session is not None:
            self._session = self._given_session
            self._gate = _gate_for(self._given_session.connector)
            return
        # Not with a proxy: aiohttp merges the session's default headers into the CONNECT it
        # sends the proxy, and turns their Authorization (the token) into Proxy-Authorization
        # (aiohttp 3.14, connector.py): the token would go to the proxy. Per-request headers
        # stay inside the tunnel.
        proxied = self._proxy is not None or self._trust_env
        self._default_headers = None if proxied else default_headers
        connector = aiohttp.TCPConnector(
            limit=self._pool.limit,
            limit_per_host=self._pool.limit_per_host,
            keepalive_timeout=self._pool.keepalive_timeout,
            ssl=self._verify_tls,
        )
        session = aiohttp.ClientSession(
            connector=connector,
            headers=self._default_headers,
            timeout=self._default_timeout,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=self._trust_env,  # HTTPS_PROXY, NO_PROXY, ~/.netrc: only if asked
            # A session-wide proxy (aiohttp >= 3.10), so that send() stays as it was.
            **self._proxy_option(),
        )
        # aiohttp resends an idempotent request once, unseen, when a reused connection
        # drops; the account's retry loop already does that, through the limiter and counted.
        if hasattr(session, "_retry_connection"):
            session._retry_connection = False
        self._session = session
        self._gate = _gate_for(connector)

    def _proxy_option(self) -> dict[str, Any]:
        """``proxy=`` for the session, only when one is set (aiohttp < 3.10 has no such
        argument, and needs none when there is no proxy)."""
        return {"proxy": self._proxy} if self._proxy is not None else {}

    async def aclose(self) -> None:
        """Close the session we made; a caller's session stays open."""
        session, self._session = self._session, None
        if self._gate is not None:
            self._gate.close()  # requests waiting for a connection: none will come
        if session is not None and self._given_session is None:
            await session.close()

    async def send(
        self,
        url: URL,
        headers: Mapping[str, str],
        deadline: float,
        timeout: Timeout | None = None,
        lane: Lane | None = None,
    ) -> Response:
        """GET ``url``; the answer, or the ``CommboxError`` that says why none came.

        ``deadline`` is the call's end on the monotonic clock: an attempt may not outlive it.
        ``timeout`` replaces the transport's per-attempt limits for this request. ``lane`` is
        the account's place in the queue for a connection when the pool is full (``lane()``).
        A body over ``max_body_bytes`` is a ``CommboxDecodeError`` (the server did answer);
        every other failure is a ``CommboxConnectionError`` or ``CommboxTimeoutError``.
        """
        session = self._session
        if session is None or session.closed:
            raise ClientClosedError("this AsyncCommbox is closed")
        gate = self._gate
        if gate is None:
            return await self._exchange(session, url, headers, deadline, timeout)
        lane = lane or self._lane
        waited = 0.0 if gate.enter(lane) else await self._wait_turn(gate, lane, deadline, timeout)
        try:
            return await self._exchange(session, url, headers, deadline, timeout, waited)
        finally:
            gate.leave(lane)  # after the connection went back to the pool (or was closed)

    async def _wait_turn(
        self, gate: Gate, lane: Lane, deadline: float, timeout: Timeout | None
    ) -> float:
        """Wait for a slot of the full pool in ``lane``; the seconds waited. The wait is bounded
        as aiohttp bounds its own wait for a pooled connection (``connect``, ``total``) and by
        the call's deadline."""
        limits = timeout or self._timeout
        started = time.monotonic()
        patience = max(min(limits.connect, limits.total, deadline - started), 0.0)
        if await gate.wait(lane, patience):
            if not self.closed:
                return time.monotonic() - started
            gate.leave(lane)
        if self.closed:
            raise ClientClosedError("this AsyncCommbox is closed")
        error = CommboxTimeoutError(
            f"timed out after {patience:.1f} s waiting for a free connection "
            f"(all {gate.capacity} of the pool are in use)"
        )
        error.reason = "no free connection in the pool"
        raise error

    async def _exchange(
        self,
        session: aiohttp.ClientSession,
        url: URL,
        headers: Mapping[str, str],
        deadline: float,
        timeout: Timeout | None,
        waited: float = 0.0,
    ) -> Response:
        """One GET over ``session``: the answer, or the library's error for why none came."""
        extra = None if headers is self._default_headers else headers
        try:
            response = await session.get(
                url,
                headers=extra,
                allow_redirects=False,
                timeout=self._attempt_timeout(deadline, timeout, waited),
            )
            # Not `async with`: release() in the finally is all its exit adds (a body not read
            # to the end closes the connection instead of returning it to the pool).
            try:
                length = response.content_length
                if (
                    length is not None
                    and length <= self._pool.max_body_bytes
                    and "Content-Encoding" not in response.headers
                ):
                    body = await response.read()  # a known length within the cap: read whole
                else:
                    body = await self._read_capped(response)
                return Response(response.status, response.headers, body)
            finally:
                response.release()
        except CommboxError:
            raise
        except aiohttp.ClientHttpProxyError as exc:
            # Not chained, not even as __context__ (so raised after the except block): its
            # request_info holds the proxy's URL with any password in it, and the
            # Proxy-Authorization header. Its status and reason are in the message.
            refused = translate(exc, url)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise translate(exc, url) from exc
        raise refused

    def _attempt_timeout(
        self, deadline: float, timeout: Timeout | None = None, waited: float = 0.0
    ) -> aiohttp.ClientTimeout:
        """The session's timeout (or the call's own), shorter when the call's deadline is
        nearer, less what the attempt already waited for a slot of the pool."""
        remaining = deadline - time.monotonic()
        limits = timeout or self._timeout
        if timeout is None and not waited and remaining >= limits.total:
            return self._default_timeout
        return aiohttp.ClientTimeout(
            total=max(min(remaining, limits.total - waited), 0.001),
            connect=max(limits.connect - waited, 0.001),
            sock_read=limits.sock_read,
        )

    async def _read_capped(self, response: aiohttp.ClientResponse) -> bytes:
        """A body of unknown length, over the cap, or compressed: refused past
        ``max_body_bytes``, counted as aiohttp hands it over, i.e. after decompression, since
        Content-Length counts compressed bytes and a small gzip body can unpack to gigabytes.
        """
        cap = self._pool.max_body_bytes
        length = response.content_length
        if length is not None and length > cap:
            raise CommboxDecodeError(
                f"response body of {length} bytes exceeds max_body_bytes={cap}",
                status=response.status,
            )
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(65536):
            size += len(chunk)
            if size > cap:
                raise CommboxDecodeError(
                    f"response body exceeds max_body_bytes={cap}", status=response.status
                )
            chunks.append(chunk)
        return b"".join(chunks)


def _gate_for(connector: aiohttp.BaseConnector | None) -> Gate | None:
    """The gate of a pool: as many slots as the connector lets this client's one host have
    (a connector without a limit needs none)."""
    if connector is None:
        return None
    limits = [n for n in (connector.limit, connector.limit_per_host) if n]
    return Gate(min(limits)) if limits else None


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


def translate(exc: BaseException, url: URL | None = None) -> CommboxError:
    """The one place where aiohttp's and the OS's exceptions become the library's."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError) and url is not None:
        # A firewall that drops packets: name the host, as a refused connection does.
        timed_out = CommboxTimeoutError(f"timed out connecting to {url.host}:{url.port}")
        timed_out.reason = "connection timed out"
        timed_out.could_not_connect = True
        return timed_out
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        where = f" waiting for {url.host}:{url.port}" if url is not None else ""
        return CommboxTimeoutError(f"timed out{where}: {type(exc).__name__}")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return CommboxConnectionError("the response body was cut short or malformed")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return CommboxConnectionError("the server closed the connection")
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = _connect_reason(exc)
        error = CommboxConnectionError(f"cannot connect to {exc.host}:{exc.port}: {reason}")
        error.reason = reason
        error.could_not_connect = True
        return error
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        # The proxy answered CONNECT with an error (403: a port it does not tunnel to, 407: it
        # wants credentials): the server was never reached. Not a "malformed response".
        refused = CommboxConnectionError(
            f"the proxy refused the tunnel: {exc.status} {exc.message[:200]}"
        )
        refused.reason = f"proxy answered {exc.status}"
        refused.could_not_connect = True
        return refused
    if isinstance(exc, aiohttp.ClientResponseError):
        # A response aiohttp could not parse (bad status line, bad headers).
        return CommboxConnectionError(f"malformed HTTP response: {exc.message[:200]}")
    return CommboxConnectionError(f"connection failed: {type(exc).__name__}")
