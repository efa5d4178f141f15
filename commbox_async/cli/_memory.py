"""What ``fetch`` remembers of a server's limit between runs, per base URL and token fingerprint.

A new process would otherwise pay seconds to find a limit it met before. The rate a job ended
at is saved in the user's state directory (``$COMMBOX_STATE_DIR``, else
``$XDG_STATE_HOME/commbox-async``, else ``~/.local/state/commbox-async``) under the base URL
and a fingerprint of the token (never the token), with the time it was saved; the next run
starts there (``RateLimit(start_rate=...)``), a starting point, not a ceiling: the usual probes
find a limit that rose, the usual 429 one that fell. ``--fresh`` ignores what was saved. A
remembered rate older than ``MAX_AGE`` is ignored too. Only a run that measured the limit
saves (``_fetch._save_rate``): one that met a 429, or whose probes rose above the remembered
rate; a run that only held it leaves the entry's time as it was, so that its age is the age
of the measurement. No network, no terminal.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

from .._protocol import server_identity, token_fingerprint

__all__ = ["MAX_AGE", "Remembered", "forget", "forget_all", "recall", "remember", "state_dir"]

#: A limit saved longer ago than this (seconds) is not trusted: plans and deploys change.
MAX_AGE = 7 * 24 * 3600.0
_FILE = "limits.json"
_LOCK = "limits.lock"
#: How far ahead of this machine's clock a saved time may be (another machine's clock).
_CLOCK_SLACK = 24 * 3600.0
#: Entries kept at most (the least recently saved go first).
_MAX_ENTRIES = 200


@dataclass(frozen=True)
class Remembered:
    """A rate an earlier run ended at, and when it was saved (seconds since the epoch)."""

    rate: float
    saved: float

    def age(self, now: float) -> str:
        """How long ago, in words: "40 s", "3 min", "5 h", "2 days"."""
        seconds = max(0.0, now - self.saved)
        for unit, size in (("day", 86400.0), ("h", 3600.0), ("min", 60.0)):
            if seconds >= size:
                count = int(seconds // size)
                return f"{count} {unit}{'s' if unit == 'day' and count != 1 else ''}"
        return f"{seconds:.0f} s"


def state_dir() -> Path:
    """Where the command line keeps what it learned. (A relative ``XDG_STATE_HOME`` is
    ignored, as the XDG spec says: it would scatter state over working directories.)"""
    explicit = os.environ.get("COMMBOX_STATE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_STATE_HOME", "")
    if os.path.isabs(xdg):
        return Path(xdg) / "commbox-async"
    try:
        home = Path.home()
    except RuntimeError:
        # No HOME and no passwd entry (an arbitrary user id in a container): no state
        # directory, which every caller skips as it skips one it cannot write.
        raise FileNotFoundError("no home directory for the state directory") from None
    return home / ".local" / "state" / "commbox-async"


def _key(base_url: str, token: str) -> str:
    return f"{server_identity(base_url)} {token_fingerprint(token)}"


def _load(path: Path) -> dict[str, dict[str, float]]:
    """The saved entries; a missing or damaged file is an empty memory, never an error
    (whatever is in it: a number too large for a float, nesting too deep to parse)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return {}
    if not isinstance(data, dict):
        return {}
    entries = {}
    latest = time.time() + _CLOCK_SLACK  # a time to come would be trusted, and kept, for ever
    for key, value in data.items():
        rate = _number(value.get("rate")) if isinstance(value, dict) else None
        saved = _number(value.get("saved")) if isinstance(value, dict) else None
        if rate is not None and saved is not None and rate > 0 and saved <= latest:
            entries[key] = {"rate": rate, "saved": saved}
    return entries


def _number(value: object) -> float | None:
    """``value`` as a finite float, or None (a bool, a string, NaN, 1e400 are not rates)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def recall(base_url: str, token: str, now: float | None = None) -> Remembered | None:
    """The rate saved for this server and token, unless it is too old."""
    now = time.time() if now is None else now
    try:
        folder = state_dir()
    except OSError:
        return None
    entry = _load(folder / _FILE).get(_key(base_url, token))
    if entry is None or now - entry["saved"] > MAX_AGE:
        return None
    return Remembered(rate=float(entry["rate"]), saved=float(entry["saved"]))


def remember(base_url: str, token: str, rate: float, now: float | None = None) -> None:
    """Save the rate a job ended at; a state directory that cannot be written is skipped."""
    now = time.time() if now is None else now
    key, entry = _key(base_url, token), {"rate": round(rate, 3), "saved": round(now, 1)}

    def save(entries: dict[str, dict[str, float]]) -> bool:
        entries[key] = entry
        return True

    _change(save)


def forget(base_url: str, token: str) -> None:
    """Drop what was remembered for this server and token, if anything."""
    key = _key(base_url, token)
    _change(lambda entries: entries.pop(key, None) is not None)


def _change(change: Callable[[dict[str, dict[str, float]]], bool]) -> None:
    """Apply ``change`` to the saved entries, and write them if it says it changed them; a
    state directory that cannot be written is skipped."""
    with contextlib.suppress(OSError):
        folder = state_dir()
        path = folder / _FILE
        with _locked(folder):
            # Read, changed and written under one lock: jobs ending together each add their
            # entry (without it the last writer dropped the others': 8 of 20 kept).
            entries = _load(path)
            if change(entries):
                _write(folder, path, entries)


def _write(folder: Path, path: Path, entries: dict[str, dict[str, float]]) -> None:
    """The entries (the most recently saved ``_MAX_ENTRIES``) written whole and renamed over
    ``path``, so that a reader never sees half a file."""
    newest = sorted(entries.items(), key=lambda item: item[1]["saved"])[-_MAX_ENTRIES:]
    with tempfile.NamedTemporaryFile("w", dir=folder, delete=False, suffix=".tmp") as tmp:
        try:
            json.dump(dict(newest), tmp, indent=1)
            tmp.close()
            os.replace(tmp.name, path)
        except BaseException:
            # A full disk, limits.json a directory: leave no temporary file behind.
            with contextlib.suppress(OSError):
                os.unlink(tmp.name)
            raise


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive lock on the state directory's lock file, for one read-change-write (where
    the platform has ``fcntl``: elsewhere, the rename alone keeps the file whole)."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(folder / _LOCK, "a") as handle:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield  # the lock ends with the file's closing


def forget_all() -> None:
    """Drop every remembered limit (tests, and a user starting over)."""
    with contextlib.suppress(OSError):
        (state_dir() / _FILE).unlink()
