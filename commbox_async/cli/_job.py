"""The job loop shared by ``fetch`` and ``demo``: fan out, write each result, count it."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

from .._client import AsyncCommbox
from .._errors import AuthenticationError
from ._errors import CliExit
from ._output import JobReport, LineWriter, result_line
from ._progress import JobView

__all__ = ["run_job"]


async def run_job(
    client: AsyncCommbox,
    ids: Iterable[int] | AsyncIterator[int],
    *,
    concurrency: int,
    filters: dict[str, Any],
    writer: LineWriter | None,
    view: JobView,
    report: JobReport,
) -> None:
    """Fan out over ``ids``, writing each result as it completes; fills ``report``."""
    started = time.monotonic()
    try:
        # fetch_many returns an async generator; aclosing stops its workers on every way out.
        fan_out = client.fetch_many(ids, concurrency=concurrency, **filters)
        async with contextlib.aclosing(fan_out) as results:
            async for result in results:
                if isinstance(result.error, AuthenticationError):
                    # Every other identity would fail the same way: stop, and leave this id
                    # out of the output so that a resumed run fetches it.
                    raise CliExit(
                        f"the server refused the token ({result.error.message}); check "
                        f"COMMBOX_TOKEN. Stopped after {report.fetched:,} results."
                    )
                if writer is not None:
                    writer.write(result_line(result))
                report.add(result)
                view.advance(lambda: client.stats)
    finally:
        report.elapsed = time.monotonic() - started
        report.stats = client.stats
