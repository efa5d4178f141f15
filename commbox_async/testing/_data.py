"""The fake server's data: deterministic conversations, pages and error bodies, as bytes.

Everything here is a plain function of its arguments (no I/O, no clock of its own), shaped like
the vendor's example: camelCase names, the double-encoded ``content`` strings, the documented
error body.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import msgspec

__all__ = [
    "DESCRIPTIONS",
    "Override",
    "base_status",
    "base_unread",
    "conversation",
    "error_body",
    "page_body",
    "unread_of",
]

#: A conversation changed by the server's activity: its unread count and status now.
Override = tuple[int, int]


def base_unread(identity_id: int, index: int) -> int:
    """The unread count of a conversation nobody changed."""
    return (identity_id + index) % 4


def base_status(index: int) -> int:
    """The status of a conversation nobody changed (open, resolved, forward, in turn)."""
    return 1 + index % 3


_encoder = msgspec.json.Encoder()
_EPOCH = datetime(2026, 2, 12, 15, 0, 0, tzinfo=timezone.utc)
_WORDS = [
    "hello",
    "thanks",
    "order",
    "delivery",
    "refund",
    "status",
    "account",
    "password",
    "invoice",
    "question",
    "help",
    "agent",
    "tomorrow",
    "payment",
    "card",
    "address",
    "change",
    "please",
    "confirm",
    "number",
    "waiting",
    "update",
]


def _stamp(seconds: int) -> str:
    return (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _text(seed: int, words: int) -> str:
    return " ".join(_WORDS[(seed * 7 + i * 13) % len(_WORDS)] for i in range(words))


def conversation(
    identity_id: int, index: int, *, childs: int, activity_log: bool
) -> dict[str, Any]:
    """The deterministic conversation number ``index`` of an identity (wire field names)."""
    object_id = identity_id * 1000 + index
    agent = {
        "id": 545437,
        "managerId": 545437,
        "isManager": True,
        "encryptedId": "HnJymfEHh8dORgiV0otwEgRpcFYJqKfueiQqPvbZTrs%3d",
        "identity": {
            "id": 558237,
            "streamProviderId": "",
            "streamProviderType": 0,
            "firstName": "AI Agent",
            "lastName": "",
            "thumbnailUrl": "",
        },
        "uniqueId": None,
        "phone1": None,
        "phone2": None,
        "email": None,
        "firstName": None,
        "lastName": None,
        "gender": None,
        "numberIdentities": 0,
        "locale": None,
        "birthday": None,
        "remarks": None,
        "content": None,
    }
    children = [
        {
            "id": object_id * 100 + c,
            "objectId": object_id,
            "content": _encoder.encode(
                {
                    "messageAlreadyRenderedFromClient": c % 2 == 0,
                    "lang": "en",
                    "seq": c,
                    "tags": [_WORDS[(c + i) % len(_WORDS)] for i in range(4)],
                }
            ).decode(),
            "message": _text(object_id + c, 40),
            "createdTime": _stamp(index * 600 + c * 7),
            "streamProviderType": 0,
            "type": 11 if c == 0 else 0,
            "user": agent,
        }
        for c in range(childs)
    ]
    return {
        "objectId": object_id,
        "streamId": 19155,
        "subStreamId": 0,
        "streamProviderId": "",
        "streamProviderType": 0,
        "user_identity": identity_id,
        "firstName": "",
        "lastName": "",
        "moduleId": 0,
        "userStreamProviderId": f"{identity_id:08x}-ac14-4aa1-8907-1e26402ac6da",
        "userStreamProviderType": 6,
        "content": _encoder.encode(
            {"guidRT": f"{object_id:032x}", "languages": [{"Item1": "en", "Item2": object_id}]}
        ).decode(),
        "message": f"<p>{_text(object_id, 8)}</p>",
        "createdTime": _stamp(index * 600),
        "updatedTime": _stamp(index * 600 + 434),
        "closedTime": None if index % 3 else _stamp(index * 600 + 500),
        "firstResponseTime": _stamp(index * 600 + 25),
        "lastResponseTime": _stamp(index * 600 + 491),
        "statusId": base_status(index),
        "assignedManagerId": 0,
        "lastAssignedManagerId": 0,
        "type": 0,
        "user": {
            "id": identity_id + 7,
            "managerId": None,
            "isManager": False,
            "encryptedId": None,
            "identity": None,
            "uniqueId": "",
            "phone1": "",
            "phone2": "",
            "email": "",
            "firstName": "",
            "lastName": "",
            "gender": "",
            "numberIdentities": 1,
            "locale": "",
            "birthday": "",
            "remarks": "",
            "content": "{}",
        },
        "isManager": False,
        "childs": children,
        "activityLogs": (
            [{"text": "status changed", "source": "system", "managerId": 0}] if activity_log else []
        ),
        "tagsObjectId": [],
        "customerParticipants": [],
        "unreadMessages": base_unread(identity_id, index),
    }


def unread_of(identity_id: int, conversations: int) -> int:
    """Total unread chat messages the fake server reports for an identity."""
    return sum((identity_id + i) % 4 for i in range(conversations))


#: The ``description`` of each error status, as the API words it.
DESCRIPTIONS = {
    400: "Bad Request",
    401: "Unauthorized access",
    404: "Not found",
    429: "Too Many Requests",
    500: "Operation failed",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def error_body(status: int) -> bytes:
    """The documented error body for ``status``."""
    return _encoder.encode(
        {
            "status": status,
            "description": DESCRIPTIONS.get(status, "Error"),
            "response_time": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
            "data": "",
        }
    )


def page_body(
    ident: int,
    query: Mapping[str, str],
    *,
    conversations: int,
    childs: int,
    first_page: int,
    now: float,
    overrides: Mapping[int, Override] | None = None,
) -> bytes | int:
    """The 200 body of one page for ``query``, or the error status a bad query gets.

    ``overrides`` maps a conversation's index to its (unread, status) after the server's
    activity changed it.
    """
    changed = overrides or {}

    def unread(i: int) -> int:
        return changed[i][0] if i in changed else base_unread(ident, i)

    def status(i: int) -> int:
        return changed[i][1] if i in changed else base_status(i)

    try:
        size = min(100, int(query.get("pageSize", "100")))
        number = int(query.get("pageNumber", str(first_page)))
        statuses = {int(s) for s in query["status"].split(",")} if "status" in query else None
        object_filter = int(query.get("objectId", "0"))
    except ValueError:
        return 400
    if size < 1 or number < first_page:
        return 400
    include_childs = query.get("includeChilds", "true") != "false"
    activity = query.get("includeActivityLog", "false") == "true"
    indexes = [
        i
        for i in range(conversations)
        if (statuses is None or status(i) in statuses)
        and (not object_filter or ident * 1000 + i == object_filter)
    ]
    start = (number - first_page) * size
    data = [
        conversation(ident, i, childs=childs if include_childs else 0, activity_log=activity)
        for i in indexes[start : start + size]
    ]
    for item in data:
        index = item["objectId"] - ident * 1000
        if index in changed:
            item["unreadMessages"], item["statusId"] = changed[index]
    return _encoder.encode(
        {
            "totalUnreadChatMessages": sum(unread(i) for i in indexes),
            "status": 200,
            "description": "Operation successful",
            "response_time": _stamp(int(now) % 86400),
            "data": data,
        }
    )
