"""A fan-out that meets a refused token stops sending, and FanOutError says what failed."""

from __future__ import annotations

import pytest

from commbox_async import (
    AsyncCommbox,
    AuthenticationError,
    FanOutError,
    RateLimit,
    Retries,
)
from commbox_async.testing import FakeCommbox

FAST = {
    "rate_limit": RateLimit(max_rate=10_000, adaptive=False),
    "retries": Retries(base_delay=0.0, max_delay=0.0, default_retry_after=0.0),
}


@pytest.mark.parametrize("concurrency", [1, 4, 32])
async def test_a_refused_token_is_not_sent_again_for_every_id(
    server: FakeCommbox, concurrency: int
) -> None:
    """500 ids with a wrong token: at most one request per worker reaches the server, and
    every id still gets exactly one AuthenticationError result."""
    ids = list(range(1, 501))
    async with AsyncCommbox(token="wrong-token", base_url=server.url, **FAST) as commbox:
        results = [r async for r in commbox.fetch_many(ids, concurrency=concurrency)]
        stats = commbox.stats
    assert sorted(r.identity_id for r in results) == ids
    assert all(isinstance(r.error, AuthenticationError) for r in results)
    assert all(r.error.status == 401 for r in results)  # type: ignore[union-attr]
    assert 1 <= server.count("unauthorized") == server.count() <= concurrency
    assert stats.requests == server.count()
    unsent = [r.error for r in results if "not sent" in str(r.error)]
    assert len(unsent) == 500 - server.count()
    assert all(str(e.identity_id) in str(e) for e in unsent)  # type: ignore[union-attr]
    assert "wrong-token" not in " ".join(str(r.error) for r in results)


async def test_other_failures_do_not_stop_the_fan_out(server: FakeCommbox) -> None:
    """A 404 is about one identity: the other ids are still fetched."""
    server.script(2, 404)
    async with AsyncCommbox(token=server.token, base_url=server.url, **FAST) as commbox:
        results = [r async for r in commbox.fetch_many(range(1, 21), concurrency=1)]
    assert [r.identity_id for r in results if not r.ok] == [2]
    assert server.count() == 20


async def test_fan_out_error_says_what_the_failures_were(server: FakeCommbox) -> None:
    """FanOutError's message counts the failures by kind and shows the first few errors."""
    for ident in (2, 3, 4, 5):
        server.script(ident, 404)
    server.script(6, 501)
    async with AsyncCommbox(token=server.token, base_url=server.url, **FAST) as commbox:
        with pytest.raises(FanOutError) as caught:
            await commbox.unread_counts(range(1, 9), concurrency=1)
    error = caught.value
    text = str(error)
    assert text.startswith("5 of 8 identities failed (4 not_found, 1 not_implemented): ")
    assert "HTTP 404" in text and "(identity 2)" in text and text.endswith(", ...")
    assert text.count("HTTP ") == FanOutError.EXAMPLES
    assert error.by_kind == {"not_found": 4, "not_implemented": 1}
    assert set(error.counts) == {1, 7, 8} and set(error.errors) == {2, 3, 4, 5, 6}
