"""Client settings for tests: no rate limit to speak of and no real back-off waits.

A client built with the defaults is made for production: 10 requests a second and real
exponential back-off (100 ids take about 13 s). Against the fake server a test wants neither.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .._config import RateLimit, Retries

__all__ = ["FAST_RATE_LIMIT", "FAST_RETRIES", "fast_client_settings"]

#: High enough that the limiter never makes a test wait.
FAST_RATE_LIMIT = RateLimit(max_rate=100_000)
#: Retries at once: zero back-off, and a 429 waits no more than 10 ms whatever its
#: Retry-After says (0 s when it gives none).
FAST_RETRIES = Retries(base_delay=0.0, max_delay=0.0, default_retry_after=0.0, max_retry_after=0.01)


def fast_client_settings(**overrides: Any) -> dict[str, Any]:
    """Keyword arguments of ``AsyncCommbox`` for a test: ``FAST_RATE_LIMIT``, ``FAST_RETRIES``.

    ``overrides`` replace or add any of them (``rate_limit=5`` to test pacing itself). A
    number of tries (``retries=3``) keeps the fast waits: it sets ``FAST_RETRIES.tries``.
    """
    retries = overrides.pop("retries", FAST_RETRIES)
    if isinstance(retries, int) and not isinstance(retries, bool):
        retries = dataclasses.replace(FAST_RETRIES, tries=retries)
    return {"rate_limit": FAST_RATE_LIMIT, "retries": retries, **overrides}
