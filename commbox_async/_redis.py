"""RedisLimiter: one rate limit, one pause and one adaptive rate for every process on a token.

Every process (gunicorn worker, job worker, host) that builds a ``RedisLimiter`` with the same
``key`` shares three things kept in one Redis hash:

- **the schedule**: GCRA in its virtual-scheduling form, kept as a theoretical arrival time
  (TAT), with no burst tolerance (``RateLimit.burst`` is not used). A Lua script reserves the
  next slot atomically, on Redis's clock, and returns how long to wait for it: one round trip
  per attempt, no polling, and the caller then sleeps locally. Slots are spaced ``1.03 / rate``
  apart, so that 30 ms of scheduling and network jitter cannot put more than ``rate`` requests
  into one second at the server (measured: single delays of 5-20 ms are common with a few busy
  processes on two cores); a holder that wakes more than 15 ms late takes a new slot instead.
- **the pause**: a 429 writes "pause until T" (Redis time) into the hash, pushes the schedule
  past it, and publishes T on ``<key>:pause``. The script that takes a slot reads the pause too,
  so no slot is ever granted inside one; slots granted before the 429 that fall inside it are
  given up by their holders (they learn of it from the channel or from their next slot).
- **the adaptive rate**: the same script that records the pause runs a small shared rule on
  Redis's side (``_THROTTLE``): on the first 429 of an episode the rate drops to the last rate
  that ran quietly (when it was probing above it), else to half, but never below what the
  server provably accepted (``slots / (episode + pause)``: its bucket was empty when the last
  pause began). Every ``PROBE_INTERVAL`` quiet seconds the rate moves up to the geometric mean
  of the last quiet rate and the lowest rate that drained the server (bisection), or by 25 %
  when none is known, never above ``max_rate``. The in-process ``PacingModel`` reads every
  attempt's send time and outcome; across processes only the scheduler sees every slot and
  each process sees its share of the outcomes. Running the model in each process on its share
  (readings scaled by it, the process that saw the last 429 owning the rate) was tried and
  measured: 4 processes, 800 ids against 100 req/s, 1,000 req/s configured, took 28 s against
  14.6 s with this rule, so the rate rule stays here, in the one atomic script. The pause rules
  are ``PausePolicy``'s, the same object the in-process limiter and the retry decision use.

If Redis cannot be reached (short socket timeouts, no retries inside redis-py), the process logs
one warning and falls back to a ``LocalLimiter`` at ``fallback_rate`` (default ``max_rate /
expected_workers``), after the slots it already holds have been used. It tries Redis again on a
wall-clock grid of ``reconnect_interval`` seconds, so that every process returns at the same
moment, and logs once more when it is back.

``limits`` (the well-kept rate-limiting library, with async Redis storage) was considered and
not used: its strategies answer "allowed or not now" (``hit``), so a caller that must wait polls
(``get_window_stats`` then ``hit`` again: two or more round trips per slot, and every waiter of
every process polling at the window's reset); its windows admit a limit's worth of requests at
once, a burst the server would answer with 429s; a rate that adapts would be a new limit item
(its key includes the limit, so the count restarts); and it has no pause. Reserving a slot with
the pause read in the same atomic step is the two short Lua scripts below.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import random
import time
from collections.abc import Awaitable, Sequence
from types import TracebackType
from typing import cast

try:
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import NoScriptError, RedisError
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("RedisLimiter needs redis-py: pip install 'commbox-async[redis]'") from exc

from ._config import RateLimit, as_rate_limit
from ._errors import ClientClosedError, InvalidArgumentError
from ._pacing import Outcome, PausePolicy, RateChange, Reason, Ticket
from ._throttle import LocalLimiter, log_rate_change

__all__ = ["RedisLimiter"]

logger = logging.getLogger("commbox_async.redis")

#: Slots are spaced this much wider than 1/rate: 30 ms of each second absorb jitter.
PACE = 1.03
#: A slot whose holder wakes later than this is given back: a busy event loop would otherwise
#: send everything that fell due while it was busy at once.
LATE = 0.015
#: Quiet seconds between two upward moves of the shared rate.
PROBE_INTERVAL = 2.0
#: Upward step when no rate that drained the server is known.
PROBE_FACTOR = 1.25
#: On a drain with no rate known to be quiet, the rate is multiplied by this (or the floor).
DECREASE = 0.5
#: Stop probing when the lowest draining rate is within this fraction of the quiet one...
GAP_MIN = 0.02
#: ...until this many seconds have passed; then that rate is raised 10 % and probing resumes.
BAD_TTL = 60.0

_UNAVAILABLE = (RedisError, OSError, asyncio.TimeoutError)

_COMMON = """
local key = KEYS[1]
local function f(x) return string.format('%.6f', x) end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local s = redis.call('HMGET', key, 'tat', 'pause', 'rate', 'good', 'bad', 'quiet',
                     'ep_t', 'cnt', 'bad_at')
local max_rate, min_rate = tonumber(ARGV[1]), tonumber(ARGV[2])
local ttl, pace = ARGV[3], tonumber(ARGV[4])
local tat = tonumber(s[1]) or 0
local pause = tonumber(s[2]) or 0
local rate = math.min(math.max(tonumber(s[3]) or max_rate, min_rate), max_rate)
local good = tonumber(s[4]) or 0
local bad = tonumber(s[5]) or 0
local quiet = tonumber(s[6]) or now
local ep_t = tonumber(s[7]) or now
local cnt = tonumber(s[8]) or 0
local bad_at = tonumber(s[9]) or now
local function save()
  redis.call('HSET', key, 'tat', f(tat), 'pause', f(pause), 'rate', f(rate), 'good', f(good),
             'bad', f(bad), 'quiet', f(quiet), 'ep_t', f(ep_t), 'cnt', f(cnt),
             'bad_at', f(bad_at))
  redis.call('PEXPIRE', key, ttl)
end
"""

# ARGV: max_rate, min_rate, ttl_ms, pace, probe_interval, probe_factor, gap_min, bad_ttl
# Returns the slot and Redis's time (the caller waits slot - now), the rate, the pause's end
# and the end of the schedule granted so far.
_ACQUIRE = (
    _COMMON
    + """
local probe_interval, probe_factor = tonumber(ARGV[5]), tonumber(ARGV[6])
local gap_min, bad_ttl = tonumber(ARGV[7]), tonumber(ARGV[8])
if rate < max_rate and now >= pause and now - quiet >= probe_interval then
  -- The rate ran a whole interval without a 429: it is known good. Move up.
  if rate > good then good = rate end
  if bad > 0 and now - bad_at >= bad_ttl then bad = bad * 1.1; bad_at = now end
  local target = rate * probe_factor
  if bad > 0 then
    target = rate
    if bad - good > gap_min * good then target = math.sqrt(good * bad) end
  end
  rate = math.min(max_rate, math.max(rate, target))
  quiet = now
end
local slot = math.max(now, tat, pause)
tat = slot + pace / rate
cnt = cnt + 1
save()
return {f(slot), f(now), f(rate), f(pause), f(tat)}
"""
)

# ARGV: max_rate, min_rate, ttl_ms, pace, slot of the throttled attempt (-1: unknown), pause
#       length, decrease, channel
# Returns the pause's end, Redis's time, the new rate and whether this 429 began an episode.
_THROTTLE = (
    _COMMON
    + """
local slot, wait = tonumber(ARGV[5]), tonumber(ARGV[6])
local decrease, channel = tonumber(ARGV[7]), ARGV[8]
local new_end = now + wait
local drained = 0
if slot >= 0 and slot >= ep_t then
  -- The first 429 since the last pause ended: the server's bucket ran empty at `slot`.
  drained = 1
  local d = math.max(slot - ep_t, 0.001)
  -- Slots granted in this episode, less those already granted beyond the drained one.
  local sent = math.max(cnt - math.max(0, tat - slot) * rate / pace, 0)
  -- The bucket was empty when the last pause began, so it held at most rate*pause tokens
  -- when this episode began: the server accepts at least this.
  local floor = sent / (d + wait)
  local new
  if good > 0 and rate > good then
    new = good
  else
    good = 0
    new = math.max(rate * decrease, floor)
  end
  bad = rate
  bad_at = now
  local old = rate
  rate = math.min(math.max(math.min(new, rate), min_rate), max_rate)
  -- The next episode begins when this pause ends; slots already granted past that count in it.
  ep_t = math.max(pause, new_end)
  quiet = ep_t
  cnt = math.max(0, tat - ep_t) * old / pace
end
if new_end > pause then pause = new_end end
if pause > tat then tat = pause end
save()
redis.call('PUBLISH', channel, f(pause) .. ' ' .. f(now))
return {f(pause), f(now), f(rate), tostring(drained)}
"""
)


class _Script:
    __slots__ = ("sha", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()


ACQUIRE_SCRIPT = _Script(_ACQUIRE)
THROTTLE_SCRIPT = _Script(_THROTTLE)


def _check(
    key: object,
    rate_limit: RateLimit | float | None,
    fallback_rate: float | None,
    expected_workers: object,
    **seconds: object,
) -> tuple[RateLimit, float]:
    """Validate the arguments; return the rate limit and the fallback rate."""
    if not isinstance(key, str) or not key:
        raise InvalidArgumentError("key must be a non-empty string")
    if isinstance(expected_workers, bool) or not isinstance(expected_workers, int):
        raise InvalidArgumentError("expected_workers must be an int")
    if expected_workers < 1:
        raise InvalidArgumentError("expected_workers must be >= 1")
    for name, value in seconds.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise InvalidArgumentError(f"{name} must be a number >= 0")
        if name in ("reconnect_interval", "op_timeout") and value == 0:
            raise InvalidArgumentError(f"{name} must be > 0")
    config = as_rate_limit(rate_limit)
    if fallback_rate is None:
        return config, config.max_rate / expected_workers
    return config, as_rate_limit(fallback_rate).max_rate


class _SlotTicket(Ticket, gc=False):
    """A ticket for a slot of the shared schedule; ``slot`` is its time on Redis's clock."""

    slot: float = 0.0


class RedisLimiter:
    """A ``Limiter`` shared through Redis by every process that uses the same ``key``.

    Build it with ``RedisLimiter.from_url("redis://host:6379/0", key="commbox:<name>",
    rate_limit=...)`` (or pass your own ``redis.asyncio.Redis``) and give it to each client:

        async with RedisLimiter.from_url(url, key="commbox:acme", rate_limit=100) as limiter:
            async with AsyncCommbox(token=..., limiter=limiter) as commbox:
                ...

    ``rate_limit`` (a ``RateLimit`` or requests per second) is the limit of all processes
    together; every process should pass the same. The client does not close a limiter it was
    given: close it (``aclose`` or ``async with``). See the module docstring for the design.

    ``fallback_rate`` is this process's rate while Redis is unreachable; by default
    ``max_rate / expected_workers``, so set ``expected_workers`` to the number of processes.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        key: str,
        rate_limit: RateLimit | float | None = None,
        fallback_rate: float | None = None,
        expected_workers: int = 4,
        default_retry_after: float = 1.0,
        max_retry_after: float = 120.0,
        reconnect_interval: float = 2.0,
        op_timeout: float = 0.5,
        owns_client: bool = False,
        rng: random.Random | None = None,
    ) -> None:
        self.config, fallback = _check(
            key,
            rate_limit,
            fallback_rate,
            expected_workers,
            default_retry_after=default_retry_after,
            max_retry_after=max_retry_after,
            reconnect_interval=reconnect_interval,
            op_timeout=op_timeout,
        )
        self.fallback_rate = fallback
        self.key = key
        self.channel = f"{key}:pause"
        self._client = client
        self._owns_client = owns_client
        self.pause_policy = PausePolicy(
            default_retry_after=float(default_retry_after), max_retry_after=float(max_retry_after)
        )
        self._reconnect_interval = float(reconnect_interval)
        self._op_timeout = float(op_timeout)
        self._rng = rng or random.Random()
        self._fallback = LocalLimiter(
            RateLimit(
                # The same margin for jitter as the shared schedule.
                max_rate=fallback / PACE,
                burst=1,  # no burst at the switch: the shared schedule ran up to it
                adaptive=self.config.adaptive,
                min_rate=min(self.config.min_rate, fallback / PACE),
            ),
            pause_policy=self.pause_policy,
            rng=self._rng,
        )
        # State idle longer than this is forgotten (it must outlive the longest pause).
        self._ttl_ms = int(1000 * max(600.0, 2 * self.pause_policy.max_retry_after))
        self._acquire_args = self._args()
        # Pauses: approximate end on our clock (for waiting), exact end on Redis's clock (for
        # giving up slots inside it), and the end of a pause we started ourselves.
        self._pause_until = -math.inf
        self._redis_pause_end = -math.inf
        self._own_pause_until = -math.inf
        self._rate = self.config.max_rate
        self._change = RateChange(0.0, self._rate, self._rate, Reason.START, "configured")
        self._logged_rate = self._rate
        self._up = True
        self._probing = False
        self._retry_at = 0.0
        # When the last slot granted by Redis (to any process, as far as we know) is due.
        self._horizon = -math.inf
        self._lead = 0.0  # how far ahead of now the schedule was booked, at the last reply
        self._listener: asyncio.Task[None] | None = None
        self._loaded: set[str] = set()  # digests of the scripts this limiter has sent
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._waited_rate = 0.0
        self._waited_pause = 0.0
        #: Redis commands sent (scripts, including a reload after a Redis restart).
        self.round_trips = 0
        #: Slots taken from the shared schedule and from the fallback limiter.
        self.shared_slots = 0
        self.fallback_slots = 0
        #: Slots given up because a pause began before they were due.
        self.forfeited = 0
        #: Times Redis became unreachable.
        self.outages = 0

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        key: str,
        rate_limit: RateLimit | float | None = None,
        fallback_rate: float | None = None,
        expected_workers: int = 4,
        default_retry_after: float = 1.0,
        max_retry_after: float = 120.0,
        reconnect_interval: float = 2.0,
        socket_timeout: float = 0.25,
        rng: random.Random | None = None,
    ) -> RedisLimiter:
        """A limiter with its own redis-py client (closed by ``aclose``).

        Sockets time out after ``socket_timeout`` seconds and redis-py does not retry, so an
        unreachable Redis costs one short wait before the fallback takes over.
        """
        # Check the arguments before a client exists that would need closing.
        _check(
            key,
            rate_limit,
            fallback_rate,
            expected_workers,
            default_retry_after=default_retry_after,
            max_retry_after=max_retry_after,
            reconnect_interval=reconnect_interval,
            op_timeout=socket_timeout,
        )
        client = aioredis.Redis.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            retry=Retry(NoBackoff(), 0),
        )
        return cls(
            client,
            key=key,
            rate_limit=rate_limit,
            fallback_rate=fallback_rate,
            expected_workers=expected_workers,
            default_retry_after=default_retry_after,
            max_retry_after=max_retry_after,
            reconnect_interval=reconnect_interval,
            op_timeout=max(2 * socket_timeout, 0.1),
            owns_client=True,
            rng=rng,
        )

    def __repr__(self) -> str:
        state = "redis" if self._up else "fallback"
        return f"<RedisLimiter key={self.key!r} rate={self.current_rate:g}/s {state}>"

    async def __aenter__(self) -> RedisLimiter:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # --- the Limiter protocol -----------------------------------------------------------
    @property
    def current_rate(self) -> float:
        """The shared rate (or, while Redis is unreachable, this process's fallback rate)."""
        return self._rate if self._up else self._fallback.current_rate

    @property
    def waited(self) -> tuple[float, float]:
        """Task-seconds this process spent waiting for a slot, and for pauses."""
        rate, pause = self._fallback.waited
        return self._waited_rate + rate, self._waited_pause + pause

    @property
    def shared(self) -> bool:
        """Whether slots come from Redis now (False while falling back to the local rate)."""
        return self._up

    @property
    def last_change(self) -> RateChange:
        """The last change of the shared rate seen by this process."""
        return self._change if self._up else self._fallback.last_change

    def pause_remaining(self) -> float:
        """Seconds until the shared pause ends, as far as this process knows."""
        return max(0.0, self._pause_until - time.monotonic())

    async def acquire(self) -> Ticket:
        """Wait for the shared pause to end and take the next slot of the shared schedule."""
        if self._closed:
            raise ClientClosedError("this RedisLimiter is closed")
        if self._listener is None:
            self._listener = asyncio.get_running_loop().create_task(self._listen())
        while True:
            await self._wait_pause()
            if not self._use_redis():
                ticket = await self._fallback_acquire()
                if ticket is not None:
                    return ticket
                continue
            probe = not self._up
            try:
                if probe:
                    # Idle connections to the Redis that went away would fail once more each.
                    with contextlib.suppress(*_UNAVAILABLE):
                        await self._client.connection_pool.disconnect(inuse_connections=False)
                reply = await self._eval(ACQUIRE_SCRIPT, self._acquire_args)
            except _UNAVAILABLE as exc:
                self._mark_down(exc)
                continue
            finally:
                if probe:
                    self._probing = False  # also when this attempt is cancelled
            received = time.monotonic()
            self._mark_up()
            slot, redis_now, rate, pause_end, tat = (float(x) for x in reply)
            self._set_rate(rate, Reason.QUIET, "no 429 for a probe interval (shared rate)")
            self._note_pause(pause_end, redis_now, received)
            self._lead = tat - redis_now
            self._horizon = max(self._horizon, received + self._lead)
            wait = slot - redis_now
            if wait > 0:
                in_pause = min(wait, max(0.0, pause_end - redis_now))
                await asyncio.sleep(wait)
                self._waited_pause += in_pause
                self._waited_rate += wait - in_pause
            now = time.monotonic()
            # A pause that began after this slot was granted takes it back; so does a late
            # wake-up, which would bunch with the slots after it.
            if (
                slot < self._redis_pause_end
                or self._own_pause_until > now
                or now - (received + wait) > LATE
            ):
                self.forfeited += 1
                continue
            self.shared_slots += 1
            return _SlotTicket(time.monotonic(), slot=slot)

    def report(self, ticket: Ticket, outcome: Outcome, retry_after: float | None = None) -> None:
        """How an attempt ended; a 429 pauses every process on the key."""
        if isinstance(ticket, _SlotTicket):
            ticket.state = outcome
        else:
            self._fallback.report(ticket, outcome, retry_after)
        if outcome is not Outcome.THROTTLED:
            return
        wait = self.pause_policy.pause_for(retry_after, self._rng)
        until = time.monotonic() + wait
        self._own_pause_until = max(self._own_pause_until, until)
        self._pause_until = max(self._pause_until, until)
        if self._up and not self._closed:
            slot = ticket.slot if isinstance(ticket, _SlotTicket) else -1.0
            task = asyncio.get_running_loop().create_task(self._share_pause(slot, wait))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        """Stop following the pause channel and close the Redis client if this limiter owns it."""
        if self._closed:
            return
        self._closed = True
        if self._tasks:
            # Let the pauses being written reach Redis (each is bounded by op_timeout).
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        if self._owns_client:
            await self._client.aclose()

    # --- reading the shared state (tests, dashboards) -----------------------------------
    async def shared_state(self) -> dict[str, float]:
        """The shared hash as numbers (rate, pause, tat... on Redis's clock); {} if none."""
        raw = await cast("Awaitable[dict[bytes, bytes]]", self._client.hgetall(self.key))
        return {k.decode(): float(v) for k, v in raw.items()}

    # --- internals ----------------------------------------------------------------------
    def _args(self) -> list[str]:
        cfg = self.config
        return [
            repr(cfg.max_rate),
            repr(cfg.min_rate),
            str(self._ttl_ms),
            repr(PACE),
            repr(PROBE_INTERVAL if cfg.adaptive else 1e18),  # never, when not adaptive
            repr(PROBE_FACTOR),
            repr(GAP_MIN),
            repr(BAD_TTL),
        ]

    async def _eval(self, script: _Script, args: Sequence[str]) -> list[bytes]:
        self.round_trips += 1
        if script.sha not in self._loaded:
            # EVAL caches the script in Redis: later calls send only its digest.
            reply = await asyncio.wait_for(
                self._client.eval(script.text, 1, self.key, *args), self._op_timeout
            )
            self._loaded.add(script.sha)
            return cast("list[bytes]", reply)
        try:
            reply = await asyncio.wait_for(
                self._client.evalsha(script.sha, 1, self.key, *args), self._op_timeout
            )
        except NoScriptError:
            # A restarted Redis has forgotten the script; EVAL loads it again.
            self.round_trips += 1
            reply = await asyncio.wait_for(
                self._client.eval(script.text, 1, self.key, *args), self._op_timeout
            )
        return cast("list[bytes]", reply)

    async def _share_pause(self, slot: float, wait: float) -> None:
        args = [
            *self._acquire_args[:4],
            repr(slot),
            repr(wait),
            repr(DECREASE if self.config.adaptive else 1.0),
            self.channel,
        ]
        try:
            reply = await self._eval(THROTTLE_SCRIPT, args)
        except _UNAVAILABLE as exc:
            self._mark_down(exc)
            return
        received = time.monotonic()
        self._mark_up()
        pause_end, redis_now, rate = (float(x) for x in reply[:3])
        self._set_rate(rate, Reason.DRAIN_TO_DRAIN, "a 429 on the shared schedule")
        self._note_pause(pause_end, redis_now, received)

    def _set_rate(self, rate: float, reason: Reason, evidence: str) -> None:
        if rate != self._rate:
            self._change = RateChange(time.monotonic(), self._rate, rate, reason, evidence)
            self._logged_rate = log_rate_change(self._change, self._logged_rate)
        self._rate = rate

    def _note_pause(self, pause_end: float, redis_now: float, received: float) -> None:
        if pause_end > self._redis_pause_end:
            self._redis_pause_end = pause_end
        remaining = pause_end - redis_now
        if remaining > 0 and received + remaining > self._pause_until:
            self._pause_until = received + remaining

    async def _wait_pause(self) -> None:
        started = 0.0
        while True:
            now = time.monotonic()
            remaining = self._pause_until - now
            if remaining <= 0:
                break
            if not started:
                started = now
            await asyncio.sleep(remaining)
        if started:
            self._waited_pause += time.monotonic() - started

    def _use_redis(self) -> bool:
        if self._up:
            return True
        if not self._probing and time.time() >= self._retry_at:
            self._probing = True  # this attempt tries Redis; the others keep the fallback
            return True
        return False

    async def _fallback_acquire(self) -> Ticket | None:
        # The slots that every process took from Redis before it went away still pace them
        # all until the last of them is due; the fallback rate applies one interval after.
        wait = self._horizon + 1.0 / self.fallback_rate - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
            self._waited_rate += wait
        ticket = await self._fallback.acquire()
        if self._up:
            return None  # Redis came back while this attempt waited: take a shared slot
        self.fallback_slots += 1
        return ticket

    def _mark_down(self, exc: BaseException) -> None:
        self._probing = False
        interval = self._reconnect_interval
        # On a wall-clock grid, so that every process tries again (and returns) together.
        self._retry_at = (math.floor(time.time() / interval) + 1) * interval
        if self._up:
            self._up = False
            self.outages += 1
            # Other processes booked slots after our last reply: about as far ahead as then.
            self._horizon = max(self._horizon, time.monotonic() + self._lead)
            logger.warning(
                "Redis unreachable for limiter %r (%s: %s); pacing this process at %.3g req/s "
                "until it returns",
                self.key,
                type(exc).__name__,
                exc,
                self.fallback_rate,
            )

    def _mark_up(self) -> None:
        self._probing = False
        if not self._up:
            self._up = True
            logger.info("Redis reachable again for limiter %r; sharing the rate", self.key)

    async def _listen(self) -> None:
        """Follow the pause channel, so that a 429 anywhere pauses this process at once."""
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await asyncio.wait_for(pubsub.subscribe(self.channel), self._op_timeout)
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is None or message.get("type") != "message":
                        continue
                    end, now = (float(x) for x in message["data"].split())
                    self._note_pause(end, now, time.monotonic())
            except (*_UNAVAILABLE, ValueError) as exc:
                logger.debug("pause channel of %r lost (%s); retrying", self.key, exc)
            finally:
                with contextlib.suppress(*_UNAVAILABLE):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]  # untyped in redis-py
            await asyncio.sleep(self._reconnect_interval)
