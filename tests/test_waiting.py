"""``_waiting.wait_for``: a cancellation that comes with the result is not lost (gh-86296)."""

from __future__ import annotations

import ast
import asyncio
import sys
from pathlib import Path

import pytest

from commbox_async._waiting import wait_for

PACKAGE = Path(__file__).resolve().parents[1] / "commbox_async"
needs_cancelling = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="Python 3.10 cannot tell a swallowed cancellation"
)


async def _cancelled_as_the_result_arrives(waiting: object) -> asyncio.Task[object]:
    """A task waiting through ``waiting`` (a wait_for) on a future that gets its result in the
    very turn in which the task is cancelled; the task, once it has ended."""
    loop = asyncio.get_running_loop()
    result: asyncio.Future[int] = loop.create_future()
    task = asyncio.ensure_future(waiting(result, 10.0))  # type: ignore[operator]
    await asyncio.sleep(0)  # the task now waits
    result.set_result(1)
    task.cancel()
    await asyncio.wait([task])
    return task


@needs_cancelling
async def test_a_cancellation_that_comes_with_the_result_is_raised() -> None:
    """asyncio.wait_for of Python 3.11 returns the result and drops the cancellation: a
    fan-out worker so cancelled went on, and its fan-out's clean-up waited for it forever."""
    plain = await _cancelled_as_the_result_arrives(asyncio.wait_for)
    ours = await _cancelled_as_the_result_arrives(wait_for)
    if sys.version_info < (3, 12):
        assert not plain.cancelled() and plain.result() == 1  # the bug this module is for
    assert ours.cancelled()


async def test_a_result_without_a_cancellation_is_returned() -> None:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[int] = loop.create_future()
    loop.call_soon(done.set_result, 7)
    assert await wait_for(done, 10.0) == 7
    with pytest.raises(asyncio.TimeoutError):
        await wait_for(loop.create_future(), 0.01)


@needs_cancelling
async def test_a_task_that_caught_a_cancellation_before_can_still_wait() -> None:
    """Only a cancellation requested during this wait counts: one caught earlier (a job that
    saves its state after Ctrl-C) does not make every later wait fail."""

    async def after_a_caught_cancel() -> int:
        with pytest.raises(asyncio.CancelledError):
            await asyncio.sleep(10)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[int] = loop.create_future()
        loop.call_soon(done.set_result, 3)
        return await wait_for(done, 10.0)

    task = asyncio.ensure_future(after_a_caught_cancel())
    await asyncio.sleep(0)
    task.cancel()
    assert await task == 3


def test_the_package_waits_only_through_it() -> None:
    """No module of the library calls asyncio.wait_for directly (the fake server aside)."""
    calls = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "_waiting.py" or "testing" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr == "wait_for"
                and isinstance(node.value, ast.Name)
                and node.value.id == "asyncio"
            ):
                calls.append(f"{path.name}:{node.lineno}")
    assert calls == []
