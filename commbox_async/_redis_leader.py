"""The pacing leader of a ``RedisLimiter`` key: one ``PacingModel`` fed with the sends and
outcomes every process reported. A pure object on Redis's clock (no I/O, no redis import), so
that it is tested like the model itself; ``LeaderLink`` (``_redis_link.py``) does the reporting
and the lease.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence

from ._config import RateLimit
from ._pacing import Outcome, PacingModel, Phase, Ticket

__all__ = ["PacingLeader", "answer_event", "send_event"]


def send_event(slot: float, sent: float) -> str:
    """The report of a slot's attempt going out (``sent`` on Redis's clock)."""
    return f"s {slot:.6f} {sent:.6f}"


def answer_event(slot: float, answered: float, outcome: Outcome, pause: float, asked: float) -> str:
    """The report of how a slot's attempt ended, with a 429's pause and the wait it asked for."""
    return f"a {slot:.6f} {answered:.6f} {int(outcome)} {pause:.6f} {asked:.6f}"


class PacingLeader:
    """The one ``PacingModel`` of a key, fed with the sends and outcomes of every process.

    A pure object on Redis's clock (no I/O): ``add`` takes the events the processes reported
    (``"s <slot> <sent>"`` when the attempt of a slot went out, ``"a <slot> <answered>
    <outcome> <pause> <asked>"`` when it ended), ``advance(until)`` feeds the model every event
    up to ``until`` in time order and returns the rate. Events arrive batched and out of order
    (each process reports within ``TICK``), so the caller advances to ``LAG`` behind Redis's
    clock: the model then sees the attempts as the in-process limiter's model does, sends in
    time order, and attempts still in flight at a 429 as pending.

    ``start_rate`` below the maximum (a leader taking over a job in progress) starts the model
    holding that rate, as the previous leader's model did; ``None`` starts it at the maximum.
    """

    def __init__(self, config: RateLimit, start_rate: float | None = None) -> None:
        self.model = PacingModel(config.max_rate, config.min_rate, adaptive=config.adaptive)
        if start_rate is not None and start_rate < config.max_rate:
            # PacingModel has no constructor argument for this: its rate and phase are public.
            self.model.rate = max(self.model.min_rate, start_rate)
            self.model.phase = Phase.HOLD
        self._sends: list[tuple[float, float]] = []  # heap of (sent, slot) not yet fed
        self._answers: list[tuple[float, float, int, float, float]] = []  # heap, by answer time
        self._tickets: dict[float, Ticket] = {}  # fed sends not yet answered, by slot
        self.clock = -math.inf  # model time fed so far
        #: Events that reached the leader after the model had passed their time (fed late).
        self.late = 0
        #: Events read.
        self.events = 0
        #: Whether the last ``add`` brought events (other processes are busy).
        self.fed = False

    @property
    def pending(self) -> bool:
        """Whether events wait to be fed (their time is not reached yet)."""
        return bool(self._sends or self._answers)

    def add(self, events: Sequence[bytes | str]) -> None:
        """Queue reported events (malformed ones are skipped)."""
        self.fed = bool(events)
        for raw in events:
            text = raw.decode() if isinstance(raw, bytes) else raw
            parts = text.split()
            try:
                if parts[0] == "s" and len(parts) in (2, 3):
                    slot = float(parts[1])
                    heapq.heappush(self._sends, (float(parts[-1]), slot))
                elif parts[0] == "a" and len(parts) == 6:
                    slot, answered, pause, asked = (float(parts[i]) for i in (1, 2, 4, 5))
                    heapq.heappush(self._answers, (answered, slot, int(parts[3]), pause, asked))
                else:
                    continue
            except (IndexError, ValueError):
                continue
            self.events += 1

    def advance(self, until: float) -> float:
        """Feed the model every queued event up to ``until``; the rate to send at then."""
        model, sends, answers = self.model, self._sends, self._answers
        while True:
            next_send = sends[0][0] if sends else math.inf
            next_answer = answers[0][0] if answers else math.inf
            at = min(next_send, next_answer)
            if at > until:
                break
            if at < self.clock:
                # Reported after the model passed its time: fed now, so that the log the model
                # reads stays in time order (off by at most the lateness).
                self.late += 1
            at = max(at, self.clock)
            self.clock = at
            if next_send <= next_answer:  # a send before the answers at the same time
                _, slot = heapq.heappop(sends)
                self._tickets[slot] = model.on_send(at)
                continue
            _, slot, code, pause, asked = heapq.heappop(answers)
            ticket = self._tickets.pop(slot, None)
            if ticket is None:
                # Sent before this leader began, or its send was lost: counted from now.
                ticket = model.on_send(at)
            try:
                outcome = Outcome(code)
            except ValueError:
                continue
            if outcome is Outcome.THROTTLED:
                model.on_answer(ticket, at, outcome, pause=pause, asked=asked)
            else:
                model.on_answer(ticket, at, outcome)
        if len(self._tickets) > 10_000:
            # Sends whose outcome never came (a process died mid-attempt): forget the old ones.
            horizon = self.clock - PacingModel.LOG_SPAN
            self._tickets = {k: v for k, v in self._tickets.items() if k >= horizon}
        if self.clock == -math.inf:
            # Nothing fed yet: the model's clock starts at its first send (before it, its
            # quiet time would be counted from 0).
            return model.rate
        self.clock = max(self.clock, until)
        return model.rate_at(self.clock)
