"""The bodies the benchmarks decode and serve, and what a correct decoder must find in them.

Every body is a v2 page built by the fake server's own ``conversation()``, with the envelope the
fake server sends, so the benchmarks measure the payload the tests use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import msgspec

from commbox_async.testing import conversation

IDENTITY = 558355


@dataclass(frozen=True)
class Payload:
    """A named body and its expected summary."""

    name: str
    conversations: int
    childs: int
    body: bytes

    @property
    def kib(self) -> float:
        return len(self.body) / 1024

    @property
    def label(self) -> str:
        return f"{self.name} ({self.conversations}x{self.childs}, {self.kib:.0f} KiB)"


@dataclass(frozen=True)
class Summary:
    """What every contender must agree on: counts, a sum, and fields of decoded ``content``."""

    conversations: int
    childs: int
    unread: int
    content_docs: int  # decoded ``content`` documents (conversations, children, users)
    first_guid: str | None  # content["guidRT"] of the first conversation
    seq_sum: int  # sum of content["seq"] over all children


def build(name: str, conversations: int, childs: int, identity: int = IDENTITY) -> Payload:
    """A page of ``conversations`` conversations with ``childs`` children each."""
    data = [
        conversation(identity, i, childs=childs, activity_log=False) for i in range(conversations)
    ]
    body = msgspec.json.encode(
        {
            "totalUnreadChatMessages": sum(c["unreadMessages"] for c in data),
            "status": 200,
            "description": "Operation successful",
            "response_time": "2026-02-12T15:09:23.998Z",
            "data": data,
        }
    )
    return Payload(name, conversations, childs, body)


def decode_payloads(quick: bool = False) -> list[Payload]:
    """The decode benchmark's bodies: the fake server's synthetic page and a full page."""
    synthetic = build("synthetic", 10, 10)
    if quick:
        return [synthetic]
    return [synthetic, build("full page", 100, 10)]


#: The bodies the throughput benchmark can serve, by name: (conversations, children each).
SERVED = {"2 KB": (1, 1), "small": (1, 7), "synthetic": (10, 10)}


def serve_payloads(names: list[str] | None = None) -> list[Payload]:
    """The throughput benchmark's bodies: by default about 8 KB and the synthetic ~80-100 KB
    page; ``names`` picks others of ``SERVED`` ("2 KB": one conversation with one child, the
    body where the per-request cost of the client weighs most)."""
    return [build(name, *SERVED[name]) for name in names or ["small", "synthetic"]]


def expected(body: bytes) -> Summary:
    """The summary read the slow, obvious way with the standard library."""
    page = json.loads(body)
    docs = 0
    seq_sum = 0
    childs = 0
    first_guid = None
    for i, conv in enumerate(page["data"]):
        content = json.loads(conv["content"]) if conv.get("content") else None
        if i == 0 and content is not None:
            first_guid = content["guidRT"]
        docs += content is not None
        user = conv.get("user") or {}
        docs += bool(user.get("content"))
        for child in conv.get("childs") or []:
            childs += 1
            if child.get("content"):
                docs += 1
                seq_sum += json.loads(child["content"])["seq"]
            docs += bool((child.get("user") or {}).get("content"))
    return Summary(
        conversations=len(page["data"]),
        childs=childs,
        unread=sum(c["unreadMessages"] for c in page["data"]),
        content_docs=docs,
        first_guid=first_guid,
        seq_sum=seq_sum,
    )


def touch_contents(page: Any) -> list[Any]:
    """Decode every ``content`` of a library page (conversations, children, their users),
    so that the library does the same work as competitors that decode it eagerly; the
    decoded documents are returned, for a caller to keep them alive as long as a competitor
    keeps its eagerly decoded page (which matters to the garbage collector)."""
    docs = []
    for conv in page.data:
        docs.append(conv.content)
        user = conv.user
        if user is not None:
            docs.append(user.content)
        for child in conv.childs:
            docs.append(child.content)
            user = child.user
            if user is not None:
                docs.append(user.content)
    return docs
