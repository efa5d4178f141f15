"""What the command line writes: NDJSON result lines, whole and flushed, and the job's summary.

Each line is one identity: ``{"identity_id": ..., "response": <the page, API field names>}`` or
``{"identity_id": ..., "error": {"status", "description", "kind"}}``. The page is encoded back
with msgspec, whose Structs carry the wire names, so ``content`` is the server's original string.
"""

from __future__ import annotations

import heapq
import os
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import msgspec

from .._client import FetchResult
from .._errors import CommboxError
from .._fanout import UNREACHABLE
from .._stats import StatsSnapshot
from ._errors import EXIT_FAILED, CliExit
from ._pace import Pacing
from ._pace import summary_rows as pacing_rows

__all__ = [
    "JobReport",
    "LineWriter",
    "error_fields",
    "result_line",
    "summary_json",
    "summary_rows",
    "write_summary_json",
]

_encoder = msgspec.json.Encoder()
#: Failed ids kept for the summary; the output file holds every one of them.
MAX_FAILED_IDS = 1000
#: Failed ids shown in the summary.
SHOWN_FAILED_IDS = 20


def error_fields(error: CommboxError) -> dict[str, Any]:
    """``status`` (None when no HTTP answer came), ``description`` and ``kind`` of an error."""
    description = getattr(error, "description", None) or error.message
    status = getattr(error, "status", None)
    return {"status": status, "description": description, "kind": error.kind}


def result_line(result: FetchResult) -> bytes:
    """One NDJSON line, newline included."""
    if result.error is not None:
        body: dict[str, Any] = {
            "identity_id": result.identity_id,
            "error": error_fields(result.error),
        }
    else:
        body = {"identity_id": result.identity_id, "response": result.response}
    return _encoder.encode(body) + b"\n"


class LineWriter:
    """Writes whole lines, each flushed at once, so that an interrupted job leaves no half line.

    A file is opened unbuffered, so each line is one ``write`` call (a kill can still cut a
    line, which ``--resume`` detects and drops). ``lines`` counts the lines written.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.lines = 0

    def write(self, line: bytes) -> None:
        view = memoryview(line)
        try:
            while view:
                # An unbuffered file may write less than asked; a buffered one writes it all.
                written = self._stream.write(view)
                view = view[written if written is not None else len(view) :]
            self._stream.flush()
        except BrokenPipeError:
            raise  # the reader went away (| head): the command stops quietly
        except OSError as exc:  # a full disk, a quota, an I/O error: one line, not a traceback
            raise CliExit(
                f"cannot write the output: {exc.strerror or exc}; "
                f"{self.lines:,} complete lines were written",
                EXIT_FAILED,
            ) from None
        self.lines += 1


@dataclass
class JobReport:
    """Counts of a fetch job, filled as results arrive."""

    ok: int = 0
    failed: int = 0
    #: The smallest failed ids (up to MAX_FAILED_IDS), as a heap of their negatives: the
    #: summary lists them in order, whatever order they failed in.
    _failed_heap: list[int] = field(default_factory=list)
    failed_kinds: dict[str, int] = field(default_factory=dict)
    conversations: int = 0
    unread: int = 0
    elapsed: float = 0.0
    bad_lines: int = 0
    duplicates: int = 0
    resumed: int = 0
    #: Empty CSV cells skipped (not bad lines: a row without an id is not an error).
    empty: int = 0
    #: Identities whose page was full, so that more pages may exist (without --all-pages).
    full_pages: int = 0
    stats: StatsSnapshot | None = None
    #: The client's pacing at the end: the rate found and why, the pauses.
    pacing: Pacing | None = None
    #: Ids not sent because nothing could connect (``fetch_many``'s ``unreachable_after``).
    unsent: int = 0
    #: Where the rate started, in words: a remembered limit, --fresh, or the ceiling.
    start: str = ""

    def add(self, result: FetchResult) -> None:
        if result.error is not None:
            self.failed += 1
            if result.error.reason == UNREACHABLE:
                self.unsent += 1
            kind = result.error.kind
            self.failed_kinds[kind] = self.failed_kinds.get(kind, 0) + 1
            ident = result.identity_id  # an int: the command line checks its input
            if len(self._failed_heap) < MAX_FAILED_IDS:
                heapq.heappush(self._failed_heap, -ident)
            elif -ident > self._failed_heap[0]:
                heapq.heapreplace(self._failed_heap, -ident)
        elif result.response is not None:
            self.ok += 1
            self.conversations += len(result.response.data)
            self.unread += result.response.unread_total

    @property
    def fetched(self) -> int:
        return self.ok + self.failed

    @property
    def failed_ids(self) -> list[int]:
        """The smallest failed ids, in order (up to MAX_FAILED_IDS; the output has them all)."""
        return sorted(-negative for negative in self._failed_heap)


def _count(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n:,} " + (noun if n == 1 else plural or noun + "s")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def summary_rows(report: JobReport) -> list[tuple[str, str]]:
    """The summary as (label, value) rows, for a table or plain lines."""
    rows = [("identities", f"{report.ok:,} ok, {report.failed:,} failed")]
    if report.failed:
        shown = ", ".join(str(i) for i in report.failed_ids[:SHOWN_FAILED_IDS])
        more = report.failed - min(report.failed, SHOWN_FAILED_IDS)
        if more:
            shown += f" and {more:,} more (see the output)"
        kinds = ", ".join(f"{n:,} {kind}" for kind, n in sorted(report.failed_kinds.items()))
        rows.append(("failed ids", shown))
        rows.append(("failed by kind", kinds))
    rows.append(("conversations", f"{report.conversations:,}"))
    rows.append(("total unread", f"{report.unread:,}"))
    rate = report.fetched / report.elapsed if report.elapsed > 0 else 0.0
    rows.append(("throughput", f"{rate:,.1f} identities/s ({report.elapsed:.1f} s)"))
    stats = report.stats
    if stats is not None:
        p50, p95 = _ms(stats.latency_p50_ms), _ms(stats.latency_p95_ms)
        rows.append(("latency", f"p50 {p50}, p95 {p95}"))
        rows.append(
            (
                "requests",
                f"{stats.requests:,} ({_count(stats.retries, 'retry', 'retries')}, "
                f"{stats.throttled:,} answered 429)",
            )
        )
    if report.start:
        rows.append(("start rate", report.start))
    rows += pacing_rows(report.pacing)
    if report.full_pages:
        many = _count(report.full_pages, "identity", "identities")
        rows.append(("full pages", f"{many} may have more conversations: add --all-pages"))
    skipped = []
    if report.empty:
        skipped.append(_count(report.empty, "empty cell"))
    if report.resumed:
        skipped.append(f"{report.resumed:,} already in the output")
    if report.duplicates:
        skipped.append(_count(report.duplicates, "repeated id"))
    if report.bad_lines:
        skipped.append(_count(report.bad_lines, "bad input line"))
    if skipped:
        rows.append(("skipped", ", ".join(skipped)))
    return rows


def summary_json(report: JobReport, *, outcome: str, error: str | None = None) -> bytes:
    """The summary as one JSON document, for monitoring (``--summary-json``).

    ``outcome`` is how the job ended: "ok", "failed" (some identities or input lines),
    "empty" (no id in the input), "interrupted", or "error" (it stopped early: ``error``
    says why). Nothing in it can hold the token: counts, ids, and the command line's messages.
    """
    stats = report.stats
    body: dict[str, Any] = {
        "outcome": outcome,
        "error": error,
        "ok": report.ok,
        "failed": report.failed,
        "failed_ids": report.failed_ids,
        "failed_by_kind": dict(sorted(report.failed_kinds.items())),
        "conversations": report.conversations,
        "unread": report.unread,
        "elapsed_s": round(report.elapsed, 3),
        "identities_per_s": round(report.fetched / report.elapsed, 3) if report.elapsed else 0.0,
        "skipped": {
            "empty_cells": report.empty,
            "already_in_output": report.resumed,
            "repeated": report.duplicates,
            "bad_lines": report.bad_lines,
        },
        "full_pages": report.full_pages,
        "requests": None,
        "pacing": report.pacing.as_dict() if report.pacing is not None else None,
        "start_rate": report.start or None,
    }
    if stats is not None:
        body["requests"] = {
            "sent": stats.requests,
            "retries": stats.retries,
            "throttled": stats.throttled,
            "latency_p50_ms": stats.latency_p50_ms,
            "latency_p95_ms": stats.latency_p95_ms,
            "latency_p99_ms": stats.latency_p99_ms,
        }
    return msgspec.json.format(msgspec.json.encode(body), indent=2) + b"\n"


def write_summary_json(path: str, data: bytes) -> None:
    """Replace ``path`` with ``data`` at once (a monitor never reads half a summary)."""
    temporary = f"{path}.tmp"
    try:
        with open(temporary, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
    except OSError as exc:
        raise CliExit(f"cannot write {path}: {exc.strerror or exc}", EXIT_FAILED) from None
