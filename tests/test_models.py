"""Decoding of the v2 page: the reference example, the drift a server can show, and properties."""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commbox_async import (
    Child,
    Identity,
    ObjectStatus,
    ObjectType,
    StreamProviderType,
    User,
    UserObject,
    UserObjectsPage,
    _models,
    decode_content,
)
from commbox_async._models import ModelDecodeError, decode_error_body, decode_page

#: The vendor's documented 200 example, kept in the repository (tests/fixtures/README.md).
SEED = Path(__file__).resolve().parent / "fixtures" / "seed_example_200.json"
UTC = timezone.utc


@pytest.fixture(scope="module")
def seed_bytes() -> bytes:
    return SEED.read_bytes()


@pytest.fixture
def seed(seed_bytes: bytes) -> dict[str, Any]:
    """The reference example as a fresh dict, to be drifted by each test."""
    doc: dict[str, Any] = json.loads(seed_bytes)
    return doc


def encode(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def only(page: UserObjectsPage) -> UserObject:
    """The single conversation of a page that must have decoded cleanly."""
    assert page.invalid_items == []
    assert len(page.data) == 1
    return page.data[0]


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# --- the reference example, value by value ----------------------------------------------


def test_seed_top_level(seed_bytes: bytes) -> None:
    """The envelope of the reference example decodes to exactly its values."""
    page = decode_page(seed_bytes)
    assert page.status == 200
    assert page.description == "Operation successful"
    assert page.response_time == at(2026, 2, 12, 15, 9, 23, 998000)
    assert page.total_unread_chat_messages == 2
    assert page.unread_total == 2
    assert page.invalid_items == []
    assert page.conversations is page.data
    assert len(page.data) == 1


def test_seed_conversation_fields(seed_bytes: bytes) -> None:
    """Every field of the example's conversation decodes to its value and type."""
    conv = only(decode_page(seed_bytes))
    expected = {
        "object_id": 396001,
        "stream_id": 19155,
        "sub_stream_id": 0,
        "stream_provider_id": "",
        "stream_provider_type": StreamProviderType.COMMBOX,
        "user_identity": 558355,
        "first_name": "",
        "last_name": "",
        "module_id": 0,
        "user_stream_provider_id": "d7655a64-ac14-4aa1-8907-1e26402ac6da",
        "user_stream_provider_type": StreamProviderType.ANONYMOUS,
        "message": "<p>What is your ID number?\xa0</p>",  # a no-break space
        "created_time": at(2026, 2, 12, 15, 1, 2),
        "updated_time": at(2026, 2, 12, 15, 8, 16),
        "closed_time": None,
        "first_response_time": at(2026, 2, 12, 15, 1, 27),
        "last_response_time": at(2026, 2, 12, 15, 9, 13),
        "status_id": ObjectStatus.OPEN,
        "assigned_manager_id": 0,
        "last_assigned_manager_id": 0,
        "type": ObjectType.TEXT,
        "is_manager": False,
        "activity_logs": [],
        "tags_object_id": [],
        "customer_participants": [],
        "unread_messages": 2,
        "content_raw": (
            '{"guidRT":"d34f89f73ffb4ec9909b7da1964cb7cb",'
            '"languages":[{"Item1":"en","Item2":1471163}]}'
        ),
    }
    for name, value in expected.items():
        got = getattr(conv, name)
        assert got == value, name
        assert type(got) is type(value), name
    assert conv.content == {
        "guidRT": "d34f89f73ffb4ec9909b7da1964cb7cb",
        "languages": [{"Item1": "en", "Item2": 1471163}],
    }
    assert len(conv.childs) == 1
    # Every struct field is covered above or by the nested tests below.
    covered = set(expected) | {"user", "childs"}
    assert {f.name for f in msgspec.structs.fields(UserObject)} == covered


def test_seed_conversation_user(seed_bytes: bytes) -> None:
    """The conversation's user decodes field by field, nulls included."""
    user = only(decode_page(seed_bytes)).user
    assert isinstance(user, User)
    assert msgspec.structs.asdict(user) == {
        "content_raw": "{}",
        "id": 545516,
        "manager_id": None,
        "is_manager": False,
        "encrypted_id": None,
        "identity": None,
        "unique_id": "",
        "phone1": "",
        "phone2": "",
        "email": "",
        "first_name": "",
        "last_name": "",
        "gender": "",
        "number_identities": 1,
        "locale": "",
        "birthday": "",
        "remarks": "",
    }
    assert user.content == {}


def test_seed_child_and_its_user_and_identity(seed_bytes: bytes) -> None:
    """The child, its agent user and the user's identity decode to exactly their values."""
    child = only(decode_page(seed_bytes)).childs[0]
    assert isinstance(child, Child)
    assert child.id == 1471164
    assert child.object_id == 396001
    assert child.parent_object_id == 396001
    assert child.content_raw == '{"messageAlreadyRenderedFromClient":true}'
    assert child.content == {"messageAlreadyRenderedFromClient": True}
    assert child.message == "Hi, How can I help you?"
    assert child.created_time == at(2026, 2, 12, 15, 0, 57)
    assert child.stream_provider_type is StreamProviderType.COMMBOX
    assert child.type is ObjectType.SYSTEM_MESSAGE
    user = child.user
    assert user is not None
    assert user.id == 545437
    assert user.manager_id == 545437
    assert user.is_manager is True
    assert user.encrypted_id == "HnJymfEHh8dORgiV0otwEgRpcFYJqKfueiQqPvbZTrs%3d"
    for name in (
        "unique_id",
        "phone1",
        "phone2",
        "email",
        "first_name",
        "last_name",
        "gender",
        "locale",
        "birthday",
        "remarks",
        "content_raw",
    ):
        assert getattr(user, name) is None, name
    assert user.number_identities == 0
    assert user.content is None
    assert user.identity == Identity(
        id=558237,
        stream_provider_id="",
        stream_provider_type=StreamProviderType.COMMBOX,
        first_name="AI Agent",
        last_name="",
        thumbnail_url="",
    )


def test_seed_timestamps_are_utc_aware(seed_bytes: bytes) -> None:
    """Every timestamp of the example is timezone-aware with a zero UTC offset."""
    page = decode_page(seed_bytes)
    conv = only(page)
    stamps = [
        page.response_time,
        conv.created_time,
        conv.updated_time,
        conv.first_response_time,
        conv.last_response_time,
        conv.childs[0].created_time,
    ]
    for stamp in stamps:
        assert stamp is not None
        assert stamp.tzinfo is not None
        assert stamp.utcoffset() == timedelta(0)


# --- the other reference's forms, and other drift ---------------------------------------


def test_status_as_string(seed: dict[str, Any]) -> None:
    """The spec's string status ("200") decodes as the int 200."""
    seed["status"] = "200"
    page = decode_page(encode(seed))
    assert page.status == 200
    assert only(page).object_id == 396001


@pytest.mark.parametrize(
    ("field", "wire", "attr", "expected"),
    [
        ("user_identity", "528986", "user_identity", 528986),
        ("streamProviderType", "5", "stream_provider_type", StreamProviderType.TELEPHONE),
        ("objectId", " 1234 ", "object_id", 1234),
        ("statusId", "2", "status_id", ObjectStatus.RESOLVED),
        ("unreadMessages", "3,", "unread_messages", 3),
        ("streamId", 4444.0, "stream_id", 4444),
        ("isManager", 1, "is_manager", True),
        ("isManager", "false", "is_manager", False),
        ("firstName", 12, "first_name", "12"),
    ],
)
def test_conversation_scalars_in_either_type(
    seed: dict[str, Any], field: str, wire: Any, attr: str, expected: Any
) -> None:
    """Ids and counts as strings or floats, strings as numbers: each decodes to the model's type."""
    seed["data"][0][field] = wire
    conv = only(decode_page(encode(seed)))
    assert getattr(conv, attr) == expected
    assert type(getattr(conv, attr)) is type(expected)
    assert conv.user_stream_provider_id == "d7655a64-ac14-4aa1-8907-1e26402ac6da"


def test_spec_user_forms(seed: dict[str, Any]) -> None:
    """The spec's user: id "1769668," (with the comma), phone1 and uniqueId as numbers."""
    seed["data"][0]["user"].update(
        {"id": "1769668,", "phone1": 972547724967, "uniqueId": 266684, "locale": "en_US"}
    )
    user = only(decode_page(encode(seed))).user
    assert user is not None
    assert user.id == 1769668
    assert user.phone1 == "972547724967"
    assert user.unique_id == "266684"
    assert user.locale == "en_US"


@pytest.mark.parametrize("extra_drift", [False, True])
def test_locale_as_object(seed: dict[str, Any], extra_drift: bool) -> None:
    """The vendor's notes call locale an object: a JSON object is kept as a dict, on both paths."""
    seed["data"][0]["user"]["locale"] = {"language": "he", "country": "IL"}
    if extra_drift:
        seed["data"][0]["user"]["id"] = "545516,"  # forces the per-item repair path
    user = only(decode_page(encode(seed))).user
    assert user is not None
    assert user.locale == {"language": "he", "country": "IL"}


@pytest.mark.parametrize("spelling", ["objectId", "object_id"])
def test_child_parent_id_in_either_spelling(seed: dict[str, Any], spelling: str) -> None:
    """A child's parent id reads the same from the v2 objectId and the v1 object_id."""
    child = seed["data"][0]["childs"][0]
    del child["objectId"]
    child[spelling] = "1234"  # the spec's examples also send it as a string
    decoded = only(decode_page(encode(seed))).childs[0]
    assert decoded.parent_object_id == 1234
    assert decoded.id == 1471164


def test_child_parent_id_prefers_v2_spelling(seed: dict[str, Any]) -> None:
    """With both spellings present, objectId (the v2 page's) wins."""
    seed["data"][0]["childs"][0]["object_id"] = 1
    assert only(decode_page(encode(seed))).childs[0].parent_object_id == 396001


def test_spec_child_forms(seed: dict[str, Any]) -> None:
    """The spec's v1 child: streamProviderType "5", nested identity with string type and nulls."""
    seed["data"][0]["childs"] = [
        {
            "id": 123456,
            "object_id": 1234,
            "content": "{}",
            "message": "some message...",
            "createdTime": "2024-08-06T07:51:52.2581942Z",
            "streamProviderType": "5",
            "user": {
                "id": 520760,
                "managerId": 0,
                "isManager": False,
                "identity": {
                    "id": 531826,
                    "streamProviderId": "972505555555",
                    "streamProviderType": "5",
                    "firstName": None,
                    "lastName": None,
                    "thumbnailUrl": None,
                },
            },
        }
    ]
    child = only(decode_page(encode(seed))).childs[0]
    assert child.parent_object_id == 1234
    assert child.stream_provider_type is StreamProviderType.TELEPHONE
    assert child.created_time == at(2024, 8, 6, 7, 51, 52, 258194)
    assert child.content == {}
    assert child.user is not None and child.user.identity is not None
    assert child.user.identity.stream_provider_type is StreamProviderType.TELEPHONE
    assert child.user.identity.first_name is None
    assert child.user.content_raw is None  # absent, defaulted


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        ("2026-02-12T15:01:02Z", at(2026, 2, 12, 15, 1, 2)),
        ("2026-02-12T15:09:23.998Z", at(2026, 2, 12, 15, 9, 23, 998000)),
        ("2024-11-28T16:22:21.1563866Z", at(2024, 11, 28, 16, 22, 21, 156387)),
        ("2024-11-28T16:22:21.1563864Z", at(2024, 11, 28, 16, 22, 21, 156386)),
        ("2024-08-06T07:51:52", at(2024, 8, 6, 7, 51, 52)),
        ("2024-08-06T07:51:52.2581942", at(2024, 8, 6, 7, 51, 52, 258194)),
        ("2025-04-15T07:23:18:479", at(2025, 4, 15, 7, 23, 18, 479000)),
        ("2024-12-31T23:59:59.9999999", at(2025, 1, 1)),
        ("2024-08-06T09:51:52+02:00", at(2024, 8, 6, 7, 51, 52)),
    ],
)
def test_timestamp_forms(seed: dict[str, Any], wire: str, expected: datetime) -> None:
    """.NET timestamps (0, 3 or 7 fractional digits), naive ones (UTC) and the colon form decode."""
    seed["data"][0]["createdTime"] = wire
    conv = only(decode_page(encode(seed)))
    assert conv.created_time == expected
    assert conv.created_time is not None and conv.created_time.tzinfo is not None


@pytest.mark.parametrize("extra_drift", [False, True])
def test_seven_digit_rounding_same_on_both_paths(seed: dict[str, Any], extra_drift: bool) -> None:
    """A 7-digit fraction rounds the same whether the item takes the fast or the slow path."""
    seed["data"][0]["createdTime"] = "2024-11-28T16:22:21.1563869Z"
    if extra_drift:
        seed["data"][0]["user"]["id"] = "545516,"  # forces the per-item repair path
    conv = only(decode_page(encode(seed)))
    assert conv.created_time == at(2024, 11, 28, 16, 22, 21, 156387)


@pytest.mark.parametrize(
    "wire", ["yesterday", "2024-13-40T00:00:00Z", "2024-08-06T07:51:52+99:00", True, "", [1]]
)
def test_unreadable_optional_timestamp_is_dropped(seed: dict[str, Any], wire: Any) -> None:
    """A timestamp that cannot be read becomes None; the conversation still decodes."""
    seed["data"][0]["closedTime"] = wire
    conv = only(decode_page(encode(seed)))
    assert conv.closed_time is None
    assert conv.object_id == 396001


@pytest.mark.parametrize("extra_drift", [False, True])
@pytest.mark.parametrize("wire", [1700000000, "1700000000", 1700000000.5])
def test_numeric_timestamp_same_on_both_paths(
    seed: dict[str, Any], wire: Any, extra_drift: bool
) -> None:
    """A number in a timestamp field reads as Unix seconds, whichever path decodes the item."""
    seed["data"][0]["closedTime"] = wire
    if extra_drift:
        seed["data"][0]["user"]["id"] = "545516,"
    conv = only(decode_page(encode(seed)))
    assert conv.closed_time == datetime.fromtimestamp(float(wire), UTC)


def test_unknown_fields_ignored(seed: dict[str, Any], seed_bytes: bytes) -> None:
    """Fields the models do not know, at every level, change nothing."""
    seed["newTopLevel"] = {"a": [1, 2]}
    seed["data"][0]["priorityTime"] = "2026-01-01T00:00:00Z"
    seed["data"][0]["numChilds"] = 1
    seed["data"][0]["user"]["numIdentities"] = 3
    seed["data"][0]["childs"][0]["isBot"] = True
    seed["data"][0]["childs"][0]["user"]["identity"]["userName"] = "bot"
    drifted = decode_page(encode(seed))
    reference = decode_page(seed_bytes)
    assert only(drifted).object_id == 396001
    ref_identity = reference.data[0].childs[0].user.identity  # type: ignore[union-attr]
    drift_identity = drifted.data[0].childs[0].user.identity  # type: ignore[union-attr]
    assert drift_identity == msgspec.structs.replace(ref_identity, user_name="bot")  # type: ignore[arg-type]
    assert msgspec.structs.asdict(drifted.data[0].user) == msgspec.structs.asdict(  # type: ignore[arg-type]
        reference.data[0].user  # type: ignore[arg-type]
    )


def test_missing_fields_defaulted() -> None:
    """A conversation with no fields at all decodes with every default."""
    page = decode_page(b'{"data": [{}]}')
    conv = only(page)
    assert conv == UserObject()
    assert conv.object_id is None
    assert conv.childs == [] and conv.activity_logs == [] and conv.tags_object_id == []
    assert conv.unread_messages == 0
    assert conv.is_manager is False
    assert conv.content is None and conv.content_raw is None
    assert page.status is None and page.total_unread_chat_messages is None
    assert page.unread_total == 0


def test_unread_total_falls_back_to_sum() -> None:
    """Without totalUnreadChatMessages the page total is the sum over its conversations."""
    page = decode_page(b'{"data": [{"unreadMessages": 2}, {"unreadMessages": "3"}]}')
    assert page.total_unread_chat_messages is None
    assert page.unread_total == 5


def _seed_keys() -> list[str]:
    doc = json.loads(SEED.read_bytes())
    return sorted(doc["data"][0])


@pytest.mark.parametrize("key", _seed_keys())
def test_null_in_any_conversation_field(seed: dict[str, Any], key: str) -> None:
    """A null in any field of the conversation never costs the conversation."""
    seed["data"][0][key] = None
    conv = only(decode_page(encode(seed)))
    defaults = UserObject()
    field = {f.encode_name: f.name for f in msgspec.inspect.type_info(UserObject).fields}[key]
    # Optional fields become None; the others (lists, counts, flags) keep their default.
    assert getattr(conv, field) == getattr(defaults, field)
    if key != "objectId":
        assert conv.object_id == 396001


@pytest.mark.parametrize("where", ["user", "child", "child_user", "identity"])
def test_null_in_every_nested_field(seed: dict[str, Any], where: str) -> None:
    """Nulls in every field of the user, the child, its user and the identity are accepted."""
    conv = seed["data"][0]
    target = {
        "user": conv["user"],
        "child": conv["childs"][0],
        "child_user": conv["childs"][0]["user"],
        "identity": conv["childs"][0]["user"]["identity"],
    }[where]
    for key in target:
        target[key] = None
    decoded = only(decode_page(encode(seed)))
    assert decoded.object_id == 396001
    assert decoded.childs == [] or decoded.childs[0] is not None


def test_top_level_nulls_and_strings(seed: dict[str, Any]) -> None:
    """Nulls in the envelope and a "2," unread total are read, the conversations kept."""
    seed.update({"status": None, "description": None, "response_time": None})
    seed["totalUnreadChatMessages"] = "2,"
    page = decode_page(encode(seed))
    assert page.status is None and page.description is None and page.response_time is None
    assert page.total_unread_chat_messages == 2
    assert only(page).object_id == 396001


@pytest.mark.parametrize(
    ("enum", "value"),
    [(ObjectStatus, 99), (ObjectType, 77), (StreamProviderType, 42)],
)
def test_unknown_enum_values(enum: type[Any], value: int) -> None:
    """An enum value the vendor added later decodes as UNKNOWN_<n>, still an int."""
    member = enum(value)
    assert member == value
    assert isinstance(member, enum) and isinstance(member, int)
    assert member.name == f"UNKNOWN_{value}"


def test_unknown_enum_values_in_a_page(seed: dict[str, Any]) -> None:
    """A page whose statusId, type and provider types are unknown values decodes fully."""
    conv = seed["data"][0]
    conv.update({"statusId": 99, "type": 77, "streamProviderType": 42})
    conv["childs"][0]["type"] = "19"
    decoded = only(decode_page(encode(seed)))
    assert decoded.status_id == ObjectStatus(99)
    assert decoded.status_id is not None and decoded.status_id.name == "UNKNOWN_99"
    assert decoded.type == 77 and isinstance(decoded.type, ObjectType)
    assert decoded.stream_provider_type == 42
    assert decoded.childs[0].type == 19 and isinstance(decoded.childs[0].type, ObjectType)


def test_known_enum_members() -> None:
    """The enums carry the vendor's numbers."""
    assert ObjectStatus.PENDING == 15 and ObjectStatus.SENT == 13
    assert ObjectType.SURVEY_MESSAGE == 18 and ObjectType.SYSTEM_MESSAGE == 11
    assert StreamProviderType.SALESFORCE == 17 and StreamProviderType.WHATSAPP == 7


@pytest.mark.parametrize("data", ['""', "null", "[]"])
def test_empty_data_forms(data: str) -> None:
    """data as "", null or [] is an empty page, not an error."""
    body = f'{{"status": 200, "totalUnreadChatMessages": 0, "data": {data}}}'.encode()
    page = decode_page(body)
    assert page.data == [] and page.invalid_items == []
    assert page.status == 200 and page.unread_total == 0


def test_missing_data_is_empty() -> None:
    """A page without data is empty."""
    assert decode_page(b'{"status": 200}').data == []


def test_bad_conversations_set_aside(seed: dict[str, Any]) -> None:
    """Unreadable conversations go to invalid_items with index and raw JSON; the rest decode."""
    good = seed["data"][0]
    second = copy.deepcopy(good)
    second["objectId"] = 396002
    bad_fragments = ["5", "null", '{"unreadMessages": "many"}', '{"childs": 7}', "[1, 2]"]
    body = (
        '{"status": 200, "data": ['
        + json.dumps(good)
        + ","
        + ",".join(bad_fragments)
        + ","
        + json.dumps(second)
        + "]}"
    ).encode()
    page = decode_page(body)
    assert [c.object_id for c in page.data] == [396001, 396002]
    assert [i.index for i in page.invalid_items] == [1, 2, 3, 4, 5]
    assert [i.raw for i in page.invalid_items] == [f.encode() for f in bad_fragments]
    assert all(i.reason for i in page.invalid_items)


@pytest.mark.parametrize("body", [b"", b"<html><body>Bad gateway</body></html>", b"[]", b"null"])
def test_not_a_page(body: bytes) -> None:
    """A body that is not a JSON object raises the models' decode error (nothing else)."""
    with pytest.raises(ModelDecodeError):
        decode_page(body)


# --- the double-encoded content ----------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"a": [1, 2]}', {"a": [1, 2]}),
        ("[1]", [1]),
        ('"text"', "text"),
        ("", None),
        (None, None),
        ("null", None),
        ("not json {", None),
        ("{", None),
        ("   ", None),
    ],
)
def test_decode_content(raw: str | None, expected: Any) -> None:
    """decode_content returns the document, or None for empty, null or invalid JSON."""
    assert decode_content(raw) == expected


@pytest.mark.parametrize("raw", ["", None, "{not json", "<p>hi</p>"])
def test_bad_content_keeps_raw(seed: dict[str, Any], raw: str | None) -> None:
    """Conversation, user and child with bad content: content None, content_raw kept."""
    conv = seed["data"][0]
    conv["content"] = raw
    conv["user"]["content"] = raw
    conv["childs"][0]["content"] = raw
    decoded = only(decode_page(encode(seed)))
    child, user = decoded.childs[0], decoded.user
    assert user is not None
    for obj in (decoded, user, child):
        assert obj.content is None
        assert obj.content_raw == raw


def test_content_sent_decoded(seed: dict[str, Any]) -> None:
    """content sent as a JSON object (not inside a string) is kept: content gives the document."""
    seed["data"][0]["content"] = {"guidRT": "abc", "languages": []}
    seed["data"][0]["childs"][0]["content"] = [1, 2]
    conv = only(decode_page(encode(seed)))
    assert conv.content == {"guidRT": "abc", "languages": []}
    assert conv.content_raw is not None and json.loads(conv.content_raw) == conv.content
    assert conv.childs[0].content == [1, 2]


def test_content_decoded_on_access(seed_bytes: bytes) -> None:
    """content decodes on each access to an equal value, and content_raw stays the wire text."""
    conv = only(decode_page(seed_bytes))
    assert conv.content == conv.content
    assert conv.content["guidRT"] == "d34f89f73ffb4ec9909b7da1964cb7cb"
    assert conv.content_raw is not None and conv.content_raw.startswith('{"guidRT"')


# --- error bodies --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "description", "time"),
    [
        (
            b'{"status": 500, "description": "Operation failed",'
            b' "response_time": "2025-04-15T07:24:52.956Z"}',
            500,
            "Operation failed",
            at(2025, 4, 15, 7, 24, 52, 956000),
        ),
        (
            b'{"status": "400", "description": "Bad Request",'
            b' "response_time": "2025-04-15T07:23:18:479", "data": ""}',
            400,
            "Bad Request",
            at(2025, 4, 15, 7, 23, 18, 479000),
        ),
        (
            b'{"status": 429, "description": "Too Many Requests",'
            b' "response_time": "2025-04-15T07:23:18", "data": {"errors": [{"code": "x"}]}}',
            429,
            "Too Many Requests",
            at(2025, 4, 15, 7, 23, 18),
        ),
        (b'{"status": 401, "description": 5, "response_time": "soon"}', 401, "5", None),
    ],
)
def test_error_body(body: bytes, status: int, description: str, time: datetime | None) -> None:
    """Error bodies decode leniently: the description survives a naive or malformed time."""
    parsed = decode_error_body(body)
    assert parsed is not None
    assert parsed.status == status
    assert parsed.description == description
    assert parsed.response_time == time


@pytest.mark.parametrize("body", [b"", b"<html>502</html>", b"[1]", b'"x"', b"null"])
def test_error_body_not_json_object(body: bytes) -> None:
    """An error body that is not a JSON object gives None, never an exception."""
    assert decode_error_body(body) is None


# --- decoders are built once -------------------------------------------------------------


def test_decoders_built_once(monkeypatch: pytest.MonkeyPatch, seed: dict[str, Any]) -> None:
    """Decoding (fast path, slow path, errors, content) never builds a new msgspec decoder."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a decoder was built while decoding")

    seed["data"][0]["user"]["id"] = "1769668,"  # slow path
    drifted = encode(seed)
    monkeypatch.setattr(_models.msgspec.json, "Decoder", refuse)
    assert only(decode_page(drifted)).content is not None
    assert decode_error_body(b'{"status": 400, "response_time": "2025-01-01T00:00:00"}')


# --- properties (hypothesis) -------------------------------------------------------------

Pair = tuple[Any, Any]  # (what the wire carries, what the model must hold)

TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


def _int_forms(n: int) -> st.SearchStrategy[Pair]:
    forms: list[Pair] = [(n, n), (str(n), n), (f"{n},", n), (f" {n} ", n)]
    if abs(n) < 2**53:
        forms.append((float(n), n))
    return st.sampled_from(forms)


def int_pairs(values: st.SearchStrategy[int] = INT64) -> st.SearchStrategy[Pair]:
    return values.flatmap(_int_forms)


def str_pairs() -> st.SearchStrategy[Pair]:
    return st.one_of(TEXT.map(lambda s: (s, s)), INT64.map(lambda n: (n, str(n))))


def bool_pairs() -> st.SearchStrategy[Pair]:
    return st.sampled_from(
        [
            (True, True),
            (False, False),
            (1, True),
            (0, False),
            (1.0, True),
            (0.0, False),
            ("true", True),
            ("false", False),
            ("1", True),
        ]
    )


def _time_forms(moment: datetime) -> st.SearchStrategy[Pair]:
    base = moment.strftime("%Y-%m-%dT%H:%M:%S")
    ms = moment.microsecond // 1000
    whole = moment.replace(microsecond=0, tzinfo=UTC)
    milli = moment.replace(microsecond=ms * 1000, tzinfo=UTC)
    micro = moment.replace(tzinfo=UTC)
    return st.sampled_from(
        [
            (base + "Z", whole),
            (base, whole),
            (f"{base}.{ms:03d}Z", milli),
            (f"{base}:{ms:03d}", milli),
            (f"{base}.{moment.microsecond:06d}0Z", micro),  # .NET: 7 digits
            (f"{base}.{moment.microsecond:06d}0", micro),
            (f"{base}.{moment.microsecond:06d}+00:00", micro),
        ]
    )


def time_pairs() -> st.SearchStrategy[Pair]:
    moments = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2100, 1, 1))
    return moments.flatmap(_time_forms)


#: Leaves of arbitrary JSON, with a rare digit string longer than Python converts to int.
JSON_LEAVES = (
    st.none()
    | st.booleans()
    | INT64
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
    | st.integers(4301, 5000).map(lambda n: "9" * n)
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=12,
)


def content_pairs() -> st.SearchStrategy[Pair]:
    documents = st.dictionaries(TEXT, JSON_VALUES, max_size=4).map(lambda d: (json.dumps(d), d))
    return st.one_of(
        documents,
        st.sampled_from([("", None), (None, None), ("{not json", None), ("null", None)]),
    )


def optional(pairs: st.SearchStrategy[Pair]) -> st.SearchStrategy[Pair]:
    return st.one_of(pairs, st.just((None, None)))


def enum_pairs(enum: type[Any]) -> st.SearchStrategy[Pair]:
    return int_pairs(st.integers(min_value=0, max_value=300)).map(lambda p: (p[0], enum(p[1])))


#: wire name -> (attribute, strategy of (wire value, expected value)).
CONVERSATION_FIELDS: dict[str, tuple[str, st.SearchStrategy[Pair]]] = {
    "objectId": ("object_id", optional(int_pairs())),
    "streamId": ("stream_id", optional(int_pairs())),
    "subStreamId": ("sub_stream_id", optional(int_pairs())),
    "streamProviderId": ("stream_provider_id", optional(str_pairs())),
    "streamProviderType": ("stream_provider_type", optional(enum_pairs(StreamProviderType))),
    "user_identity": ("user_identity", optional(int_pairs())),
    "firstName": ("first_name", optional(str_pairs())),
    "moduleId": ("module_id", optional(int_pairs())),
    "userStreamProviderType": (
        "user_stream_provider_type",
        optional(enum_pairs(StreamProviderType)),
    ),
    "content": ("content", content_pairs()),
    "message": ("message", optional(str_pairs())),
    "createdTime": ("created_time", optional(time_pairs())),
    "closedTime": ("closed_time", optional(time_pairs())),
    "statusId": ("status_id", optional(enum_pairs(ObjectStatus))),
    "type": ("type", optional(enum_pairs(ObjectType))),
    "isManager": ("is_manager", bool_pairs()),
    "unreadMessages": ("unread_messages", int_pairs(st.integers(0, 10**6))),
    "tagsObjectId": (
        "tags_object_id",
        st.lists(int_pairs(), max_size=3).map(lambda ps: ([p[0] for p in ps], [p[1] for p in ps])),
    ),
}


@st.composite
def conversations(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """A conversation in valid shape with drifted types, and the values it must decode to."""
    keys = draw(st.sets(st.sampled_from(sorted(CONVERSATION_FIELDS))))
    wire: dict[str, Any] = {}
    expected: dict[str, Any] = {}
    for key in sorted(keys):
        attr, pairs = CONVERSATION_FIELDS[key]
        wire[key], expected[attr] = draw(pairs)
    extra = draw(st.dictionaries(TEXT.map(lambda s: "x_" + s), JSON_VALUES, max_size=2))
    wire.update(extra)
    if draw(st.booleans()):
        child_id, child_expected = draw(int_pairs())
        spelling = draw(st.sampled_from(["objectId", "object_id"]))
        wire["childs"] = [{"id": 1, spelling: child_id, "createdTime": "2024-01-01T00:00:00"}]
        expected["childs"] = child_expected
    return wire, expected


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    items=st.lists(conversations(), max_size=4), status=optional(int_pairs(st.integers(100, 599)))
)
def test_property_drifted_conversations_round_trip(
    items: list[tuple[dict[str, Any], dict[str, Any]]], status: Pair
) -> None:
    """Valid conversations with drifted types all decode, each field to its intended value."""
    body = {"status": status[0], "data": [wire for wire, _ in items]}
    page = decode_page(json.dumps(body).encode())
    assert page.invalid_items == []
    assert page.status == status[1]
    assert len(page.data) == len(items)
    for conv, (_, expected) in zip(page.data, items, strict=True):
        for attr, value in expected.items():
            if attr == "childs":
                assert conv.childs[0].parent_object_id == value
                assert conv.childs[0].created_time == at(2024, 1, 1)
            else:
                got = getattr(conv, attr)
                assert got == value, attr
                if isinstance(value, datetime):
                    assert got.utcoffset() == timedelta(0)


def _only_library_errors(call: Callable[[], object]) -> None:
    with contextlib.suppress(ModelDecodeError):
        call()


@settings(max_examples=300, deadline=None)
@given(
    doc=st.dictionaries(
        st.sampled_from([*sorted(CONVERSATION_FIELDS), "user", "childs"]), JSON_VALUES
    )
)
def test_property_garbage_fields_never_escape(doc: dict[str, Any]) -> None:
    """Any JSON in the conversation's fields decodes or is set aside; the page never fails."""
    page = decode_page(json.dumps({"status": 200, "data": [doc, {"objectId": 1}]}).encode())
    assert page.data[-1].object_id == 1
    assert len(page.data) + len(page.invalid_items) == 2


@settings(max_examples=300, deadline=None)
@given(value=JSON_VALUES)
def test_property_any_json_raises_only_decode_error(value: Any) -> None:
    """Any JSON document either decodes or raises ModelDecodeError, nothing else."""
    _only_library_errors(lambda: decode_page(json.dumps(value).encode()))
    _only_library_errors(lambda: decode_page(json.dumps({"data": value}).encode()))
    _only_library_errors(lambda: decode_page(json.dumps({"data": [value]}).encode()))
    decode_error_body(json.dumps(value).encode())  # never raises


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=200))
def test_property_any_bytes_raise_only_decode_error(body: bytes) -> None:
    """Arbitrary bytes either decode or raise ModelDecodeError, nothing else."""
    _only_library_errors(lambda: decode_page(body))
    decode_error_body(body)


@st.composite
def timestamp_like(draw: st.DrawFn) -> str:
    """Real dates with any fraction and any zone, offsets out of range included."""
    moment = draw(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)))
    text = moment.strftime("%Y-%m-%dT%H:%M:%S").rjust(19, "0")
    if draw(st.booleans()):
        text += draw(st.sampled_from(".:")) + draw(st.text("0123456789", min_size=1, max_size=12))
    zone = draw(
        st.sampled_from(["", "Z"])
        | st.tuples(st.sampled_from("+-"), st.integers(0, 99), st.integers(0, 99)).map(
            lambda z: f"{z[0]}{z[1]:02d}:{z[2]:02d}"
        )
    )
    return text + zone


@settings(max_examples=300, deadline=None)
@given(stamp=st.text(alphabet="0123456789-:T.Z+ ", max_size=40) | timestamp_like())
def test_property_timestamps_never_escape(stamp: str) -> None:
    """Any timestamp-like string decodes to an aware datetime or to None, never an exception."""
    page = decode_page(json.dumps({"data": [{"createdTime": stamp, "objectId": 7}]}).encode())
    conv = only(page)
    assert conv.object_id == 7
    assert conv.created_time is None or conv.created_time.tzinfo is not None


def test_models_are_structs() -> None:
    """The public models are msgspec Structs (so they encode back with msgspec)."""
    for model in (UserObjectsPage, UserObject, Child, User, Identity):
        assert issubclass(model, msgspec.Struct)


def _decoded_fields(page: UserObjectsPage) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in msgspec.structs.asdict(c).items() if k != "last_name"} for c in page.data
    ]


@settings(max_examples=200, deadline=None)
@given(
    item=conversations(),
    garbage=st.dictionaries(st.sampled_from(sorted(CONVERSATION_FIELDS)), JSON_VALUES, max_size=2),
)
def test_property_fast_and_slow_paths_agree(
    item: tuple[dict[str, Any], dict[str, Any]], garbage: dict[str, Any]
) -> None:
    """A conversation decodes to the same values whether or not a sibling field forces repair."""
    wire = {**item[0], **garbage}
    alone = decode_page(json.dumps({"data": [wire]}).encode())
    repaired = decode_page(json.dumps({"data": [{**wire, "lastName": 5}]}).encode())
    assert len(alone.invalid_items) == len(repaired.invalid_items)
    assert _decoded_fields(alone) == _decoded_fields(repaired)
    assert all(c.last_name == "5" for c in repaired.data)
