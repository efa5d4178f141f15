"""``_waiting.wait_for``: a cancellation that comes with the result is not lost (gh-86296)."""

from __future__ import annotations

import asyncio
import io
import itertools
import sys
import tokenize
from asyncio import Task
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from commbox_async._waiting import wait_for

PACKAGE = Path(__file__).resolve().parents[1] / "commbox_async"
needs_cancelling = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="Python 3.10 cannot tell a swallowed cancellation"
)


Waiting = Callable[[Awaitable[int], float], Awaitable[int]]


async def _cancelled_as_it_ends(waiting: Waiting, error: Exception | None = None) -> Task[int]:
    """A task waiting through ``waiting`` (a wait_for) on a future that gets its result (or
    ``error``) in the very turn in which the task is cancelled; the task, once it has ended."""
    loop = asyncio.get_running_loop()
    result: asyncio.Future[int] = loop.create_future()

    async def wait() -> int:
        return await waiting(result, 10.0)

    task = asyncio.ensure_future(wait())
    await asyncio.sleep(0)  # the task now waits
    if error is None:
        result.set_result(1)
    else:
        result.set_exception(error)
    task.cancel()
    await asyncio.wait([task])
    return task


@needs_cancelling
async def test_a_cancellation_that_comes_with_the_result_is_raised() -> None:
    """asyncio.wait_for of Python 3.11 returns the result and drops the cancellation: a
    fan-out worker so cancelled went on, and its fan-out's clean-up waited for it forever."""
    plain = await _cancelled_as_it_ends(asyncio.wait_for)
    ours = await _cancelled_as_it_ends(wait_for)
    if sys.version_info < (3, 12):
        assert not plain.cancelled() and plain.result() == 1  # the bug this module is for
    assert ours.cancelled()


@needs_cancelling
async def test_a_cancellation_that_comes_with_an_error_is_raised() -> None:
    """The same race when the awaited thing fails: 3.11 hands on its error (a CommboxError,
    which a fan-out worker catches and goes on after), and drops the cancellation."""
    plain = await _cancelled_as_it_ends(asyncio.wait_for, LookupError("no slot"))
    ours = await _cancelled_as_it_ends(wait_for, LookupError("no slot"))
    if sys.version_info < (3, 12):
        assert isinstance(plain.exception(), LookupError)
    assert ours.cancelled()


async def test_a_result_without_a_cancellation_is_returned() -> None:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[int] = loop.create_future()
    loop.call_soon(done.set_result, 7)
    assert await wait_for(done, 10.0) == 7
    with pytest.raises(asyncio.TimeoutError):
        await wait_for(loop.create_future(), 0)  # (no time passes: nothing is slept)


@needs_cancelling
async def test_a_task_that_caught_a_cancellation_before_can_still_wait() -> None:
    """Only a cancellation requested during this wait counts: one caught earlier (a job that
    saves its state after Ctrl-C) does not make every later wait fail."""

    async def after_a_caught_cancel() -> int:
        with pytest.raises(asyncio.CancelledError):
            await asyncio.Event().wait()  # until cancelled
        loop = asyncio.get_running_loop()
        done: asyncio.Future[int] = loop.create_future()
        loop.call_soon(done.set_result, 3)
        return await wait_for(done, 10.0)

    task = asyncio.ensure_future(after_a_caught_cancel())
    await asyncio.sleep(0)
    task.cancel()
    assert await task == 3


def test_the_package_waits_only_through_it() -> None:
    """No module of the library (the fake server aside) reaches asyncio's wait_for: no
    ``something.wait_for`` in its code, no import of it from asyncio (read token by token, so
    that comments and docstrings may name it)."""
    found, read = [], 0
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).parts
        if parts == ("_waiting.py",) or parts[0] == "testing":
            continue
        read += 1
        code = [
            t
            for t in tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
            if t.type in (tokenize.NAME, tokenize.OP)
        ]
        for before, token in itertools.pairwise(code):
            if token.string != "wait_for":
                continue
            line = token.line.strip()
            if before.string == "." or (line.startswith("from asyncio") and "import" in line):
                found.append(f"{'/'.join(parts)}:{token.start[0]}")
    assert read > 30 and found == []
