"""The fetch job's input, and what an earlier run already wrote. No network, no terminal.

Input is one identity id per line (blank lines and ``#`` comments ignored) or a column of a CSV
file. A line that is not an id is reported with its number and skipped. ``scan_output`` reads
an NDJSON file written by an earlier run so that ``--resume`` skips the ids it holds; an
incomplete last line (the run was killed mid-write) is cut off, so that its id is fetched again
and never appears twice.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ._cli_errors import InputError
from ._protocol import INT64_MAX

__all__ = [
    "IdSource",
    "Previous",
    "iter_records",
    "parse_identity",
    "scan_output",
]

# 19 digits hold every int64; longer strings are refused before int() sees them.
_DIGITS = re.compile(r"\+?[0-9]{1,19}")


def parse_identity(text: str) -> int | None:
    """The identity id written in ``text``, or None when it is not a positive int64."""
    text = text.strip()
    if not _DIGITS.fullmatch(text):
        return None
    value = int(text)
    return value if 0 < value <= INT64_MAX else None


def iter_records(
    stream: Iterable[str], *, column: str | None = None, delimiter: str = ","
) -> Iterator[tuple[int, str]]:
    """(line number, text) of each id in the input, before it is checked.

    Without ``column`` every non-blank line that is not a ``#`` comment is one record. With it,
    the stream is CSV with a header row, and the record is that column of each row.
    """
    if column is None:
        for number, line in enumerate(stream, 1):
            text = line.strip()
            if text and not text.startswith("#"):
                yield number, text
        return
    reader = csv.DictReader(stream, delimiter=delimiter)
    try:
        header = reader.fieldnames
    except csv.Error as exc:
        raise InputError(f"cannot read the CSV header: {exc}") from exc
    if header is None:
        return  # an empty file: nothing to do
    if column not in header:
        shown = ", ".join(repr(name) for name in header[:20])
        raise InputError(f"column {column!r} is not in the CSV header ({shown})")
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield reader.line_num, f"<unreadable CSV: {exc}>"
            continue
        yield reader.line_num, (row.get(column) or "").strip()


@dataclass
class IdSource:
    """The ids to fetch: bad records reported and skipped, done and repeated ids skipped.

    ``on_bad(line, text)`` is called for a record that is not an id; ``on_skip()`` for every
    record that will not be fetched (bad, already done, repeated), so a progress total can
    shrink to the work that is left.
    """

    records: Iterable[tuple[int, str]]
    done: set[int] = field(default_factory=set)
    on_bad: Callable[[int, str], None] = lambda line, text: None
    on_skip: Callable[[], None] = lambda: None
    bad: int = 0
    resumed: int = 0
    duplicates: int = 0
    _seen: set[int] = field(default_factory=set)

    def __iter__(self) -> Iterator[int]:
        for line, text in self.records:
            ident = parse_identity(text)
            if ident is None:
                self.bad += 1
                self.on_bad(line, text)
                self.on_skip()
            elif ident in self.done:
                self.resumed += 1
                self.on_skip()
            elif ident in self._seen:
                self.duplicates += 1
                self.on_skip()
            else:
                self._seen.add(ident)
                yield ident


class _Head(msgspec.Struct):
    """The part of an output line that resuming needs."""

    identity_id: int
    error: dict[str, Any] | None = None  # set on the lines of failed identities


_head_decoder = msgspec.json.Decoder(_Head)


@dataclass
class Previous:
    """What an earlier run left in the output file."""

    done: set[int] = field(default_factory=set)
    lines: int = 0
    #: Bytes of an incomplete last line that were cut off (0 when the file ended cleanly).
    dropped_bytes: int = 0
    #: Lines with an error that ``retry_failed`` removed, so that those ids are fetched again.
    removed_failed: int = 0


def scan_output(path: str, *, retry_failed: bool = False) -> Previous:
    """Read the ids of an earlier run's output; cut off an incomplete last line.

    Every complete line must be a result line of this tool: anything else means the path is
    not a job's output (a mistyped ``-o``), and nothing is appended to it. With
    ``retry_failed``, lines holding an error are removed (the file is rewritten and replaced
    atomically) so that those identities are fetched again.
    """
    previous = Previous()
    if not os.path.exists(path):
        return previous
    keep_path = f"{path}.resume-tmp"
    keep = open(keep_path, "wb") if retry_failed else None  # noqa: SIM115 - closed below
    try:
        with open(path, "r+b") as handle:
            offset = 0
            for number, raw in enumerate(handle, 1):
                if not raw.endswith(b"\n"):
                    # Written lines are whole and end in a newline: this one was cut short.
                    previous.dropped_bytes = len(raw)
                    handle.truncate(offset)
                    break
                offset += len(raw)
                try:
                    head = _head_decoder.decode(raw)
                except msgspec.DecodeError:
                    raise InputError(
                        f"{path} line {number} is not a result line of commbox-async; "
                        "refusing to append to this file"
                    ) from None
                if retry_failed and head.error is not None:
                    previous.removed_failed += 1
                    continue
                previous.done.add(head.identity_id)
                previous.lines += 1
                if keep is not None:
                    keep.write(raw)
        if keep is not None:
            keep.close()
            if previous.removed_failed:
                os.replace(keep_path, path)
    finally:
        if keep is not None:
            keep.close()
            if os.path.exists(keep_path):
                os.unlink(keep_path)
    return previous
