"""Who gets the next connection slot of the pool: an equal share for each account that waits.

Every account of a client sends through one ``Transport`` and so one connection pool. aiohttp's
connector wakes the requests that wait for a connection in the order they came, and a request
that finds a connection just given back takes it before them: one account with a queue of a
thousand calls holds the whole pool while an account that arrives later waits behind all of
them, or until its connect timeout (benchmarks/bench_accounts.py, ``pool``). The ``Gate``
stands in front of the connector with as many slots as the pool has connections, so the
connector itself never makes anyone wait.

Each account has a ``Lane``. A request takes a free slot at once (while the pool has room that
is all that happens: two integers added to); when none is free it waits in its account's lane,
in the order it came. Each slot given back goes to the oldest waiting request of the lane that
holds the fewest slots, lanes level with each other taking turns. That is max-min fairness,
work-conserving: an account that needs less than an equal share keeps what it needs and
leaves the rest to the others, and no slot stays free while a request waits. Nothing is taken
back: an account that holds more than its share when another arrives gives the surplus up as
its requests end.
"""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["Gate", "Lane"]


class Lane:
    """One account's place at the gate: the slots it holds, and its requests waiting in order.

    A small object per account (10,000 views may each have one); its queue exists only while
    it has requests waiting."""

    __slots__ = ("held", "waiters")

    def __init__(self) -> None:
        self.held = 0
        self.waiters: deque[asyncio.Future[bool]] | None = None


class Gate:
    """``capacity`` slots shared by lanes; see the module docstring.

    ``enter`` takes a free slot or says there is none; ``wait`` then waits for one in the lane;
    ``leave`` gives one back. A lane is filed under the number of slots it holds while it has
    requests waiting (finished waits are dropped when they reach the front), so the next slot
    goes to the first lane of the lowest level.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.busy = 0
        self._levels: dict[int, dict[Lane, None]] = {}  # held -> waiting lanes, in turn order
        self._queued = 0  # lanes filed in _levels
        self._low = 0  # no waiting lane holds fewer slots than this

    def enter(self, lane: Lane) -> bool:
        """Take a slot for ``lane`` now if one is free (then nobody waits: a slot given back
        goes straight to a waiting request); False: ``wait`` for one."""
        if self.busy < self.capacity:
            self.busy += 1
            lane.held += 1
            return True
        return False

    async def wait(self, lane: Lane, timeout: float | None) -> bool:
        """Wait in ``lane`` for a slot: True once it holds one, False when ``timeout`` seconds
        passed first or the gate closed."""
        loop = asyncio.get_running_loop()
        turn: asyncio.Future[bool] = loop.create_future()
        waiters = lane.waiters
        if waiters is None:
            waiters = lane.waiters = deque()
        if not waiters:
            self._file(lane, lane.held)
        waiters.append(turn)
        expiry = loop.call_later(timeout, _expire, turn) if timeout is not None else None
        try:
            return await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled() and turn.result():
                self.leave(lane)  # given a slot as it was cancelled: pass it on
            raise
        finally:
            if expiry is not None:
                expiry.cancel()

    def leave(self, lane: Lane) -> None:
        """Give back one of ``lane``'s slots: to the next waiting request, or to the pool."""
        if lane.waiters:  # still waiting: one slot fewer moves it a level down
            self._unfile(lane)
            self._file(lane, lane.held - 1)
        else:
            lane.held -= 1
        if not (self._queued and self._hand_over()):
            self.busy -= 1

    def close(self) -> None:
        """End every wait (False): the transport closed, no slot will come."""
        for lanes in self._levels.values():
            for lane in lanes:
                for turn in lane.waiters or ():
                    _expire(turn)
                lane.waiters = None
        self._levels.clear()
        self._queued = 0

    def _hand_over(self) -> bool:
        """The slot just given back, to the first request of the lowest waiting lane; False
        when every request that waited has stopped waiting."""
        level = self._low
        while self._queued:
            lanes = self._levels.get(level)
            if not lanes:
                level += 1
                continue
            lane = next(iter(lanes))
            waiters = lane.waiters
            assert waiters is not None
            while waiters and waiters[0].done():  # timed out or cancelled while waiting
                waiters.popleft()
            self._unfile(lane)
            if not waiters:
                lane.waiters = None
                continue
            self._low = level
            waiters.popleft().set_result(True)
            lane.held += 1
            if waiters:
                self._file(lane, lane.held)  # behind the lanes of its new level: turns
            else:
                lane.waiters = None  # a deque costs 600 B: an idle account keeps none
            return True
        return False

    def _file(self, lane: Lane, held: int) -> None:
        lane.held = held
        self._levels.setdefault(held, {})[lane] = None
        self._queued += 1
        if held < self._low:
            self._low = held

    def _unfile(self, lane: Lane) -> None:
        lanes = self._levels[lane.held]
        del lanes[lane]
        if not lanes:  # a dict keeps the room it once had: 500 lanes waiting, 20 kB
            del self._levels[lane.held]
        self._queued -= 1


def _expire(turn: asyncio.Future[bool]) -> None:
    if not turn.done():
        turn.set_result(False)
