"""Connection failures say where and how long: host and port, the reason in a few words, the
attempts made and the time they took; each scheduled retry is one INFO record."""

from __future__ import annotations

import logging
import socket
from typing import Any

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from commbox_async import (
    AsyncCommbox,
    CommboxConnectionError,
    RateLimit,
    Retries,
    ServerError,
)
from commbox_async.testing import FakeCommbox, unused_port

FIXED = RateLimit(max_rate=10_000, adaptive=False)
THREE = Retries(tries=3, base_delay=0.0, max_delay=0.0, default_retry_after=0.0)
RETRIES_LOGGER = "commbox_async.retries"


def _retry_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == RETRIES_LOGGER and r.levelno == logging.INFO
    ]


async def test_refused_connection_names_host_port_attempts_and_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Nothing listening: the error names 127.0.0.1:PORT, "connection refused", 3 attempts
    and the time they took; the two retries in between are logged one by one."""
    port = unused_port()
    caplog.set_level(logging.INFO, logger=RETRIES_LOGGER)
    async with AsyncCommbox(
        token="t", base_url=f"http://127.0.0.1:{port}", retries=THREE, rate_limit=FIXED
    ) as commbox:
        with pytest.raises(CommboxConnectionError) as caught:
            await commbox.get_user_objects(558355)
    text = str(caught.value)
    assert text.startswith(
        f"cannot connect to 127.0.0.1:{port}: connection refused (3 attempts over "
    )
    assert text.endswith(" s) (identity 558355)")
    assert caught.value.reason == "connection refused"
    assert _retry_lines(caplog) == ["identity 558355: retrying in 0.0 s: connection refused"] * 2


class _NoSuchName(AbstractResolver):
    """A resolver for which no name exists (as for a misspelt host), with no traffic at all."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    async def close(self) -> None:
        pass


async def test_a_name_that_does_not_resolve_is_named() -> None:
    """A host name that does not resolve: the error names the host and port and says so."""
    connector = aiohttp.TCPConnector(resolver=_NoSuchName())
    async with aiohttp.ClientSession(connector=connector) as session:
        async with AsyncCommbox(
            token="t",
            base_url="https://commbox.gateway.invalid/api",
            session=session,
            retries=THREE,
            rate_limit=FIXED,
        ) as commbox:
            with pytest.raises(CommboxConnectionError) as caught:
                await commbox.get_user_objects(7)
    assert str(caught.value).startswith(
        "cannot connect to commbox.gateway.invalid:443: the host name does not resolve "
        "(3 attempts over "
    )


async def test_a_server_error_that_outlasts_the_retries_says_how_many(
    server: FakeCommbox, caplog: pytest.LogCaptureFixture
) -> None:
    """Three 503s with three tries: the final error says 3 attempts; two retries logged."""
    server.script(5, 503, 503, 503)
    caplog.set_level(logging.INFO, logger=RETRIES_LOGGER)
    async with AsyncCommbox(
        token=server.token, base_url=server.url, retries=THREE, rate_limit=FIXED
    ) as commbox:
        with pytest.raises(ServerError) as caught:
            await commbox.get_user_objects(5)
    assert "(3 attempts over " in str(caught.value)
    assert _retry_lines(caplog) == ["identity 5: retrying in 0.0 s: HTTP 503"] * 2


async def test_a_throttled_retry_is_logged_with_the_pause(
    server: FakeCommbox, caplog: pytest.LogCaptureFixture
) -> None:
    """A 429 with Retry-After: 0 is retried and logged once as HTTP 429; the call succeeds."""
    body: Any = b'{"status": 429, "description": "Too many requests", "data": ""}'
    server.script(6, (429, {"Retry-After": "0"}, body))
    caplog.set_level(logging.INFO, logger=RETRIES_LOGGER)
    async with AsyncCommbox(
        token=server.token, base_url=server.url, retries=THREE, rate_limit=FIXED
    ) as commbox:
        page = await commbox.get_user_objects(6)
    assert page.status == 200
    assert _retry_lines(caplog) == ["identity 6: retrying in 0.0 s: HTTP 429"]


async def test_no_retry_records_below_info(caplog: pytest.LogCaptureFixture) -> None:
    """The records are INFO: a caller that shows warnings only sees none of them."""
    caplog.set_level(logging.WARNING, logger=RETRIES_LOGGER)
    async with AsyncCommbox(
        token="t", base_url=f"http://127.0.0.1:{unused_port()}", retries=THREE, rate_limit=FIXED
    ) as commbox:
        with pytest.raises(CommboxConnectionError):
            await commbox.get_user_objects(1)
    assert _retry_lines(caplog) == []
