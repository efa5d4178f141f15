"""The sans-I/O rules, tested synchronously on recorded bodies: no server, no event loop."""

from __future__ import annotations

import json
import math
import pickle
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from commbox_async import (
    AuthenticationError,
    BadRequestError,
    CommboxAPIError,
    CommboxConnectionError,
    CommboxDecodeError,
    CommboxError,
    InvalidArgumentError,
    NotFoundError,
    NotImplementedByServerError,
    ObjectStatus,
    Query,
    RateLimitError,
    ServerError,
    parse_response,
    parse_retry_after,
)
from commbox_async._protocol import (
    MAX_PAGE_SIZE,
    build_headers,
    check_base_url,
    check_identity_id,
    check_token,
    user_objects_path,
)

UTC = timezone.utc
SEED = Path(__file__).resolve().parent / "fixtures" / "seed_example_200.json"
NOW = datetime(2026, 2, 12, 15, 0, 0, tzinfo=UTC)
HTML = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"


def error_body(status: int, description: str) -> bytes:
    return (
        f'{{"status": {status}, "description": "{description}", '
        f'"response_time": "2025-04-15T07:24:52.956Z", "data": ""}}'
    ).encode()


# --- parse_response ----------------------------------------------------------------------


def test_parse_response_200_reference() -> None:
    """A recorded 200 (the reference example) becomes the page."""
    page = parse_response(200, {}, SEED.read_bytes(), 558355)
    assert page.total_unread_chat_messages == 2
    assert page.data[0].object_id == 396001


STATUS_TABLE: list[tuple[int, type[CommboxAPIError], bool]] = [
    (400, BadRequestError, False),
    (401, AuthenticationError, False),
    (404, NotFoundError, False),
    (429, RateLimitError, True),
    (500, ServerError, True),
    (502, ServerError, True),
    (503, ServerError, True),
    (504, ServerError, True),
    (505, ServerError, True),
    (501, NotImplementedByServerError, False),
    (403, CommboxAPIError, False),
    (405, CommboxAPIError, False),
    (409, CommboxAPIError, False),
    (418, CommboxAPIError, False),
    (422, CommboxAPIError, False),
    (301, CommboxAPIError, False),
    (302, CommboxAPIError, False),
    (304, CommboxAPIError, False),
    (204, CommboxAPIError, False),
]


@pytest.mark.parametrize(("status", "cls", "retryable"), STATUS_TABLE)
def test_parse_response_error_statuses(
    status: int, cls: type[CommboxAPIError], retryable: bool
) -> None:
    """Each status raises its class with status, description, response_time and identity id."""
    with pytest.raises(CommboxAPIError) as info:
        parse_response(status, {}, error_body(status, "Operation failed"), 558355)
    exc = info.value
    assert type(exc) is cls
    assert exc.status == status
    assert exc.description == "Operation failed"
    assert exc.response_time == datetime(2025, 4, 15, 7, 24, 52, 956000, tzinfo=UTC)
    assert exc.identity_id == 558355
    assert exc.retryable is retryable
    assert exc.retry_after is None
    assert f"HTTP {status}" in str(exc) and "Operation failed" in str(exc)
    assert "558355" in str(exc)


@pytest.mark.parametrize(("status", "cls", "retryable"), STATUS_TABLE)
def test_parse_response_html_error_bodies(
    status: int, cls: type[CommboxAPIError], retryable: bool
) -> None:
    """An HTML body from a proxy still gives the status's class, with no description."""
    with pytest.raises(CommboxAPIError) as info:
        parse_response(status, {"Content-Type": "text/html"}, HTML, 7)
    assert type(info.value) is cls
    assert info.value.status == status
    assert info.value.description is None and info.value.response_time is None
    assert info.value.retryable is retryable
    assert info.value.identity_id == 7


@pytest.mark.parametrize("body", [b"", b"   ", b'{"status": 500'])
def test_parse_response_empty_or_cut_error_body(body: bytes) -> None:
    """An empty or truncated error body still maps the status (500 -> ServerError)."""
    with pytest.raises(ServerError) as info:
        parse_response(500, {}, body, 1)
    assert info.value.description is None


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": "3"}, 3.0),  # a plain dict with HTTP/2's lower-case names
        (CIMultiDict({"RETRY-AFTER": "0"}), 0.0),
        ({"Retry-After": "soon"}, None),
        ({}, None),
    ],
)
def test_parse_response_429_retry_after(headers: Any, expected: float | None) -> None:
    """A 429's Retry-After is read (case-insensitively) into retry_after."""
    with pytest.raises(RateLimitError) as info:
        parse_response(429, headers, error_body(429, "Too Many Requests"), 5)
    assert info.value.retry_after == expected
    assert info.value.retryable is True


def test_parse_response_429_http_date() -> None:
    """A 429 with an HTTP-date Retry-After in the past means no wait (0)."""
    past = format_datetime(datetime(2000, 1, 1, tzinfo=UTC), usegmt=True)
    with pytest.raises(RateLimitError) as info:
        parse_response(429, {"Retry-After": past}, b"", 5)
    assert info.value.retry_after == 0.0


@pytest.mark.parametrize("body", [HTML, b"", b"[]", b"null", b"{", b"not json"])
def test_parse_response_200_not_a_page(body: bytes) -> None:
    """A 200 whose body is HTML, empty or not an object is a retryable CommboxDecodeError."""
    with pytest.raises(CommboxDecodeError) as info:
        parse_response(200, {}, body, 558355)
    exc = info.value
    assert exc.retryable is True
    assert exc.status == 200
    assert exc.identity_id == 558355
    assert not isinstance(exc, CommboxAPIError)


@pytest.mark.parametrize(
    ("inner", "cls"), [(500, ServerError), ("400", BadRequestError), (401, AuthenticationError)]
)
def test_parse_response_error_inside_200(inner: Any, cls: type[CommboxAPIError]) -> None:
    """An error status reported inside a 200 envelope raises that status's error."""
    body = f'{{"status": {inner!r}, "description": "Operation failed", "data": ""}}'
    with pytest.raises(cls) as info:
        parse_response(200, {}, body.replace("'", '"').encode(), 3)
    assert info.value.status == int(inner)
    assert info.value.description == "Operation failed"


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
ENVELOPE = st.fixed_dictionaries(
    {},
    optional={
        "status": JSON,
        "description": JSON,
        "response_time": JSON,
        "totalUnreadChatMessages": JSON,
        "data": JSON
        | st.lists(
            st.dictionaries(
                st.sampled_from(["objectId", "childs", "user", "statusId", "createdTime"]), JSON
            ),
            max_size=3,
        ),
    },
)


@settings(max_examples=300, deadline=None)
@given(
    status=st.integers(100, 599),
    body=st.binary(max_size=100)
    | JSON.map(lambda v: json.dumps(v).encode())
    | ENVELOPE.map(lambda v: json.dumps(v).encode()),
    retry_after=st.none() | st.text(max_size=20),
)
def test_parse_response_raises_only_library_errors(
    status: int, body: bytes, retry_after: str | None
) -> None:
    """Any status, body and Retry-After give a page or a CommboxError, never anything else."""
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    try:
        page = parse_response(status, headers, body, 1)
    except CommboxAPIError as exc:
        assert exc.identity_id == 1 and exc.status >= 100
    except CommboxDecodeError as exc:
        assert status == 200 and exc.retryable
    else:
        assert status == 200
        assert page.status is None or page.status < 400


def test_parse_response_error_description_is_capped() -> None:
    """A huge description is kept whole on the exception but cut in the message."""
    text = "x" * 5000
    with pytest.raises(BadRequestError) as info:
        parse_response(400, {}, error_body(400, text), 1)
    assert info.value.description == text
    assert len(str(info.value)) < 300


def test_exception_tree() -> None:
    """Every error class is a CommboxError; invalid input is also ValueError and TypeError."""
    for _, cls, _ in STATUS_TABLE:
        assert issubclass(cls, CommboxError)
    assert issubclass(InvalidArgumentError, ValueError)
    assert issubclass(InvalidArgumentError, TypeError)
    assert issubclass(CommboxDecodeError, CommboxError)


@pytest.mark.parametrize("status", [400, 401, 404, 429, 500, 501, 418])
def test_api_errors_pickle(status: int) -> None:
    """API errors survive pickling (process pools) with class, message and every field."""
    with pytest.raises(CommboxAPIError) as info:
        parse_response(status, {"Retry-After": "3"}, error_body(status, "Operation failed"), 9)
    info.value.retryable = False  # as the retry loop leaves a final error
    copy = pickle.loads(pickle.dumps(info.value))
    assert type(copy) is type(info.value)
    assert str(copy) == str(info.value) and repr(copy) == repr(info.value)
    assert vars(copy) == vars(info.value)
    assert copy.retryable is False


def test_other_errors_pickle() -> None:
    """Decode, transport and argument errors survive pickling too."""
    errors: list[CommboxError] = [
        CommboxDecodeError("not a page", identity_id=1, status=200),
        CommboxConnectionError("reset", identity_id=2),
        InvalidArgumentError("bad"),
    ]
    for error in errors:
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and vars(copy) == vars(error)
        assert str(copy) == str(error)


# --- Retry-After ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        ("7", 7.0),
        (" 120 ", 120.0),
        ("1.5", 1.5),
        ("31536000000", 1e9),  # huge: the ceiling, which the caller caps further
        ("1" + "0" * 400, 1e9),  # too large for a float: still the ceiling, not "none given"
        ("1" + "0" * 400 + ".5", 1e9),
        ("9" * 400, 1e9),
        ("0" * 400, 0.0),
        (None, None),
        ("", None),
        ("   ", None),
        ("-1", None),
        ("-0.5", None),
        ("+5", None),
        ("1e3", None),
        ("1e999", None),
        ("-5", None),
        ("1_0", None),
        ("nan", None),
        ("inf", None),
        ("Infinity", None),
        ("soon", None),
        ("5, 6", None),
        ("0x10", None),
    ],
)
def test_parse_retry_after_delta_and_garbage(value: str | None, expected: float | None) -> None:
    """Delta-seconds give their value, at most 1e9 s; what is not delta-seconds (RFC 9110:
    digits only) gives None: a sign, an exponent, "nan", "inf"."""
    assert parse_retry_after(value, NOW) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Thu, 12 Feb 2026 15:00:30 GMT", 30.0),  # IMF-fixdate
        ("Thu, 12 Feb 2026 16:00:00 +0100", 0.0),  # the same instant as NOW
        ("Thursday, 12-Feb-26 15:02:00 GMT", 120.0),  # RFC 850
        ("Thu Feb 12 15:00:05 2026", 5.0),  # asctime, read as UTC
        ("Wed, 11 Feb 2026 15:00:00 GMT", 0.0),  # in the past: no wait
        ("Fri, 31 Dec 9999 23:59:59 GMT", 1e9),  # centuries ahead: the ceiling
        ("Mon, 01 Jan 99999 00:00:00 GMT", None),
        ("Thu, 32 Feb 2026 15:00:30 GMT", None),
    ],
)
def test_parse_retry_after_http_date(value: str, expected: float | None) -> None:
    """An HTTP-date gives the seconds from ``now`` to it, 0 when past, None when invalid."""
    assert parse_retry_after(value, NOW) == expected


def test_parse_retry_after_http_date_default_now() -> None:
    """Without ``now`` an HTTP-date is measured from the current time."""
    future = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    seconds = parse_retry_after(future)
    assert seconds is not None and 3500 < seconds <= 3600


@settings(max_examples=500, deadline=None)
@given(value=st.text(max_size=40) | st.from_regex(r"\A[0-9 .,:+-]{0,12}\Z"))
def test_parse_retry_after_never_raises(value: str) -> None:
    """Any header text gives None or a finite, non-negative number of seconds."""
    seconds = parse_retry_after(value, NOW)
    assert seconds is None or (math.isfinite(seconds) and 0 <= seconds <= 1e9)


# --- Query ---------------------------------------------------------------------------------


def test_query_params_wire_names() -> None:
    """Every filter goes out under the vendor's wire name, with wire formatting."""
    query = Query(
        stream_provider_id="972505555555_by",
        stream_provider_type=5,
        stream_id=19155,
        sub_stream_id=3,
        page_number=2,
        page_size=50,
        statuses=(ObjectStatus.OPEN, 2),
        order="closedtime",
        object_id=396001,
        module_id=9,
        include_childs=False,
        include_activity_log=True,
    )
    assert query.params() == {
        "streamProviderId": "972505555555_by",
        "streamProviderType": "5",
        "stream": "19155",
        "subStream": "3",
        "pageNumber": "2",
        "pageSize": "50",
        "status": "1,2",
        "order": "closedtime",
        "objectId": "396001",
        "moduleId": "9",
        "includeChilds": "false",
        "includeActivityLog": "true",
    }


def test_query_empty_sends_nothing() -> None:
    """No filters means no parameters: the server's defaults apply."""
    assert Query().params() == {}
    assert Query.from_filters({}).params() == {}


@pytest.mark.parametrize(
    ("statuses", "wire"),
    [
        ([1, 2], "1,2"),
        ((ObjectStatus.PENDING,), "15"),
        (ObjectStatus.OPEN, "1"),
        (3, "3"),
        ({4}, "4"),
        ((s for s in (5, 6)), "5,6"),
    ],
)
def test_query_statuses_forms(statuses: Any, wire: str) -> None:
    """statuses takes an int, an ObjectStatus or any iterable of them; sent comma-separated."""
    assert Query.from_filters({"statuses": statuses}).params()["status"] == wire


@pytest.mark.parametrize(
    "filters",
    [
        # wrong types
        {"stream_id": "19155"},
        {"stream_id": 1.0},
        {"sub_stream_id": "0"},
        {"object_id": [1]},
        {"module_id": 2.5},
        {"page_number": "1"},
        {"page_size": 10.0},
        {"stream_provider_id": 972505555555, "stream_provider_type": 5},
        {"stream_provider_id": "", "stream_provider_type": 5},
        {"stream_provider_id": "x" * 256, "stream_provider_type": 5},
        {"stream_provider_id": "x", "stream_provider_type": "5"},
        {"statuses": "1,2"},
        {"statuses": b"1"},
        {"statuses": ["1"]},
        {"statuses": [1.0]},
        {"statuses": []},
        {"order": 5},
        {"order": ""},
        {"order": "closedtime; DROP TABLE"},
        {"order": "a&b=c"},
        {"order": "closedtime\n"},
        {"include_childs": "true"},
        {"include_childs": 1},
        {"include_activity_log": 0},
        # bools where ints are expected
        {"stream_id": True},
        {"sub_stream_id": False},
        {"object_id": True},
        {"module_id": True},
        {"page_number": False},
        {"page_size": True},
        {"statuses": [True]},
        {"statuses": True},
        {"stream_provider_id": "x", "stream_provider_type": True},
        # out of range
        {"stream_id": -1},
        {"object_id": 2**63},
        {"page_number": -1},
        {"page_number": 2**31},
        {"page_size": 0},
        {"page_size": MAX_PAGE_SIZE + 1},
        {"page_size": -5},
        {"statuses": [-1]},
        {"stream_provider_id": "x", "stream_provider_type": -1},
        # one of a pair
        {"stream_provider_id": "972505555555"},
        {"stream_provider_type": 5},
        # unknown names
        {"pageSize": 10},
        {"stream": 1},
        {"include_children": True},
    ],
)
def test_query_rejects(filters: dict[str, Any]) -> None:
    """Wrong types, bools for ints, out-of-range values, half pairs and unknown names raise."""
    with pytest.raises(InvalidArgumentError):
        Query.from_filters(filters)


def test_query_unknown_filter_named_in_error() -> None:
    """The error for an unknown filter names it and lists the known ones."""
    with pytest.raises(InvalidArgumentError) as info:
        Query.from_filters({"pagesize": 10, "stream_id": 1})
    assert "pagesize" in str(info.value)
    assert "page_size" in str(info.value)


def test_query_accepts_edges() -> None:
    """The limits themselves are accepted: page size 1 and 100, page 0, id 0 filters, int64 max."""
    Query(page_size=1)
    Query(page_size=MAX_PAGE_SIZE)
    Query(page_number=0)
    Query(stream_id=0, sub_stream_id=0, object_id=2**63 - 1, module_id=0)
    Query(order="createdTime desc")


def test_query_is_frozen() -> None:
    """A Query cannot be changed after it was checked."""
    query = Query(page_size=10)
    with pytest.raises(AttributeError):
        query.page_size = 1000  # type: ignore[misc]


# --- identity, token, base URL -------------------------------------------------------------


@pytest.mark.parametrize("value", [1, 558355, 2**63 - 1, ObjectStatus.OPEN])
def test_check_identity_id_accepts(value: int) -> None:
    """Positive int64 values are accepted and returned as plain ints."""
    result = check_identity_id(value)
    assert result == value and type(result) is int


@pytest.mark.parametrize(
    "value", [True, False, 558355.0, 1.5, "558355", b"1", None, 0, -1, 2**63, [1]]
)
def test_check_identity_id_rejects(value: Any) -> None:
    """Bools, floats, strings, zero, negatives and values past int64 are refused clearly."""
    with pytest.raises(InvalidArgumentError) as info:
        check_identity_id(value)
    assert "identity_id" in str(info.value)


def test_check_token_accepts_jwt() -> None:
    """A JWT-shaped token is accepted unchanged."""
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig-_~+/="
    assert check_token(token) == token


@pytest.mark.parametrize(
    "token",
    [
        "",
        " ",
        "SeCrEt token",
        "SeCrEt-token\n",
        "SeCrEt-token\r\nX-Injected: 1",
        "SeCrEt\ttoken",
        "SeCrEt-tökén",
        "\x00SeCrEt",
    ],
)
def test_check_token_rejects_without_echo(token: str) -> None:
    """Empty, spaces, line breaks (a final one too), non-ASCII: refused, never echoed."""
    with pytest.raises(InvalidArgumentError) as info:
        check_token(token)
    for text in (str(info.value), repr(info.value)):
        assert "SeCrEt" not in text
        if token.strip():
            assert token not in text


@pytest.mark.parametrize("token", [None, 123, b"SeCrEt"])
def test_check_token_rejects_non_str(token: Any) -> None:
    """A token that is not a str is refused."""
    with pytest.raises(InvalidArgumentError) as info:
        check_token(token)
    assert "SeCrEt" not in str(info.value)


def test_build_headers() -> None:
    """The token goes in the Authorization header as a bearer token, and only there."""
    headers = build_headers("abc.def", "commbox-async/test")
    assert headers == {
        "Authorization": "Bearer abc.def",
        "Accept": "application/json",
        "User-Agent": "commbox-async/test",
    }


def test_user_objects_path() -> None:
    """The v2 path of the operation."""
    assert user_objects_path(558355) == "/v2/users/identities/558355/objects"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api.commbox.io", "https://api.commbox.io"),
        ("https://api.commbox.io/", "https://api.commbox.io"),
        (" https://api.commbox.io:8443 ", "https://api.commbox.io:8443"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://127.0.0.2", "http://127.0.0.2"),
        ("http://localhost:1234", "http://localhost:1234"),
        ("http://LOCALHOST", "http://LOCALHOST"),
        ("http://[::1]:8080", "http://[::1]:8080"),
    ],
)
def test_check_base_url_accepts(url: str, expected: str) -> None:
    """https anywhere; plain http only to 127.0.0.0/8, localhost and [::1]."""
    assert check_base_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "http://api.commbox.io",  # plain http off loopback
        "http://10.0.0.1",
        "http://0.0.0.0",
        "http://127.0.0.1.evil.example",
        "http://localhost.evil.example",
        "https://api.commbox.io/v2",  # a path
        "https://api.commbox.io/?access_token=x",  # a query
        "https://api.commbox.io?x=1",
        "https://api.commbox.io#frag",
        "https://user:pass@api.commbox.io",  # credentials
        "https://user@api.commbox.io",
        "https://:pass@api.commbox.io",
        "ftp://api.commbox.io",
        "api.commbox.io",
        "https://",
        "https://api.commbox.io:99999",
        "https://api.commbox.io:port",
        "http://[::1",
        "https://api commbox.io",
        "https://api.commbox.io\r\nX: 1",
        "",
        None,
        5,
    ],
)
def test_check_base_url_rejects(url: Any) -> None:
    """Paths, queries, credentials, other schemes, bad ports and non-loopback http are refused."""
    with pytest.raises(InvalidArgumentError) as info:
        check_base_url(url)
    assert "pass" not in str(info.value)


def test_token_fingerprint_is_stable_short_and_not_the_token() -> None:
    """The fingerprint names a token for keys and files without revealing it."""
    from commbox_async._protocol import token_fingerprint

    fingerprint = token_fingerprint("secret-token-1")
    assert fingerprint == token_fingerprint("secret-token-1") != token_fingerprint("secret-token-2")
    assert len(fingerprint) == 16 and "secret" not in fingerprint


@pytest.fixture
def parser_depth_1000() -> Iterator[None]:
    """The parser's depth as Python's default recursion limit sets it (another test or a
    plugin may have raised the limit for the session)."""
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        yield
    finally:
        sys.setrecursionlimit(before)


@pytest.mark.parametrize(
    "body",
    [
        b'{"data": [{"objectId": 1, "x": ' + b"[" * 5000 + b"]" * 5000 + b"}]}",
        b'{"status": 200, "deep": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    ],
)
@pytest.mark.usefixtures("parser_depth_1000")
def test_json_nested_too_deep_is_a_decode_error(body: bytes) -> None:
    """JSON nested deeper than the parser goes is a CommboxDecodeError, not a RecursionError
    that ends a job as "unexpected"."""
    with pytest.raises(CommboxDecodeError):
        parse_response(200, {}, body, 5)


@pytest.mark.usefixtures("parser_depth_1000")
def test_content_nested_too_deep_reads_as_none() -> None:
    """A ``content`` string that holds JSON too deep to read gives None, as other bad JSON."""
    inner = "[" * 5000 + "]" * 5000
    body = json.dumps({"data": [{"objectId": 1, "content": inner}]}).encode()
    page = parse_response(200, {}, body)
    assert page.data[0].content is None


@pytest.mark.parametrize(("status", "error"), [(401, AuthenticationError), (429, RateLimitError)])
def test_an_error_inside_a_200_with_data_an_object_keeps_its_status(
    status: int, error: type[CommboxError]
) -> None:
    """The field notes' error bodies carry {"errors": [...]} in ``data``: the envelope's own
    status still decides (it was a retryable CommboxDecodeError: a revoked token retried 8x)."""
    body = json.dumps({"status": status, "description": "no", "data": {"errors": ["x"]}})
    with pytest.raises(error):
        parse_response(200, {}, body.encode(), 5)
