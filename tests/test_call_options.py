"""What users of async SDKs ask for next: a proxy, the environment's proxy, per-call options."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from commbox_async import (
    AsyncCommbox,
    CommboxTimeoutError,
    InvalidArgumentError,
    Retries,
    ServerError,
)
from commbox_async.testing import FAST_RETRIES, FakeCommbox, Faults

if TYPE_CHECKING:
    from tinyproxy_server import TinyProxy

# The start_tinyproxy fixture: a real forward proxy (tinyproxy) on a free loopback port. The
# https side, CONNECT tunnels, is in test_proxy_connect.py.
pytest_plugins = ["tinyproxy_server"]


async def test_requests_go_through_the_proxy(start_tinyproxy: Callable[..., TinyProxy]) -> None:
    """proxy= sends every request of the owned session through a real proxy on loopback."""
    async with FakeCommbox() as server:
        proxy = start_tinyproxy()
        async with server.client(proxy=proxy.url) as commbox:
            await commbox.get_user_objects(1)
            await commbox.get_user_objects(2)
    # Plain http goes to a proxy as an absolute URL, which its log shows (the query cut off).
    assert [r.split("?")[0] for r in proxy.requests()] == [
        f"GET {server.url}/v2/users/identities/1/objects",
        f"GET {server.url}/v2/users/identities/2/objects",
    ]
    assert server.count("ok") == 2  # the proxy passed the token on to the server
    assert server.token not in proxy.log()


async def test_trust_env_reads_the_proxy_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, start_tinyproxy: Callable[..., TinyProxy]
) -> None:
    """trust_env=True takes HTTP_PROXY from the environment; the default ignores it."""
    async with FakeCommbox() as server:
        proxy = start_tinyproxy()
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        # The lowercase name wins over HTTP_PROXY (urllib's getproxies), and NO_PROXY would
        # exempt 127.0.0.1: none of the machine's may leak in.
        for name in ("http_proxy", "NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        async with server.client() as commbox:
            await commbox.get_user_objects(1)
        assert proxy.requests() == []
        async with server.client(trust_env=True) as commbox:
            await commbox.get_user_objects(2)
    requests = proxy.requests()
    assert len(requests) == 1
    assert "/identities/2/" in requests[0]
    assert server.count("ok") == 2


def test_a_bad_proxy_is_refused() -> None:
    """proxy= must be an http(s) URL, and is not set on a session the caller brings."""
    with pytest.raises(InvalidArgumentError, match="proxy"):
        AsyncCommbox(token="t", proxy="socks5://127.0.0.1:1080")


async def test_retries_for_one_call() -> None:
    """retries= on one call replaces the client's tries for that call only."""
    async with FakeCommbox() as server:
        async with server.client(retries=5) as commbox:
            server.script(1, 503, 503, 503)
            with pytest.raises(ServerError):
                await commbox.get_user_objects(1, retries=2)
            assert server.count(identity_id=1) == 2
            server.script(2, 503, 503)
            await commbox.get_user_objects(2)  # the client's 5 tries
            assert server.count(identity_id=2) == 3


async def test_retries_for_one_fan_out_and_unread_counts() -> None:
    """retries= on fetch_many and unread_counts applies to each of their calls."""
    async with FakeCommbox() as server:
        async with server.client(retries=5) as commbox:
            server.script(1, 503, 503)
            results = [r async for r in commbox.fetch_many([1, 2], retries=1)]
            assert [r.ok for r in sorted(results, key=lambda r: r.identity_id)] == [False, True]
            server.script(3, 503)
            counts = await commbox.unread_counts([3, 4], retries=1, raise_on_error=False)
            assert set(counts) == {4}
    assert server.count(identity_id=1) == 1 and server.count(identity_id=3) == 1


async def test_retries_for_one_iteration_of_pages() -> None:
    """retries= on iter_user_objects applies to each page's call (it had none to take)."""
    async with FakeCommbox() as server:
        async with server.client(retries=5) as commbox:
            server.script(1, 503, 503)
            with pytest.raises(ServerError):
                [item async for item in commbox.iter_user_objects(1, retries=1)]
            assert server.count(identity_id=1) == 1
            items = [item async for item in commbox.iter_user_objects(2, retries=2, timeout=5.0)]
            assert len(items) == 10


async def test_timeout_for_one_call() -> None:
    """timeout= on one call bounds its attempts; the client's own timeout is untouched."""
    faults = Faults(rate=1.0, kinds=("slow_headers",), slow_seconds=0.5, limit=1)
    async with FakeCommbox(faults=faults) as server:
        retries = Retries(tries=1, base_delay=0.0, max_delay=0.0)
        async with server.client(timeout=30.0, retries=retries) as commbox:
            with pytest.raises(CommboxTimeoutError):
                await commbox.get_user_objects(1, timeout=0.05)
            await commbox.get_user_objects(1)
            await commbox.get_user_objects(2, timeout=5.0, retries=FAST_RETRIES)  # both at once
