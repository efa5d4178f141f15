"""The terminal side of a job: the progress bar, progress lines, warnings and the summary (rich).

The bar is drawn on stderr and only when stderr is a terminal, so NDJSON on stdout and logs
stay clean; when stderr is not a terminal (a cron job, a log file) one progress line is
written every ``progress_every`` seconds instead. Either way the client's pacing shows as it
happens: a pause ("paused 87 s: server asked Retry-After 120") and the rate in force with the
reason it moved. Warnings go through the same console, so they print above a live bar; the
first failure of each kind is one, so that a failing job shows it in a log too, not only at
the end. ``quiet`` leaves only errors: no bar, no progress lines, no notes.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
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
)
from rich.text import Text

from .._errors import CommboxError
from .._stats import StatsSnapshot
from ._pace import Pacing, per_second, status_text

__all__ = ["JobView", "print_summary"]

#: Warnings about bad input lines shown before they are only counted.
MAX_WARNINGS = 20
#: Seconds between two reads of the client's counters (a snapshot sorts the latencies).
STATS_EVERY = 0.2
#: Seconds between two updates of the bar's pacing column (a pause counts down).
BAR_EVERY = 0.25

Sleep = Callable[[float], Awaitable[None]]


class _RateColumn(ProgressColumn):
    """Identities per second, as rich estimates it over the last seconds."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-/s" if speed is None else f"{speed:,.0f}/s", style="progress.data.speed")


class _FailedColumn(ProgressColumn):
    """Identities that failed so far, red once there is one: a failing job must look it."""

    def render(self, task: Task) -> Text:
        failed: int = task.fields["failed"]
        return Text(f"failed {failed:,}", style="bold red" if failed else "progress.data.speed")


class _PacingColumn(ProgressColumn):
    """The pause in progress (yellow), else the rate in force and why it moved."""

    def render(self, task: Task) -> Text:
        text: str = task.fields["pacing"]
        return Text(text, style="bold yellow" if text.startswith("paused") else "progress.data")


class _EtaColumn(ProgressColumn):
    """The time left: rich's estimate from the recent speed, plus the pause in progress (a
    pause stops progress, so an estimate from the speed alone stands still through it)."""

    def render(self, task: Task) -> Text:
        left = task.time_remaining
        pause: float = task.fields["pause_left"]
        if left is None and not pause:
            return Text("ETA -:--:--", style="progress.remaining")
        total = int((left or 0.0) + pause)
        return Text(f"ETA {datetime.timedelta(seconds=total)}", style="progress.remaining")


class JobView:
    """Progress and warnings of one job; a no-op bar when stderr is not a terminal.

    ``clock`` and ``sleep`` can be injected (tests): the progress lines are written by a task
    that sleeps ``progress_every`` seconds between two of them.
    """

    def __init__(
        self,
        *,
        total: int | None,
        label: str,
        stream: TextIO | None = None,
        quiet: bool = False,
        progress_every: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        stream = stream if stream is not None else sys.stderr
        self.console = Console(file=stream, highlight=False, soft_wrap=True)
        self.quiet = quiet
        self.live = stream.isatty() and not quiet
        #: Seconds between two progress lines when there is no bar (None: no lines).
        self.progress_every = None if quiet or self.live else progress_every
        self._label = label
        self._clock = clock
        self._sleep = sleep
        self._started = clock()
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _FailedColumn(),
            _RateColumn(),
            TextColumn("retries {task.fields[retries]}"),
            TextColumn("429s {task.fields[throttled]}"),
            _PacingColumn(),
            _EtaColumn(),
            console=self.console,
            disable=not self.live,
            redirect_stdout=False,  # stdout may carry the NDJSON
            transient=False,
            speed_estimate_period=5.0,
        )
        self._task = self._progress.add_task(
            label, total=total, retries=0, throttled=0, failed=0, pacing="", pause_left=0.0
        )
        self._total = total
        self._done = 0
        self._warnings = 0
        self._failed = 0
        self._failed_kinds: set[str] = set()
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
        """A line about something that went wrong: shown even with ``quiet``."""
        self.console.print(message, markup=False)

    def note(self, message: str) -> None:
        """A line that informs (a resume, a full page, a retry): not with ``quiet``."""
        if not self.quiet:
            self.console.print(message, markup=False)

    def bad_line(self, line: int, text: str) -> None:
        self._warnings += 1
        if self._warnings <= MAX_WARNINGS:
            shown = text if len(text) <= 40 else text[:37] + "..."
            self.warn(f"line {line}: {shown!r} is not an identity id; skipped")
        elif self._warnings == MAX_WARNINGS + 1:
            self.warn("more bad lines: counted in the summary, not shown")

    def failed(self, identity_id: object, error: CommboxError, text: str | None = None) -> None:
        """Count a failed identity; the first failure of each kind is also shown, at once.

        ``text`` is the error in the command line's words (its message by default); the
        line names the identity once.
        """
        self._failed += 1
        self._progress.update(self._task, failed=self._failed)
        if error.kind not in self._failed_kinds:
            self._failed_kinds.add(error.kind)
            said = error.message if text is None else text
            self.warn(
                f"identity {identity_id} failed: {said} ({error.kind}); further {error.kind} "
                "failures are counted"
            )

    def skip(self) -> None:
        """One input record will not be fetched: the total shrinks by one."""
        if self._total is not None:
            self._total = max(0, self._total - 1)
            self._progress.update(self._task, total=self._total)

    def advance(self, stats: Callable[[], StatsSnapshot]) -> None:
        self._done += 1
        now = time.monotonic()
        if now - self._stats_at >= STATS_EVERY:
            self._stats_at = now
            snap = stats()
            self._progress.update(
                self._task, advance=1, retries=snap.retries, throttled=snap.throttled
            )
        else:
            self._progress.update(self._task, advance=1)

    # --- the pacing, as it happens ----------------------------------------------------------
    def show_pacing(self, pacing: Pacing | None) -> None:
        """Put the pacing in the bar: the pause in progress, or the rate and its reason."""
        self._progress.update(
            self._task,
            pacing=status_text(pacing),
            pause_left=pacing.pause_left if pacing is not None else 0.0,
        )

    def progress_line(self, stats: StatsSnapshot | None, pacing: Pacing | None) -> str:
        """One line of progress, for a log: done, failed, speed, retries, 429s, the pacing."""
        done = f"{self._done:,}" + (f" of {self._total:,}" if self._total is not None else "")
        elapsed = max(self._clock() - self._started, 1e-9)
        parts = [f"{self._label}: {done} done", f"{self._failed:,} failed"]
        parts.append(f"{per_second(self._done / elapsed)} identities/s")
        if stats is not None:
            retries = f"{stats.retries:,} retr{'y' if stats.retries == 1 else 'ies'}"
            parts.append(f"{retries}, {stats.throttled:,} answered 429")
        line = ", ".join(parts)
        status = status_text(pacing)
        return f"{line}; {status}" if status else line

    @contextlib.asynccontextmanager
    async def ticking(
        self, stats: Callable[[], StatsSnapshot], pacing: Callable[[], Pacing | None]
    ) -> AsyncIterator[None]:
        """While the block runs, keep the bar's pacing column current (a pause counts down)
        or, without a bar, write a progress line every ``progress_every`` seconds."""
        if self.live:
            every = BAR_EVERY
        elif self.progress_every is not None:
            every = self.progress_every
        else:
            yield
            return

        async def tick() -> None:
            while True:
                await self._sleep(every)
                if self.live:
                    self.show_pacing(pacing())
                else:
                    self.console.print(self.progress_line(stats(), pacing()), markup=False)

        ticker = asyncio.ensure_future(tick())
        try:
            yield
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker


def print_summary(rows: list[tuple[str, str]], *, title: str, stream: TextIO) -> None:
    """Aligned label/value lines: bold labels on a terminal, plain text elsewhere."""
    console = Console(file=stream, highlight=False, soft_wrap=True)
    width = max((len(label) for label, _ in rows), default=0)
    console.print(Text(title, style="bold"))
    for label, value in rows:
        console.print(Text.assemble("  ", (label.ljust(width), "bold"), "  ", value))
