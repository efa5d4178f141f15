"""The fetch job's input: ids from lines or a CSV column, checked. No network, no terminal.

Input is one identity id per line (blank lines and ``#`` comments ignored, a ``# note`` after
an id allowed) or a column of a CSV file (an empty cell is skipped and counted). A line that is
not an id is reported with its number and skipped; a first line that looks like a CSV header,
when no column was named, stops the job before any request with a hint to use ``--column``.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from .._protocol import INT64_MAX
from ._errors import InputError

__all__ = ["InputIds", "iter_records", "parse_identity"]

# 19 digits hold every int64; longer strings are refused before int() sees them. A ".0"
# after them is a spreadsheet's number format (558358.0): the same id.
_DIGITS = re.compile(r"\+?([0-9]{1,19})(?:\.0+)?")


def parse_identity(text: str) -> int | None:
    """The identity id written in ``text``, or None when it is not a positive int64."""
    found = _DIGITS.fullmatch(text.strip())
    if not found:
        return None
    value = int(found.group(1))
    return value if 0 < value <= INT64_MAX else None


# A header names columns: letters. An id line never has one.
_HEADER = re.compile(r"[A-Za-z_]")


#: Delimiters that spreadsheets write instead of a comma (a semicolon where the comma is the
#: decimal mark), looked for in a header that the given delimiter does not split.
_OTHER_DELIMITERS = (";", "\t", "|")


def _other_delimiter(header: str, delimiter: str) -> str | None:
    """The delimiter a header line seems to use, when it is not the one given."""
    if delimiter in header:
        return None
    return next((other for other in _OTHER_DELIMITERS if other in header), None)


def _delimiter_flag(delimiter: str) -> str:
    return "--delimiter $'\\t'" if delimiter == "\t" else f"--delimiter {delimiter!r}"


def _header_hint(number: int, text: str, delimiter: str) -> str:
    other = _other_delimiter(text, delimiter)
    names = [name.strip() for name in text.split(other or delimiter)]
    named = [name for name in names if "id" in name.lower()] or names
    shown = text if len(text) <= 60 else text[:57] + "..."
    flags = f"--column {named[0]!r}" + (f" {_delimiter_flag(other)}" if other else "")
    return (
        f"line {number} ({shown!r}) looks like a header: use --column to name the column of "
        f"ids, e.g. {flags}"
    )


def iter_records(
    stream: Iterable[str], *, column: str | None = None, delimiter: str = ","
) -> Iterator[tuple[int, str]]:
    """(line number, text) of each id in the input, before it is checked.

    Without ``column`` every non-blank line that is not a ``#`` comment is one record (a
    ``# note`` after it is cut off); a first record that looks like a header is an
    ``InputError``. With ``column``, the stream is CSV with a header row, and the record is that
    column of each row ("" for an empty cell).
    """
    if column is None:
        first = True
        for number, line in enumerate(stream, 1):
            text = line.partition("#")[0].strip()
            if not text:
                continue
            if first and parse_identity(text) is None and _HEADER.search(text):
                raise InputError(_header_hint(number, text, delimiter))
            first = False
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
        hint = ""
        other = _other_delimiter(delimiter.join(header), delimiter) if len(header) == 1 else None
        if other is not None:
            hint = f"; the header looks {other!r}-separated: add {_delimiter_flag(other)}"
        raise InputError(f"column {column!r} is not in the CSV header ({shown}){hint}")
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
class InputIds:
    """An input file's records as the ids to fetch: bad records reported and skipped, done and
    repeated ids skipped, each counted for the summary. (The fan-out's own reader, in
    ``_fanout``, only reads ids lazily; the rules of the input file live here.)

    ``on_bad(line, text)`` is called for a record that is not an id; ``on_skip()`` for every
    record that will not be fetched (bad, empty, already done, repeated), so a progress total
    can shrink to the work that is left.
    """

    records: Iterable[tuple[int, str]]
    done: set[int] = field(default_factory=set)
    on_bad: Callable[[int, str], None] = lambda line, text: None
    on_skip: Callable[[], None] = lambda: None
    bad: int = 0
    #: Empty CSV cells: a row without an id is skipped, not an error.
    empty: int = 0
    resumed: int = 0
    duplicates: int = 0
    _seen: set[int] = field(default_factory=set)

    def __iter__(self) -> Iterator[int]:
        for line, text in self.records:
            if not text:
                self.empty += 1
                self.on_skip()
                continue
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
