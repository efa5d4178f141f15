"""Decode one v2 response, double-encoded ``content`` included: the library vs the alternatives.

Contenders (each decodes every ``content`` string of conversations, children and users):

- ``commbox_async``: the public path, ``parse_response(200, {}, body)``, then ``.content`` of
  every conversation, child and user (the library decodes it lazily, on first access);
- ``msgspec reference``: the hand-tuned msgspec code of ``benchmarks/reference.py``;
- ``orjson + dicts`` and ``json + dicts``: parse to dicts, then ``loads`` every content string;
- ``pydantic v2``: models with the same fields and types, ``content`` as ``Json[Any]``,
  ``model_validate_json``.

Each contender's result is checked against the expected counts and decoded fields before any
timing, so a fast wrong answer cannot win. Run alone: ``python -m benchmarks.bench_decode``.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from commbox_async import parse_response

from . import reference
from .common import Series, fmt, markdown_table, ratio_text, rotate
from .payloads import Payload, Summary, decode_payloads, expected, touch_contents

LIBRARY = "commbox_async"
REFERENCE = "msgspec reference"
PYDANTIC = "pydantic v2"


@dataclass
class Contender:
    name: str
    decode: Callable[[bytes], Any]
    summarize: Callable[[Any], Summary]


# --- the library ---------------------------------------------------------------------------
def library_decode(body: bytes) -> Any:
    page = parse_response(200, {}, body)
    # The decoded documents live as long as the page, as in the reference's eager page.
    return page, touch_contents(page)


def summarize_library(decoded: Any) -> Summary:
    return summarize_objects(decoded[0])


def summarize_objects(page: Any) -> Summary:
    """Summary of a page of objects with attribute access (library, reference, pydantic)."""
    docs = seq_sum = childs = 0
    for conv in page.data:
        docs += conv.content is not None
        docs += conv.user is not None and conv.user.content is not None
        for child in conv.childs:
            childs += 1
            if child.content is not None:
                docs += 1
                seq_sum += child.content["seq"]
            docs += child.user is not None and child.user.content is not None
    first = page.data[0].content if page.data else None
    return Summary(
        conversations=len(page.data),
        childs=childs,
        unread=sum(c.unread_messages for c in page.data),
        content_docs=docs,
        first_guid=first["guidRT"] if first else None,
        seq_sum=seq_sum,
    )


# --- dicts ---------------------------------------------------------------------------------
def dict_decoder(loads: Callable[[Any], Any]) -> Callable[[bytes], Any]:
    def decode(body: bytes) -> Any:
        page = loads(body)
        for conv in page["data"]:
            raw = conv.get("content")
            conv["content"] = loads(raw) if raw else None
            user = conv.get("user")
            if user is not None:
                raw = user.get("content")
                user["content"] = loads(raw) if raw else None
            for child in conv.get("childs") or ():
                raw = child.get("content")
                child["content"] = loads(raw) if raw else None
                user = child.get("user")
                if user is not None:
                    raw = user.get("content")
                    user["content"] = loads(raw) if raw else None
        return page

    return decode


def summarize_dicts(page: Any) -> Summary:
    docs = seq_sum = childs = 0
    for conv in page["data"]:
        docs += conv["content"] is not None
        docs += bool(conv.get("user")) and conv["user"]["content"] is not None
        for child in conv["childs"]:
            childs += 1
            if child["content"] is not None:
                docs += 1
                seq_sum += child["content"]["seq"]
            docs += bool(child.get("user")) and child["user"]["content"] is not None
    first = page["data"][0]["content"] if page["data"] else None
    return Summary(
        conversations=len(page["data"]),
        childs=childs,
        unread=sum(c["unreadMessages"] for c in page["data"]),
        content_docs=docs,
        first_guid=first["guidRT"] if first else None,
        seq_sum=seq_sum,
    )


# --- pydantic ------------------------------------------------------------------------------
def pydantic_decoder() -> Callable[[bytes], Any]:
    """Models with the library's fields and types; ``content`` parsed by pydantic's ``Json``.

    The same types as the library's models (its IntEnums, timezone-aware datetimes), so both
    produce the same Python values.
    """
    from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, Json
    from pydantic.alias_generators import to_camel

    from commbox_async import ObjectStatus, ObjectType, StreamProviderType

    config = ConfigDict(alias_generator=to_camel, populate_by_name=True)
    content_field = Field(default=None, alias="content")

    class Identity(BaseModel):
        model_config = config
        id: int | None = None
        stream_provider_id: str | None = None
        stream_provider_type: StreamProviderType | None = None
        stream_provider_email: str | None = None
        user_name: str | None = None
        first_name: str | None = None
        last_name: str | None = None
        thumbnail_url: str | None = None
        num_objects: int | None = None

    class User(BaseModel):
        model_config = config
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
        content: Json[Any] | None = content_field

    class Child(BaseModel):
        model_config = config
        id: int | None = None
        object_id: int | None = None
        message: str | None = None
        created_time: AwareDatetime | None = None
        stream_provider_type: StreamProviderType | None = None
        type: ObjectType | None = None
        is_manager: bool | None = None
        user: User | None = None
        content: Json[Any] | None = content_field

    class ActivityLog(BaseModel):
        model_config = config
        text: str | None = None
        source: str | None = None
        manager_id: int | None = None
        type: int | None = None
        created_time: AwareDatetime | None = None

    class UserObject(BaseModel):
        model_config = config
        object_id: int | None = None
        stream_id: int | None = None
        sub_stream_id: int | None = None
        stream_provider_id: str | None = None
        stream_provider_type: StreamProviderType | None = None
        user_identity: int | None = Field(default=None, alias="user_identity")
        first_name: str | None = None
        last_name: str | None = None
        module_id: int | None = None
        user_stream_provider_id: str | None = None
        user_stream_provider_type: StreamProviderType | None = None
        message: str | None = None
        created_time: AwareDatetime | None = None
        updated_time: AwareDatetime | None = None
        closed_time: AwareDatetime | None = None
        first_response_time: AwareDatetime | None = None
        last_response_time: AwareDatetime | None = None
        status_id: ObjectStatus | None = None
        assigned_manager_id: int | None = None
        last_assigned_manager_id: int | None = None
        type: ObjectType | None = None
        user: User | None = None
        is_manager: bool = False
        childs: list[Child] = []
        activity_logs: list[ActivityLog] = []
        tags_object_id: list[int] = []
        customer_participants: list[dict[str, Any]] = []
        unread_messages: int = 0
        content: Json[Any] | None = content_field

    class Page(BaseModel):
        model_config = config
        status: int | None = None
        description: str | None = None
        response_time: AwareDatetime | None = Field(default=None, alias="response_time")
        total_unread_chat_messages: int | None = None
        data: list[UserObject] = []

    return Page.model_validate_json


# --- the suite -----------------------------------------------------------------------------
def contenders() -> tuple[list[Contender], list[str]]:
    """The contenders whose packages are installed, and notes on those that are not."""
    out = [
        Contender(LIBRARY, library_decode, summarize_library),
        Contender(REFERENCE, reference.decode, summarize_objects),
    ]
    skipped: list[str] = []
    try:
        import orjson
    except ImportError:
        skipped.append("orjson + dicts (orjson not installed)")
    else:
        out.append(Contender("orjson + dicts", dict_decoder(orjson.loads), summarize_dicts))
    out.append(Contender("json + dicts", dict_decoder(json.loads), summarize_dicts))
    try:
        out.append(Contender(PYDANTIC, pydantic_decoder(), summarize_objects))
    except ImportError:
        skipped.append("pydantic v2 (pydantic not installed)")
    return out, skipped


def check(contender: Contender, payload: Payload, want: Summary) -> None:
    got = contender.summarize(contender.decode(payload.body))
    if got != want:
        raise AssertionError(f"{contender.name} decoded {payload.name} wrongly: {got} != {want}")


def _time(decode: Callable[[bytes], Any], body: bytes, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        decode(body)
    return time.perf_counter() - started


@dataclass
class DecodeResult:
    payload: Payload
    series: dict[str, Series]


def run(
    rounds: int = 9, sample_seconds: float = 0.15, quick: bool = False
) -> tuple[list[DecodeResult], list[str]]:
    """Every contender on every payload, interleaved round by round; MB/s per sample."""
    found, skipped = contenders()
    results = []
    for payload in decode_payloads(quick):
        want = expected(payload.body)
        for contender in found:
            check(contender, payload, want)
        # Calibrate: enough iterations per sample for ~sample_seconds on this machine.
        iterations = {}
        for contender in found:
            one = _time(contender.decode, payload.body, 3) / 3
            iterations[contender.name] = max(1, int(sample_seconds / max(one, 1e-7)))
        series = {c.name: Series(c.name, "MB/s") for c in found}
        for r in range(rounds):
            for contender in rotate(found, r):
                n = iterations[contender.name]
                gc.collect()
                elapsed = _time(contender.decode, payload.body, n)
                series[contender.name].samples.append(n * len(payload.body) / elapsed / 1e6)
        results.append(DecodeResult(payload, series))
    return results, skipped


def table(results: list[DecodeResult]) -> str:
    """Median MB/s (min-max) per contender, and the library's ratio to each."""
    headers = ["payload", "contender", "MB/s median (min-max)", "library / contender"]
    rows = []
    for result in results:
        lib = result.series[LIBRARY]
        for s in sorted(result.series.values(), key=lambda s: -s.median):
            rows.append(
                [
                    result.payload.label,
                    s.name,
                    f"{fmt(s.median)} ({fmt(s.low)}-{fmt(s.high)})",
                    "-" if s is lib else ratio_text(lib, s),
                ]
            )
    return markdown_table(headers, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    results, skipped = run(rounds=3 if args.quick else args.rounds, quick=args.quick)
    print(table(results))
    for note in skipped:
        print(f"skipped: {note}")


if __name__ == "__main__":
    main()
