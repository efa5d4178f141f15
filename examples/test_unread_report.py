"""Testing your own code against the fake CommBox server: a complete pytest file.

pip install 'commbox-async[testing]' (pytest, pytest-asyncio and the fixtures of
commbox_async.testing), then run: pytest test_unread_report.py
"""

import pytest

from commbox_async import AsyncCommbox, NotFoundError
from commbox_async.testing import FakeCommbox, Faults, unread_of
from commbox_async.testing.plugin import FakeCommboxFactory


async def unread_report(commbox: AsyncCommbox, ids: list[int]) -> dict[int, int | None]:
    """The code under test: unread messages per identity, None where it does not exist."""
    report: dict[int, int | None] = {}
    async for result in commbox.fetch_many(ids):
        if isinstance(result.error, NotFoundError):
            report[result.identity_id] = None
        elif result.response is not None:
            report[result.identity_id] = result.response.unread_total
        else:
            raise result.error or AssertionError("a result has a response or an error")
    return report


@pytest.mark.asyncio
async def test_report_counts_unread(fake_commbox: FakeCommbox) -> None:
    """Each identity's unread total is the server's."""
    async with fake_commbox.client() as commbox:  # fast test settings: no real waits
        report = await unread_report(commbox, [1, 2])
    assert report == {1: unread_of(1, 10), 2: unread_of(2, 10)}


@pytest.mark.asyncio
async def test_report_survives_429s_faults_and_404(
    fake_commbox_factory: FakeCommboxFactory,
) -> None:
    """429s and injected faults are retried; an identity that 404s is reported as None."""
    server = await fake_commbox_factory(faults=Faults(rate=0.2), not_found={7})
    server.script(3, 429, 429, 503)  # identity 3: two 429s and a 503, then its page
    async with server.client() as commbox:
        report = await unread_report(commbox, list(range(1, 31)))
    assert report[7] is None
    assert all(report[i] == unread_of(i, 10) for i in range(1, 31) if i != 7)
    assert server.count("scripted", identity_id=3) == 3 and server.faults_injected > 0
