"""The Redis-backed limiter, for many processes on one API token (needs the ``redis`` extra).

    from commbox_async.redis import RedisLimiter

Kept apart from ``commbox_async`` so that importing the library never imports redis-py.
"""

from __future__ import annotations

from commbox_async._redis import RedisLimiter

__all__ = ["RedisLimiter"]
