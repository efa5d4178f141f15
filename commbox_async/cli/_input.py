"""The fetch job's input: ids from lines or a CSV column, checked. No network, no terminal.

Input is one identity id per line (blank lines and ``#`` comments ignored) or a column of a CSV
file. A line that is not an id is reported with its number and skipped.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from .._protocol import INT64_MAX
from ._errors import InputError

__all__ = ["IdSource", "iter_records", "parse_identity"]

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
