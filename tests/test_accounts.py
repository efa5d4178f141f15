"""Tokens that change (a provider asked once after a 401) and the fake server's accounts."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import pickle
from collections.abc import Callable
from contextlib import aclosing

import pytest
from waiting import settle, until

from commbox_async import AsyncCommbox, AuthenticationError, CommboxError
from commbox_async.testing import (
    FAST_RETRIES,
    FakeCommbox,
    Throttling,
    VirtualClock,
    fast_client_settings,
)

SECRET = "SUPERSECRET-key-1"


def _texts_of(exc: BaseException) -> list[str]:
    """str and repr of an exception and of everything chained to it."""
    texts: list[str] = []
    current: BaseException | None = exc
    while current is not None:
        texts += [str(current), repr(current), repr(current.args)]
        current = current.__cause__ or current.__context__
    return texts


class Provider:
    """A token provider that reads the server's current token and counts the times asked."""

    def __init__(self, server: FakeCommbox, *, fixed: str | None = None) -> None:
        self.server = server
        self.fixed = fixed
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        return self.fixed if self.fixed is not None else self.server.token


async def test_a_plain_provider_gives_the_token() -> None:
    """A plain callable is asked for the token when the client opens, and once only."""
    async with FakeCommbox(token=SECRET) as server:
        provider = Provider(server)
        async with server.client(token=provider) as commbox:
            for ident in (1, 2, 3):
                await commbox.get_user_objects(ident)
    assert provider.calls == 1
    assert server.count("ok") == 3


async def test_an_async_provider_gives_the_token() -> None:
    """An async callable is awaited for the token."""
    async with FakeCommbox(token=SECRET) as server:

        async def provider() -> str:
            await asyncio.sleep(0)
            return server.token

        async with server.client(token=provider) as commbox:
            page = await commbox.get_user_objects(7)
    assert page.data


async def test_a_key_rotated_in_a_fan_out_of_2000_loses_none() -> None:
    """Rotated mid-job: 2,000 ids all succeed, one refresh, at most `concurrency` extra sends."""
    concurrency = 32
    async with FakeCommbox(token=SECRET) as server:
        provider = Provider(server)
        async with server.client(token=provider) as commbox:
            results = []
            async with aclosing(commbox.fetch_many(range(1, 2001), concurrency=concurrency)) as job:
                async for result in job:
                    results.append(result)
                    if len(results) == 1000:
                        server.rotate()  # the old key is refused from now on (no grace)
    assert len(results) == 2000
    assert all(result.ok for result in results)
    assert provider.calls == 2  # the first token, then one refresh
    extra = len(server.requests) - 2000
    assert extra == server.count("revoked")
    assert 0 < extra <= concurrency


async def test_calls_refused_together_share_one_refresh() -> None:
    """Ten calls refused at once wait for one refresh of an async provider, then all succeed."""
    async with FakeCommbox(token=SECRET) as server:
        release = asyncio.Event()
        asked = 0

        async def provider() -> str:
            nonlocal asked
            asked += 1
            if asked > 1:
                await release.wait()  # the refresh is slow: every 401 arrives meanwhile
            return server.token

        async with server.client(token=provider) as commbox:
            server.rotate()
            calls = [asyncio.ensure_future(commbox.get_user_objects(i)) for i in range(1, 11)]
            await until(lambda: server.count("revoked") == 10, "ten 401s")
            release.set()
            pages = await asyncio.gather(*calls)
    assert asked == 2
    assert len(pages) == 10
    assert server.count("ok") == 10


async def test_the_same_token_back_is_the_401() -> None:
    """A provider that returns the refused token again: AuthenticationError after one request."""
    async with FakeCommbox(token=SECRET) as server:
        provider = Provider(server, fixed=SECRET)
        async with server.client(token=provider) as commbox:
            server.revoke(SECRET)
            with pytest.raises(AuthenticationError):
                await commbox.get_user_objects(5)
    assert provider.calls == 2
    assert len(server.requests) == 1


async def test_a_second_401_is_final() -> None:
    """A fresh token that is refused too: the call is sent again once, then fails."""
    async with FakeCommbox(token=SECRET) as server:
        tokens = iter([SECRET, "SUPERSECRET-unknown", "SUPERSECRET-other"])
        async with server.client(token=lambda: next(tokens)) as commbox:
            server.revoke(SECRET)
            with pytest.raises(AuthenticationError):
                await commbox.get_user_objects(5)
    assert server.count("revoked") == 1
    assert server.count("unauthorized") == 1
    assert len(server.requests) == 2


async def test_a_fixed_token_is_never_retried_on_401() -> None:
    """A string token refused: one request and the AuthenticationError of before."""
    async with FakeCommbox(token=SECRET) as server:
        async with server.client() as commbox:
            server.revoke(SECRET)
            with pytest.raises(AuthenticationError):
                await commbox.get_user_objects(5)
    assert len(server.requests) == 1


async def test_a_revoked_key_stops_the_fan_out() -> None:
    """Revoked mid-job with no new key: the ids left get AuthenticationError without a request."""
    concurrency = 8
    async with FakeCommbox(token=SECRET) as server:
        provider = Provider(server, fixed=SECRET)
        async with server.client(token=provider) as commbox:
            results = []
            async for result in commbox.fetch_many(range(1, 501), concurrency=concurrency):
                results.append(result)
                if len(results) == 100:
                    server.revoke(SECRET)
    failed = [r for r in results if not r.ok]
    assert len(results) == 500
    assert all(isinstance(r.error, AuthenticationError) for r in failed)
    assert len(failed) >= 500 - 100 - 2 * concurrency
    assert server.count("revoked") <= 2 * concurrency
    assert provider.calls == 2


async def test_a_failing_provider_leaves_the_401_and_no_secret() -> None:
    """A provider that raises (quoting a secret): the 401 stands; no log line quotes it."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("commbox_async").addHandler(handler)
    try:
        async with FakeCommbox(token=SECRET) as server:
            asked = 0

            def provider() -> str:
                nonlocal asked
                asked += 1
                if asked > 1:
                    raise RuntimeError(f"vault down, last key {SECRET}")
                return SECRET

            async with server.client(token=provider) as commbox:
                server.revoke(SECRET)
                with pytest.raises(AuthenticationError) as info:
                    await commbox.get_user_objects(5)
                texts = [repr(commbox), repr(commbox._account.token)]
    finally:
        logging.getLogger("commbox_async").removeHandler(handler)
    texts += _texts_of(info.value) + _texts_of(pickle.loads(pickle.dumps(info.value)))
    texts += [record.getMessage() for record in records]
    assert any("token provider failed: RuntimeError" in text for text in texts)
    assert not any("SUPERSECRET" in text for text in texts)


async def test_a_provider_that_hangs_after_a_401_ends_at_the_deadline() -> None:
    """A refresh that never comes: the call ends at its deadline with the 401 (not a hang),
    and the refresh others may share is left running."""
    async with FakeCommbox(token=SECRET) as server:
        asked = 0
        never = asyncio.Event()

        async def provider() -> str:
            nonlocal asked
            asked += 1
            if asked > 1:
                await never.wait()  # the secrets store never answers
            return SECRET

        async with server.client(token=provider) as commbox:
            server.revoke(SECRET)
            call = commbox.get_user_objects(5, deadline=0.3)
            with pytest.raises(AuthenticationError):
                await asyncio.wait_for(call, 30.0)  # (the guard: a hang fails the test)
            refresh = commbox._account.token._renewing
            assert refresh is not None and not refresh.done()
            never.set()
    assert asked == 2


class GatedProvider:
    """An async token provider whose ask number n (from 1) first waits for ``gate(n)``, when
    that is an event, then returns ``token()``; ``asked`` counts the asks."""

    def __init__(
        self, token: Callable[[], str], gate: Callable[[int], asyncio.Event | None]
    ) -> None:
        self.token, self.gate, self.asked = token, gate, 0

    async def __call__(self) -> str:
        self.asked += 1
        event = self.gate(self.asked)
        if event is not None:
            await event.wait()
        return self.token()


class SlowRefresh(GatedProvider):
    """The server's current token, after the first ``quick`` asks only once ``release`` is
    set (by ``rotate_then_fan_out``, at its first result)."""

    def __init__(self, server: FakeCommbox, quick: int) -> None:
        self.server, self.release = server, asyncio.Event()
        super().__init__(lambda: server.token, lambda n: self.release if n > quick else None)

    async def rotate_then_fan_out(self, commbox: AsyncCommbox, ids: range) -> None:
        """Rotate the key, fetch ``ids`` 4 at a time with a deadline of 0.3 s, and check that
        only the calls that waited out the refresh failed, each ended by its deadline."""
        self.server.rotate()
        results = []
        job = commbox.fetch_many(ids, concurrency=4, deadline=0.3)
        async with aclosing(job):
            async for result in job:
                results.append(result)
                self.release.set()
        assert len(results) == len(ids)
        failed = [r for r in results if not r.ok]
        assert 1 <= len(failed) <= 4  # the calls that waited out their deadline
        assert all(r.error is not None and r.error.ended_by_deadline for r in failed)


async def test_a_refresh_that_outlasts_a_calls_deadline_does_not_stop_the_fan_out() -> None:
    """The key rotates and the provider is slower than a call's deadline: the calls waiting
    for it end at their deadline, marked so, and the fan-out goes on (it took their 401 for a
    refused token, and failed all 40 ids though the refresh came 0.2 s later)."""
    async with FakeCommbox(token=SECRET) as server:
        provider = SlowRefresh(server, quick=1)
        async with server.client(token=provider) as commbox:
            await commbox.get_user_objects(1)  # the first token
            await provider.rotate_then_fan_out(commbox, range(2, 42))
    assert provider.asked == 2


async def test_a_revoked_key_with_a_slow_provider_still_stops_the_fan_out() -> None:
    """The key is revoked and the provider, slower than a call's deadline, gives it back: once
    a refresh has ended without a fresh token, the next call that times out waiting for one
    is a refused token, and the fan-out stops sending (each call started a refresh of its own
    and timed out, and every id was sent to the revoked key)."""
    async with FakeCommbox(token=SECRET) as server:
        gates = [asyncio.Event() for _ in range(12)]
        # Each refresh waits for the test (the third, never), then gives the revoked key again.
        provider = GatedProvider(lambda: SECRET, lambda n: gates[n] if n > 1 else None)
        async with server.client(token=provider, rate_limit=2) as commbox:
            assert provider.asked == 1  # the first token, asked as the client opened
            server.revoke(SECRET)
            results = []
            # A slot every 0.5 s: each call is sent after the last one's refresh ended.
            async with aclosing(
                commbox.fetch_many(range(2, 12), concurrency=1, deadline=0.3)
            ) as job:
                async for result in job:
                    results.append(result)
                    gates[2].set()  # the first refresh ends, with the same key
    assert len(results) == 10
    assert all(isinstance(r.error, AuthenticationError) for r in results)
    assert server.count("revoked") == 2  # the first call, and the one that found it refused


async def test_a_key_shown_to_work_again_is_not_taken_for_refused() -> None:
    """A refresh that gave the same key back (a passing 401) is forgotten once the key's next
    page comes back: a later rotation with a slow provider does not stop a fan-out (the key
    stayed "refused", and every id of the fan-out failed)."""
    async with FakeCommbox(token=SECRET) as server:
        provider = SlowRefresh(server, quick=2)
        async with server.client(token=provider) as commbox:
            server.script(1, 401)
            with pytest.raises(AuthenticationError):
                await commbox.get_user_objects(1)  # a passing 401: the same key back
            await commbox.get_user_objects(2)  # the key works
            await provider.rotate_then_fan_out(commbox, range(3, 43))
    assert provider.asked == 3


async def test_a_provider_future_cancelled_by_its_owner_is_a_failed_refresh() -> None:
    """A provider that hands out a future of its own, which its owner cancels: the refresh
    failed, and the call gets its 401 (the CancelledError reached the calls waiting, and
    would end a fan-out's worker)."""
    async with FakeCommbox(token=SECRET) as server:
        shared: list[asyncio.Future[str]] = []

        def provider() -> str | asyncio.Future[str]:
            if not shared:
                shared.append(asyncio.get_running_loop().create_future())
                return SECRET  # the first token
            return shared[0]

        async with server.client(token=provider) as commbox:
            server.revoke(SECRET)
            call = asyncio.ensure_future(commbox.get_user_objects(1))
            await until(lambda: server.count("revoked") == 1, "the 401")
            await settle()
            shared[0].cancel()
            with pytest.raises(AuthenticationError):
                await asyncio.wait_for(call, 30.0)


async def test_a_provider_that_hung_is_asked_again_at_the_next_401(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A refresh whose provider never answers is given up after PROVIDER_TIMEOUT: the call
    that waited gets its 401, and the next 401 asks the provider again (it joined the hung
    ask, and the account failed every call until the process restarted)."""
    from commbox_async import _tokens

    monkeypatch.setattr(_tokens, "PROVIDER_TIMEOUT", 0.2, raising=False)
    async with FakeCommbox(token=SECRET) as server:
        never = asyncio.Event()  # the secrets store hangs, at the second ask only
        provider = GatedProvider(lambda: server.token, lambda n: never if n == 2 else None)
        async with server.client(token=provider) as commbox:
            await commbox.get_user_objects(1)
            server.rotate()
            with pytest.raises(AuthenticationError):
                await asyncio.wait_for(commbox.get_user_objects(2, deadline=20.0), 30.0)
            page = await asyncio.wait_for(commbox.get_user_objects(3, deadline=20.0), 30.0)
    assert page is not None
    assert provider.asked == 3


async def test_a_view_whose_provider_hangs_at_first_ends_at_the_deadline() -> None:
    """A view's first token never comes: its first call fails at its deadline with an
    AuthenticationError that says nothing was sent."""
    async with FakeCommbox(token=SECRET) as server:
        never = asyncio.Event()

        async def provider() -> str:
            await never.wait()
            return SECRET

        async with server.client() as commbox:
            view = commbox.with_token(provider, account="acme")
            call = view.get_user_objects(5, deadline=0.3)
            with pytest.raises(AuthenticationError, match="nothing was sent") as info:
                await asyncio.wait_for(call, 30.0)
            never.set()
    assert info.value.identity_id == 5
    assert server.count() == 0


async def test_a_view_whose_provider_hangs_at_first_stops_the_fan_out_once_an_ask_failed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A view's provider never gives a first token: the calls end at their deadline, and once
    an ask has been given up (PROVIDER_TIMEOUT) the next such end is a refused token, which
    stops the fan-out (every id waited out its deadline, and the provider was asked anew
    every PROVIDER_TIMEOUT)."""
    from commbox_async import _tokens

    monkeypatch.setattr(_tokens, "PROVIDER_TIMEOUT", 0.2)
    async with FakeCommbox(token=SECRET) as server:
        never = asyncio.Event()
        provider = GatedProvider(lambda: SECRET, lambda n: never)  # never answers
        async with server.client() as commbox:
            view = commbox.with_token(provider, account="acme")
            results = [r async for r in view.fetch_many(range(1, 41), concurrency=2, deadline=0.1)]
            never.set()
    assert len(results) == 40
    assert all(isinstance(r.error, AuthenticationError) for r in results)
    assert provider.asked <= 2
    assert server.count() == 0


async def test_a_view_whose_provider_fails_at_first_stops_the_fan_out() -> None:
    """A provider that raises for a view's first token is a refused token: the fan-out stops
    asking it, and every id gets an AuthenticationError."""
    async with FakeCommbox(token=SECRET) as server:
        asked = 0

        def provider() -> str:
            nonlocal asked
            asked += 1
            raise RuntimeError("vault down")

        async with server.client() as commbox:
            view = commbox.with_token(provider, account="acme")
            results = [r async for r in view.fetch_many(range(1, 201), concurrency=4)]
    assert len(results) == 200
    assert all(isinstance(r.error, AuthenticationError) for r in results)
    assert all(r.error is not None and r.error.identity_id == r.identity_id for r in results)
    assert asked <= 4  # the calls that began before the first failure, at most
    assert server.count() == 0


async def test_an_echo_of_the_old_key_after_a_refresh_is_scrubbed() -> None:
    """An answer that quotes the key it was sent with, arriving after a refresh replaced
    that key: the old key (still valid in its grace period) never reaches the error."""
    old, new = "OLDSECRET-key-1", "NEWSECRET-key-2"
    async with FakeCommbox(token=old) as server:
        account = server.accounts.account_of(old)
        server.add_token(new, account=account)
        keys = iter([old, new])
        echo = json.dumps({"description": f"bad request, Authorization: Bearer {old}"})
        server.script(7, (400, {}, echo.encode()))
        server.script(8, 401)  # refused: the client asks the provider for the new key
        async with server.client(token=lambda: next(keys)) as commbox:
            server.holding.hold(account)
            echoed = asyncio.ensure_future(commbox.get_user_objects(7))  # sent with the old key
            await until(lambda: server.holding.held(account) == 1, "the echo held")
            server.holding.unhold(release=False)
            await commbox.get_user_objects(8)  # 401, refresh, sent again with the new key
            server.holding.release(1, account=account)
            with pytest.raises(CommboxError) as info:
                await echoed
    error = info.value
    texts = _texts_of(error) + _texts_of(pickle.loads(pickle.dumps(error)))
    texts += [error.body.decode(), str(getattr(error, "description", ""))]
    assert any("***" in text for text in texts)
    assert not any("OLDSECRET" in text for text in texts)


async def test_a_provider_with_no_usable_token_fails_the_open() -> None:
    """A provider that returns nothing usable: opening the client fails, naming no token."""
    async with FakeCommbox(token=SECRET) as server:
        commbox = AsyncCommbox(token=lambda: "has space SUPERSECRET", base_url=server.url)
        with pytest.raises(CommboxError, match="token provider") as info:
            await commbox.open()
        await commbox.aclose()
    assert not any("SUPERSECRET" in text for text in _texts_of(info.value))


def test_token_must_be_a_string_or_a_callable() -> None:
    """Anything else is refused when the client is built."""
    with pytest.raises(CommboxError, match="callable"):
        AsyncCommbox(token=42, base_url="http://127.0.0.1:1")  # type: ignore[arg-type]


# --- the fake server's accounts ----------------------------------------------------------
async def test_a_revoked_key_works_for_its_grace() -> None:
    """The fake server accepts a revoked key until its grace has passed, then answers 401."""
    clock = VirtualClock()
    async with FakeCommbox(token=SECRET, clock=clock) as server:
        async with server.client() as commbox:
            server.revoke(SECRET, grace=30.0)
            await commbox.get_user_objects(1)
            clock.now += 29.0
            await commbox.get_user_objects(2)
            clock.now += 1.0
            with pytest.raises(AuthenticationError):
                await commbox.get_user_objects(3)
    assert [r.outcome for r in server.requests] == ["ok", "ok", "revoked"]


async def test_rotation_keeps_the_old_key_for_the_grace() -> None:
    """rotate(): both keys work during the grace, then only the new one."""
    clock = VirtualClock()
    async with FakeCommbox(token=SECRET, clock=clock) as server:
        new = server.rotate(grace=10.0)
        assert server.token == new != SECRET
        async with server.client(token=SECRET) as old_client, server.client() as new_client:
            await old_client.get_user_objects(1)
            await new_client.get_user_objects(1)
            clock.now += 10.0
            with pytest.raises(AuthenticationError):
                await old_client.get_user_objects(2)
            await new_client.get_user_objects(2)
    account = server.accounts.account_of(SECRET)
    assert server.accounts.account_of(new) == account
    assert server.count("ok", account=account) == 3


async def test_each_account_has_its_own_bucket() -> None:
    """One account's empty bucket answers 429 to it alone; the other account is served."""
    clock = VirtualClock()
    async with FakeCommbox(token=SECRET, clock=clock) as server:
        slow = server.add_token("slow-key", throttling=Throttling(rate=1, burst=2))
        fast = server.add_token("fast-key", throttling=Throttling(rate=100, burst=50))
        settings = fast_client_settings(
            retries=dataclasses.replace(FAST_RETRIES, throttled_tries=1)
        )
        async with (
            AsyncCommbox(token="slow-key", base_url=server.url, **settings) as slow_client,
            AsyncCommbox(token="fast-key", base_url=server.url, **settings) as fast_client,
        ):
            slow_results = [r async for r in slow_client.fetch_many(range(1, 6), concurrency=1)]
            fast_results = [r async for r in fast_client.fetch_many(range(1, 6), concurrency=1)]
    assert sum(r.ok for r in slow_results) == 2  # its burst, then 429s (time stands still)
    assert all(r.ok for r in fast_results)
    assert server.count("throttled", account=slow) >= 3
    assert server.count("throttled", account=fast) == 0
    assert "slow-key" not in repr(server.requests)


async def test_an_echo_cut_short_or_escaped_is_scrubbed() -> None:
    """An echo of the key that the error's 1 KiB body cuts in two, or that JSON escapes (a
    plus as a unicode escape, a slash after a backslash): no part of the key stays."""
    token = "k3Y+ab/cd-SECRETTAIL"
    escaped = token.replace("+", "\\u002B").replace("/", "\\/")
    cut = b'{"description": "' + b"y" * 1000 + b"Authorization: Bearer " + token.encode() + b'"}'
    async with FakeCommbox(token=token) as server:
        server.script(7, (400, {}, cut))
        server.script(8, (400, {}, ('{"description": "Bearer ' + escaped + '"}').encode()))
        async with server.client() as commbox:
            errors = []
            for ident in (7, 8):
                with pytest.raises(CommboxError) as info:
                    await commbox.get_user_objects(ident)
                errors.append(info.value)
    for error in errors:
        texts = [*_texts_of(error), error.body.decode(), str(getattr(error, "description", ""))]
        assert not any(part in text for text in texts for part in ("k3Y", "SECRETTAIL"))
