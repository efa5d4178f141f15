"""The hand-tuned msgspec reference: what a careful engineer writes for this one payload.

The same fields and types as the library's models (timestamps as datetimes, the double-encoded
``content`` decoded), with everything a general-purpose library cannot assume turned off or cut:
``gc=False`` Structs (the decoded tree holds no cycles), enums as plain ints, no leniency for
drifted values, no slow path and no lazy properties; ``content`` is decoded eagerly in one pass
by a reused untyped decoder. It is the yardstick of the decode goal and the decoder of the raw
aiohttp loop.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec


class Identity(msgspec.Struct, rename="camel", gc=False):
    id: int | None = None
    stream_provider_id: str | None = None
    stream_provider_type: int | None = None
    stream_provider_email: str | None = None
    user_name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    thumbnail_url: str | None = None
    num_objects: int | None = None


class User(msgspec.Struct, rename="camel", gc=False):
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
    locale: str | dict[str, Any] | None = None
    birthday: str | None = None
    remarks: str | None = None
    content: Any = None


class Child(msgspec.Struct, rename="camel", gc=False):
    id: int | None = None
    object_id: int | None = None
    message: str | None = None
    created_time: datetime | None = None
    stream_provider_type: int | None = None
    type: int | None = None
    is_manager: bool | None = None
    user: User | None = None
    content: Any = None


class ActivityLog(msgspec.Struct, rename="camel", gc=False):
    text: str | None = None
    source: str | None = None
    manager_id: int | None = None
    type: int | None = None
    created_time: datetime | None = None


class UserObject(msgspec.Struct, rename="camel", gc=False):
    object_id: int | None = None
    stream_id: int | None = None
    sub_stream_id: int | None = None
    stream_provider_id: str | None = None
    stream_provider_type: int | None = None
    user_identity: int | None = msgspec.field(name="user_identity", default=None)
    first_name: str | None = None
    last_name: str | None = None
    module_id: int | None = None
    user_stream_provider_id: str | None = None
    user_stream_provider_type: int | None = None
    message: str | None = None
    created_time: datetime | None = None
    updated_time: datetime | None = None
    closed_time: datetime | None = None
    first_response_time: datetime | None = None
    last_response_time: datetime | None = None
    status_id: int | None = None
    assigned_manager_id: int | None = None
    last_assigned_manager_id: int | None = None
    type: int | None = None
    user: User | None = None
    is_manager: bool = False
    childs: list[Child] = []
    activity_logs: list[ActivityLog] = []
    tags_object_id: list[int] = []
    customer_participants: list[dict[str, Any]] = []
    unread_messages: int = 0
    content: Any = None


class Page(msgspec.Struct, rename="camel", gc=False):
    status: int | None = None
    description: str | None = None
    response_time: datetime | None = msgspec.field(name="response_time", default=None)
    total_unread_chat_messages: int | None = None
    data: list[UserObject] = []


_page_decoder = msgspec.json.Decoder(Page)
_content_decoder = msgspec.json.Decoder()


def _content(raw: Any) -> Any:
    if not raw:
        return None
    try:
        return _content_decoder.decode(raw)
    except msgspec.DecodeError:
        return None


def decode(body: bytes) -> Page:
    """Decode a page and every double-encoded ``content`` in it, eagerly."""
    page = _page_decoder.decode(body)
    for conv in page.data:
        conv.content = _content(conv.content)
        user = conv.user
        if user is not None:
            user.content = _content(user.content)
        for child in conv.childs:
            child.content = _content(child.content)
            user = child.user
            if user is not None:
                user.content = _content(user.content)
    return page
