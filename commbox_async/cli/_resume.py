"""What an earlier run of ``fetch`` wrote: the ids ``--resume`` skips. No network, no terminal.

``scan_output`` reads an NDJSON file written by an earlier run so that ``--resume`` skips the
ids it holds; an incomplete last line (the run was killed mid-write) is cut off, so that its id
is fetched again and never appears twice.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ._errors import InputError

__all__ = ["Previous", "scan_output"]


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
