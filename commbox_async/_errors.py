"""The exception tree of commbox-async.

    CommboxError
    ├── InvalidArgumentError        bad input (also ValueError, TypeError), before any request
    ├── ClientClosedError           the client is not open (used outside async with, or closed)
    ├── CommboxDecodeError          the server's body could not be decoded at all
    ├── CommboxTransportError       no usable HTTP response arrived
    │   ├── CommboxConnectionError  refused, reset, truncated body, TLS failure
    │   └── CommboxTimeoutError     a per-attempt or total deadline passed
    └── CommboxAPIError             the server answered with an error status
        ├── BadRequestError         400
        ├── AuthenticationError     401
        ├── NotFoundError           404
        ├── RateLimitError          429 (carries retry_after)
        ├── ServerError             500, 502, 503, 504 and other 5xx
        └── NotImplementedByServerError   501 (never retried)

Every error that concerns one request carries ``identity_id``; API errors also carry the body's
``status``, ``description`` and ``response_time``. ``retryable`` says whether the client's retry
loop may try again; the loop also gives up when a wait would pass the caller's deadline.
Nothing here ever holds the token.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "ClientClosedError",
    "CommboxAPIError",
    "CommboxConnectionError",
    "CommboxDecodeError",
    "CommboxError",
    "CommboxTimeoutError",
    "CommboxTransportError",
    "InvalidArgumentError",
    "NotFoundError",
    "NotImplementedByServerError",
    "RateLimitError",
    "ServerError",
]


#: Headers a request id may come in, most common first.
REQUEST_ID_HEADERS = ("x-request-id", "request-id", "x-correlation-id", "x-amzn-requestid")


class CommboxError(Exception):
    """Base class of every error this library raises.

    An error made from a response also carries the response's ``headers`` (without any that
    could hold a credential) and the first bytes of its ``body``, so that a support ticket can
    quote the server's ``request_id``.
    """

    retryable: bool = False
    #: True when no connection could be made at all (refused, name not resolved, TLS, a
    #: connect timeout): the server was never reached.
    could_not_connect: bool = False
    #: The response's headers, or None when the error did not come from a response.
    headers: dict[str, str] | None = None
    #: The first bytes of the response's body (b"" when there was none).
    body: bytes = b""
    kind: str = "error"
    #: Why, in a few words, where the message says more ("connection refused"); for logs.
    reason: str | None = None
    #: True when the call ended because its ``deadline`` came (a wait for a retry, a pause or
    #: a rate slot would have passed it): the same call with a longer deadline might succeed.
    ended_by_deadline: bool = False

    def __init__(self, message: str, *, identity_id: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.identity_id = identity_id

    @property
    def request_id(self) -> str | None:
        """The server's id for the request, from the response headers, if it sent one."""
        if not self.headers:
            return None
        for name in REQUEST_ID_HEADERS:
            if name in self.headers:
                return self.headers[name]
        return None

    def __str__(self) -> str:
        if self.identity_id is None:
            return self.message
        return f"{self.message} (identity {self.identity_id})"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, identity_id={self.identity_id!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception's default pickling calls cls(*args), which fails for the subclasses with
        # keyword-only arguments (status=...); rebuild from the attributes instead, so that
        # errors cross process boundaries (multiprocessing, ProcessPoolExecutor) intact.
        return (_rebuild, (type(self), self.message, dict(self.__dict__)))


def _rebuild(cls: type[CommboxError], message: str, state: dict[str, Any]) -> CommboxError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class InvalidArgumentError(CommboxError, ValueError, TypeError):
    """An argument or setting is invalid; nothing was sent."""

    kind = "invalid_argument"


class ClientClosedError(CommboxError, RuntimeError):
    """The client is used outside ``async with`` or after it was closed."""

    kind = "client_closed"


class CommboxDecodeError(CommboxError):
    """The body is not a document of the expected shape (HTML, empty, truncated JSON...)."""

    kind = "decode"

    def __init__(
        self, message: str, *, identity_id: int | None = None, status: int | None = None
    ) -> None:
        super().__init__(message, identity_id=identity_id)
        self.status = status


class CommboxTransportError(CommboxError):
    """No usable HTTP response arrived; safe to retry because the endpoint only reads."""

    retryable = True
    kind = "transport"


class CommboxConnectionError(CommboxTransportError):
    """Connection refused or reset, body cut short, TLS failure."""

    kind = "connection"


class CommboxTimeoutError(CommboxTransportError):
    """A per-attempt or total deadline passed."""

    kind = "timeout"


class CommboxAPIError(CommboxError):
    """The server answered with an error status; the body's fields are kept."""

    kind = "api"

    def __init__(
        self,
        message: str,
        *,
        status: int,
        description: str | None = None,
        response_time: datetime | None = None,
        identity_id: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, identity_id=identity_id)
        self.status = status
        self.description = description
        self.response_time = response_time
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, description={self.description!r}, "
            f"identity_id={self.identity_id!r})"
        )


class BadRequestError(CommboxAPIError):
    """400: the server rejected the parameters (also used by the vendor for 'not found')."""

    kind = "bad_request"


class AuthenticationError(CommboxAPIError):
    """401: the token is missing, wrong, or was revoked; never retried."""

    kind = "unauthorized"


class NotFoundError(CommboxAPIError):
    """404: the identity or resource does not exist."""

    kind = "not_found"


class RateLimitError(CommboxAPIError):
    """429: throttled; ``retry_after`` holds the server's requested wait in seconds, if any."""

    retryable = True
    kind = "rate_limited"


class ServerError(CommboxAPIError):
    """500, 502, 503, 504 (and other 5xx except 501): transient, retried."""

    retryable = True
    kind = "server_error"


class NotImplementedByServerError(CommboxAPIError):
    """501: the server does not support the operation; retrying cannot help."""

    kind = "not_implemented"


def drop_tracebacks(exc: BaseException) -> None:
    """Cut the frames off an error and the errors chained to it.

    A failure handed back as a value (a fan-out's result, a watch's ``PollFailed``) may be kept
    for a whole job; its traceback would keep every frame of the call alive with it (the
    client, its session, the body read). The error's message, class and attributes say what
    failed, which is all a value needs.
    """
    seen: set[int] = set()
    item: BaseException | None = exc
    while item is not None and id(item) not in seen:
        seen.add(id(item))
        item.__traceback__ = None
        item = item.__cause__ or item.__context__
