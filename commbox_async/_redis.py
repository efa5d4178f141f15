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
the pause read in the same atomic step is the short Lua scripts of ``_redis_scripts``.

The parts, each in its module: ``_redis_scripts`` the wire (the Lua, the arguments each script
takes, its reply, the channel's messages), ``_redis_runner`` the script cache,
``_redis_schedule`` the pause and the rebookings as this process knows them, ``_redis_link`` the
reports, the lease and leading, ``_redis_leader`` the leader's model, ``_redis_outage`` the
fallback. ``RedisLimiter`` wires them together and follows the channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import cast
from urllib.parse import quote

try:
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("RedisLimiter needs redis-py: pip install 'commbox-async[redis]'") from exc

from ._config import RateLimit, as_rate_limit
from ._errors import ClientClosedError, InvalidArgumentError
from ._pacing import Outcome, PausePolicy, RateChange, Ticket
from ._redis_leader import PacingLeader
from ._redis_link import LAG, MAX_EVENTS, LeaderLink
from ._redis_outage import Outage
from ._redis_runner import UNAVAILABLE, ScriptRunner
from ._redis_schedule import ScheduleView
from ._redis_scripts import (
    ACQUIRE_SCRIPT,
    THROTTLE_SCRIPT,
    AcquireArgs,
    AcquireReply,
    KeySpace,
    PauseMessage,
    RateMessage,
    ThrottleReply,
    read_message,
    throttle_args,
)
from ._throttle import LocalLimiter
from ._validate import check_int, check_number
from ._waiting import wait_for

# LAG stays importable from here, where the design is described (the tests read it).
__all__ = ["LAG", "PacingLeader", "RedisLimiter"]

logger = logging.getLogger("commbox_async.redis")

#: Slots are spaced this much wider than 1/rate: 30 ms of each second absorb jitter.
PACE = 1.03
#: A slot whose holder wakes later than this is given back: a busy event loop would otherwise
#: send everything that fell due while it was busy at once.
LATE = 0.015


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
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: every command would fail, not just this
        raise InvalidArgumentError("key must be text that UTF-8 can encode") from None
    workers = check_int("expected_workers", expected_workers, low=1)
    for name, value in seconds.items():
        check_number(name, value, allow_low=name not in ("reconnect_interval", "op_timeout"))
    config = as_rate_limit(rate_limit)
    if fallback_rate is None:
        return config, config.max_rate / workers
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

    #: ``acquire`` honours its ``deadline`` (see ``Limiter.acquire``).
    bounds_deadline = True

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
        self.key = key
        # What ``for_account`` needs to build a limiter like this one on another key.
        self._settings = dict(
            rate_limit=self.config, fallback_rate=fallback_rate, op_timeout=op_timeout,
            expected_workers=expected_workers, default_retry_after=default_retry_after,
            max_retry_after=max_retry_after, reconnect_interval=reconnect_interval,
        )  # fmt: skip
        self._keys = KeySpace.of(key)
        self.channel = self._keys.channel
        self.pause_policy = PausePolicy(
            default_retry_after=float(default_retry_after), max_retry_after=float(max_retry_after)
        )
        self._rng = rng or random.Random()
        self._runner = ScriptRunner(client, float(op_timeout))
        self._owns_client = owns_client
        # State idle longer than this is forgotten (it must outlive the longest pause).
        self._ttl_ms = int(1000 * max(600.0, 2 * self.pause_policy.max_retry_after))
        self._acquire_args = self._schedule_args()
        self._outage = Outage(
            key, self._fallback_limiter(fallback), fallback, float(reconnect_interval)
        )
        self._link = LeaderLink(
            self._runner, self._keys, self.config, self._acquire_args, self._outage, self._down
        )
        self._schedule = ScheduleView()
        self._listener: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # pauses being shared
        self._closed = False
        self._waited_rate = 0.0  # for shared slots (the outage counts the fallback's)
        #: Slots given back because the schedule was rebooked (the shared rate changed).
        self.regranted = 0
        #: Slots taken from the shared schedule.
        self.shared_slots = 0
        #: Slots given up because a pause began before they were due.
        self.forfeited = 0

    def _schedule_args(self) -> AcquireArgs:
        cfg = self.config
        return AcquireArgs(
            max_rate=cfg.max_rate,
            # Not adaptive: no leader writes a rate, and one left by an adaptive job is ignored.
            min_rate=cfg.min_rate if cfg.adaptive else cfg.max_rate,
            ttl_ms=self._ttl_ms,
            pace=PACE,
            max_events=MAX_EVENTS,
        )

    def _fallback_limiter(self, rate: float) -> LocalLimiter:
        cfg = self.config
        limit = RateLimit(
            # The same margin for jitter as the shared schedule.
            max_rate=rate / PACE,
            burst=1,  # no burst at the switch: the shared schedule ran up to it
            adaptive=cfg.adaptive,
            min_rate=min(cfg.min_rate, rate / PACE),
        )
        return LocalLimiter(limit, pause_policy=self.pause_policy, rng=self._rng)

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

    def for_account(
        self, name: str, *, rate_limit: RateLimit | float | None = None
    ) -> RedisLimiter:
        """A limiter like this one for another account, on the key ``<key>:account:<name>``
        (the name percent-encoded), over the same Redis client (which it does not close).
        ``rate_limit`` gives that account a limit of its own (its fallback rate is then that
        limit's share per worker); by default it has this limiter's.
        ``AsyncCommbox.with_token`` calls it with the token's fingerprint
        (``_protocol.token_fingerprint``), never the token, so that every process derives the
        same key for the same account. The ``account:`` segment and the encoding keep every
        account's keys apart from this key's own (``<key>:outcomes``, ``<key>:leader``) and
        from each other's (an account named ``a:outcomes``)."""
        if not isinstance(name, str) or not name:
            raise InvalidArgumentError("the account's name must be a non-empty str")
        settings = dict(self._settings)
        if rate_limit is not None:
            settings.update(rate_limit=as_rate_limit(rate_limit), fallback_rate=None)
        return RedisLimiter(
            self._runner.client,
            key=f"{self.key}:account:{quote(name, safe='')}",
            owns_client=False,
            rng=self._rng,
            **settings,  # type: ignore[arg-type]
        )

    def __repr__(self) -> str:
        state = "redis" if self.shared else "fallback"
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
        return self._link.shared.rate if self.shared else self._outage.fallback.current_rate

    @property
    def waited(self) -> tuple[float, float]:
        """Task-seconds this process spent waiting for a slot, and for pauses."""
        rate, pause = self._outage.waited
        return self._waited_rate + rate, self._schedule.waited + pause

    @property
    def last_change(self) -> RateChange:
        """The last change of the shared rate seen by this process."""
        return self._link.shared.change if self.shared else self._outage.fallback.last_change

    def pause_remaining(self) -> float:
        """Seconds until the shared pause ends, as far as this process knows."""
        return self._schedule.remaining()

    async def acquire(self, deadline: float | None = None) -> Ticket:
        """Wait for the shared pause to end and take the next slot of the shared schedule;
        ``TimeoutError`` if that would pass ``deadline`` (a ``time.monotonic()`` instant). A
        slot past the deadline is not booked (ACQUIRE refuses it); one booked before a
        pause moved it past the deadline is forfeited, like a late one."""
        if self._closed:
            raise ClientClosedError("this RedisLimiter is closed")
        if self._listener is None:
            self._listener = asyncio.get_running_loop().create_task(self._listen())
            if self.config.adaptive:
                self._link.start()
        if deadline is None:
            return await self._take(None)
        return await wait_for(self._take(deadline), deadline - time.monotonic())

    async def _take(self, deadline: float | None) -> Ticket:
        while True:
            await self._schedule.wait_pause()
            if not self._outage.use_redis():
                ticket = await self._outage.acquire()
                if ticket is not None:
                    return ticket
                continue
            booked = await self._book(deadline)
            if booked is None:
                continue
            if booked[0].slot < 0:
                # Not booked: every slot up to the deadline is taken. (Booking it anyway and
                # giving up would take it from a caller that could use it, and under load
                # push the schedule ever further ahead of every process's deadlines.)
                raise asyncio.TimeoutError
            ticket = await self._hold(*booked)
            if ticket is not None:
                return ticket

    def report(self, ticket: Ticket, outcome: Outcome, retry_after: float | None = None) -> None:
        """How an attempt ended; a 429 pauses every process on the key."""
        now = time.monotonic()
        throttled = outcome is Outcome.THROTTLED
        # The Retry-After rule (cap, default, jitter) is PausePolicy's alone: THROTTLE takes
        # the pause as given, so this process, the others and the retry decision agree on it.
        wait = self.pause_policy.pause_for(retry_after, self._rng) if throttled else 0.0
        if isinstance(ticket, _SlotTicket):
            ticket.state = outcome
            # For the pacing leader's model.
            asked = self.pause_policy.asked(retry_after) if throttled else 0.0
            self._link.answered(ticket.slot, now, outcome, wait, asked)
        else:
            self._outage.fallback.report(ticket, outcome, retry_after)
        if not throttled:
            return
        self._schedule.pause_here(now + wait)
        if self.shared and not self._closed:
            task = asyncio.get_running_loop().create_task(self._share_pause(wait))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        """Stop following the pause channel and close the Redis client if this limiter owns it."""
        if self._closed:
            return
        self._closed = True
        self._link.closing = True
        if self._tasks:
            # Let the pauses being written reach Redis (each is bounded by op_timeout).
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        # The last outcomes reach the leader, and another process may lead at once.
        await self._link.aclose()
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        if self._owns_client:
            await self._runner.client.aclose()

    # --- reading the state (tests, dashboards, benchmarks) ------------------------------
    @property
    def shared(self) -> bool:
        """Whether slots come from Redis now (False while falling back to the local rate)."""
        return self._outage.up

    @property
    def fallback_rate(self) -> float:
        """This process's rate while Redis is unreachable."""
        return self._outage.fallback_rate

    @property
    def leader(self) -> PacingLeader | None:
        """The pacing leader's model while this process holds the lease."""
        return self._link.leader

    @property
    def leaderships(self) -> int:
        """Times this process became the pacing leader."""
        return self._link.leaderships

    @property
    def round_trips(self) -> int:
        """Redis commands sent for slots and pauses (a script's reload after a Redis restart
        included); the pacing leader's own commands are ``report_trips``."""
        return self._runner.trips - self._link.report_trips

    @property
    def report_trips(self) -> int:
        """Redis commands sent for the pacing leader only (reports, the lease)."""
        return self._link.report_trips

    @property
    def fallback_slots(self) -> int:
        """Slots taken from the fallback limiter."""
        return self._outage.slots

    @property
    def outages(self) -> int:
        """Times Redis became unreachable."""
        return self._outage.count

    async def shared_state(self) -> dict[str, float]:
        """The shared hash's numbers (rate, pause, tat... on Redis's clock); {} if none. The
        leader's reason and evidence for the rate are text: ``last_change`` shows them."""
        hgetall = self._runner.client.hgetall(self.key)
        raw = await cast("Awaitable[dict[bytes, bytes]]", hgetall)
        return {k.decode(): float(v) for k, v in raw.items() if k not in (b"why", b"evidence")}

    # --- internals ----------------------------------------------------------------------
    async def _book(self, deadline: float | None = None) -> tuple[AcquireReply, float] | None:
        """Book a slot due by ``deadline`` if given (the reports ride along); the reply (its
        slot -1 when none was booked) and when it came, None when Redis is unreachable."""
        probe = not self._outage.up
        try:
            if probe:
                # Idle connections to the Redis that went away would fail once more each.
                with contextlib.suppress(*UNAVAILABLE):
                    pool = self._runner.client.connection_pool
                    await pool.disconnect(inuse_connections=False)
            max_wait = -1.0 if deadline is None else max(0.0, deadline - time.monotonic())
            args = self._acquire_args.encode(self._link.outbox.take(), max_wait)
            raw = await self._runner.run(ACQUIRE_SCRIPT, [self.key, self._keys.outcomes], args)
        except UNAVAILABLE as exc:
            self._down(exc)
            return None
        finally:
            if probe:
                self._outage.probe_done()  # also when this attempt is cancelled
        received = time.monotonic()
        self._outage.came_back()
        reply = AcquireReply.parse(raw)
        self._schedule.note_epoch(reply.epoch, reply.now)
        self._link.offset = reply.now - received
        self._link.follow(reply.rate, reply.why, reply.evidence)
        self._schedule.note_pause(reply.pause_end, reply.now, received)
        self._outage.booked(received, reply.booked_to - reply.now)
        return reply, received

    async def _hold(self, reply: AcquireReply, received: float) -> Ticket | None:
        """Wait for the slot booked; its ticket, or None when it was given back."""
        wait = reply.slot - reply.now
        if wait > 0:
            in_pause = min(wait, max(0.0, reply.pause_end - reply.now))
            kept = await self._schedule.wait_slot(reply.slot, reply.epoch, received + wait)
            waited = time.monotonic() - received
            self._schedule.waited += min(in_pause, waited)
            self._waited_rate += max(0.0, waited - in_pause)
            if not kept:
                self.regranted += 1
                return None
        now = time.monotonic()
        # A pause that began after this slot was granted takes it back; so does a late
        # wake-up, which would bunch with the slots after it.
        if self._schedule.takes_back(reply.slot, now) or now - (received + wait) > LATE:
            self.forfeited += 1
            return None
        self.shared_slots += 1
        self._link.sent(reply.slot)
        return _SlotTicket(time.monotonic(), slot=reply.slot)

    async def _share_pause(self, wait: float) -> None:
        args = throttle_args(self._ttl_ms, wait, self.channel)
        try:
            raw = await self._runner.run(THROTTLE_SCRIPT, [self.key], args)
        except UNAVAILABLE as exc:
            self._down(exc)
            return
        received = time.monotonic()
        self._outage.came_back()
        reply = ThrottleReply.parse(raw)
        self._schedule.note_pause(reply.pause_end, reply.now, received)

    def _down(self, exc: BaseException) -> None:
        self._link.outbox.clear()  # fire and forget: the leader's model does without them
        self._outage.went_down(exc)

    async def _listen(self) -> None:
        """Follow the channel, so that a 429 anywhere pauses this process at once."""
        while True:
            pubsub = self._runner.client.pubsub(ignore_subscribe_messages=True)
            try:
                await wait_for(pubsub.subscribe(self.channel), self._runner.timeout)
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self._on_message(read_message(message["data"]))
            except (*UNAVAILABLE, ValueError) as exc:
                logger.debug("pause channel of %r lost (%s); retrying", self.key, exc)
            finally:
                with contextlib.suppress(*UNAVAILABLE):
                    # Typed from redis-py 8.2 on, untyped before: no call of it goes unchecked.
                    close: Callable[[], Awaitable[None]] = pubsub.aclose
                    await close()
            await asyncio.sleep(self._outage.interval)

    def _on_message(self, message: PauseMessage | RateMessage) -> None:
        if isinstance(message, PauseMessage):
            self._schedule.note_pause(message.end, message.now, time.monotonic())
            return
        # The leader wrote a new rate, and maybe rebooked the schedule from some time on.
        self._link.follow(message.rate, message.why, message.evidence)
        if message.rebooked_from > 0:
            self._schedule.rebooked(message.rebooked_from, message.epoch)
