"""The link to the key's pacing leader: reports, the lease, and leading while holding it.

Every process queues its sends and outcomes (on Redis's clock) for the pacing leader; they ride
along with its next slot script, or go with the lease's command (``TICK``) when no slot carried
them within ``TICK`` seconds. That command also takes or renews the leader's lease. While this
process holds it, the command hands it every process's reports: it feeds its ``PacingLeader``
``LAG`` behind Redis's clock and writes the model's rate into the hash. Every process keeps the
shared rate as it last saw it, with the leader's reason (``SharedRate``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Callable

from ._config import RateLimit
from ._pacing import Outcome, Phase, RateChange, Reason
from ._redis_leader import PacingLeader, answer_event, send_event
from ._redis_outage import Outage
from ._redis_runner import UNAVAILABLE, ScriptRunner
from ._redis_scripts import (
    RELEASE_SCRIPT,
    TICK_SCRIPT,
    AcquireArgs,
    KeySpace,
    RateWrite,
    Role,
    TickArgs,
    TickReply,
)
from ._throttle import log_rate_change

__all__ = ["IDLE_TICK", "KEEP", "LAG", "LEASE", "MAX_BATCH", "MAX_EVENTS", "STALE", "TICK"]

logger = logging.getLogger("commbox_async.redis")

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
#: are given back and the schedule is rebooked from there at the new rate (see TICK's Lua).
KEEP = 0.1
#: Events kept in the outcome list at most (a leader that stalls must not let it grow unbounded).
MAX_EVENTS = 20_000
#: Events sent in one report at most.
MAX_BATCH = 1_000


class Outbox:
    """This process's reports for the pacing leader, not yet sent (``MAX_EVENTS`` at most)."""

    def __init__(self) -> None:
        self._events: list[str] = []
        self._since = 0.0  # when the oldest one was queued

    def __bool__(self) -> bool:
        return bool(self._events)

    def add(self, event: str) -> None:
        if not self._events:
            self._since = time.monotonic()
        if len(self._events) < MAX_EVENTS:
            self._events.append(event)

    def take(self) -> list[str]:
        """The oldest ``MAX_BATCH``, to send now."""
        events, self._events = self._events[:MAX_BATCH], self._events[MAX_BATCH:]
        return events

    def clear(self) -> None:
        self._events.clear()

    def waited(self, now: float) -> bool:
        """Whether reports have waited ``TICK`` for a slot to carry them."""
        return bool(self._events) and now - self._since >= TICK


class SharedRate:
    """The key's rate as this process last saw it, and its last change (on our clock)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.change = RateChange(0.0, rate, rate, Reason.START, "configured")
        self._logged = rate  # the rate the last log line named

    def follow(self, rate: float, why: str, evidence: str, *, leading: bool) -> None:
        """A rate read from Redis; a leader's own changes come through ``lead``."""
        if rate == self.rate:
            return
        if not leading:
            try:
                reason = Reason(why)
            except ValueError:
                reason = Reason.START
            self.change = RateChange(
                time.monotonic(), self.rate, rate, reason, f"{evidence} (the pacing leader's)"
            )
        self.rate = rate

    def lead(self, change: RateChange) -> None:
        """A change of this process's own model, as leader (logged when large)."""
        self._logged = log_rate_change(change, self._logged)
        self.change = change


class LeaderLink:
    """This process's reports, its part in the lease, and its model while it leads."""

    def __init__(
        self,
        runner: ScriptRunner,
        keys: KeySpace,
        config: RateLimit,
        bounds: AcquireArgs,
        outage: Outage,
        on_down: Callable[[BaseException], None],
    ) -> None:
        self._runner = runner
        self._keys = keys
        self._config = config
        # The slot script's bounds for the shared rate, and its state's lifetime.
        self._args = TickArgs(
            lease_ms=int(1000 * LEASE),
            ttl_ms=bounds.ttl_ms,
            max_events=MAX_EVENTS,
            channel=keys.channel,
            keep=KEEP,
            max_rate=bounds.max_rate,
            min_rate=bounds.min_rate,
        )
        self._outage = outage
        self._on_down = on_down  # a command failed: the limiter falls back
        self._me = uuid.uuid4().hex
        self.outbox = Outbox()
        self.shared = SharedRate(config.max_rate)
        #: The pacing leader's model while this process holds the lease.
        self.leader: PacingLeader | None = None
        #: Times this process became the pacing leader.
        self.leaderships = 0
        #: Redis commands sent for the pacing leader only (reports, the lease).
        self.report_trips = 0
        #: Redis's clock minus ours, from the last reply (converts our times for the leader).
        self.offset = 0.0
        self.closing = False  # a closing process reports its last events and leads no more
        self._hash_rate = math.nan  # the rate field as the last lease command read it
        self._leader_change: RateChange | None = None  # the model's last change handled
        self._ticker: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start reporting (for an adaptive rate only: there is no leader otherwise)."""
        self._ticker = asyncio.get_running_loop().create_task(self._tick_loop())

    def follow(self, rate: float, why: str, evidence: str) -> None:
        """The shared rate read from a reply or the channel."""
        self.shared.follow(rate, why, evidence, leading=self.leader is not None)

    def sent(self, slot: float) -> None:
        """The attempt of ``slot`` goes out now."""
        if self._ticker is not None:
            # The slot names the attempt; the model reads when it really went out (a holder
            # wakes up to LATE after its slot), on Redis's clock.
            self.outbox.add(send_event(slot, max(slot, time.monotonic() + self.offset)))

    def answered(
        self, slot: float, at: float, outcome: Outcome, pause: float, asked: float
    ) -> None:
        """The attempt of ``slot`` ended at ``at`` (our clock), with a 429's pause and ask."""
        if self._ticker is not None:
            self.outbox.add(answer_event(slot, at + self.offset, outcome, pause, asked))

    async def aclose(self) -> None:
        """Stop ticking; send the last reports and give the lease up (another process may lead
        at once)."""
        self.closing = True
        if self._ticker is None:
            return
        self._ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._ticker
        self._ticker = None
        self.leader = None
        if self._outage.up:
            with contextlib.suppress(*UNAVAILABLE):
                if self.outbox:
                    await self.tick()
                await self._runner.run(RELEASE_SCRIPT, [self._keys.lease], [self._me])

    async def _tick_loop(self) -> None:
        """Send the lease's command: every TICK while leading a busy key, every IDLE_TICK
        otherwise (to take the lease when it is free), and for events that no slot carried
        within TICK."""
        last = -math.inf
        failure_logged = -math.inf  # when a failure of the leader was last logged
        # Not `while True`: before Python 3.12 a cancel that lands as asyncio.wait_for's command
        # completes is swallowed (_waiting.wait_for catches that on 3.11, not on 3.10), and
        # this loop would outlive aclose.
        while not self.closing:
            await asyncio.sleep(TICK)
            if self.closing:
                return
            if not self._outage.up:
                continue  # the fallback runs; acquire finds out when Redis is back
            now = time.monotonic()
            if not self._due(now, last):
                continue
            last = now
            try:
                await self.tick()
            except UNAVAILABLE as exc:
                self._on_down(exc)
            except Exception:  # a bug here must not stop the reports, nor the pacing
                # Once with the traceback, then a line a minute at most: a bug that repeats
                # would otherwise log every TICK.
                if now - failure_logged >= 60.0:
                    failure_logged = now
                    logger.exception("pacing leader of %r failed; starting over", self._keys.hash)
                self.leader = None

    def _due(self, now: float, last: float) -> bool:
        # A leader keeps up with the others' reports, and with its model while it adapts.
        leader = self.leader
        return (
            now - last >= IDLE_TICK
            or self.outbox.waited(now)
            or (
                leader is not None
                and (leader.model.phase is not Phase.FULL or leader.pending or leader.fed)
            )
        )

    async def tick(self) -> None:
        """One lease command: the reports, the lease, the leader's rate; then lead or follow."""
        events = self.outbox.take()
        write = self._rate_to_write()
        me = "" if self.closing else self._me
        self.report_trips += 1
        raw = await self._runner.run(
            TICK_SCRIPT,
            [self._keys.hash, self._keys.outcomes, self._keys.lease],
            self._args.encode(me, write, events),
        )
        received = time.monotonic()
        self._outage.came_back()
        reply = TickReply.parse(raw)
        self.offset = reply.now - received
        self._hash_rate = reply.stored_rate
        leader = self._take_role(reply)
        if leader is None:
            self.shared.follow(reply.rate, reply.why, reply.evidence, leading=False)
            return
        self._lead(leader, reply)
        if write is not None and reply.role is Role.LEADER:
            self.shared.follow(float(write.rate), write.why, write.evidence, leading=True)

    def _rate_to_write(self) -> RateWrite | None:
        leader = self.leader
        # The rate as Redis will hold it (six decimals), so that it is written once; and over
        # any other (a past job's, another configuration's, none).
        if leader is None or float(f"{leader.model.rate:.6f}") == self._hash_rate:
            return None
        model = leader.model
        change = model.changes[-1] if model.changes else model.last_change
        return RateWrite(f"{model.rate:.6f}", change.reason.value, change.evidence)

    def _take_role(self, reply: TickReply) -> PacingLeader | None:
        """The leader this reply leaves this process with: None for a follower, a new one for
        a process that just took the lease (or held it and had lost its model)."""
        if reply.role is Role.FOLLOWER:
            if self.leader is not None:
                logger.info("pacing leader of %r: lease lost", self._keys.hash)
            self.leader = None
            return None
        if reply.role is Role.NEW_LEADER or self.leader is None:
            # A job in progress goes on at its rate; a past job's is forgotten.
            live = reply.now - reply.lead_at < STALE
            self.leader = PacingLeader(self._config, reply.rate if live else None)
            self.leaderships += 1
            logger.debug(
                "pacing leader of %r from now, starting at %.4g/s",
                self._keys.hash,
                self.leader.model.rate,
            )
        return self.leader

    def _lead(self, leader: PacingLeader, reply: TickReply) -> None:
        """Feed the model the reports, ``LAG`` behind Redis's clock; show its change, if new."""
        leader.add(reply.events)
        leader.advance(reply.now - LAG)
        change = leader.model.last_change
        if change is self._leader_change:
            return
        self._leader_change = change
        if change.new == change.old:
            return
        logger.debug(
            "pacing leader of %r: %s (%d events, %d late)",
            self._keys.hash,
            change,
            leader.events,
            leader.late,
        )
        # On our clock, like every other time this limiter shows.
        at = change.at - self.offset
        self.shared.lead(RateChange(at, change.old, change.new, change.reason, change.evidence))
