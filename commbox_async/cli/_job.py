"""The job loop shared by ``fetch`` and ``demo``: fan out, write each result, count it."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from .._client import AsyncCommbox
from .._errors import AuthenticationError, CommboxError
from ._errors import CliExit
from ._output import JobReport, LineWriter, result_line
from ._pace import read_pacing
from ._paging import fetch_every_page, is_full
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
    ceiling: float,
    all_pages: bool = False,
    token_from: str = "COMMBOX_TOKEN",
    explain: Callable[[CommboxError], str] | None = None,
) -> None:
    """Fan out over ``ids``, writing each result as it completes; fills ``report``.

    ``ceiling`` is the client's configured rate (the pacing is shown against it);
    ``token_from`` names where the token came from, for a refused one; ``explain`` words a
    failure for the first-failure line (its message by default).
    """
    started = time.monotonic()
    try:
        # An async generator either way; aclosing stops its workers on every way out.
        if all_pages:
            fan_out = fetch_every_page(client, ids, concurrency=concurrency, filters=filters)
        else:
            fan_out = client.fetch_many(ids, concurrency=concurrency, **filters)
        ticking = view.ticking(lambda: client.stats, lambda: read_pacing(client, ceiling))
        async with contextlib.aclosing(fan_out) as results, ticking:
            async for result in results:
                if isinstance(result.error, AuthenticationError):
                    # Every other identity would fail the same way: stop, and leave this id
                    # out of the output so that a resumed run fetches it.
                    raise CliExit(
                        f"the server refused the token ({result.error.message}); check "
                        f"{token_from}. Stopped after {report.fetched:,} results."
                    )
                if writer is not None:
                    writer.write(result_line(result))
                report.add(result)
                if result.error is not None:
                    text = explain(result.error) if explain is not None else None
                    view.failed(result.identity_id, result.error, text)
                elif not all_pages and result.response and is_full(result.response, filters):
                    report.full_pages += 1
                    if report.full_pages == 1:
                        count = len(result.response.data)
                        view.note(
                            f"identity {result.identity_id}: the page is full ({count} "
                            f"conversation{'' if count == 1 else 's'}), there may be more; "
                            "--all-pages fetches every page (full pages are counted)"
                        )
                view.advance(lambda: client.stats)
    finally:
        report.elapsed = time.monotonic() - started
        report.stats = client.stats
        report.pacing = read_pacing(client, ceiling)
