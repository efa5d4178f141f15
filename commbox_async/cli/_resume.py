"""What an earlier run of ``fetch`` wrote: the ids ``--resume`` skips. No network, no terminal.

``scan_output`` reads an NDJSON file written by an earlier run so that ``--resume`` skips the
ids it holds; an incomplete last line (the run was killed mid-write) is cut off, so that its id
is fetched again and never appears twice.

A job's filters are recorded next to its output (``FILE.job.json``, by ``record_job``), and
``check_job`` refuses a resume whose filters differ: one file never mixes two queries.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ._errors import InputError

__all__ = ["Previous", "check_job", "job_path", "record_job", "scan_output"]


class _Job(msgspec.Struct, forbid_unknown_fields=False):
    """What a job asked the API, recorded next to its output."""

    filters: dict[str, Any]
    all_pages: bool = False


def job_path(output: str) -> str:
    """Where the job's filters are recorded."""
    return f"{output}.job.json"


def _job(filters: dict[str, Any], all_pages: bool) -> _Job:
    # Through JSON and back, so that a tuple and the list it is read back as compare equal.
    plain = msgspec.json.decode(msgspec.json.encode(filters))
    return _Job(filters=plain, all_pages=all_pages)


def _flags(job: _Job) -> str:
    """The job's filters as the flags that ask for them, ready to paste."""
    parts = [_flag(name, value) for name, value in sorted(job.filters.items())]
    if job.all_pages:
        parts.append("--all-pages")
    return " ".join(parts) or "no filters"


def _flag(name: str, value: Any) -> str:
    flag = "--status" if name == "statuses" else "--" + name.replace("_", "-")
    if isinstance(value, bool):  # --include-childs / --no-include-childs take no value
        return flag if value else "--no-" + flag[2:]
    if isinstance(value, list):
        return f"{flag} {','.join(str(v) for v in value)}"
    text = str(value)
    return f"{flag} {shlex.quote(text)}"


def record_job(output: str, filters: dict[str, Any], *, all_pages: bool) -> None:
    """Write the job's filters next to its output (replacing any older record)."""
    path = job_path(output)
    temporary = f"{path}.tmp"
    with open(temporary, "wb") as handle:
        handle.write(msgspec.json.encode(_job(filters, all_pages), order="sorted") + b"\n")
    os.replace(temporary, path)


def check_job(output: str, filters: dict[str, Any], *, all_pages: bool) -> None:
    """Refuse to resume ``output`` with filters other than the ones it was written with."""
    path = job_path(output)
    try:
        with open(path, "rb") as handle:
            recorded = msgspec.json.decode(handle.read(), type=_Job)
    except FileNotFoundError:
        raise InputError(
            f"cannot check that --resume asks what the job in {output} asked: {path} (its "
            "record of the filters) is missing; write to a new file"
        ) from None
    except msgspec.DecodeError:
        raise InputError(f"{path} is not a job record of commbox-async") from None
    wanted = _job(filters, all_pages)
    if recorded != wanted:
        raise InputError(
            f"--resume with other filters than the job in {output}: it ran with "
            f"{_flags(recorded)}, this run has {_flags(wanted)}; "
            "use the same filters, or write to a new file"
        )


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
