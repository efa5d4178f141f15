"""RedisLimiter: one rate limit, one pause and one adaptive rate for every process on a token.

Every process (gunicorn worker, job worker, host) that builds a ``RedisLimiter`` with the same
``key`` shares three things kept in Redis:

- **the schedule**: GCRA in its virtual-scheduling form, kept as a theoretical arrival time
  (TAT), with no burst tolerance (``RateLimit.burst`` is not used). A Lua script reserves the
  next slot atomically, on Redis's clock, and returns how long to wait for it: one round trip
  per attempt (more when the schedule is rebooked, below), no polling, and the caller then
  sleeps locally. Slots are spaced ``1.03 / rate`` apart, so that 30 ms of scheduling and
  network jitter cannot put more than ``rate`` requests into one second at the server
  (measured: single delays of 5-20 ms are common with a few busy processes on two cores); a
  holder that wakes more than 15 ms late takes a new slot instead.
- **the pause**: a 429 writes "pause until T" (Redis time) into the hash, pushes the schedule
  past it, and publishes T on ``<key>:pause``. The script that takes a slot reads the pause too,
  so no slot is ever granted inside one; slots granted before the 429 that fall inside it are
  given up by their holders (they learn of it from the channel or from their next slot).
- **the adaptive rate**: one ``PacingModel`` for the key, the same model the in-process limiter
  runs, fed with every process's attempts. Each process reports its sends (the slot, on Redis's
  clock) and outcomes (with a 429's pause and the Retry-After asked) to a list,
  ``<key>:outcomes``; the reports ride along with the next slot script, or go on their own after
  ``TICK`` when no slot is taken, fire and forget. One process holds a short lease
  (``<key>:leader``, ``LEASE`` seconds, renewed every ``TICK`` while the key is busy) and is the
  pacing leader: it takes the list, feeds its model in time order ``LAG`` behind Redis's clock
  (``PacingLeader``: reports arrive batched and out of order), and writes the model's rate, with
  its reason and evidence, into the hash, where the slot script reads it; it publishes the change
  on the channel. When the rate rises, slots booked beyond ``KEEP`` at the slower rate are
  given back and the schedule is rebooked from there (a model that read a low floor climbs in
  steps of 0.2 s; slots booked seconds ahead at the floor would hold every process back long
  after); when it falls during a pause, from the pause's end (slots granted at the old pace
  between the 429 and the new rate went out together when it ended: a 429 at once, and the
  model stepped down to a fifth of the server's rate, in one run in three). When the leader closes
  (it gives the lease up) or dies (its lease runs out), another process takes the lease and starts
  its model at the shared rate, if a leader wrote it less than ``STALE`` seconds ago (a job in
  progress keeps what was learned), else at ``max_rate`` (no slow start for a new job). Only the
  leader logs a large change (``log_rate_change``); the others show the shared rate and the
  leader's reason and evidence in ``last_change``. An earlier attempt ran a model in each process
  on its share of the attempts (readings scaled by it): 4 processes, 800 ids against 100 req/s,
  1,000 req/s configured, took 28 s; a small rule in Lua took 14.6 s; the one model seeing every
  attempt takes 12.2-12.7 s (see benchmarks/bench_redis.py). The pause rules are ``PausePolicy``'s,
  the same object the in-process limiter and the retry decision use.

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
the pause read in the same atomic step is the short Lua scripts below.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
import uuid
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
from ._pacing import Outcome, PausePolicy, Phase, RateChange, Reason, Ticket
from ._redis_leader import PacingLeader, answer_event, send_event
from ._redis_scripts import ACQUIRE_SCRIPT, RELEASE_SCRIPT, THROTTLE_SCRIPT, TICK_SCRIPT, Script
from ._throttle import LocalLimiter, log_rate_change

__all__ = ["PacingLeader", "RedisLimiter"]

logger = logging.getLogger("commbox_async.redis")

#: Slots are spaced this much wider than 1/rate: 30 ms of each second absorb jitter.
PACE = 1.03
#: A slot whose holder wakes later than this is given back: a busy event loop would otherwise
#: send everything that fell due while it was busy at once.
LATE = 0.015
#: Seconds between two reports of a busy process (its sends and outcomes, in one command).
TICK = 0.015
#: Seconds between two reports of an idle process: often enough to renew or take the lease.
IDLE_TICK = 0.5
#: The pacing leader's lease, in seconds: a leader that stops renewing it is replaced after this.
LEASE = 2.0
#: The leader's model runs this far behind Redis's clock, so that every send and outcome of that
#: moment has reached it (each process reports every TICK; a busy loop adds tens of ms).
LAG = 0.06
#: A shared rate whose leader was last seen longer ago than this belongs to a past job: a new
#: leader starts at the configured maximum (no slow start), not at it.
STALE = 10.0
#: When the shared rate rises, slots booked further away than this (at the old, slower rate)
#: are given back and the schedule is rebooked from there at the new rate (see _TICK).
KEEP = 0.1
#: Events kept in the outcome list at most (a leader that stalls must not let it grow unbounded).
MAX_EVENTS = 20_000
#: Events sent in one report at most.
MAX_BATCH = 1_000

_UNAVAILABLE = (RedisError, OSError, asyncio.TimeoutError)


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
        self._keys = [key, f"{key}:outcomes", f"{key}:leader"]
        self._me = uuid.uuid4().hex
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
        # Redis's clock minus ours, from the last reply (converts answer times for the leader).
        self._offset = 0.0
        # Sends and outcomes not yet reported; the pacing leader's model while we hold the lease.
        self._outbox: list[str] = []
        self.leader: PacingLeader | None = None
        self._failure_logged = -math.inf  # when a failure of the leader was last logged
        self._leader_change: RateChange | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._queued_at = 0.0  # when the oldest event in the outbox was queued
        self._hash_rate = math.nan  # the rate field as the last lease command read it
        self._rose = asyncio.Event()  # set (and replaced) when the schedule is rebooked
        # The schedule's last rebooking known here: its epoch, and the Redis time it began at.
        self._epoch = 0
        self._rebook_from = math.inf
        #: Slots given back because the schedule was rebooked (the shared rate changed).
        self.regranted = 0
        #: Times this process became the pacing leader.
        self.leaderships = 0
        #: Redis commands sent for the pacing leader only (reports, the lease).
        self.report_trips = 0
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
            loop = asyncio.get_running_loop()
            self._listener = loop.create_task(self._listen())
            if self.config.adaptive:
                self._ticker = loop.create_task(self._tick_loop())
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
                events, self._outbox = self._outbox[:MAX_BATCH], self._outbox[MAX_BATCH:]
                reply = await self._eval(
                    ACQUIRE_SCRIPT, [*self._acquire_args, *events], self._keys[:2]
                )
            except _UNAVAILABLE as exc:
                self._mark_down(exc)
                continue
            finally:
                if probe:
                    self._probing = False  # also when this attempt is cancelled
            received = time.monotonic()
            self._mark_up()
            slot, redis_now, rate, pause_end, tat = (float(x) for x in reply[:5])
            self._offset = redis_now - received
            self._set_rate(rate, reply[5], reply[6])
            epoch = int(reply[7])
            self._note_pause(pause_end, redis_now, received)
            self._lead = tat - redis_now
            self._horizon = max(self._horizon, received + self._lead)
            wait = slot - redis_now
            if wait > 0:
                in_pause = min(wait, max(0.0, pause_end - redis_now))
                kept = await self._wait_slot(slot, epoch, received + wait)
                waited = time.monotonic() - received
                self._waited_pause += min(in_pause, waited)
                self._waited_rate += max(0.0, waited - in_pause)
                if not kept:
                    self.regranted += 1
                    continue
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
            if self._ticker is not None:
                # The slot names the attempt; the model reads when it really went out (a
                # holder wakes up to LATE after its slot), on Redis's clock.
                self._report(send_event(slot, max(slot, time.monotonic() + self._offset)))
            return _SlotTicket(time.monotonic(), slot=slot)

    async def _wait_slot(self, slot: float, epoch: int, due: float) -> bool:
        """Sleep until ``due`` (``slot`` on Redis's clock); False when the schedule was rebooked
        from before ``slot`` meanwhile: the rate changed, and a slot booked at the old rate would
        hold its holder back long after a rise, or go out with the others at a pause's end."""
        while True:
            if self._epoch > epoch and slot > self._rebook_from:
                return False
            remaining = due - time.monotonic()
            if remaining <= 0:
                return True
            rose = self._rose
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(rose.wait(), remaining)

    def report(self, ticket: Ticket, outcome: Outcome, retry_after: float | None = None) -> None:
        """How an attempt ended; a 429 pauses every process on the key."""
        now = time.monotonic()
        throttled = outcome is Outcome.THROTTLED
        wait = self.pause_policy.pause_for(retry_after, self._rng) if throttled else 0.0
        if isinstance(ticket, _SlotTicket):
            ticket.state = outcome
            if self._ticker is not None:
                # For the pacing leader's model, on Redis's clock.
                asked = self.pause_policy.asked(retry_after) if throttled else 0.0
                self._report(answer_event(ticket.slot, now + self._offset, outcome, wait, asked))
        else:
            self._fallback.report(ticket, outcome, retry_after)
        if not throttled:
            return
        until = now + wait
        self._own_pause_until = max(self._own_pause_until, until)
        self._pause_until = max(self._pause_until, until)
        if self._up and not self._closed:
            task = asyncio.get_running_loop().create_task(self._share_pause(wait))
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
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
            self.leader = None
            if self._up:
                # The last outcomes reach the leader, and another process may lead at once.
                with contextlib.suppress(*_UNAVAILABLE):
                    if self._outbox:
                        await self._tick()
                    await self._eval(RELEASE_SCRIPT, [self._me], keys=self._keys[2:])
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        if self._owns_client:
            await self._client.aclose()

    # --- reading the shared state (tests, dashboards) -----------------------------------
    async def shared_state(self) -> dict[str, float]:
        """The shared hash's numbers (rate, pause, tat... on Redis's clock); {} if none. The
        leader's reason and evidence for the rate are text: ``last_change`` shows them."""
        raw = await cast("Awaitable[dict[bytes, bytes]]", self._client.hgetall(self.key))
        return {k.decode(): float(v) for k, v in raw.items() if k not in (b"why", b"evidence")}

    # --- internals ----------------------------------------------------------------------
    def _args(self) -> list[str]:
        cfg = self.config
        return [
            repr(cfg.max_rate),
            # Not adaptive: no leader writes a rate, and one left by an adaptive job is ignored.
            repr(cfg.min_rate if cfg.adaptive else cfg.max_rate),
            str(self._ttl_ms),
            repr(PACE),
            str(MAX_EVENTS),
        ]

    async def _eval(
        self, script: Script, args: Sequence[str], keys: Sequence[str] | None = None
    ) -> list[bytes]:
        keys = [self.key] if keys is None else keys
        self.round_trips += 1
        if script.sha not in self._loaded:
            # EVAL caches the script in Redis: later calls send only its digest.
            reply = await asyncio.wait_for(
                self._client.eval(script.text, len(keys), *keys, *args), self._op_timeout
            )
            self._loaded.add(script.sha)
            return cast("list[bytes]", reply)
        try:
            reply = await asyncio.wait_for(
                self._client.evalsha(script.sha, len(keys), *keys, *args), self._op_timeout
            )
        except NoScriptError:
            # A restarted Redis has forgotten the script; EVAL loads it again.
            self.round_trips += 1
            reply = await asyncio.wait_for(
                self._client.eval(script.text, len(keys), *keys, *args), self._op_timeout
            )
        return cast("list[bytes]", reply)

    async def _share_pause(self, wait: float) -> None:
        args = [str(self._ttl_ms), repr(wait), self.channel]
        try:
            reply = await self._eval(THROTTLE_SCRIPT, args)
        except _UNAVAILABLE as exc:
            self._mark_down(exc)
            return
        received = time.monotonic()
        self._mark_up()
        pause_end, redis_now = (float(x) for x in reply[:2])
        self._note_pause(pause_end, redis_now, received)

    # --- the pacing leader ----------------------------------------------------------------
    def _report(self, event: str) -> None:
        if not self._outbox:
            self._queued_at = time.monotonic()
        if len(self._outbox) < MAX_EVENTS:
            self._outbox.append(event)

    async def _tick_loop(self) -> None:
        """Send the lease's command: every TICK while leading a busy key, every IDLE_TICK
        otherwise (to take the lease when it is free), and for events that no slot carried
        within TICK."""
        last = -math.inf
        # Not `while True`: on Python 3.11 a cancel that lands as wait_for's command completes
        # is swallowed, and this loop would outlive aclose.
        while not self._closed:
            await asyncio.sleep(TICK)
            if self._closed:
                return
            if not self._up:
                continue  # the fallback runs; acquire finds out when Redis is back
            now = time.monotonic()
            leader = self.leader
            # A leader keeps up with the others' reports, and with its model while it adapts.
            due = (
                now - last >= IDLE_TICK
                or (self._outbox and now - self._queued_at >= TICK)
                or (
                    leader is not None
                    and (leader.model.phase is not Phase.FULL or leader.pending or leader.fed)
                )
            )
            if not due:
                continue
            last = now
            try:
                await self._tick()
            except _UNAVAILABLE as exc:
                self._mark_down(exc)
            except Exception:  # a bug here must not stop the reports, nor the pacing
                # Once with the traceback, then a line a minute at most: a bug that repeats
                # would otherwise log every TICK.
                if now - self._failure_logged >= 60.0:
                    self._failure_logged = now
                    logger.exception("pacing leader of %r failed; starting over", self.key)
                self.leader = None

    async def _tick(self) -> None:
        events, self._outbox = self._outbox[:MAX_BATCH], self._outbox[MAX_BATCH:]
        leader = self.leader
        rate = why = evidence = ""
        if leader is not None and float(f"{leader.model.rate:.6f}") != self._hash_rate:
            # The rate as Redis will hold it (six decimals), so that it is written once; and
            # over any other (a past job's, another configuration's, none).
            model = leader.model
            change = model.changes[-1] if model.changes else model.last_change
            rate, why, evidence = f"{model.rate:.6f}", change.reason.value, change.evidence
        me = "" if self._closed else self._me  # a closing process leads no more
        args = [me, str(int(1000 * LEASE)), str(self._ttl_ms), str(MAX_EVENTS)]
        self.report_trips += 1
        self.round_trips -= 1  # counted apart: round_trips stays the slots' cost
        args += [rate, why, evidence, self.channel, repr(KEEP)]
        reply = await self._eval(TICK_SCRIPT, [*args, *events], self._keys)
        received = time.monotonic()
        self._mark_up()
        redis_now = float(reply[0])
        self._offset = redis_now - received
        role = int(reply[1])
        cfg = self.config
        # Clamped as the slot script clamps it: a rate left by another configuration or job.
        shared = min(max(float(reply[2]), cfg.min_rate), cfg.max_rate) if reply[2] else cfg.max_rate
        self._hash_rate = float(reply[2]) if reply[2] else math.nan
        if role == 0:
            if leader is not None:
                logger.info("pacing leader of %r: lease lost", self.key)
            self.leader = None
        elif role == 2 or leader is None:
            lead_at = float(reply[5]) if reply[5] else -math.inf
            live = redis_now - lead_at < STALE
            self.leader = leader = PacingLeader(self.config, shared if live else None)
            self.leaderships += 1
            logger.debug(
                "pacing leader of %r from now, starting at %.4g/s", self.key, leader.model.rate
            )
        if leader is not None and self.leader is leader:
            raw = reply[6]
            leader.add(cast("list[bytes]", raw))
            leader.advance(redis_now - LAG)
            change = leader.model.last_change
            if change is not self._leader_change:
                self._leader_change = change
                if change.new != change.old:
                    logger.debug(
                        "pacing leader of %r: %s (%d events, %d late)",
                        self.key,
                        change,
                        leader.events,
                        leader.late,
                    )
                    # On our clock, like every other time this limiter shows.
                    local = RateChange(
                        change.at - self._offset,
                        change.old,
                        change.new,
                        change.reason,
                        change.evidence,
                    )
                    self._logged_rate = log_rate_change(local, self._logged_rate)
                    self._change = local
            if rate and role == 1:
                self._set_rate(float(rate), why, evidence)
        else:
            self._set_rate(shared, reply[3], reply[4])

    def _set_rate(self, rate: float, why: bytes | str, evidence: bytes | str) -> None:
        """A shared rate read from Redis (the leader's own changes are set by ``_tick``)."""
        if rate == self._rate:
            return
        if self.leader is None:
            why = why.decode() if isinstance(why, bytes) else why
            evidence = evidence.decode() if isinstance(evidence, bytes) else evidence
            try:
                reason = Reason(why)
            except ValueError:
                reason = Reason.START
            self._change = RateChange(
                time.monotonic(), self._rate, rate, reason, f"{evidence} (the pacing leader's)"
            )
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
        self._outbox.clear()  # fire and forget: the leader's model does without them
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
                    data = message["data"]
                    if data.startswith(b"r "):
                        # The leader wrote a new rate: "r <rate> <rebooked from> <epoch> <why>
                        # <evidence>" (from 0: not rebooked).
                        fields = [*data.decode().split(" ", 5), "", ""]
                        rate, rebook, epoch, why, evidence = fields[1:6]
                        self._set_rate(float(rate), why, evidence)
                        if float(rebook) > 0 and int(epoch) > self._epoch:
                            self._epoch, self._rebook_from = int(epoch), float(rebook)
                            self._rose.set()  # wake the holders
                            self._rose = asyncio.Event()
                        continue
                    end, now = (float(x) for x in data.split())
                    self._note_pause(end, now, time.monotonic())
            except (*_UNAVAILABLE, ValueError) as exc:
                logger.debug("pause channel of %r lost (%s); retrying", self.key, exc)
            finally:
                with contextlib.suppress(*_UNAVAILABLE):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]  # untyped in redis-py
            await asyncio.sleep(self._reconnect_interval)
