"""The decoder and the response parser fuzzed with mutated payloads (hypothesis).

Seeds: the vendor's 200 example (``tests/fixtures/seed_example_200.json``) and a page of the
fake server. Mutations are byte-level (flips, cuts, insertions, JSON tokens spliced in) and
structural (any node of the document replaced by an arbitrary JSON value, removed, wrapped or
turned into a string). The properties: ``decode_page`` returns a page or raises
``ModelDecodeError`` and nothing else; ``parse_response`` returns a page or raises a
``CommboxError`` and nothing else, for any status and any Retry-After; and a page that decoded
can be read in full (every ``content``, every total) without an exception.

``COMMBOX_FUZZ_SCALE`` multiplies the number of examples (default 1; docs/reliability.md gives
the figures of a longer run). With ``-s`` the module prints how many inputs it tried.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commbox_async import CommboxError, UserObjectsPage, parse_response, parse_retry_after
from commbox_async._models import ModelDecodeError, decode_page
from commbox_async.testing import conversation

SEED_PATH = Path(__file__).resolve().parent / "fixtures" / "seed_example_200.json"
SCALE = max(1, int(os.environ.get("COMMBOX_FUZZ_SCALE", "1")))
TRIED: Counter[str] = Counter()


def _fake_payload() -> bytes:
    data = [conversation(558355, i, childs=2, activity_log=True) for i in range(3)]
    return json.dumps(
        {
            "totalUnreadChatMessages": 3,
            "status": 200,
            "description": "Operation successful",
            "response_time": "2026-02-12T15:09:23.998Z",
            "data": data,
        }
    ).encode()


SEEDS: dict[str, bytes] = {"fake_server": _fake_payload(), "reference": SEED_PATH.read_bytes()}
SEED_DOCS = {name: json.loads(body) for name, body in SEEDS.items()}

#: Fragments that break a parser in interesting ways when spliced into JSON.
TOKENS = [
    b"null",
    b"true",
    b"false",
    b"0",
    b"-1",
    b"1e999",
    b"-0.0",
    b"NaN",
    b"9223372036854775808",
    b"-9223372036854775809",
    b"123456789012345678901234567890",
    b'""',
    b'"\\u0000"',
    b'"\\ud800"',
    b'"\\"',
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b'"content"',
    b'"data"',
    b'"{\\"a\\":[1,2}"',
    b'"2026-02-30T25:61:61Z"',
    b'"0001-01-01T00:00:00"',
    b'"9999-12-31T23:59:59.9999999+14:00"',
    b"\xff\xfe",
    b"\x00",
    b"\xef\xbb\xbf",
    b"<html>",
]

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | st.sampled_from(["", "null", "{}", "1,", " 7 ", "2026-02-12T15:01:02", "x" * 300])
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def byte_mutants(draw: st.DrawFn) -> bytes:
    """A seed with a few byte-level mutations."""
    body = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(1, 6))):
        if not body:
            break
        at = draw(st.integers(0, len(body) - 1))
        op = draw(st.sampled_from(["flip", "cut", "drop", "insert", "token", "dup"]))
        if op == "flip":
            body[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del body[at:]
        elif op == "drop":
            del body[at : at + draw(st.integers(1, 64))]
        elif op == "insert":
            body[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "token":
            body[at:at] = draw(st.sampled_from(TOKENS))
        else:
            end = min(len(body), at + draw(st.integers(1, 256)))
            body[at:at] = body[at:end]
    return bytes(body)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*prefix, index))


PATHS = {name: list(_paths(doc)) for name, doc in SEED_DOCS.items()}


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value))


@st.composite
def structural_mutants(draw: st.DrawFn) -> bytes:
    """A seed document with a few nodes replaced, removed, wrapped or stringified."""
    name = draw(st.sampled_from(sorted(SEED_DOCS)))
    doc = _copy(SEED_DOCS[name])
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(PATHS[name]))
        if not path:
            if draw(st.booleans()):
                doc = draw(JSON_VALUES)
            continue
        parent: Any = doc
        try:
            for step in path[:-1]:
                parent = parent[step]
            current = parent[path[-1]]
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation moved this node
        if not isinstance(parent, (dict, list)):
            continue  # an earlier mutation turned the parent into a string or a number
        op = draw(st.sampled_from(["replace", "remove", "wrap", "stringify", "null"]))
        if op == "replace":
            parent[path[-1]] = draw(JSON_VALUES)
        elif op == "remove":
            del parent[path[-1]]
        elif op == "wrap":
            parent[path[-1]] = [current]
        elif op == "stringify":
            parent[path[-1]] = json.dumps(current)
        else:
            parent[path[-1]] = None
    return json.dumps(doc, allow_nan=True).encode()


def read_everything(page: UserObjectsPage) -> None:
    """Touch every derived value a caller might read; none may raise."""
    assert isinstance(page, UserObjectsPage)
    assert isinstance(page.unread_total, int)
    for item in page.data:
        _ = item.content
        if item.user is not None:
            _ = item.user.content
        for child in item.childs:
            _ = child.content
            _ = child.parent_object_id
            if child.user is not None:
                _ = child.user.content
    for invalid in page.invalid_items:
        assert isinstance(invalid.raw, bytes)


def check_decode(body: bytes) -> None:
    try:
        page = decode_page(body)
    except ModelDecodeError:
        return
    read_everything(page)


STATUSES = st.sampled_from([200, 200, 200, 400, 401, 404, 429, 500, 501, 502, 503, 504]) | (
    st.integers(min_value=100, max_value=599)
)
RETRY_AFTER = st.none() | st.text(max_size=40) | st.sampled_from(
    ["0", "-5", "1e309", "NaN", "inf", "99999999999999999999", "Wed, 21 Oct 2015 07:28:00 GMT",
     "Fri, 31 Dec 9999 23:59:59 GMT", "Mon, 32 Jan 2020 00:00:00 GMT", " 3 ", "3.5"]
)  # fmt: skip


def check_parse(status: int, retry_after: str | None, body: bytes) -> None:
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    try:
        page = parse_response(status, headers, body, identity_id=558355)
    except CommboxError as exc:
        assert exc.identity_id == 558355
        str(exc), repr(exc)
        return
    assert status == 200
    read_everything(page)


FUZZ = settings(
    max_examples=1500 * SCALE,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module", autouse=True)
def report_inputs_tried() -> Iterator[None]:
    """Print the inputs tried by each property (visible with ``pytest -s``)."""
    yield
    total = sum(TRIED.values())
    print(f"\nfuzz inputs tried: {dict(TRIED)} total={total}")


def test_seeds_decode_cleanly() -> None:
    """Both seeds decode on the fast path with every conversation kept."""
    for body in SEEDS.values():
        page = decode_page(body)
        assert page.data and not page.invalid_items
        read_everything(page)


@FUZZ
@given(body=byte_mutants())
def test_decode_page_byte_mutants(body: bytes) -> None:
    """Byte-mutated seeds: decode_page returns a readable page or raises ModelDecodeError."""
    TRIED["decode_page/bytes"] += 1
    check_decode(body)


@FUZZ
@given(body=structural_mutants())
def test_decode_page_structural_mutants(body: bytes) -> None:
    """Seeds with nodes replaced by arbitrary JSON: a readable page or ModelDecodeError."""
    TRIED["decode_page/structure"] += 1
    check_decode(body)


@settings(max_examples=500 * SCALE, deadline=None)
@given(body=st.binary(max_size=512))
def test_decode_page_random_bytes(body: bytes) -> None:
    """Arbitrary bytes: a readable page or ModelDecodeError."""
    TRIED["decode_page/random"] += 1
    check_decode(body)


@FUZZ
@given(status=STATUSES, retry_after=RETRY_AFTER, body=byte_mutants() | structural_mutants())
def test_parse_response_only_raises_library_errors(
    status: int, retry_after: str | None, body: bytes
) -> None:
    """Any status, any Retry-After, any mutated body: a page or a CommboxError, nothing else."""
    TRIED["parse_response"] += 1
    check_parse(status, retry_after, body)


@settings(max_examples=500 * SCALE, deadline=None)
@given(value=RETRY_AFTER)
def test_parse_retry_after_is_none_or_a_sane_wait(value: str | None) -> None:
    """Any header value: None, or a finite number of seconds that is not negative."""
    TRIED["parse_retry_after"] += 1
    wait = parse_retry_after(value)
    assert wait is None or (0.0 <= wait < float("inf"))


UTF8_CASES = [
    (status, prefix + b"Op" + bad + b'ration","data":[]}')
    for status in (200, 500)
    for prefix in (
        b'{"status":200,"description":"',
        b'{"totalUnreadChatMessages":1,"description":"',
    )
    for bad in (b"\xe9", b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80")
]


@pytest.mark.parametrize(
    ("status", "body"), UTF8_CASES, ids=[str(i) for i in range(len(UTF8_CASES))]
)
def test_invalid_utf8_in_a_string_is_a_library_error(status: int, body: bytes) -> None:
    """Latin-1 inside a JSON string (a server that is not UTF-8 clean): a page or a
    CommboxError from parse_response, a page or ModelDecodeError from decode_page."""
    TRIED["invalid_utf8"] += 1
    check_parse(status, None, body)
    check_decode(body)
