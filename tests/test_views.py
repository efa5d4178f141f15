"""Many tokens, one pool: ``with_token`` views and the checks of the event loop."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from waiting import settle, until

from commbox_async import (
    AsyncCommbox,
    Cache,
    ClientClosedError,
    CommboxError,
    InvalidArgumentError,
    RateLimitError,
)
from commbox_async._protocol import token_fingerprint
from commbox_async.testing import FAST_RETRIES, FakeCommbox, Throttling

if TYPE_CHECKING:
    from redis_server import RedisServer

pytest_plugins = ["redis_server"]

A, B = "key-of-account-a", "key-of-account-b"


async def _server() -> FakeCommbox:
    server = FakeCommbox()
    server.add_token(A, account="a")
    server.add_token(B, account="b")
    return await server.start()


async def test_views_share_the_session_and_send_their_own_token() -> None:
    """A view's calls go over its client's session, each with the view's own token."""
    server = await _server()
    try:
        async with server.client() as commbox:
            view_a, view_b = commbox.with_token(A), commbox.with_token(B)
            await commbox.get_user_objects(1)
            await view_a.get_user_objects(1)
            results = [r async for r in view_b.fetch_many([1, 2, 3])]
            assert view_a._transport.session is commbox._transport.session
            assert view_b._transport is commbox._transport
    finally:
        await server.stop()
    assert all(r.ok for r in results)
    assert server.count("ok", account="a") == 1
    assert server.count("ok", account="b") == 3
    assert server.count("ok", account=server.accounts.account_of(server.token)) == 1


async def test_a_429_pauses_that_account_only() -> None:
    """Account a's 429 (Retry-After 30) pauses a; b's calls go out with no wait."""
    server = await _server()
    server.accounts.limit("a", Throttling(rate=0.001, burst=1, retry_after="30"))
    retries = dataclasses.replace(FAST_RETRIES, max_retry_after=60.0, default_retry_after=30.0)
    try:
        async with server.client(retries=retries) as commbox:
            view_a, view_b = commbox.with_token(A), commbox.with_token(B)
            await view_a.get_user_objects(1)  # the bucket's one token
            with pytest.raises(RateLimitError):
                await view_a.get_user_objects(2, deadline=1.0)  # a pause of 30 s > deadline
            assert view_a.limiter.pause_remaining() > 20.0
            assert view_b.limiter.pause_remaining() == 0.0
            assert commbox.limiter.pause_remaining() == 0.0
            await view_b.get_user_objects(2)
            assert view_a.stats.throttled == 1 and view_b.stats.throttled == 0
            assert view_b.stats.successes == 1 and view_a.stats.successes == 1
    finally:
        await server.stop()


async def test_accounts_never_see_each_others_pages() -> None:
    """With a cache, each account gets its own pages: one request per account, then hits."""
    server = await _server()
    try:
        async with server.client(cache=Cache(ttl=60.0)) as commbox:
            view_a, view_b = commbox.with_token(A), commbox.with_token(B)
            for _ in range(3):
                await view_a.get_user_objects(7)
                await view_b.get_user_objects(7)
            counts = await view_a.unread_counts([7])
    finally:
        await server.stop()
    assert counts
    assert server.count("ok", account="a") == 1
    assert server.count("ok", account="b") == 1


async def test_views_of_one_token_share_one_account() -> None:
    """Two views of the same token share its limiter and stats; another token's do not."""
    server = await _server()
    try:
        async with server.client() as commbox:
            first, second, other = (
                commbox.with_token(A),
                commbox.with_token(A),
                commbox.with_token(B),
            )
            await first.get_user_objects(1)
            assert second.stats.requests == 1
            assert first.limiter is second.limiter is not other.limiter
            assert commbox.with_token(server.token).limiter is commbox.limiter
    finally:
        await server.stop()


async def test_an_account_can_have_a_limit_of_its_own() -> None:
    """with_token(rate_limit=) gives the account its limiter at that rate (a customer's plan);
    its views must agree on it; a bad value is refused before any request."""
    server = await _server()
    try:
        async with server.client(rate_limit=250) as commbox:
            slow = commbox.with_token(A, rate_limit=5)
            plain = commbox.with_token(B)
            await slow.get_user_objects(1)
            assert slow.limiter.config.max_rate == 5  # type: ignore[attr-defined]
            assert plain.limiter.config.max_rate == 250  # type: ignore[attr-defined]
            assert "rate_limit=5/s" in repr(slow)
            assert commbox.with_token(A).limiter is slow.limiter  # no limit: the account's
            assert commbox.with_token(A, rate_limit=5).limiter is slow.limiter
            with pytest.raises(InvalidArgumentError, match="rate_limit 5/s"):
                commbox.with_token(A, rate_limit=6)
            with pytest.raises(InvalidArgumentError, match="rate_limit"):
                commbox.with_token(B, rate_limit=-1)
            with pytest.raises(InvalidArgumentError, match="250/s"):
                commbox.with_token(server.token, rate_limit=9)  # the client's own account
    finally:
        await server.stop()
    assert server.count("ok", account="a") == 1
    assert server.count("ok", account="b") == 0


async def test_views_of_an_unnamed_provider_with_a_limit_leave_no_plan_behind() -> None:
    """A view per request of an unnamed provider with rate_limit= has that limit, and leaves
    nothing behind once freed (each left a plan under a scope never made again: 1,000 views,
    1,000 plans)."""
    server = await _server()
    try:
        async with server.client(rate_limit=250) as commbox:
            for n in range(50):
                view = commbox.with_token(lambda: A, rate_limit=5)
                assert view.limiter.config.max_rate == 5  # type: ignore[attr-defined]
                if n == 0:
                    await view.get_user_objects(1)
                del view
            gc.collect()
            assert commbox._members._plans == {}
    finally:
        await server.stop()
    assert server.count("ok", account="a") == 1


async def test_a_client_with_no_account_of_its_own() -> None:
    """accounts_only=True: no token, its own calls refused before any request, its views
    served as usual; a token given with it is refused."""
    server = await _server()
    try:
        commbox = AsyncCommbox(base_url=server.url, accounts_only=True, retries=FAST_RETRIES)
        async with commbox:
            with pytest.raises(InvalidArgumentError, match="with_token"):
                await commbox.get_user_objects(1)
            with pytest.raises(InvalidArgumentError, match="with_token"):
                [r async for r in commbox.fetch_many([1])]
            view = commbox.with_token(A)
            assert (await view.get_user_objects(1)).unread_total >= 0
    finally:
        await server.stop()
    assert len(server.requests) == 1
    with pytest.raises(InvalidArgumentError, match="no token"):
        AsyncCommbox(token=A, accounts_only=True)


async def test_a_name_like_the_clients_own_provider_scope_is_refused() -> None:
    """An unnamed provider's account is "provider-<n>" inside the client: a view named so
    would be handed that account, its token and its pages. Refused before any request."""
    commbox = AsyncCommbox(token=lambda: A, base_url="http://127.0.0.1:9")
    own = commbox._account.token.scope
    with pytest.raises(InvalidArgumentError, match="the client's own"):
        commbox.with_token(lambda: B, account=own)
    assert commbox.with_token(lambda: B, account="provider-acme")._account is not commbox._account


async def test_no_client_and_no_token_is_ever_pickled() -> None:
    """A pickle would be a copy of the token on disk or on the wire: refused, plainly."""
    import pickle

    commbox = AsyncCommbox(token=A, base_url="http://127.0.0.1:9")
    view = commbox.with_token(B)
    for thing in (commbox, view, commbox._account.token, commbox._account.token.headers):
        with pytest.raises(TypeError, match="never pickled"):
            pickle.dumps(thing)


async def test_an_unused_view_is_freed() -> None:
    """A view nobody holds is freed, and with it its account; the client keeps no trace."""
    server = await _server()
    try:
        async with server.client() as commbox:
            view = commbox.with_token(A)
            await view.get_user_objects(1)
            view_ref, account_ref = weakref.ref(view), weakref.ref(view._account)
            del view
            gc.collect()
            assert view_ref() is None and account_ref() is None
            assert len(commbox._views) == 0
            assert len(commbox._members._members) == 1  # the client's own account
    finally:
        await server.stop()


async def test_a_freed_accounts_pause_holds_for_its_next_view() -> None:
    """A view per web request: the view that drew a 429 is freed, and the next view of that
    account waits the server's pause instead of sending into it (here the pause outlasts the
    call's deadline, so the call fails at once without a request)."""
    server = FakeCommbox()
    account = server.add_token(A, throttling=Throttling(rate=0.01, burst=1, retry_after="30"))
    await server.start()
    try:
        # The server's Retry-After honoured as sent (FAST_RETRIES caps it at 10 ms).
        retries = dataclasses.replace(FAST_RETRIES, max_retry_after=60.0)
        async with server.client(retries=retries) as commbox:
            outcomes = []
            for ident in range(1, 5):
                view = commbox.with_token(A)  # one view per request, freed after it
                try:
                    await view.get_user_objects(ident, deadline=2.0)
                    outcomes.append("ok")
                except CommboxError as exc:
                    outcomes.append(type(exc).__name__)
                del view

                def freed() -> bool:
                    gc.collect()
                    return len(commbox._members._members) == 1  # the client's own only

                await until(freed, "the view's account freed")
                await settle()  # its limiter is handed to the loop (the finalizer may run
                # in any thread), kept from the next turn on
    finally:
        await server.stop()
    assert outcomes == ["ok", "RateLimitError", "CommboxTimeoutError", "CommboxTimeoutError"]
    assert server.count(account=account) == 2


async def test_one_name_is_one_account() -> None:
    """Another fixed token under an account name in use is refused (the two would share a
    cache: one customer's pages served to the other); the same token, or providers, are not."""
    server = await _server()
    try:
        async with server.client() as commbox:
            first = commbox.with_token(A, account="acme")
            assert commbox.with_token(A, account="acme").limiter is first.limiter
            with pytest.raises(InvalidArgumentError, match="'acme' is in use with another token"):
                commbox.with_token(B, account="acme")
            with pytest.raises(InvalidArgumentError, match="in use with another token"):
                commbox.with_token(lambda: B, account="acme")
            provided = commbox.with_token(lambda: A, account="vault")
            assert commbox.with_token(lambda: A, account="vault").limiter is provided.limiter
            await first.get_user_objects(1)
    finally:
        await server.stop()
    assert [r.account for r in server.requests] == ["a"]


async def test_one_token_under_several_names_has_one_limiter_and_one_limit() -> None:
    """One fixed token named twice (and the client's own token named) is one server account:
    one limiter, so a 429 for one name pauses the others, and one limit, so another is refused
    when the view is made, before open() and before any request. Once no name of it lives,
    another limit is a plan change. Before, each name had a limiter of its own: n names sent
    at n times the token's rate, and a 429 paused one name only."""
    server = await _server()
    server.accounts.limit("a", Throttling(rate=0.001, burst=1, retry_after="30"))
    retries = dataclasses.replace(FAST_RETRIES, max_retry_after=60.0, default_retry_after=30.0)
    commbox = server.client(retries=retries, rate_limit=250)
    try:
        # Before open(): the second limit is refused at once, so open() cannot fail on it.
        first = commbox.with_token(A, account="acme")
        with pytest.raises(InvalidArgumentError, match="one token one limit"):
            commbox.with_token(A, account="acme-eu", rate_limit=5)
        async with commbox:
            second = commbox.with_token(A, account="acme-eu")
            plain = commbox.with_token(A)
            assert first.limiter is second.limiter is plain.limiter
            assert commbox.with_token(server.token, account="mine").limiter is commbox.limiter
            with pytest.raises(InvalidArgumentError, match="250/s: give one token one limit"):
                commbox.with_token(server.token, account="mine-too", rate_limit=9)
            await first.get_user_objects(1)  # the bucket's one token
            with pytest.raises(RateLimitError):
                await second.get_user_objects(2, deadline=1.0)  # paused 30 s > deadline
            assert first.limiter.pause_remaining() > 20.0
            assert second.stats.throttled == 1 and first.stats.successes == 1
            del first, second, plain
            aliases = commbox._members._aliases[token_fingerprint(A)]

            def freed() -> bool:
                gc.collect()
                return len(aliases) == 0

            await until(freed, "every name of the token freed")
            await settle()  # their limiter rests, paused
            # No name of the token lives: another limit is a plan change, with the pause kept.
            changed = commbox.with_token(A, account="acme", rate_limit=5)
            assert changed.limiter.config.max_rate == 5  # type: ignore[attr-defined]
            assert changed.limiter.pause_remaining() > 20.0
    finally:
        await commbox.aclose()
        await server.stop()
    assert server.count("throttled", account="a") == 1


async def test_a_tokens_pause_stays_with_the_token_not_with_its_names() -> None:
    """The limiter of a token named twice is the token's: another token later given one of
    its names gets a fresh one (not the token's pause), and once every name is freed the
    token's next name, or its plain view, still waits out its pause. A name with no
    rate_limit takes the token's own. Nothing is kept per token once its names are freed."""
    server = await _server()
    server.accounts.limit("a", Throttling(rate=0.001, burst=1, retry_after="30"))
    retries = dataclasses.replace(FAST_RETRIES, max_retry_after=60.0, default_retry_after=30.0)
    try:
        async with server.client(retries=retries) as commbox:
            members = commbox._members
            key = token_fingerprint(A)

            async def free(condition: Callable[[], bool], what: str) -> None:
                def freed() -> bool:
                    gc.collect()
                    return condition()

                await until(freed, what)
                await settle()  # the loop rests what was freed

            x, y = commbox.with_token(A, account="x"), commbox.with_token(A, account="y")
            await x.get_user_objects(1)  # the bucket's one token
            with pytest.raises(RateLimitError):
                await x.get_user_objects(2, deadline=1.0)
            paused = y.limiter
            del x
            await free(lambda: "x" not in members._members, "x freed")
            other = commbox.with_token(B, account="x")  # another token under a freed name
            assert other.limiter is not paused and other.limiter.pause_remaining() == 0.0
            del y
            await free(lambda: key not in members._aliases, "every name of A freed")
            z = commbox.with_token(A, account="z")  # the token again, under a new name
            assert z.limiter is paused and z.limiter.pause_remaining() > 20.0
            assert commbox.with_token(A).limiter is paused
            del z
            await free(lambda: key not in members._aliases, "every name of A freed again")
            planned = commbox.with_token(A, account="p", rate_limit=5)
            inherited = commbox.with_token(A, account="q")
            assert inherited.limiter is planned.limiter
            assert inherited.limiter.config.max_rate == 5  # type: ignore[attr-defined]
            assert inherited.limiter.pause_remaining() > 20.0  # a plan change keeps the pause
    finally:
        await server.stop()
    assert server.count("throttled", account="a") == 1


async def test_a_name_given_to_another_token_later_gets_none_of_its_pages() -> None:
    """A fixed token's cached pages go by its own fingerprint, not by the account's name: a
    view of another token under that name, once the first is freed, fetches its own."""
    server = await _server()
    try:
        async with server.client(cache=Cache(ttl=60)) as commbox:
            first = commbox.with_token(A, account="acme")
            await first.get_user_objects(1)
            del first
            gc.collect()
            await commbox.with_token(B, account="acme").get_user_objects(1)
    finally:
        await server.stop()
    assert [r.account for r in server.requests] == ["a", "b"]


async def test_freed_accounts_are_kept_while_paused_only() -> None:
    """The limiters kept for freed accounts: handed to the loop (the finalizer may run in
    another thread), kept while paused (or, ours, used within LOG_SPAN), swept once they know
    nothing more; an unnamed provider's account, which no later view can name again, is not
    kept."""
    server = await _server()
    try:
        async with server.client() as commbox:
            members = commbox._members

            class Paused:
                remaining = 30.0

                def pause_remaining(self) -> float:
                    return self.remaining

                async def aclose(self) -> None:
                    return None

            paused = [Paused() for _ in range(200)]
            account = commbox._account
            own = account.limiter
            for n, limiter in enumerate(paused):
                account.limiter = limiter  # type: ignore[assignment]
                members._handed[f"acct-{n}"] = limiter  # type: ignore[assignment]  # handed out
                freeing = threading.Thread(target=members._freed, args=(f"acct-{n}", account))
                freeing.start()
                freeing.join()
            account.limiter = own
            assert members._resting == {}  # not yet: on the loop
            await settle()
            assert len(members._resting) == 200
            for limiter in paused[:190]:
                limiter.remaining = 0.0

            def rest(scope: str, limiter: object) -> None:
                # as _limiter_for records it when it hands it out
                members._handed[scope] = limiter  # type: ignore[assignment]
                members._rest(scope, limiter)  # type: ignore[arg-type]

            for n in range(200, 400):
                rest(f"acct-{n}", paused[-1])
            assert len(members._resting) < 300  # the over pauses swept, as it grew
            view = commbox.with_token(lambda: A)
            assert not view._account.token.lasting

            class Used(Paused):
                remaining = 0.0
                since = 5.0

                def idle(self) -> float:
                    return self.since

            recent, old = Used(), Used()
            old.since = 31.0  # beyond what the pacing model keeps (LOG_SPAN, 30 s)
            rest("recent", recent)
            rest("old", old)
            assert members._resting.get("recent") is recent and "old" not in members._resting
            assert members._sweep_timer is not None  # a quiet client sweeps them too
            recent.since = 31.0
            members._sweep_later()  # what the timer runs, LOG_SPAN later
            assert "recent" not in members._resting
    finally:
        await server.stop()


async def test_a_view_per_request_keeps_the_accounts_plan_and_pace() -> None:
    """One view per request, each freed before the next is made: the account keeps its own
    rate_limit and its limiter (its schedule and what its pacing learned), rather than
    starting each request at a fresh limiter's full burst, at the client's rate."""
    server = await _server()
    try:
        async with server.client(rate_limit=250) as commbox:
            view = commbox.with_token(A, rate_limit=5)
            await view.get_user_objects(1)
            first = view.limiter
            del view
            gc.collect()
            await settle()  # the freed account's limiter is handed to the loop
            for ident in (2, 3):
                view = commbox.with_token(A)  # no rate_limit: the account's plan
                await view.get_user_objects(ident)
                assert view.limiter is first and first.config.max_rate == 5  # type: ignore[attr-defined]
                del view
                gc.collect()
                await settle()
    finally:
        await server.stop()


@pytest.mark.parametrize("rested", [True, False], ids=["rested", "made-before-the-loop-rests-it"])
async def test_a_plan_change_keeps_the_accounts_pause(rested: bool) -> None:
    """An account paused by the server (Retry-After 30) and freed, then made again with
    another rate_limit: a new limiter at the new rate, still paused, so the next call waits
    rather than sending into the server's Retry-After. Also when the new view is made before
    the loop has taken the freed account's limiter in (``rested`` False)."""
    server = await _server()
    server.accounts.limit("a", Throttling(rate=0.001, burst=1, retry_after="30"))
    retries = dataclasses.replace(FAST_RETRIES, max_retry_after=60.0, default_retry_after=30.0)
    try:
        async with server.client(retries=retries) as commbox:
            view = commbox.with_token(A, rate_limit=5)
            await view.get_user_objects(1)  # the bucket's one token
            with pytest.raises(RateLimitError):
                await view.get_user_objects(2, deadline=1.0)  # a pause of 30 s > deadline
            first, scope = view.limiter, view._account.token.scope
            del view
            await settle()  # the failed call's task lets go of the view
            gc.collect()
            if rested:
                await settle()  # the freed account's limiter is handed to the loop
            assert (scope in commbox._members._resting) is rested
            view = commbox.with_token(A, rate_limit=8)  # a plan change
            limiter = view.limiter
            assert limiter is not first
            assert limiter.config.max_rate == 8 and limiter.current_rate == 8  # type: ignore[attr-defined]
            assert limiter.pause_remaining() > 20.0
            assert limiter.pauses == 1 and limiter.pause_asked == 30.0  # type: ignore[attr-defined]
            with pytest.raises(CommboxError, match="paused for"):
                await view.get_user_objects(3, deadline=1.0)  # refused before it is sent
    finally:
        await server.stop()
    assert server.count("throttled", account="a") == 1


async def test_a_view_made_before_the_loop_rests_the_freed_limiter_takes_it() -> None:
    """The last view of an account freed, and a new one made in the same loop turn (before
    the loop runs what the finalizer handed it): the new view has the account's limiter, and
    that limiter is not then also kept as a freed account's."""
    server = await _server()
    try:
        async with server.client() as commbox:
            view = commbox.with_token(A)
            await view.get_user_objects(1)
            first, scope = view.limiter, view._account.token.scope
            del view
            gc.collect()  # freed: its finalizer hands the limiter to the loop, to run later
            view = commbox.with_token(A)
            assert view.limiter is first
            await settle()  # now the loop runs it
            assert scope not in commbox._members._resting
            await view.get_user_objects(2)
    finally:
        await server.stop()


async def test_closing_the_client_closes_its_views() -> None:
    """A view's fan-out stops when its client closes, and the view reads closed."""
    server = await _server()
    server.latency = 5.0  # every call stalls until the server stops
    try:
        commbox = server.client()
        await commbox.open()
        view = commbox.with_token(A)
        job = view.fetch_many(range(1, 100), concurrency=4)
        waiting = asyncio.ensure_future(job.__anext__())
        await until(lambda: server.stalling == 4, "four calls in flight")
        await commbox.aclose()
        with pytest.raises(ClientClosedError):
            await waiting
        assert view.closed
        with pytest.raises(ClientClosedError):
            await view.get_user_objects(1)
        with pytest.raises(ClientClosedError):
            commbox.with_token(B)
    finally:
        await server.stop()


async def test_a_views_close_releases_only_its_own() -> None:
    """Closing a view leaves its client and the other views working."""
    server = await _server()
    try:
        async with server.client() as commbox:
            async with commbox.with_token(A) as view_a:
                await view_a.get_user_objects(1)
            assert view_a.closed
            view_b = commbox.with_token(B)
            await view_b.get_user_objects(1)
            await commbox.get_user_objects(1)
            with pytest.raises(ClientClosedError):
                await view_a.get_user_objects(1)
    finally:
        await server.stop()


async def test_a_view_made_before_open_opens_with_its_client() -> None:
    """A view made from a client not yet open cannot be used until the client opens."""
    server = await _server()
    try:
        commbox = server.client()
        view = commbox.with_token(A)
        with pytest.raises(ClientClosedError, match="open the client"):
            await view.open()
        async with commbox:
            await view.get_user_objects(1)
    finally:
        await server.stop()


async def test_a_view_with_a_provider() -> None:
    """A view takes a provider too, and refreshes its own token after a 401."""
    tokens = [A, "key-of-account-a-2"]
    fake = await _server()
    try:
        async with fake.client() as commbox:
            view = commbox.with_token(lambda: tokens[-1] if fake.count("revoked") else tokens[0])
            await view.get_user_objects(1)
            fake.rotate(A, new_token=tokens[1])
            await view.get_user_objects(2)
    finally:
        await fake.stop()
    assert fake.count("revoked") == 1
    assert fake.count("ok", account="a") == 2


async def test_views_derive_a_redis_key_per_account(redis_server: RedisServer) -> None:
    """With a RedisLimiter, each account's view gets its key plus the token's fingerprint."""
    from commbox_async.redis import RedisLimiter

    server = await _server()
    try:
        async with RedisLimiter.from_url(
            redis_server.url, key="cbx:t", rate_limit=1000, fallback_rate=3
        ) as limiter:
            async with server.client(limiter=limiter) as commbox:
                view = commbox.with_token(A)
                await view.get_user_objects(1)
                derived = view.limiter
                assert isinstance(derived, RedisLimiter)
                assert derived.key == f"cbx:t:account:{token_fingerprint(A)}"
                assert A not in derived.key
                assert commbox.limiter is limiter
                # The client's own token under a name is the client's own account: its key.
                assert commbox.with_token(server.token, account="mine").limiter is limiter
                named = commbox.with_token(lambda: B, account="acct-b")
                assert named.limiter.key == "cbx:t:account:acct-b"  # type: ignore[attr-defined]
                # A fixed token named: still its fingerprint (another process may name it
                # otherwise, or not at all, and must share its limit).
                fixed = commbox.with_token("token-c-9f1e", account="acct-c")
                fingerprint = token_fingerprint("token-c-9f1e")
                assert fixed.limiter.key == f"cbx:t:account:{fingerprint}"  # type: ignore[attr-defined]
                with pytest.raises(InvalidArgumentError, match="account="):
                    commbox.with_token(lambda: B)
                # An account's own limit: its derived key at that rate, shared with the
                # other processes that derive it.
                planned = commbox.with_token("token-d-71aa", rate_limit=7)
                assert planned.limiter.config.max_rate == 7  # type: ignore[attr-defined]
                assert planned.limiter.key.endswith(token_fingerprint("token-d-71aa"))  # type: ignore[attr-defined]
                assert planned.limiter.fallback_rate == 7 / 4  # type: ignore[attr-defined]
                first = planned.limiter
                del planned
                gc.collect()  # the view is gone; its plan and derived limiter stay
                again = commbox.with_token("token-d-71aa")  # no rate_limit: the account's
                assert again.limiter is first
                del again
                gc.collect()
                # With no view alive, another rate_limit is a plan change: a new limiter on
                # the same key (the pause, in Redis, is kept), the old one closed.
                changed = commbox.with_token("token-d-71aa", rate_limit=8)
                assert changed.limiter.config.max_rate == 8  # type: ignore[attr-defined]
                assert changed.limiter.key == first.key  # type: ignore[attr-defined]
                await until(lambda: first._closed, "the replaced limiter closed")  # type: ignore[attr-defined]
                # An account with no rate of its own keeps every setting of the client's
                # limiter, its fallback rate too.
                assert view.limiter.fallback_rate == limiter.fallback_rate  # type: ignore[attr-defined]
                # A name given a new fixed key (its last view freed, the key replaced by
                # hand) is paced on the new key's limiter, as any other process pacing that
                # key is (it kept the old key's: two Redis limits for one key).
                old = commbox.with_token("token-e-1111", account="acct-e")
                assert old.limiter.key == f"cbx:t:account:{token_fingerprint('token-e-1111')}"  # type: ignore[attr-defined]
                del old
                gc.collect()
                new = commbox.with_token("token-e-2222", account="acct-e")
                assert new.limiter.key == f"cbx:t:account:{token_fingerprint('token-e-2222')}"  # type: ignore[attr-defined]
                # One fixed token under two names: one key, one limiter (and one pause).
                other = commbox.with_token("token-e-2222", account="acct-e-too")
                assert other.limiter is new.limiter
                # ... and one limit: another is refused, the live one's limiter kept open.
                planned = commbox.with_token("token-f-3333", account="f1", rate_limit=5)
                with pytest.raises(InvalidArgumentError, match="one token one limit"):
                    commbox.with_token("token-f-3333", account="f2", rate_limit=10)
                await settle()
                assert not planned.limiter._closed  # type: ignore[attr-defined]
            # With no account of its own, every account, the one a parent would have had
            # too, gets its derived key: any process reaches it the same way.
            parent = AsyncCommbox(base_url=server.url, limiter=limiter, accounts_only=True)
            async with parent:
                only = parent.with_token(server.token)
                await only.get_user_objects(1)
                assert only.limiter.key == f"cbx:t:account:{token_fingerprint(server.token)}"  # type: ignore[attr-defined]
            assert derived._closed
            assert derived._closed  # the client closed the limiter it derived
            assert not limiter._closed  # and left the one it was given
    finally:
        await server.stop()


# --- the event loop ------------------------------------------------------------------------
def test_a_client_used_from_another_loop_says_so() -> None:
    """A client opened in one event loop and called, closed or given a view from another
    fails with a clear error (and can still be closed in its own loop)."""
    first = asyncio.new_event_loop()
    try:
        commbox = AsyncCommbox(token="t", base_url="http://127.0.0.1:9")
        first.run_until_complete(commbox.open())

        async def elsewhere() -> None:
            await commbox.get_user_objects(1)

        async def close_elsewhere() -> None:
            await commbox.aclose()

        async def view_elsewhere() -> None:
            commbox.with_token("u")

        for wrong in (elsewhere, close_elsewhere, view_elsewhere):
            with pytest.raises(ClientClosedError, match="another event loop"):
                asyncio.run(wrong())
        first.run_until_complete(commbox.aclose())
    finally:
        first.close()


async def test_a_paused_account_holds_no_connection() -> None:
    """While account a waits out a 30 s pause, b's job runs through a pool of 2 connections."""
    from commbox_async import PoolConfig

    server = await _server()
    server.accounts.limit("a", Throttling(rate=0.001, burst=1, retry_after="30"))
    retries = dataclasses.replace(FAST_RETRIES, max_retry_after=60.0, default_retry_after=30.0)
    try:
        async with server.client(retries=retries, pool=PoolConfig(limit=2)) as commbox:
            view_a, view_b = commbox.with_token(A), commbox.with_token(B)
            await view_a.get_user_objects(1)  # the bucket's one token
            job_a = asyncio.ensure_future(_drain(view_a, range(2, 40), 16))
            await until(lambda: view_a.limiter.pause_remaining() > 0, "a paused")
            results = [r async for r in view_b.fetch_many(range(1, 41), concurrency=16)]
            assert all(r.ok for r in results) and len(results) == 40
            assert not job_a.done()  # a is still waiting, holding nothing b needed
            assert view_a.stats.in_flight == 0
    finally:
        await server.stop()
    assert job_a.done()


async def _drain(view: AsyncCommbox, ids: range, concurrency: int) -> int:
    return len([r async for r in view.fetch_many(ids, concurrency=concurrency)])
