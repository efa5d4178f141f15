"""The gate that shares the pool's slots among accounts (``_fair``), with no server."""

from __future__ import annotations

import asyncio

import aiohttp
from waiting import settle

from commbox_async._fair import Gate, Lane
from commbox_async._transport import _gate_for


def _waits(gate: Gate, lane: Lane, count: int) -> list[asyncio.Task[bool]]:
    return [asyncio.ensure_future(gate.wait(lane, None)) for _ in range(count)]


def _fill(gate: Gate, lane: Lane) -> None:
    while gate.enter(lane):
        pass


async def test_a_slot_given_back_goes_to_the_lane_that_holds_fewest() -> None:
    """a holds all 4 and waits for more; b arrives: the next two slots are b's, then they
    alternate so that each holds 2; a lane level with another waits its turn."""
    gate, a, b = Gate(4), Lane(), Lane()
    _fill(gate, a)
    waits_a = _waits(gate, a, 10)
    await settle()
    waits_b = _waits(gate, b, 10)
    await settle()
    gate.leave(a)
    gate.leave(a)
    await settle()
    assert (a.held, b.held) == (2, 2) and sum(t.done() for t in waits_b) == 2
    gate.leave(a)  # a holds 1 now, b 2: a's turn
    await settle()
    assert (a.held, b.held) == (2, 2) and sum(t.done() for t in waits_a) == 1
    gate.leave(b)
    await settle()
    assert (a.held, b.held) == (2, 2) and sum(t.done() for t in waits_b) == 3
    assert gate.busy == 4
    given = [t for t in waits_a + waits_b if t.done()]
    gate.close()
    await settle()
    assert all(t.result() for t in given) and len(given) == 4
    assert not any(t.result() for t in waits_a + waits_b if t not in given)


async def test_one_lane_alone_takes_every_slot_then_waits_in_order() -> None:
    """With one lane, slots are taken at once up to the capacity; then its waits are served
    first come, first served, and a slot with no one waiting goes back to the pool."""
    gate, a = Gate(3), Lane()
    assert [gate.enter(a) for _ in range(4)] == [True, True, True, False]
    first, second = _waits(gate, a, 2)
    await settle()
    gate.leave(a)
    await settle()
    assert first.done() and not second.done()
    gate.leave(a)
    gate.leave(a)
    await settle()
    assert second.result() and gate.busy == 2 and a.held == 2
    gate.leave(a)
    gate.leave(a)
    assert gate.busy == 0 and a.held == 0 and gate.enter(a)


async def test_a_wait_that_ends_passes_its_turn_on() -> None:
    """A wait that timed out, or was cancelled, is skipped; one cancelled just after it was
    given a slot hands that slot to the next waiting request."""
    gate, a, b = Gate(1), Lane(), Lane()
    assert gate.enter(a)
    expired = asyncio.ensure_future(gate.wait(b, 0.0))
    cancelled, granted_then_cancelled, last = _waits(gate, b, 3)
    await settle()
    assert expired.result() is False
    cancelled.cancel()
    await settle()
    gate.leave(a)  # to the first live wait of b
    granted_then_cancelled.cancel()  # before it ran again: its slot goes on to `last`
    await settle()
    assert granted_then_cancelled.cancelled() and last.result()
    assert (gate.busy, a.held, b.held) == (1, 0, 1)
    gate.leave(b)
    assert gate.busy == 0 and b.held == 0


async def test_closing_ends_every_wait() -> None:
    """``close`` ends the waits with False (the transport is closed: no slot will come)."""
    gate, a = Gate(1), Lane()
    assert gate.enter(a)
    waits = _waits(gate, a, 3)
    await settle()
    gate.close()
    await settle()
    assert [t.result() for t in waits] == [False, False, False]
    gate.leave(a)
    assert gate.busy == 0


async def test_the_gate_has_as_many_slots_as_the_connector_gives_one_host() -> None:
    """The connector's limit, or its limit per host when that is smaller (the client talks to
    one host); a connector with neither needs no gate."""
    for limit, per_host, slots in [(10, 0, 10), (10, 3, 3), (0, 5, 5), (0, 0, None)]:
        connector = aiohttp.TCPConnector(limit=limit, limit_per_host=per_host)
        gate = _gate_for(connector)
        assert (gate.capacity if gate is not None else None) == slots
        await connector.close()
