"""The faults the fake server can inject: their names, their settings, and one handler each.

``FAULTS`` is the table: fault kind -> the coroutine that answers a request with that fault.
Adding a fault is one entry there and one name in ``FAULT_KINDS``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from ._data import DESCRIPTIONS, error_body

__all__ = [
    "ABSURD_RETRY_AFTER",
    "DEFAULT_FAULT_KINDS",
    "FAULTS",
    "FAULT_KINDS",
    "PERMANENT_FAULTS",
    "TRANSIENT_FAULTS",
    "FaultHost",
    "Faults",
    "inject",
    "json_error",
]

#: The faults ``Faults()`` injects unless told otherwise: each is recovered from by an immediate
#: retry (their 429s carry ``Faults.retry_after``, "0" by default).
DEFAULT_FAULT_KINDS = (
    "500",
    "502",
    "503",
    "504",
    "429",
    "reset",
    "reset_mid_body",
    "truncate",
    "html_200",
    "empty_200",
    "html_502",
    "slow_headers",
    "slow_body",
)
#: Kept for compatibility: the quick transient faults (the same as ``DEFAULT_FAULT_KINDS``).
TRANSIENT_FAULTS = DEFAULT_FAULT_KINDS
#: 429s whose Retry-After a client must not take at face value: kind -> header value sent.
ABSURD_RETRY_AFTER: dict[str, str | None] = {
    "429_no_retry_after": None,
    "429_negative": "-30",
    "429_huge": "999999999",
    "429_garbage": "soon, maybe",
}
#: Faults that no retry can cure: a correct client fails the identity at once with a clear error.
PERMANENT_FAULTS = ("oversized", "oversized_chunked")
#: Every fault the server can inject.
#:
#: - ``500`` ... ``504``, ``429``: the documented error body (429 with ``Faults.retry_after``).
#: - ``html_500`` ... ``html_504``: a 5xx whose body is an HTML page (a proxy's).
#: - ``429_no_retry_after``, ``429_negative``, ``429_huge``, ``429_garbage``: see
#:   ``ABSURD_RETRY_AFTER``.
#: - ``reset``: the connection is aborted before any header is sent.
#: - ``reset_mid_body``: headers and half of the body, then the connection is aborted.
#: - ``truncate``: headers with the full Content-Length and half the body, then a clean close.
#: - ``html_200``, ``empty_200``: a 200 whose body is an HTML page, or empty.
#: - ``slow_headers``: the answer starts after ``Faults.slow_seconds``.
#: - ``slow_body``: half of the body, a pause of ``Faults.slow_seconds``, the rest.
#: - ``oversized``: a 200 of ``Faults.oversized_bytes`` with its Content-Length;
#:   ``oversized_chunked`` the same without one (chunked), so only counting bytes catches it.
#: - ``bad_status_line``: bytes that are not HTTP (a broken proxy), then a close.
#: - ``refuse``: this connection is aborted and the server stops listening for
#:   ``Faults.refuse_seconds``, so new connections in that window are refused by the OS.
FAULT_KINDS = (
    *DEFAULT_FAULT_KINDS,
    "html_500",
    "html_503",
    "html_504",
    *ABSURD_RETRY_AFTER,
    "bad_status_line",
    "refuse",
    *PERMANENT_FAULTS,
)


@dataclass(kw_only=True)
class Faults:
    """Inject a fault into ``rate`` of the requests, picking among ``kinds`` (seeded).

    ``kinds`` defaults to ``DEFAULT_FAULT_KINDS``; pass ``FAULT_KINDS`` for every fault the
    server knows (see there). ``slow_seconds`` is the stall of the slow faults,
    ``retry_after`` the header of a plain ``429``, ``oversized_bytes`` the size of the
    oversized bodies (default: just over the client's default cap of 32 MiB), and
    ``refuse_seconds`` how long ``refuse`` keeps the server from listening. ``limit`` caps the
    faults injected in all (None: no cap), so a test can fail the first request and no other.
    """

    rate: float = 0.1
    kinds: tuple[str, ...] = DEFAULT_FAULT_KINDS
    seed: int | None = 0
    slow_seconds: float = 0.05
    retry_after: str | None = "0"
    oversized_bytes: int = 33 * 1024 * 1024
    refuse_seconds: float = 0.05
    limit: int | None = None

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(
                f"unknown fault kinds: {', '.join(sorted(unknown))} "
                f"(valid: {', '.join(FAULT_KINDS)})"
            )
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        if self.slow_seconds < 0 or self.refuse_seconds < 0 or self.oversized_bytes < 0:
            raise ValueError("slow_seconds, refuse_seconds and oversized_bytes must be >= 0")


class FaultHost(Protocol):
    """What a fault handler may ask of the server that injects it."""

    def log(self, ident: int, status: int, outcome: str, request: web.Request) -> None: ...

    async def stall(self, seconds: float) -> None: ...

    def refuse(self, seconds: float) -> None: ...

    def page(self, ident: int, request: web.Request) -> bytes: ...


@dataclass(frozen=True)
class _Call:
    """One request being answered with a fault."""

    host: FaultHost
    request: web.Request
    ident: int
    kind: str
    faults: Faults

    def log(self, status: int) -> None:
        self.host.log(self.ident, status, self.kind, self.request)


_Handler = Callable[[_Call], Awaitable[web.StreamResponse]]


def json_error(status: int, headers: Mapping[str, str] | None = None) -> web.Response:
    """An error answer with the documented body."""
    return web.Response(
        status=status,
        body=error_body(status),
        headers=dict(headers or {}),
        content_type="application/json",
    )


def _drop(request: web.Request, *, abort: bool = True) -> None:
    transport = request.transport
    if transport is not None:
        if abort:
            transport.abort()
        else:
            transport.close()


def _status(status: int) -> _Handler:
    async def answer(call: _Call) -> web.StreamResponse:
        call.log(status)
        retry_after = call.faults.retry_after
        if status == 429 and retry_after is not None:
            return json_error(status, {"Retry-After": retry_after})
        return json_error(status)

    return answer


def _absurd_429(value: str | None) -> _Handler:
    async def answer(call: _Call) -> web.StreamResponse:
        call.log(429)
        return json_error(429, {"Retry-After": value} if value is not None else {})

    return answer


def _html(status: int) -> _Handler:
    async def answer(call: _Call) -> web.StreamResponse:
        call.log(status)
        return web.Response(
            status=status,
            text=f"<html><body><h1>{status} {DESCRIPTIONS.get(status, 'Error')}</h1>"
            "<p>nginx</p></body></html>",
            content_type="text/html",
        )

    return answer


async def _html_200(call: _Call) -> web.StreamResponse:
    call.log(200)
    return web.Response(text="<html><body>maintenance</body></html>", content_type="text/html")


async def _empty_200(call: _Call) -> web.StreamResponse:
    call.log(200)
    return web.Response(body=b"", content_type="application/json")


async def _bad_status_line(call: _Call) -> web.StreamResponse:
    call.log(0)
    transport = call.request.transport
    if transport is not None:
        transport.write(b"HTTP/1.1 2OO Okay-ish\r\nContent-Length: 0\r\n\r\n")
    _drop(call.request, abort=False)
    return web.Response(status=500)  # never sent: the connection is gone


async def _refuse(call: _Call) -> web.StreamResponse:
    call.log(0)
    call.host.refuse(call.faults.refuse_seconds)
    _drop(call.request)
    return web.Response(status=500)


async def _reset(call: _Call) -> web.StreamResponse:
    call.log(0)
    _drop(call.request)
    return web.Response(status=500)


async def _slow_headers(call: _Call) -> web.StreamResponse:
    body = call.host.page(call.ident, call.request)
    call.log(200)
    await call.host.stall(call.faults.slow_seconds)
    return web.Response(body=body, content_type="application/json")


def _half_body(*, then: str) -> _Handler:
    """Headers with the full Content-Length and half the body; ``then`` says what follows."""

    async def answer(call: _Call) -> web.StreamResponse:
        body = call.host.page(call.ident, call.request)
        call.log(200 if then == "rest" else 0)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(body)
        try:
            await response.prepare(call.request)
            await response.write(body[: len(body) // 2])
            if then == "rest":
                await call.host.stall(call.faults.slow_seconds)
                await response.write(body[len(body) // 2 :])
                await response.write_eof()
                return response
        except (ConnectionError, RuntimeError):
            return response  # the client gave up first (its timeout or cancellation)
        _drop(call.request, abort=then == "abort")
        return response

    return answer


def _oversized(*, with_length: bool) -> _Handler:
    async def answer(call: _Call) -> web.StreamResponse:
        call.log(200)
        size = call.faults.oversized_bytes
        # Streamed in chunks, so a huge body never sits in the server's memory.
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        if with_length:
            response.content_length = size
        else:
            response.enable_chunked_encoding()
        chunk = b" " * 65536
        try:
            await response.prepare(call.request)
            sent = 0
            while sent < size:
                part = chunk[: size - sent]
                await response.write(part)
                sent += len(part)
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the client stopped reading at its cap and closed the connection
        return response

    return answer


#: Fault kind -> its handler.
FAULTS: dict[str, _Handler] = {
    **{str(status): _status(status) for status in (500, 502, 503, 504, 429)},
    **{f"html_{status}": _html(status) for status in (500, 502, 503, 504)},
    **{kind: _absurd_429(value) for kind, value in ABSURD_RETRY_AFTER.items()},
    "html_200": _html_200,
    "empty_200": _empty_200,
    "bad_status_line": _bad_status_line,
    "refuse": _refuse,
    "reset": _reset,
    "reset_mid_body": _half_body(then="abort"),
    "truncate": _half_body(then="close"),
    "slow_headers": _slow_headers,
    "slow_body": _half_body(then="rest"),
    "oversized": _oversized(with_length=True),
    "oversized_chunked": _oversized(with_length=False),
}
# html_502 is in the defaults, html_500/503/504 in the rest: the table must cover both lists.
assert set(FAULTS) == set(FAULT_KINDS), set(FAULTS) ^ set(FAULT_KINDS)


async def inject(
    host: FaultHost, kind: str, ident: int, request: web.Request, faults: Faults
) -> web.StreamResponse:
    """Answer ``request`` with the fault ``kind``."""
    return await FAULTS[kind](_Call(host, request, ident, kind, faults))
