"""The request and response rules of the endpoint, with no I/O.

Everything here is a plain function of its arguments, so it is tested synchronously on recorded
bodies: checking arguments, building the path, query and headers of a request, turning a status,
headers and body into a page or a specific exception, and reading Retry-After.
"""

from __future__ import annotations

import hashlib
import ipaddress
import itertools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, TypedDict
from urllib.parse import urlsplit

from yarl import URL

from ._errors import (
    AuthenticationError,
    BadRequestError,
    CommboxAPIError,
    CommboxDecodeError,
    CommboxError,
    InvalidArgumentError,
    NotFoundError,
    NotImplementedByServerError,
    RateLimitError,
    ServerError,
)
from ._models import (
    ModelDecodeError,
    ObjectStatus,
    UserObjectsPage,
    decode_error_body,
    decode_page,
)
from ._validate import INT64_MAX, check_bool, check_int, describe

__all__ = [
    "DEFAULT_PORTS",
    "FILTER_NAMES",
    "INT64_MAX",
    "MAX_PAGE_SIZE",
    "Filters",
    "PagingFilters",
    "Query",
    "RequestUrls",
    "build_headers",
    "check_base_url",
    "check_identity_id",
    "check_token",
    "is_insecure_remote",
    "parse_response",
    "parse_retry_after",
    "server_identity",
    "status_by_name",
    "token_fingerprint",
    "user_objects_path",
]

MAX_STATUSES = 64
#: The vendor caps a page at 100 objects; a larger request would come back short and end
#: paging early, silently dropping objects, so it is refused instead.
MAX_PAGE_SIZE = 100
# fullmatch, not match with "$": "$" also matches before a final newline ("token\n").
_TOKEN_OK = re.compile(r"[\x21-\x7e]+")
#: delta-seconds: RFC 9110 says digits only; a decimal fraction is accepted as well.
_DELTA_SECONDS = re.compile(r"[0-9]+(\.[0-9]+)?")
#: The longest wait read from a Retry-After (about 31.7 years): above any pause policy's cap,
#: and still safe to add to a clock or a datetime.
_RETRY_AFTER_CEILING = 1e9
_ORDER_OK = re.compile(r"[A-Za-z_][A-Za-z0-9_]*( (asc|desc|ASC|DESC))?")


def check_identity_id(value: object, name: str = "identity_id") -> int:
    """A positive int64; bools, floats, strings and everything else are refused."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(
            f"{name} must be a positive int, got {type(value).__name__} {describe(value)}"
        )
    if not 0 < value <= INT64_MAX:
        raise InvalidArgumentError(f"{name} must be between 1 and 2**63-1, got {value}")
    return int(value)


def status_by_name(value: object) -> object:
    """A status given by its name ("open", "in_process", any case) as its number; any other
    value as it is, for the checks of ``Query`` to judge."""
    if not isinstance(value, str):
        return value
    name = value.strip().upper().replace("-", "_")
    if name in ObjectStatus.__members__:
        return int(ObjectStatus[name])
    names = ", ".join(member.lower() for member in ObjectStatus.__members__)
    raise InvalidArgumentError(f"statuses item {describe(value)} is not a status name ({names})")


def _wire(name: str) -> Any:
    """A filter of ``Query``: not sent by default, sent under ``name``."""
    return field(default=None, metadata={"wire": name})


@dataclass(frozen=True, kw_only=True)
class Query:
    """The filters of "Get User Objects", with Python names and types, checked on creation.

    None means "not sent" (the server's default applies). ``statuses`` is any iterable of
    ``ObjectStatus`` values, ints or status names (``"open"``), sent as the comma-separated
    ``status`` list.
    """

    # The one list of the filters: each field's metadata holds its wire name, and the
    # command line builds its options from these fields. ``Filters`` below repeats the names
    # for type checkers (a test keeps the two the same).
    stream_provider_id: str | None = _wire("streamProviderId")
    stream_provider_type: int | None = _wire("streamProviderType")
    stream_id: int | None = _wire("stream")
    sub_stream_id: int | None = _wire("subStream")
    page_number: int | None = _wire("pageNumber")
    page_size: int | None = _wire("pageSize")
    statuses: tuple[int, ...] | None = _wire("status")
    order: str | None = _wire("order")
    object_id: int | None = _wire("objectId")
    module_id: int | None = _wire("moduleId")
    include_childs: bool | None = _wire("includeChilds")
    include_activity_log: bool | None = _wire("includeActivityLog")

    def __post_init__(self) -> None:
        if self.stream_provider_id is not None:
            if not isinstance(self.stream_provider_id, str) or not self.stream_provider_id:
                raise InvalidArgumentError("stream_provider_id must be a non-empty str")
            if len(self.stream_provider_id) > 255:
                raise InvalidArgumentError("stream_provider_id is longer than 255 characters")
        if self.stream_provider_type is not None:
            check_int("stream_provider_type", self.stream_provider_type, low=0, high=2**31 - 1)
        if (self.stream_provider_id is None) != (self.stream_provider_type is None):
            raise InvalidArgumentError(
                "stream_provider_id and stream_provider_type go together: give both or neither"
            )
        for name in ("stream_id", "sub_stream_id", "object_id", "module_id"):
            value = getattr(self, name)
            if value is not None:
                check_int(name, value, low=0)
        if self.page_number is not None:
            check_int("page_number", self.page_number, low=0, high=2**31 - 1)
        if self.page_size is not None:
            check_int("page_size", self.page_size, low=1, high=MAX_PAGE_SIZE)
        if self.statuses is not None:
            if isinstance(self.statuses, (str, bytes)) or not isinstance(self.statuses, tuple):
                raise InvalidArgumentError("statuses must be an iterable of ints")
            if not self.statuses:
                raise InvalidArgumentError("statuses must not be empty (None means all)")
            for value in self.statuses:
                check_int("statuses item", value, low=0, high=2**31 - 1)
        if self.order is not None and (
            not isinstance(self.order, str) or not _ORDER_OK.fullmatch(self.order)
        ):
            raise InvalidArgumentError("order must be a field name such as 'closedtime'")
        for name in ("include_childs", "include_activity_log"):
            value = getattr(self, name)
            if value is not None:
                check_bool(name, value)

    @classmethod
    def from_filters(cls, filters: Mapping[str, Any]) -> Query:
        """Build from keyword filters, naming any unknown one in the error."""
        unknown = sorted(set(filters) - _QUERY_FIELDS)
        if unknown:
            raise InvalidArgumentError(
                f"unknown filter(s) {', '.join(unknown)}; known: {', '.join(sorted(_QUERY_FIELDS))}"
            )
        values = dict(filters)
        statuses = values.get("statuses")
        if statuses is not None and not isinstance(statuses, (str, bytes, tuple)):
            if isinstance(statuses, int):
                statuses = (statuses,)
            elif isinstance(statuses, Iterable):
                # Bounded, so that an endless iterable fails instead of hanging.
                statuses = tuple(itertools.islice(statuses, MAX_STATUSES + 1))
                if len(statuses) > MAX_STATUSES:
                    raise InvalidArgumentError(f"statuses has more than {MAX_STATUSES} items")
                statuses = tuple(status_by_name(value) for value in statuses)
            values["statuses"] = statuses
        return cls(**values)

    def params(self) -> dict[str, str]:
        """The query string parameters, with the wire names of the vendor's spec."""
        out: dict[str, str] = {}
        for name, wire in _WIRE_NAMES:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool):
                out[wire] = "true" if value else "false"
            elif isinstance(value, tuple):
                out[wire] = ",".join(str(int(v)) for v in value)
            else:
                out[wire] = str(int(value)) if isinstance(value, int) else value
        return out


#: (Python name, wire name) of every filter, in the vendor spec's order.
_WIRE_NAMES = tuple((item.name, str(item.metadata["wire"])) for item in fields(Query))
#: The keyword filters of ``get_user_objects``, ``fetch_many`` and the command line.
FILTER_NAMES = tuple(name for name, _ in _WIRE_NAMES)


class PagingFilters(TypedDict, total=False):
    """The keyword filters of ``iter_user_objects`` (it sets the page itself)."""

    stream_provider_id: str | None
    stream_provider_type: int | None
    stream_id: int | None
    sub_stream_id: int | None
    statuses: Iterable[int] | int | None
    order: str | None
    object_id: int | None
    module_id: int | None
    include_childs: bool | None
    include_activity_log: bool | None


class Filters(PagingFilters, total=False):
    """The keyword filters of ``get_user_objects``, ``fetch_many``, ``unread_counts`` and
    ``watch``: the fields of ``Query``, typed so that a type checker or an IDE catches a
    misspelt filter or a value of the wrong type. ``statuses`` also takes one status or any
    iterable of them."""

    page_number: int | None
    page_size: int | None


_QUERY_FIELDS = frozenset(name for name, _ in _WIRE_NAMES)


def user_objects_path(identity_id: int) -> str:
    """The path of the v2 operation for one identity."""
    return f"/v2/users/identities/{identity_id}/objects"


class RequestUrls:
    """The URLs of one base URL's pages: the base with its path prefix (an API gateway's, or
    none), the operation's path and the encoded query.

    The base's parts are read once: yarl's properties cost as much as the build itself, and
    an account builds a URL for every call.
    """

    __slots__ = ("_authority", "_prefix", "_scheme")

    def __init__(self, base: URL) -> None:
        self._scheme = base.scheme
        self._authority = base.raw_authority
        self._prefix = base.raw_path.rstrip("/")

    def url(self, identity_id: int, query_string: str) -> URL:
        """The URL of one identity's page with ``query_string`` (encoded already)."""
        return URL.build(
            scheme=self._scheme,
            authority=self._authority,
            path=self._prefix + user_objects_path(identity_id),
            query_string=query_string,
            encoded=True,
        )


def token_fingerprint(token: str) -> str:
    """A short, stable name for a token that does not reveal it (the first 16 hex digits of
    its SHA-256): for Redis keys and saved state, never the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def check_token(token: object) -> str:
    """A bearer token: non-empty printable ASCII with no spaces (no header injection)."""
    if not isinstance(token, str):
        raise InvalidArgumentError("token must be a str (pass token= or set COMMBOX_TOKEN)")
    if not token:
        raise InvalidArgumentError("token is empty (pass token= or set COMMBOX_TOKEN)")
    if not _TOKEN_OK.fullmatch(token):
        # Never echo the token: the message says what is wrong, not what it was.
        raise InvalidArgumentError("token must be printable ASCII without spaces or line breaks")
    return token


class _Secret(str):
    """A header value that hides itself from repr: exceptions that chain aiohttp's request
    info, and tracebacks rendered with their locals, show ``'<redacted>'``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'<redacted>'"

    def __reduce__(self) -> tuple[object, ...]:
        # A pickle is a copy of the token on disk or on the wire: refused, said plainly.
        raise TypeError("a CommBox token is never pickled")


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")


def build_headers(
    token: str, user_agent: str, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Headers of every request; the token lives here and nowhere else. ``extra`` (the
    client's ``default_headers``) adds or replaces any header but ``Authorization``."""
    if extra is not None and not isinstance(extra, Mapping):
        raise InvalidArgumentError("default_headers must be a mapping of header names to str")
    headers = {"Accept": "application/json", "User-Agent": user_agent}
    for name, value in (extra or {}).items():
        headers[_check_header(name, value)] = value
    headers["Authorization"] = _Secret(f"Bearer {token}")
    return headers


def _check_header(name: object, value: object) -> str:
    """A header a caller adds: a valid name, a value with no line break, never the token's."""
    if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
        raise InvalidArgumentError(f"default_headers: {describe(name)} is not a header name")
    if name.lower() in ("authorization", "proxy-authorization"):
        raise InvalidArgumentError(
            f"default_headers: {name} is set from token=; pass the token there"
        )
    if not isinstance(value, str) or not _HEADER_VALUE.fullmatch(value):
        raise InvalidArgumentError(
            f"default_headers: the value of {name} must be a str without line breaks"
        )
    return name


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


#: A path prefix is what a gateway or proxy adds before the API's own path: plain segments
#: of unreserved characters (percent-escapes allowed), so that it cannot smuggle a query,
#: a dot-segment that climbs out of it, or anything the HTTP library would re-encode.
_PREFIX_SEGMENT = re.compile(r"(?:[A-Za-z0-9._~!$&'()*+,=:@-]|%[0-9A-Fa-f]{2})+")


def _check_prefix(path: str) -> str:
    """The path prefix of a base URL, without its trailing slash ("" for none)."""
    prefix = path.rstrip("/")
    if not prefix:
        return ""
    for segment in prefix.split("/")[1:]:
        if segment in ("", ".", "..") or not _PREFIX_SEGMENT.fullmatch(segment):
            raise InvalidArgumentError(
                "base_url's path prefix must be plain segments such as /commbox "
                "(no empty, '.' or '..' segments)"
            )
    if prefix.lower().endswith("/v2") or "/v2/users" in prefix.lower():
        # The client adds /v2/users/identities/...; a base URL that already has it would
        # double it and answer every call with 404.
        raise InvalidArgumentError(
            "base_url must not include the API's own path (/v2/...): give the part before it, "
            "such as https://api.commbox.io or https://gateway.example.com/commbox"
        )
    return prefix


def check_base_url(url: object, *, allow_insecure_http: bool = False) -> str:
    """Scheme, host, optional port and optional path prefix, normalised without a trailing
    slash: https anywhere; plain http only to a loopback host, unless ``allow_insecure_http``
    (for a fake server in another container, say). Queries, fragments and credentials are
    refused."""
    if not isinstance(url, str) or not url:
        raise InvalidArgumentError(
            "base_url must be a non-empty str such as https://api.commbox.io"
        )
    text = url.strip()
    if any(ch.isspace() or not ch.isprintable() for ch in text):
        raise InvalidArgumentError("base_url must not contain spaces or control characters")
    try:
        parts = urlsplit(text)
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket
        raise InvalidArgumentError("base_url must look like https://host[:port][/prefix]") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgumentError("base_url must look like https://host[:port][/prefix]")
    if parts.username is not None or parts.password is not None:
        raise InvalidArgumentError("base_url must not carry credentials; use token=")
    # "?" and "#" with nothing after them still mean the user tried to add one.
    if parts.query or parts.fragment or "?" in text or "#" in text:
        raise InvalidArgumentError("base_url must not have a query or fragment")
    try:
        parts.port  # noqa: B018 - urlsplit validates the port lazily
    except ValueError as exc:
        raise InvalidArgumentError("base_url has an invalid port") from exc
    prefix = _check_prefix(parts.path)
    if parts.scheme == "http" and not _is_loopback(parts.hostname) and not allow_insecure_http:
        raise InvalidArgumentError(
            "base_url must use https (plain http is allowed only to loopback hosts, "
            "or with allow_insecure_http=True)"
        )
    return f"{parts.scheme}://{parts.netloc}{prefix}"


#: The port a scheme implies when a URL names none.
DEFAULT_PORTS = {"http": 80, "https": 443}


def server_identity(base_url: str) -> str:
    """One spelling per server: the scheme and host in lower case, no default port, no
    trailing slash (``HTTPS://API.example.com:443/`` is ``https://api.example.com``), so that
    a cron line written another way finds what was learned. The path prefix keeps its case:
    a gateway may tell ``/CommBox`` from ``/commbox``."""
    parts = urlsplit(base_url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"  # IPv6
    try:
        port = parts.port
    except ValueError:
        return base_url  # not a URL the client accepts: kept apart by its own spelling
    if port is not None and port != DEFAULT_PORTS.get(scheme):
        host = f"{host}:{port}"
    if not host:
        return base_url
    return f"{scheme}://{host}{parts.path.rstrip('/')}"


def is_insecure_remote(base_url: str) -> bool:
    """Whether a checked base URL sends the token in clear text off this machine."""
    parts = urlsplit(base_url)
    return parts.scheme == "http" and not _is_loopback(parts.hostname or "")


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After value (delta-seconds or HTTP-date), or None.

    A value that is neither (RFC 9110: delta-seconds is digits only, so "-5", "+5", "1e3",
    "inf" and "nan" are not) gives None, so that the caller's default applies; a date in the
    past gives 0. A longer wait than 1e9 s, about 31.7 years (digits too many for a float, a
    date centuries ahead), gives 1e9: finite, and still above any pause's cap.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _DELTA_SECONDS.fullmatch(text):
        # Digits only, so float() never gives NaN: at worst inf, which the ceiling makes finite.
        return min(float(text), _RETRY_AFTER_CEILING)
    if text[0] in "+-.0123456789":
        # Not delta-seconds (negative, exponent, "1_0"...) and cannot be an HTTP-date either.
        return None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return min(max(0.0, (when - now).total_seconds()), _RETRY_AFTER_CEILING)


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value by case-insensitive name, from aiohttp's headers or a plain dict."""
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    for key, item in headers.items():
        if key.lower() == wanted:
            return item
    return None


_ERROR_CLASSES: dict[int, type[CommboxAPIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    404: NotFoundError,
    429: RateLimitError,
    501: NotImplementedByServerError,
}


def error_class(status: int) -> type[CommboxAPIError]:
    """The exception class for an HTTP status."""
    cls = _ERROR_CLASSES.get(status)
    if cls is not None:
        return cls
    if 500 <= status <= 599:
        return ServerError
    return CommboxAPIError


def api_error(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    identity_id: int | None,
) -> CommboxAPIError:
    """The exception for an error response, with the body's fields when it has them."""
    parsed = decode_error_body(body)
    description = parsed.description if parsed is not None else None
    response_time = parsed.response_time if parsed is not None else None
    retry_after = parse_retry_after(header(headers, "Retry-After")) if status == 429 else None
    cls = error_class(status)
    message = f"HTTP {status}"
    if description:
        message += f": {description[:200]}"
    return cls(
        message,
        status=status,
        description=description,
        response_time=response_time,
        identity_id=identity_id,
        retry_after=retry_after,
    )


#: Response headers never kept on an error: they may hold a credential.
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
#: How much of a response's body an error keeps.
BODY_HEAD = 1024


def with_response(error: CommboxError, headers: Mapping[str, str], body: bytes) -> CommboxError:
    """``error`` with the response's headers (lower-cased, credentials left out) and the first
    ``BODY_HEAD`` bytes of its body, for logs and support tickets."""
    error.headers = {
        name.lower(): value
        for name, value in headers.items()
        if name.lower() not in _SECRET_HEADERS
    }
    error.body = bytes(body[:BODY_HEAD])
    return error


def parse_response(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    identity_id: int | None = None,
) -> UserObjectsPage:
    """Turn one HTTP response into a page, or raise the specific ``CommboxError`` (which
    carries the response's headers and the first bytes of its body)."""
    if status != 200:
        raise with_response(api_error(status, headers, body, identity_id), headers, body)
    try:
        page = decode_page(body)
    except ModelDecodeError as exc:
        error = CommboxDecodeError(
            f"HTTP 200 with a body that is not a v2 page ({len(body)} bytes)",
            identity_id=identity_id,
            status=status,
        )
        # A 200 that is not JSON (an HTML error page from a proxy, an empty body) is a
        # passing fault of something in between, not the API's answer: worth another try.
        error.retryable = True
        raise with_response(error, headers, body) from exc
    if page.status is not None and page.status >= 400:
        # The envelope's own status wins: the vendor sometimes reports errors inside a 200.
        raise with_response(api_error(page.status, headers, body, identity_id), headers, body)
    return page
