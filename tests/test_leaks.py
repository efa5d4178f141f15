"""Nothing outlives a fan-out that was left early: no client, no error, no frame.

Counted with ``gc.collect()`` and weak references after real fan-outs against the fake server.
"""

from __future__ import annotations

import contextlib
import gc
import weakref

from commbox_async import AsyncCommbox, CommboxError, RateLimit, Retries
from commbox_async.testing import FakeCommbox

FAST = {
    "rate_limit": RateLimit(max_rate=10_000, adaptive=False),
    "retries": Retries(base_delay=0.0, max_delay=0.0, default_retry_after=0.0),
}


def _alive(kind: type) -> int:
    return sum(1 for obj in gc.get_objects() if isinstance(obj, kind))


async def _leave_early(server: FakeCommbox) -> tuple[weakref.ref[AsyncCommbox], int]:
    """One client, one failing fan-out left at its first result; weak refs to what it made."""
    commbox = AsyncCommbox(token=server.token, base_url=server.url, **FAST)
    async with commbox:
        fan_out = commbox.fetch_many(range(1, 10_000), concurrency=32)
        async with contextlib.aclosing(fan_out):
            async for result in fan_out:
                assert result.error is not None
                break
    return weakref.ref(commbox), server.count()


async def test_no_client_or_error_survives_five_early_exits() -> None:
    """Five early exits from fan-outs whose requests fail leave no AsyncCommbox and no
    CommboxError alive after gc.collect() (a gc=False result holding an error was a cycle
    the collector could not see: the error's traceback reaches the worker, whose mailbox
    holds the result)."""
    gc.collect()
    errors_before = _alive(CommboxError)
    async with FakeCommbox(not_found=lambda ident: True) as server:
        refs = []
        for _ in range(5):
            ref, requests = await _leave_early(server)
            refs.append(ref)
        assert requests >= 5  # the fan-outs did run and fail
    gc.collect()
    assert [ref() for ref in refs] == [None] * 5
    assert _alive(CommboxError) - errors_before == 0


async def test_a_kept_failure_does_not_keep_the_client() -> None:
    """A failed result kept by the caller after the client closed does not keep the client
    (its error carries no traceback into the client's frames)."""
    async with FakeCommbox(not_found=lambda ident: True) as server:
        commbox = AsyncCommbox(token=server.token, base_url=server.url, **FAST)
        async with commbox:
            results = [r async for r in commbox.fetch_many([1, 2, 3], concurrency=2)]
        ref = weakref.ref(commbox)
        del commbox
    gc.collect()
    assert all(r.error is not None and r.error.status == 404 for r in results)  # type: ignore[union-attr]
    assert ref() is None
    assert all(r.error.__traceback__ is None for r in results)  # type: ignore[union-attr]


async def test_a_kept_poll_failure_does_not_keep_the_client() -> None:
    """A watch's PollFailed kept after the client closed does not keep the client alive."""
    async with FakeCommbox(not_found=lambda ident: True) as server:
        commbox = AsyncCommbox(token=server.token, base_url=server.url, **FAST)
        async with commbox:
            watch = commbox.watch([1, 2], share=1.0)
            kept = []
            async for change in watch:
                kept.append(change)
                if len(kept) == 2:
                    break
            await watch.aclose()
        ref = weakref.ref(commbox)
        del commbox, watch
    gc.collect()
    assert all(type(c).__name__ == "PollFailed" for c in kept)
    assert ref() is None
