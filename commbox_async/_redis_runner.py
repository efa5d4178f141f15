"""Runs ``RedisLimiter``'s Lua scripts on Redis: by digest once loaded, every command bounded.

The script cache: ``EVAL`` sends a script's text the first time (Redis caches it), ``EVALSHA``
its digest after that, and ``EVAL`` again when a restarted Redis has forgotten it. redis-py's
own ``Script`` would load a forgotten script with ``SCRIPT LOAD`` and call it again: two round
trips where ``EVAL`` takes one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import cast

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError

from ._redis_scripts import Script
from ._waiting import wait_for

__all__ = ["UNAVAILABLE", "ScriptRunner"]

#: What an unreachable (or too slow) Redis raises: the limiter falls back on any of them.
UNAVAILABLE = (RedisError, OSError, asyncio.TimeoutError)


class ScriptRunner:
    """Runs scripts on one redis-py client, each command bounded by ``timeout`` seconds."""

    def __init__(self, client: aioredis.Redis, timeout: float) -> None:
        self.client = client
        self.timeout = timeout
        self._loaded: set[str] = set()  # digests of the scripts sent with EVAL
        #: Redis commands sent (a reload after a Redis restart included).
        self.trips = 0

    async def run(self, script: Script, keys: Sequence[str], args: Sequence[str]) -> list[bytes]:
        """The script's reply, as redis-py returns it (parse it with the script's reply type)."""
        self.trips += 1
        if script.sha not in self._loaded:
            # EVAL caches the script in Redis: later calls send only its digest.
            loaded = await self._eval(script, keys, args)
            self._loaded.add(script.sha)
            return loaded
        try:
            reply = await wait_for(
                self.client.evalsha(script.sha, len(keys), *keys, *args), self.timeout
            )
        except NoScriptError:
            # A restarted Redis has forgotten the script; EVAL loads it again.
            self.trips += 1
            return await self._eval(script, keys, args)
        return cast("list[bytes]", reply)

    async def _eval(self, script: Script, keys: Sequence[str], args: Sequence[str]) -> list[bytes]:
        reply = await wait_for(self.client.eval(script.text, len(keys), *keys, *args), self.timeout)
        return cast("list[bytes]", reply)
