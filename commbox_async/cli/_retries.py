"""The library's log lines on stderr: each retry on a terminal, everything with ``-v``.

The client logs one INFO record per scheduled retry on ``commbox_async.retries``
("identity 558355: retrying in 2.3 s: connection refused") and one per large change of the
send rate on ``commbox_async.pacing`` ("rate 100 -> 19.4/s (bucket-fit): ..."). By default,
while a command runs with stderr on a terminal, the retry records are written there; piped
or redirected stderr (a script, a log file) gets none of them: the progress lines, the
summary and the final error say what happened. ``-v`` writes every INFO record of
``commbox_async`` (retries and pacing), terminal or not; ``-vv`` adds each attempt (DEBUG);
``-q`` writes none.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import TextIO

__all__ = ["LIBRARY_LOGGER", "RETRIES_LOGGER", "show_log", "show_retries", "verbosity"]

LIBRARY_LOGGER = "commbox_async"
RETRIES_LOGGER = "commbox_async.retries"


def verbosity(args: argparse.Namespace) -> int:
    """-1 with ``-q``, else how many ``-v`` were given (0 without)."""
    if getattr(args, "quiet", False):
        return -1
    return int(getattr(args, "verbose", 0) or 0)


class _Lines(logging.Handler):
    """Writes each record's message, up to ``limit`` of them, then one line that says so."""

    def __init__(self, write: Callable[[str], None], limit: int | None, level: int) -> None:
        super().__init__(level)
        self._write = write
        self._limit = limit
        self.shown = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.shown += 1
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            message = f"{record.levelname.lower()}: {message}"
        if self._limit is None or self.shown <= self._limit:
            self._write(message)
        elif self.shown == self._limit + 1:
            self._write("more retries: counted in the progress bar, not shown")


@contextlib.contextmanager
def _handler(name: str, handler: logging.Handler, level: int) -> Iterator[None]:
    logger = logging.getLogger(name)
    before = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(before)


@contextlib.contextmanager
def show_log(
    write: Callable[[str], None],
    *,
    stream: TextIO,
    verbosity: int = 0,
    limit: int | None = None,
) -> Iterator[None]:
    """While the block runs, pass the library's records to ``write`` as ``verbosity`` says.

    ``limit`` caps how many retry lines the default shows (a job of many identities has a
    progress bar that counts them; one identity's retries are all shown); ``-v`` shows all.
    """
    if verbosity < 0 or (verbosity == 0 and not stream.isatty()):
        yield
        return
    if verbosity == 0:
        with _handler(RETRIES_LOGGER, _Lines(write, limit, logging.INFO), logging.INFO):
            yield
        return
    level = logging.INFO if verbosity == 1 else logging.DEBUG
    with _handler(LIBRARY_LOGGER, _Lines(write, None, level), level):
        yield


def show_retries(
    write: Callable[[str], None], *, stream: TextIO, limit: int | None = None
) -> contextlib.AbstractContextManager[None]:
    """The default: each retry on a terminal (``show_log`` at verbosity 0)."""
    return show_log(write, stream=stream, verbosity=0, limit=limit)
