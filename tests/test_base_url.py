"""Base URLs: a gateway's path prefix reaches the server, and the opt-in for remote plain http.

The gateway is a real aiohttp server on loopback that serves the API under ``/commbox`` by
forwarding to the fake CommBox server, as an API gateway or corporate proxy does.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from gateway import serve_gateway

from commbox_async import AsyncCommbox, InvalidArgumentError, RateLimit, Retries
from commbox_async._protocol import check_base_url
from commbox_async.testing import FakeCommbox, unread_of

FAST = {
    "rate_limit": RateLimit(max_rate=10_000, adaptive=False),
    "retries": Retries(base_delay=0.0, max_delay=0.0, default_retry_after=0.0),
}


@pytest_asyncio.fixture
async def gateway(server: FakeCommbox) -> AsyncIterator[tuple[str, list[str]]]:
    """A gateway serving the fake server under /commbox; yields its URL and the paths it saw."""
    async with serve_gateway(server.url) as (url, seen):
        yield url, seen


@pytest.mark.parametrize("suffix", ["", "/"])
async def test_a_gateway_path_prefix_reaches_the_api(
    server: FakeCommbox, gateway: tuple[str, list[str]], suffix: str
) -> None:
    """With a base URL of http://host/commbox (slash or not) the request goes to
    /commbox/v2/users/identities/ID/objects and the page comes back."""
    url, seen = gateway
    async with AsyncCommbox(token=server.token, base_url=url + suffix, **FAST) as commbox:
        page = await commbox.get_user_objects(558355, page_size=5)
    assert page.unread_total == unread_of(558355, server.conversations_of(558355))
    assert seen == ["/commbox/v2/users/identities/558355/objects"]
    assert server.count("ok", 558355) == 1


async def test_the_env_var_may_carry_a_path_prefix(
    server: FakeCommbox, gateway: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """COMMBOX_BASE_URL with a path prefix is accepted and used the same way."""
    url, seen = gateway
    monkeypatch.setenv("COMMBOX_BASE_URL", url)
    async with AsyncCommbox(token=server.token, **FAST) as commbox:
        results = [r async for r in commbox.fetch_many([1, 2, 3], concurrency=2)]
    assert all(r.ok for r in results)
    assert sorted(seen) == [f"/commbox/v2/users/identities/{i}/objects" for i in (1, 2, 3)]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://gateway.example.com/commbox", "https://gateway.example.com/commbox"),
        ("https://gateway.example.com/commbox/", "https://gateway.example.com/commbox"),
        (
            "https://gw.example.com:8443/api/commbox-v1/",
            "https://gw.example.com:8443/api/commbox-v1",
        ),
        ("https://gw.example.com/a%20b", "https://gw.example.com/a%20b"),
        ("http://127.0.0.1:8080/prefix", "http://127.0.0.1:8080/prefix"),
    ],
)
def test_path_prefixes_are_accepted(url: str, expected: str) -> None:
    """A path prefix is kept, without its trailing slash."""
    assert check_base_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "https://gateway.example.com/commbox?x=1",  # a query
        "https://gateway.example.com/commbox?",
        "https://gateway.example.com/commbox#top",  # a fragment
        "https://user:pass@gateway.example.com/commbox",  # credentials
        "https://gateway.example.com/a/../b",  # climbs out of the prefix
        "https://gateway.example.com/a//b",
        "https://gateway.example.com/a/./b",
        "https://gateway.example.com/a b",
        "https://gateway.example.com/commbox/v2",  # the API's own path would be doubled
        "https://gateway.example.com/v2/users/identities",
    ],
)
def test_bad_prefixes_queries_fragments_and_credentials_are_refused(url: str) -> None:
    """Queries, fragments, credentials, dot or empty segments and the API's own path fail."""
    with pytest.raises(InvalidArgumentError, match="base_url") as caught:
        check_base_url(url)
    assert "pass" not in str(caught.value)


def test_remote_plain_http_needs_the_opt_in() -> None:
    """http to a non-loopback host is refused by default, and the error names the way out."""
    with pytest.raises(InvalidArgumentError, match="allow_insecure_http"):
        AsyncCommbox(token="t", base_url="http://fake-commbox:8080")
    with pytest.raises(InvalidArgumentError, match="credentials"):
        check_base_url("http://u:p@fake-commbox:8080", allow_insecure_http=True)
    assert check_base_url("http://fake-commbox:8080/x", allow_insecure_http=True) == (
        "http://fake-commbox:8080/x"
    )


async def test_the_opt_in_logs_a_warning_when_the_client_opens(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """allow_insecure_http=True to a remote host logs one warning naming the URL, not the token."""
    options: dict[str, Any] = {"token": "SECRET-TOKEN", "base_url": "http://10.1.2.3:8080"}
    with caplog.at_level(logging.WARNING, logger="commbox_async"):
        async with AsyncCommbox(allow_insecure_http=True, **options):
            pass
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "http://10.1.2.3:8080" in warnings[0] and "unencrypted" in warnings[0]
    assert "SECRET-TOKEN" not in caplog.text


async def test_loopback_http_logs_nothing(
    server: FakeCommbox, caplog: pytest.LogCaptureFixture
) -> None:
    """The opt-in is not needed for loopback, and loopback http logs no warning."""
    with caplog.at_level(logging.WARNING, logger="commbox_async"):
        async with AsyncCommbox(token=server.token, base_url=server.url, **FAST) as commbox:
            await commbox.get_user_objects(1)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
