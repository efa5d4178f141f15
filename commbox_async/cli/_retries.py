"""Each retry shown as it happens, on a terminal: a slow call is never silent.

The client logs one INFO record per scheduled retry on ``commbox_async.retries``
("identity 558355: retrying in 2.3 s: connection refused"); while a command runs with stderr
on a terminal, those records are written there. Piped or redirected stderr (a script, a log
file) gets none of them: the summary and the final error say what happened.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import TextIO

__all__ = ["RETRIES_LOGGER", "show_retries"]

RETRIES_LOGGER = "commbox_async.retries"


class _Lines(logging.Handler):
    """Writes each record's message, up to ``limit`` of them, then one line that says so."""

    def __init__(self, write: Callable[[str], None], limit: int | None) -> None:
        super().__init__(logging.INFO)
        self._write = write
        self._limit = limit
        self.shown = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.shown += 1
        if self._limit is None or self.shown <= self._limit:
            self._write(record.getMessage())
        elif self.shown == self._limit + 1:
            self._write("more retries: counted in the progress bar, not shown")


@contextlib.contextmanager
def show_retries(
    write: Callable[[str], None], *, stream: TextIO, limit: int | None = None
) -> Iterator[None]:
    """While the block runs, pass retry records to ``write`` if ``stream`` is a terminal.

    ``limit`` caps how many are shown (a job of many identities has a progress bar that
    counts them; one identity's retries are all shown).
    """
    if not stream.isatty():
        yield
        return
    logger = logging.getLogger(RETRIES_LOGGER)
    handler = _Lines(write, limit)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
