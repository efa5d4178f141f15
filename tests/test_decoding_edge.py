"""Edge cases of decoding that cost whole pages or pauses: lone UTF-16 surrogate escapes in a
body or a ``content``, and a Retry-After too large for a float."""

from __future__ import annotations

import json

import msgspec
import pytest

from commbox_async import (
    AsyncCommbox,
    AuthenticationError,
    CommboxDecodeError,
    RateLimitError,
    Retries,
    UserObject,
    parse_response,
)
from commbox_async._models import decode_content, decode_page
from commbox_async.testing import FakeCommbox

IDENT = 4242
#: JSON text holding the six characters \ud83d with no low half after them.
LONE = (
    b'{"status":200,"data":[{"objectId":1,"message":"Hi \\ud83d"},{"objectId":2,"message":"ok"}]}'
)


async def test_a_lone_surrogate_escape_costs_no_page(
    server: FakeCommbox, client: AsyncCommbox
) -> None:
    """msgspec refuses a lone surrogate escape: the page was a retryable decode error and
    the call was fetched 8 times for nothing. It is one request and a page now, the
    surrogate read as U+FFFD so that writing the page out as UTF-8 cannot fail."""
    server.script(IDENT, *[(200, {}, LONE)] * 8)  # as a server would: the same each time
    page = await client.get_user_objects(IDENT)
    assert [(o.object_id, o.message) for o in page.data] == [(1, "Hi \ufffd"), (2, "ok")]
    assert page.invalid_items == []
    assert server.count(None, IDENT) == 1
    msgspec.json.encode(page.data).decode("utf-8")


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (b"\\udc00 x", "\ufffd x"),  # a low half alone
        (b"\\uDE00\\uD83D", "\ufffd\ufffd"),  # the halves in the wrong order
        (b"\\ud83d\\ud83d\\ude00", "\ufffd\U0001f600"),  # a high half, then a pair
        (b"\\ud83d\\u0041", "\ufffdA"),
        (b"\\\\ud83d \\ud83d", "\\ud83d \ufffd"),  # an escaped backslash, then text
        (b"\\\\\\ud83d", "\\\ufffd"),  # an escaped backslash, then a lone escape
        (b'\\"\\ud83d\\"', '"\ufffd"'),
    ],
)
def test_lone_surrogate_escapes_are_replaced_and_the_rest_kept(wire: bytes, message: str) -> None:
    """Only a surrogate escape outside a pair is replaced; pairs, other escapes and a
    backslash escaped before the text "ud83d" keep their meaning."""
    body = b'{"status":200,"data":[{"objectId":1,"message":"' + wire + b'"},{"objectId":2}]}'
    page = parse_response(200, {}, body, IDENT)
    assert [(o.object_id, o.message) for o in page.data] == [(1, message), (2, None)]
    assert page.invalid_items == []


@pytest.mark.parametrize(
    "body",
    [b"<html>\\ud83d</html>", b'{"status":200,"data":[{"objectId":1,"message":"\\ud83d}'],
)
def test_a_body_that_is_not_json_is_still_a_decode_error(body: bytes) -> None:
    """Replacing lone surrogates makes no JSON of what was not JSON."""
    with pytest.raises(CommboxDecodeError):
        parse_response(200, {}, body, IDENT)


def test_a_lone_surrogate_in_a_drifted_item_is_read_by_the_slow_path() -> None:
    """A body with a lone surrogate and another drift (an id sent as a string with a comma)
    goes on to the per-item repair, and the other items are unharmed."""
    body = (
        b'{"status":200,"data":[{"objectId":"1,","message":"\\ud800"},'
        b'{"objectId":2,"createdTime":"not a time at all","childs":{"x":1}}]}'
    )
    page = decode_page(body)
    assert [(o.object_id, o.message) for o in page.data] == [(1, "\ufffd")]
    assert [item.index for item in page.invalid_items] == [1]


def test_a_lone_surrogate_inside_content_reads_as_replacement() -> None:
    """``content`` is JSON inside a JSON string: a lone surrogate escape in that inner JSON
    gave None (the whole document lost); it reads with U+FFFD now."""
    inner = '{"text": "x\\ud83dy", "n": 1}'  # the inner JSON holds the escape \ud83d
    body = json.dumps({"data": [{"objectId": 1, "content": inner}]}).encode()
    page = decode_page(body)
    assert page.data[0].content == {"text": "x\ufffdy", "n": 1}
    assert decode_content(inner) == {"text": "x\ufffdy", "n": 1}


def test_content_holding_a_surrogate_itself_reads_as_none() -> None:
    """A ``content`` str built in Python with a surrogate in it (``json.loads`` keeps them)
    is unreadable, like other bad content: None, not a UnicodeEncodeError."""
    assert UserObject(content_raw='{"a": "\ud83d"}').content is None
    assert decode_content('{"a": "\ud83d"}') is None


async def test_a_lone_surrogate_in_an_error_body_keeps_the_description(
    server: FakeCommbox, client: AsyncCommbox
) -> None:
    """An error body with a lone surrogate lost its description (the body read as not JSON)."""
    body = b'{"status":401,"description":"Key \\udc00 revoked","data":""}'
    server.script(IDENT, (401, {}, body))
    with pytest.raises(AuthenticationError) as info:
        await client.get_user_objects(IDENT)
    assert info.value.description == "Key \ufffd revoked"


async def test_a_retry_after_too_large_for_a_float_pauses_for_the_cap() -> None:
    """A Retry-After of more digits than a float holds read as none given: the pause was the
    1 s default instead of the policy's cap (120 s)."""
    huge = "1" + "0" * 400
    async with FakeCommbox() as server:
        server.script(IDENT, (429, {"Retry-After": huge}, b'{"status": 429}'))
        async with server.client(retries=Retries(tries=1, throttled_tries=1)) as commbox:
            with pytest.raises(RateLimitError) as info:
                await commbox.get_user_objects(IDENT)
            retry_after = info.value.retry_after
            assert retry_after is not None and retry_after >= 1e9
            limiter = commbox.limiter
            assert getattr(limiter, "pause_asked", None) == retry_after
            assert limiter.pause_policy.asked(retry_after) == 120.0
