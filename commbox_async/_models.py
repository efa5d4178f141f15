"""msgspec models of the v2 "Get User Objects" response, and the decoders built once.

Attributes are the snake_case forms of the wire names. Decoding takes a fast path first: one
typed msgspec decoder over the whole page (lax about numbers sent as strings). Only when that
fails does the slow path run, conversation by conversation: each item is repaired against the
model's own type information (ints sent as strings with stray commas, strings sent as numbers,
naive or malformed timestamps, nulls where a list belongs) and an item that still cannot be read
is kept aside in ``page.invalid_items`` with its raw bytes, so one bad conversation never costs
the rest of the page.

``content`` fields hold a JSON document inside a JSON string. The wire string stays in
``content_raw``; ``content`` decodes it on each access (bind it to a name to reuse it) and is
None when the string is empty, null or not JSON. Nothing is cached on the objects, so the
Structs need no ``__dict__`` and are built with ``gc=False``: a decoded page is a tree (no
reference cycles), and keeping its thousands of objects out of the cyclic garbage collector
makes decoding a page 1.8x (10 conversations) to 2.9x (100) faster (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import enum
import re
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

import msgspec
from msgspec import Meta, Struct, field

from ._validate import describe

__all__ = [
    "ActivityLog",
    "Child",
    "CustomerParticipant",
    "ErrorBody",
    "Identity",
    "InvalidItem",
    "ObjectStatus",
    "ObjectType",
    "StreamProviderType",
    "User",
    "UserObject",
    "UserObjectsPage",
    "decode_content",
]

#: A timestamp must carry a zone on the fast path; the slow path reads a naive one as UTC
#: (the vendor documents every time as UTC) before it gets here.
Timestamp = Annotated[datetime, Meta(tz=True)]


class _OpenIntEnum(enum.IntEnum):
    """An IntEnum that decodes values it does not know as ``UNKNOWN_<n>`` members."""

    @classmethod
    def _missing_(cls, value: object) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            member = int.__new__(cls, value)
            member._name_ = f"UNKNOWN_{value}"
            member._value_ = value
            return member
        return None


class ObjectStatus(_OpenIntEnum):
    """ObjectStatusType of the vendor notes."""

    OPEN = 1
    RESOLVED = 2
    FORWARD = 3
    IRRELEVANT = 4
    DELETED = 5
    FORWARD_REPLY = 6
    DRAFT = 7
    IN_PROCESS = 8
    SCHEDULED = 9
    FOLLOW_UP = 10
    AUTOMATED = 11
    SENT = 13
    ARCHIVE = 14
    PENDING = 15


class ObjectType(_OpenIntEnum):
    """ObjectType of the vendor notes (conversations and their children)."""

    TEXT = 0
    LINK = 1
    PHOTO = 2
    VIDEO = 3
    CONVERSATION = 4
    MAIL = 5
    AUDIO = 6
    LOCATION = 7
    VOICE = 8
    REVIEW = 9
    FORM = 10
    SYSTEM_MESSAGE = 11
    OPTION = 12
    INPUT_DATA = 13
    CONTACTS = 14
    ALBUM = 15
    TEMPLATE_MESSAGE = 16
    CAMPAIGN_MESSAGE = 17
    SURVEY_MESSAGE = 18


class StreamProviderType(_OpenIntEnum):
    """StreamProviderType of the vendor notes."""

    COMMBOX = 0
    FACEBOOK = 1
    TWITTER = 2
    YOUTUBE = 3
    MAIL = 4
    TELEPHONE = 5
    ANONYMOUS = 6
    WHATSAPP = 7
    WEB = 8
    APPLE_APP_STORE = 9
    INSTAGRAM = 10
    GOOGLE = 11
    TELEGRAM = 12
    GOOGLE_MY_BUSINESS = 13
    MICROSOFT_365 = 14
    GMAIL = 15
    WHATSAPP_CLOUD = 16
    SALESFORCE = 17


_content_decoder = msgspec.json.Decoder()
_content_encoder = msgspec.json.Encoder()


#: Every backslash escape, left to right, so that an escaped backslash followed by "ud83d"
#: is never taken for a \u escape. A surrogate pair matches whole (kept); a surrogate escape
#: outside a pair is ``lone``.
_ESCAPE = re.compile(
    rb"\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"
    rb"|(?P<lone>\\u[dD][89a-fA-F][0-9a-fA-F]{2})"
    rb"|\\.",
    re.DOTALL,
)
_SURROGATE_HINT = re.compile(rb"\\u[dD][89a-fA-F]")


def _keep_or_replace(match: re.Match[bytes]) -> bytes:
    return b"\\ufffd" if match.group("lone") else match.group(0)


def _without_lone_surrogates(body: bytes) -> bytes:
    """The JSON with each lone UTF-16 surrogate escape (``\\ud83d`` with no low half)
    replaced by ``\\ufffd``.

    msgspec refuses such a string (Python's json keeps it, and then UTF-8 cannot encode it);
    U+FFFD is what a browser shows for it. The same body when there is none.
    """
    if not _SURROGATE_HINT.search(body):
        return body
    return _ESCAPE.sub(_keep_or_replace, body)


def _content_fallback(raw: str) -> Any:
    """A ``content`` that msgspec refused, read again without lone surrogate escapes; None
    when it is still not JSON."""
    if "\\u" not in raw:  # most bad content: plain text
        return None
    try:
        data = raw.encode()
    except UnicodeEncodeError:  # a str built in Python holding a surrogate itself
        return None
    fixed = _without_lone_surrogates(data)
    if fixed == data:
        return None
    try:
        return _content_decoder.decode(fixed)
    except (msgspec.DecodeError, RecursionError):
        return None


def decode_content(raw: str | None) -> Any:
    """Decode a double-encoded ``content`` string; None when empty, null or not JSON."""
    if not raw:
        return None
    try:
        return _content_decoder.decode(raw)
    except (msgspec.DecodeError, UnicodeEncodeError, RecursionError):
        return _content_fallback(raw)


class _HasContent(Struct, rename="camel", gc=False):
    """Mixin for the models whose ``content`` is a JSON document inside a string."""

    content_raw: str | None = field(name="content", default=None)

    @property
    def content(self) -> Any:
        """The decoded ``content`` document, or None when it is empty, null or not JSON."""
        # decode_content's body, inlined: this runs once per object that has a content.
        raw = self.content_raw
        if not raw:
            return None
        try:
            return _content_decoder.decode(raw)
        except (msgspec.DecodeError, UnicodeEncodeError, RecursionError):
            return _content_fallback(raw)  # (a lone surrogate; None for bad or too deep JSON)


class Identity(Struct, rename="camel", gc=False):
    """A user identity: the user as one provider (chat, mail, WhatsApp...) knows them."""

    id: int | None = None
    stream_provider_id: str | None = None
    stream_provider_type: StreamProviderType | None = None
    stream_provider_email: str | None = None
    user_name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    thumbnail_url: str | None = None
    num_objects: int | None = None


class User(_HasContent, rename="camel", gc=False):
    """The user (customer or agent) who created a conversation or a child."""

    id: int | None = None
    manager_id: int | None = None
    is_manager: bool = False
    encrypted_id: str | None = None
    identity: Identity | None = None
    unique_id: str | None = None
    phone1: str | None = None
    phone2: str | None = None
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    gender: str | None = None
    number_identities: int | None = None
    # The v2 example sends a string; the vendor's data structures call it an object.
    locale: str | dict[str, Any] | None = None
    # Free-form: "" and "01/01/1990" both occur, so it stays a string.
    birthday: str | None = None
    remarks: str | None = None


class Child(_HasContent, rename="camel", gc=False):
    """One message (segment) of a conversation."""

    id: int | None = None
    object_id: int | None = None
    # The vendor's v1 example spells the parent id ``object_id``; the v2 page ``objectId``.
    object_id_v1: int | None = field(name="object_id", default=None)
    message: str | None = None
    created_time: Timestamp | None = None
    stream_provider_type: StreamProviderType | None = None
    type: ObjectType | None = None
    is_manager: bool | None = None
    user: User | None = None

    @property
    def parent_object_id(self) -> int | None:
        """The conversation's id, whichever spelling the server used."""
        return self.object_id if self.object_id is not None else self.object_id_v1


class ActivityLog(Struct, rename="camel", gc=False):
    """An entry of a conversation's activity log (sent with ``include_activity_log``)."""

    text: str | None = None
    source: str | None = None
    manager_id: int | None = None
    type: int | None = None
    created_time: Timestamp | None = None


class CustomerParticipant(Struct, rename="camel", gc=False):
    """A customer taking part in a conversation; the shape is undocumented, so all optional."""

    id: int | None = None
    user_id: int | None = None
    identity_id: int | None = None
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone1: str | None = None


class UserObject(_HasContent, rename="camel", gc=False):
    """One conversation of the identity, with its unread chat messages count."""

    object_id: int | None = None
    stream_id: int | None = None
    sub_stream_id: int | None = None
    stream_provider_id: str | None = None
    stream_provider_type: StreamProviderType | None = None
    user_identity: int | None = field(name="user_identity", default=None)
    first_name: str | None = None
    last_name: str | None = None
    module_id: int | None = None
    user_stream_provider_id: str | None = None
    user_stream_provider_type: StreamProviderType | None = None
    message: str | None = None
    created_time: Timestamp | None = None
    updated_time: Timestamp | None = None
    closed_time: Timestamp | None = None
    first_response_time: Timestamp | None = None
    last_response_time: Timestamp | None = None
    status_id: ObjectStatus | None = None
    assigned_manager_id: int | None = None
    last_assigned_manager_id: int | None = None
    type: ObjectType | None = None
    user: User | None = None
    is_manager: bool = False
    childs: list[Child] = []
    activity_logs: list[ActivityLog] = []
    tags_object_id: list[int] = []
    customer_participants: list[CustomerParticipant] = []
    unread_messages: int = 0


class InvalidItem(Struct, frozen=True):
    """A conversation the client could not read: its position, the reason, and its raw JSON."""

    index: int
    reason: str
    raw: bytes


class _Envelope(Struct, rename="camel", gc=False):
    """The fields every v2 body opens with, a page's or an error's."""

    status: int | None = None
    description: str | None = None
    response_time: Timestamp | None = field(name="response_time", default=None)


class UserObjectsPage(_Envelope, dict=True, gc=True):
    """A page of the response: the identity's conversations and its unread totals."""

    total_unread_chat_messages: int | None = None
    data: list[UserObject] = []

    @property
    def conversations(self) -> list[UserObject]:
        """The conversations of this page (the wire field ``data``)."""
        return self.data

    @property
    def invalid_items(self) -> list[InvalidItem]:
        """Conversations that could not be decoded even leniently (normally empty)."""
        items: list[InvalidItem] = self.__dict__.get("_invalid_items", [])
        return items

    @property
    def unread_total(self) -> int:
        """Total unread chat messages: the server's total, else the sum over conversations."""
        if self.total_unread_chat_messages is not None:
            return self.total_unread_chat_messages
        return sum(o.unread_messages for o in self.data)

    def is_full(self, page_size: int) -> bool:
        """Whether the page holds ``page_size`` conversations (read or set aside): there may be
        another page after it; a shorter page is the last."""
        return len(self.data) + len(self.invalid_items) >= page_size


class ErrorBody(_Envelope, gc=False):
    """The body of an error response: ``status``, ``description``, ``response_time``."""

    data: Any = None


class _LenientEnvelope(Struct):
    """The page with its items left raw, for the per-item slow path."""

    status: Any = None
    description: Any = None
    response_time: Any = None
    totalUnreadChatMessages: Any = None  # the wire name
    # Raw, whatever it holds: an error envelope may carry {"errors": [...]} here, and its
    # status must still be read (only a list holds items: ``_raw_items``).
    data: msgspec.Raw = msgspec.Raw(b"null")


# Built once: building a decoder compiles the type, which costs far more than a small decode.
_page_decoder = msgspec.json.Decoder(UserObjectsPage, strict=False)
_item_decoder = msgspec.json.Decoder(UserObject, strict=False)
_envelope_decoder = msgspec.json.Decoder(_LenientEnvelope)
_error_decoder = msgspec.json.Decoder(ErrorBody, strict=False)
_any_decoder = msgspec.json.Decoder()
_raw_list_decoder = msgspec.json.Decoder(list[msgspec.Raw])


class ModelDecodeError(ValueError):
    """The body is not a page at all (not JSON, or not an object); translated by _protocol."""


def _valid_utf8(body: bytes) -> bytes:
    """The body with invalid UTF-8 replaced by U+FFFD, as a browser would show it.

    msgspec reports invalid UTF-8 inside a string as UnicodeDecodeError, not DecodeError;
    the slow paths repair it first so that one broken character costs no page.
    """
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return body.decode("utf-8", "replace").encode("utf-8")
    return body


def _readable(body: bytes) -> bytes:
    """The body with invalid UTF-8 and lone surrogate escapes replaced by U+FFFD."""
    return _without_lone_surrogates(_valid_utf8(body))


def decode_page(body: bytes) -> UserObjectsPage:
    """Decode a 200 body; bad conversations are set aside, never fatal to the page."""
    try:
        return _page_decoder.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        body = _readable(body)
    try:
        envelope = _envelope_decoder.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ModelDecodeError(f"the body is not a v2 page: {exc}") from exc
    head = msgspec.structs.asdict(envelope)
    del head["data"]  # the items are read one by one below
    head = _repair_value(head, _PAGE_INFO)
    try:
        page = msgspec.convert(head, UserObjectsPage, strict=False)
    except msgspec.ValidationError:
        page = UserObjectsPage()
    items: list[UserObject] = []
    invalid: list[InvalidItem] = []
    for index, raw_item in enumerate(_raw_items(envelope.data)):
        raw = bytes(raw_item)
        item, reason = _decode_item(raw)
        if item is not None:
            items.append(item)
        else:
            invalid.append(InvalidItem(index=index, reason=reason, raw=raw))
    page.data = items
    page.__dict__["_invalid_items"] = invalid
    return page


def _raw_items(data: msgspec.Raw) -> list[msgspec.Raw]:
    """The items of ``data`` when it is a list; none otherwise (a string, an object)."""
    try:
        return _raw_list_decoder.decode(data)
    except (msgspec.DecodeError, RecursionError):
        return []


def _decode_item(raw: bytes) -> tuple[UserObject | None, str]:
    try:
        return _item_decoder.decode(raw), ""
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        first_reason = str(exc)
    try:
        repaired = _repair_value(_any_decoder.decode(raw), _ITEM_INFO)
        return msgspec.convert(repaired, UserObject, strict=False), ""
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError, _Unrepairable):
        return None, first_reason


def decode_error_body(body: bytes) -> ErrorBody | None:
    """Decode an error body; None when it is not a JSON object (HTML from a proxy...).

    The same drift as in pages is repaired (a naive or malformed ``response_time``, a status
    sent as a string), so that one odd field never loses the description.
    """
    try:
        return _error_decoder.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        body = _readable(body)
    try:
        value = _any_decoder.decode(body)
        if not isinstance(value, dict):
            return None
        return msgspec.convert(_repair_value(value, _ERROR_INFO), ErrorBody, strict=False)
    except (msgspec.DecodeError, RecursionError, _Unrepairable):
        return None


# --- the slow path: repair a decoded value against msgspec's view of the model -------------

_PAGE_INFO = msgspec.inspect.type_info(UserObjectsPage)
_ITEM_INFO = msgspec.inspect.type_info(UserObject)
_ERROR_INFO = msgspec.inspect.type_info(ErrorBody)
_BOOL_WORDS = {"0": False, "1": True, "false": False, "true": True}
_DIGITS = re.compile(r"^\s*([+-]?\d+)\s*[,;]?\s*$")
# .NET's "round-trip" form, and a vendor example that separates milliseconds with a colon.
_TIME = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:[.:](\d+))?\s*(Z|[+-]\d{2}:?\d{2})?$"
)


#: For a decoded JSON value's type, the model types it fits without any coercion.
_NATURAL: dict[type, tuple[type, ...]] = {
    str: (msgspec.inspect.StrType, msgspec.inspect.DateTimeType),
    int: (msgspec.inspect.IntType, msgspec.inspect.EnumType),
    bool: (msgspec.inspect.BoolType,),
    dict: (msgspec.inspect.DictType, msgspec.inspect.StructType),
    list: (msgspec.inspect.ListType,),
}


class _Unrepairable(Exception):
    """A value cannot take the model's type."""


def _repair_value(value: Any, info: msgspec.inspect.Type) -> Any:
    # Each branch turns one kind of known drift into the value the model expects; anything
    # else goes through unchanged so that msgspec.convert reports it.
    if isinstance(info, msgspec.inspect.UnionType):
        if value is None and info.includes_none:
            return None
        options = [o for o in info.types if not isinstance(o, msgspec.inspect.NoneType)]
        # An option the value already fits comes first: a dict locale stays a dict rather
        # than becoming the JSON text that the str option would make of it.
        options.sort(key=lambda o: not isinstance(o, _NATURAL.get(type(value), ())))
        for option in options:
            try:
                return _repair_scalar_strict(value, option)
            except _Unrepairable:
                continue
        if info.includes_none:
            return None  # an unreadable optional value is dropped, not fatal
        raise _Unrepairable(f"cannot read {describe(value, 60)}")
    return _repair_scalar_strict(value, info)


def _repair_scalar_strict(value: Any, info: msgspec.inspect.Type) -> Any:
    if isinstance(info, msgspec.inspect.StructType):
        if not isinstance(value, dict):
            raise _Unrepairable("expected an object")
        out = dict(value)
        for f in info.fields:
            if f.encode_name in out:
                if out[f.encode_name] is None and not f.required and not _allows_none(f.type):
                    # A null where the model has a non-optional default (a list, a count, a
                    # flag): the server means "nothing", so the default stands in.
                    del out[f.encode_name]
                    continue
                repaired = _repair_value(out[f.encode_name], f.type)
                if repaired is None and not _allows_none(f.type):
                    del out[f.encode_name]  # fall back to the field's default
                else:
                    out[f.encode_name] = repaired
        return out
    if isinstance(info, msgspec.inspect.ListType):
        if value is None or value == "":
            return []
        if not isinstance(value, list):
            raise _Unrepairable("expected a list")
        return [_repair_value(v, info.item_type) for v in value]
    if isinstance(info, (msgspec.inspect.IntType, msgspec.inspect.EnumType)):
        return _as_int(value)
    if isinstance(info, msgspec.inspect.StrType):
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, (dict, list)):
            # Kept as its JSON text: a server that sends ``content`` already decoded loses
            # nothing, and ``content`` still gives the document.
            return _content_encoder.encode(value).decode()
        raise _Unrepairable("expected a string")
    if isinstance(info, msgspec.inspect.BoolType):
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)) and value in (0, 1):
            return value == 1
        if isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
            return _BOOL_WORDS[value.strip().lower()]
        raise _Unrepairable("expected a bool")
    if isinstance(info, msgspec.inspect.DateTimeType):
        return _as_datetime(value)
    if isinstance(info, msgspec.inspect.DictType):
        if isinstance(value, dict):
            return value
        raise _Unrepairable("expected an object")
    return value


def _allows_none(info: msgspec.inspect.Type) -> bool:
    return isinstance(info, msgspec.inspect.UnionType) and info.includes_none


def _as_int(value: Any) -> int:
    if isinstance(value, bool):
        raise _Unrepairable("expected an int, got a bool")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        match = _DIGITS.match(value)
        if match:
            try:
                return int(match.group(1))
            except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
                pass
    raise _Unrepairable(f"expected an int, got {describe(value, 60)}")


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, bool):
        raise _Unrepairable("expected a timestamp, got a bool")
    try:
        # First exactly what the fast path accepts (RFC 3339 with a zone, Unix seconds), so
        # that a value reads the same whichever path decodes its conversation.
        result: datetime = msgspec.convert(value, Timestamp, strict=False)
        return result
    except msgspec.ValidationError:
        pass
    if not isinstance(value, str):
        raise _Unrepairable("expected a timestamp")
    match = _TIME.match(value.strip())
    if not match:
        raise _Unrepairable(f"unreadable timestamp {describe(value, 60)}")
    day, clock, fraction, zone = match.groups()
    digits = fraction or "0"
    # Round on the 7th digit, half up, as msgspec's own parser does on the fast path: the
    # same .NET timestamp must not decode 1 µs apart depending on which path read the item.
    micro = int(digits[:6].ljust(6, "0")) + (len(digits) > 6 and digits[6] >= "5")
    try:
        stamp = datetime.fromisoformat(f"{day}T{clock}") + timedelta(microseconds=micro)
    except (ValueError, OverflowError) as exc:
        raise _Unrepairable(f"unreadable timestamp {describe(value, 60)}") from exc
    if zone is None or zone == "Z":
        return stamp.replace(tzinfo=timezone.utc)
    sign = 1 if zone[0] == "+" else -1
    digits = zone[1:].replace(":", "")
    offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    try:
        return stamp.replace(tzinfo=timezone(sign * offset))
    except ValueError as exc:  # an offset of a day or more
        raise _Unrepairable(f"unreadable timestamp {describe(value, 60)}") from exc
