"""The terminal side of a job: the progress bar, warnings and the summary table (rich).

The bar is drawn on stderr and only when stderr is a terminal, so NDJSON on stdout and logs
stay clean. Warnings go through the same console, so they print above a live bar.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from .._stats import StatsSnapshot

__all__ = ["JobView", "print_summary"]

#: Warnings about bad input lines shown before they are only counted.
MAX_WARNINGS = 20
#: Seconds between two reads of the client's counters (a snapshot sorts the latencies).
STATS_EVERY = 0.2


class _RateColumn(ProgressColumn):
    """Identities per second, as rich estimates it over the last seconds."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-/s" if speed is None else f"{speed:,.0f}/s", style="progress.data.speed")


class JobView:
    """Progress and warnings of one job; a no-op bar when stderr is not a terminal."""

    def __init__(self, *, total: int | None, label: str, stream: TextIO | None = None) -> None:
        stream = stream if stream is not None else sys.stderr
        self.console = Console(file=stream, highlight=False, soft_wrap=True)
        self.live = stream.isatty()
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _RateColumn(),
            TextColumn("retries {task.fields[retries]}"),
            TextColumn("429s {task.fields[throttled]}"),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            disable=not self.live,
            redirect_stdout=False,  # stdout may carry the NDJSON
            transient=False,
            speed_estimate_period=5.0,
        )
        self._task = self._progress.add_task(label, total=total, retries=0, throttled=0)
        self._total = total
        self._warnings = 0
        self._stats_at = 0.0

    def __enter__(self) -> JobView:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def warn(self, message: str) -> None:
        self.console.print(message, markup=False)

    def bad_line(self, line: int, text: str) -> None:
        self._warnings += 1
        if self._warnings <= MAX_WARNINGS:
            shown = text if len(text) <= 40 else text[:37] + "..."
            self.warn(f"line {line}: {shown!r} is not an identity id; skipped")
        elif self._warnings == MAX_WARNINGS + 1:
            self.warn("more bad lines: counted in the summary, not shown")

    def skip(self) -> None:
        """One input record will not be fetched: the total shrinks by one."""
        if self._total is not None:
            self._total = max(0, self._total - 1)
            self._progress.update(self._task, total=self._total)

    def advance(self, stats: Callable[[], StatsSnapshot]) -> None:
        now = time.monotonic()
        if now - self._stats_at >= STATS_EVERY:
            self._stats_at = now
            snap = stats()
            self._progress.update(
                self._task, advance=1, retries=snap.retries, throttled=snap.throttled
            )
        else:
            self._progress.update(self._task, advance=1)


def print_summary(rows: list[tuple[str, str]], *, title: str, stream: TextIO) -> None:
    """Aligned label/value lines: bold labels on a terminal, plain text elsewhere."""
    console = Console(file=stream, highlight=False, soft_wrap=True)
    width = max((len(label) for label, _ in rows), default=0)
    console.print(Text(title, style="bold"))
    for label, value in rows:
        console.print(Text.assemble("  ", (label.ljust(width), "bold"), "  ", value))
