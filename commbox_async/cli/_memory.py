"""What ``fetch`` remembers of a server's limit between runs, per base URL and token fingerprint.

A new process would otherwise pay seconds to find a limit it met before. The rate a job ended
at is saved in the user's state directory (``$COMMBOX_STATE_DIR``, else
``$XDG_STATE_HOME/commbox-async``, else ``~/.local/state/commbox-async``) under the base URL
and a fingerprint of the token (never the token), with the time it was saved; the next run
starts there (``RateLimit(start_rate=...)``), a starting point, not a ceiling: the usual probes
find a limit that rose, the usual 429 one that fell. ``--fresh`` ignores what was saved. A
remembered rate older than ``MAX_AGE`` is ignored too. No network, no terminal.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .._protocol import token_fingerprint

__all__ = ["MAX_AGE", "Remembered", "forget_all", "recall", "remember", "state_dir"]

#: A limit saved longer ago than this (seconds) is not trusted: plans and deploys change.
MAX_AGE = 7 * 24 * 3600.0
_FILE = "limits.json"
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
    """Where the command line keeps what it learned."""
    explicit = os.environ.get("COMMBOX_STATE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "commbox-async"


def _key(base_url: str, token: str) -> str:
    return f"{base_url} {token_fingerprint(token)}"


def _load(path: Path) -> dict[str, dict[str, float]]:
    """The saved entries; a missing or damaged file is an empty memory, never an error."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        key: value
        for key, value in data.items()
        if isinstance(value, dict)
        and isinstance(value.get("rate"), (int, float))
        and isinstance(value.get("saved"), (int, float))
        and value["rate"] > 0
    }


def recall(base_url: str, token: str, now: float | None = None) -> Remembered | None:
    """The rate saved for this server and token, unless it is too old."""
    now = time.time() if now is None else now
    entry = _load(state_dir() / _FILE).get(_key(base_url, token))
    if entry is None or now - entry["saved"] > MAX_AGE:
        return None
    return Remembered(rate=float(entry["rate"]), saved=float(entry["saved"]))


def remember(base_url: str, token: str, rate: float, now: float | None = None) -> None:
    """Save the rate a job ended at; a state directory that cannot be written is skipped."""
    now = time.time() if now is None else now
    folder = state_dir()
    path = folder / _FILE
    entries = _load(path)
    entries[_key(base_url, token)] = {"rate": round(rate, 3), "saved": round(now, 1)}
    newest = sorted(entries.items(), key=lambda item: item[1]["saved"])[-_MAX_ENTRIES:]
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Written whole and renamed, so that two jobs ending together never leave half a file.
        with tempfile.NamedTemporaryFile("w", dir=folder, delete=False, suffix=".tmp") as tmp:
            json.dump(dict(newest), tmp, indent=1)
        os.replace(tmp.name, path)


def forget_all() -> None:
    """Drop every remembered limit (tests, and a user starting over)."""
    with contextlib.suppress(FileNotFoundError):
        (state_dir() / _FILE).unlink()
