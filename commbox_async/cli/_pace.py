"""What the client's pacing is doing, in words: the rate it found and why, and its pauses.

A job that slows down says why: the bar (or a progress line) shows a pause as it happens
("paused 87 s: server asked Retry-After 120") and the rate in force, with the reason it moved;
the summary gives the rate found, the reason, the number of pauses and the time paused.

Everything is read from the client's limiter through ``getattr`` with a fallback: a limiter
of the user's own (a ``RedisLimiter``, say) may not count pauses, and then the words say less.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._client import AsyncCommbox
from .._errors import ClientClosedError
from .._pacing import RateChange
from .._throttle import Limiter

__all__ = [
    "Pacing",
    "pacing_of",
    "pause_text",
    "per_second",
    "read_pacing",
    "seconds",
    "status_text",
    "summary_rows",
]


@dataclass(frozen=True)
class Pacing:
    """The pacing of a client at one moment."""

    #: The configured maximum (``--rate``), requests per second.
    ceiling: float
    #: The rate in force now.
    rate: float
    #: The last change of the rate: old, new, reason and evidence (None: not known).
    change: RateChange | None = None
    #: The last change that lowered it (the "why" of a rate found below the ceiling).
    lowered: RateChange | None = None
    #: Pauses begun so far, and wall-clock seconds spent paused (None: not counted).
    pauses: int | None = None
    paused: float | None = None
    #: Seconds left of the pause in progress (0: not paused).
    pause_left: float = 0.0
    #: The Retry-After the server sent for that pause (None: it sent none, or not known).
    asked: float | None = None

    def as_dict(self) -> dict[str, object]:
        """Plain values, for the summary's JSON."""
        change = self.change
        return {
            "ceiling": self.ceiling,
            "rate": round(self.rate, 3),
            "reason": _reason(change) or None,
            "why": _change_text(change) if change is not None else None,
            "pauses": self.pauses,
            "paused_s": None if self.paused is None else round(self.paused, 3),
        }


def read_pacing(client: AsyncCommbox, ceiling: float) -> Pacing | None:
    """The pacing of an open client (None once it is closed)."""
    try:
        limiter = client.limiter
    except ClientClosedError:
        return None
    return pacing_of(limiter, ceiling)


def pacing_of(limiter: Limiter, ceiling: float) -> Pacing:
    """The pacing of a limiter; what it does not count is None."""
    pauses = getattr(limiter, "pauses", None)
    paused = getattr(limiter, "paused", None)
    # The in-process limiter's model keeps its recent changes; another limiter may not.
    changes = getattr(getattr(limiter, "model", None), "changes", ())
    lowered = next((c for c in reversed(changes) if c.new < c.old), None)
    return Pacing(
        ceiling=ceiling,
        rate=limiter.current_rate,
        change=getattr(limiter, "last_change", None),
        lowered=lowered,
        pauses=pauses if isinstance(pauses, int) else None,
        paused=paused if isinstance(paused, (int, float)) else None,
        pause_left=limiter.pause_remaining(),
        asked=getattr(limiter, "pause_asked", None),
    )


def seconds(value: float) -> str:
    """Seconds in few digits: 87 s, 4.2 s, 0.35 s."""
    if value >= 10:
        return f"{value:,.0f} s"
    return f"{value:.1f} s" if value >= 1 else f"{value:.2g} s"


def per_second(value: float) -> str:
    """A rate in few digits: 1,000, 98.4, 4.5."""
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2g}"


def pause_text(pacing: Pacing) -> str:
    """The pause in progress: "paused 87 s: server asked Retry-After 120"."""
    left = seconds(pacing.pause_left)
    if pacing.asked is None:
        return f"paused {left}: a 429 with no Retry-After"
    return f"paused {left}: server asked Retry-After {pacing.asked:g}"


def _reason(change: RateChange | None) -> str:
    return change.reason.value if change is not None else ""


def _change_text(change: RateChange) -> str:
    """The change in words: "100 -> 19.4/s, bucket-fit: 61 accepted in ..."."""
    old, new = per_second(change.old), per_second(change.new)
    if change.old == change.new:
        return f"kept at {new}/s, {change.reason.value}: {change.evidence}"
    return f"{old} -> {new}/s, {change.reason.value}: {change.evidence}"


def status_text(pacing: Pacing | None) -> str:
    """One short phrase for the bar: the pause in progress, else the rate and why it moved."""
    if pacing is None:
        return ""
    if pacing.pause_left > 0:
        return pause_text(pacing)
    text = f"rate {per_second(pacing.rate)}/s"
    if pacing.rate < pacing.ceiling:
        reason = _reason(pacing.change)
        text += f" of {pacing.ceiling:g}" + (f" ({reason})" if reason else "")
    return text


def summary_rows(pacing: Pacing | None) -> list[tuple[str, str]]:
    """The summary's pacing rows: the rate found and why; the pauses and their time."""
    if pacing is None:
        return []
    change = pacing.change
    rate, ceiling = per_second(pacing.rate), f"{pacing.ceiling:g}"
    if pacing.rate < pacing.ceiling:
        text = f"{rate} req/s found, from a ceiling of {ceiling}"
    elif _reason(change) in ("", "start"):
        text = f"{rate} req/s, the ceiling: never lowered"
    else:
        text = f"{rate} req/s, the ceiling"
    lowered = pacing.lowered
    if lowered is not None and lowered is not change and pacing.rate < pacing.ceiling:
        text += f"; lowered {_change_text(lowered)}"
    if change is not None and _reason(change) != "start":
        text += f"; {'lowered' if change.new < change.old else 'last'} {_change_text(change)}"
    rows = [("client rate", text)]
    if pacing.pauses is not None and pacing.paused is not None:
        if pacing.pauses == 0:
            rows.append(("paused", "never"))
        else:
            many = "1 pause" if pacing.pauses == 1 else f"{pacing.pauses:,} pauses"
            last = (
                f"; the last one: server asked Retry-After {pacing.asked:g}"
                if pacing.asked is not None
                else "; the last one: a 429 with no Retry-After"
            )
            rows.append(("paused", f"{many}, {seconds(pacing.paused)} in all (nothing sent){last}"))
    return rows
