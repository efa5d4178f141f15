"""The accounts of one client: per token, an Account and its shared calls, freed when unused.

``AsyncCommbox.with_token`` gives a view of the client for another token. Every view of one
account (the same string token, or the same ``account=`` name) shares one ``Member``: the
``Account`` (limiter, pause, retry budget, stats) and the ``SharedCalls`` (in-flight calls and
cache entries, keyed by the account's scope, so two accounts never see each other's pages).
Views and members are held here by weak references only: a view nobody holds is freed, and so
is its member when no view of that account is left; nothing here grows with the views made,
except that a freed account's limiter is kept while it still knows something the next view
needs (the server's pause for it, or a pace used within ``LOG_SPAN``: a view per web request
must neither send into a Retry-After nor start each request at a fresh limiter's full burst),
and that an account's own ``rate_limit`` is kept for the client's life. One name is one
account: another token under a name in use is refused. One fixed token is one server account
whatever its names: its live names share one limiter and one limit (``_aliases``).

Limiters: the client's own account uses the client's (the one given as ``limiter=``, or a
``LocalLimiter`` at ``rate_limit``). Another account gets a ``LocalLimiter`` of the same
configuration, or, when the client's limiter can derive one (``RedisLimiter.for_account``),
that limiter's key with the account's scope appended: one shared limit per account across
processes. Derived limiters hold connections, so they are kept until the client closes.
``with_token(rate_limit=)`` gives an account a limit of its own instead of the client's (a
customer's plan), kept for the client's life: a later view that gives none has it, one that
gives another while a view of the account lives is refused, and once none lives it is a plan
change (the account gets a new limiter at the new rate, and a pause in progress goes on: the
in-process one is carried over, a ``RedisLimiter``'s lives in Redis).
"""

from __future__ import annotations

import asyncio
import random
import weakref
from collections.abc import Callable
from typing import Any

from ._account import Account
from ._cache import Cache
from ._config import RateLimit, Retries
from ._errors import InvalidArgumentError
from ._pacing import PacingModel, PausePolicy
from ._sharing import SharedCalls
from ._throttle import Limiter, LocalLimiter
from ._tokens import TokenSource
from ._transport import Transport

__all__ = ["Member", "Members"]

#: Resting limiters held before the first sweep of those whose pause ended.
_SWEEP_MIN = 64


class Member:
    """What the views of one account share: its ``Account`` and its ``SharedCalls``."""

    __slots__ = ("__weakref__", "account", "own_plan", "rate_limit", "shared")

    def __init__(
        self, account: Account, shared: SharedCalls, rate_limit: RateLimit, *, own_plan: bool
    ) -> None:
        self.account = account
        self.shared = shared
        self.rate_limit = rate_limit  # the account's own (``Members._plans``), or the client's
        self.own_plan = own_plan  # whether it is the account's own


class Members:
    """The accounts of one client, by scope; see the module docstring."""

    def __init__(
        self,
        transport: Transport,
        *,
        base_url: str,
        retries: Retries,
        rng: random.Random,
        cache: Cache | None,
        share_calls: bool,
        rate_limit: RateLimit,
        limiter: Limiter | None,
    ) -> None:
        self._transport = transport
        self._base_url = base_url
        self._retries = retries
        self._rng = rng
        self._cache = cache
        self._share = share_calls
        self._rate_limit = rate_limit
        self._given = limiter
        self._members: weakref.WeakValueDictionary[str, Member] = weakref.WeakValueDictionary()
        # The live members of each fixed token that was ever given a name, by its fingerprint
        # (``cache_scope``): one token under several names is one server account, with one
        # limit and one limiter. Only named tokens are here, so a view per request of an
        # unnamed one costs nothing more.
        self._aliases: dict[str, weakref.WeakSet[Member]] = {}
        self._derived: dict[str, Limiter] = {}
        # Accounts given a rate_limit of their own, by scope: their plan outlives their views.
        self._plans: dict[str, RateLimit] = {}
        self._closing: set[asyncio.Task[None]] = set()  # derived limiters replaced by a plan
        # Limiters of accounts that no view holds, kept while paused (``_rest``); and the
        # in-process limiters handed out, until the loop rests them once the account is
        # freed (``_rest`` runs a turn later: a view made in between finds its account's
        # limiter here). Both by the key the limiter paces (``cache_scope``: a fixed token's
        # fingerprint, whatever its names; a provider's name), as derived limiters are.
        self._resting: dict[str, Limiter] = {}
        self._handed: dict[str, Limiter] = {}
        self._sweep_at = _SWEEP_MIN
        self._sweep_timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # set by open()
        self._own_scope = ""
        self._own_key = ""  # the client's own token's key (``cache_scope``)
        self.opened = False

    def member(
        self, source: TokenSource, *, own: bool = False, rate_limit: RateLimit | None = None
    ) -> Member:
        """The member of ``source``'s account: the live one, or a new one. ``rate_limit`` is
        the account's own limit (None: the client's)."""
        existing = self._members.get(source.scope)
        if existing is not None:
            if not source.same_account(existing.account.token):
                # Two keys under one name would share one cache and one limiter: one
                # customer's pages could be served to the other.
                raise InvalidArgumentError(
                    f"account {source.scope!r} is in use with another token; name each "
                    "account once, and pass a token provider for a key that rotates"
                )
            if rate_limit is not None and rate_limit != existing.rate_limit:
                # One account, one limiter: a second limit would be silently ignored.
                raise InvalidArgumentError(
                    f"account {source.scope!r} is in use with rate_limit "
                    f"{existing.rate_limit.max_rate:g}/s; give its views one limit"
                )
            return existing
        plan = rate_limit if rate_limit is not None else self._plans.get(source.scope)
        aliases = self._aliases_of(source)
        if aliases:
            alias = next(iter(list(aliases)), None)
            if rate_limit is None and alias is not None:
                # No limit given: the token's, as its live names have it.
                plan = alias.rate_limit if alias.own_plan else None
            _check_one_limit(aliases, plan or self._default_rate())
        account = Account(
            self._transport,
            base_url=self._base_url,
            token=source,
            retries=self._retries,
            rng=self._rng,
        )
        shared = SharedCalls(
            account.request,
            cache=self._cache,
            share=self._share,
            scope=source.cache_scope,
        )
        member = Member(account, shared, plan or self._default_rate(), own_plan=plan is not None)
        if own:
            self._own_scope, self._own_key = source.scope, source.cache_scope
        if self.opened:
            account.limiter = self._limiter_for(source, member)
        if rate_limit is not None and source.lasting:
            # New, or a plan change (no view lives); kept once its limiter is given. Not an
            # unnamed provider's: its scope is never made again, and a view per request
            # would leave a plan each.
            self._plans[source.scope] = rate_limit
        self._members[source.scope] = member
        if aliases is not None:
            aliases.add(member)
        if source.lasting:
            weakref.finalize(member, self._freed, source.cache_scope, account).atexit = False
        return member

    def _aliases_of(self, source: TokenSource) -> weakref.WeakSet[Member] | None:
        """The live members of ``source``'s fixed token under other names, when it has ever
        been named (else None: its one name is its scope, and ``member`` keeps that one)."""
        if source.refreshable:
            return None  # a provider's account is its name: its token is not known yet
        key = source.cache_scope
        aliases = self._aliases.get(key)
        if aliases is None and source.scope != key:
            # Named for the first time: the member under its bare fingerprint (a view of the
            # plain token, the client's own account) is the same account.
            aliases = self._aliases[key] = weakref.WeakSet()
            unnamed = self._members.get(key)
            if unnamed is not None:
                aliases.add(unnamed)
        return aliases

    def _live(self, key: str) -> bool:
        """Whether a view of the account whose limiter paces ``key`` lives, under any name."""
        return key in self._members or bool(self._aliases.get(key))

    def _forget_aliases(self, key: str) -> None:
        """Drop a token's set of names once none lives: nothing here grows with tokens."""
        aliases = self._aliases.get(key)
        if aliases is not None and not aliases:
            del self._aliases[key]

    def _freed(self, key: str, account: Account) -> None:
        """The finalizer of an account no view holds any more. It runs in whichever thread
        collected it, so it only hands the account's limiter to the loop (``_rest``)."""
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._rest, key, account.limiter)
        except RuntimeError:  # the loop is closed: nothing to keep
            self._handed.pop(key, None)

    def _rest(self, key: str, limiter: Limiter | None) -> None:
        """On the loop: keep a freed account's limiter while it knows something, for the
        account's next view (a view per web request must not send into the Retry-After the
        last one was given, nor start at a fresh limiter's full burst). Dropped once it knows
        nothing more; those are swept when the count doubles, so a free costs O(1) on
        average, and every LOG_SPAN while any is kept."""
        self._forget_aliases(key)
        if limiter is None or limiter is self._given or key in self._derived:
            return  # not ours to keep: the caller's, or a derived one (kept until close)
        if self._live(key) or self._handed.get(key) is not limiter:
            return  # a view of the account, under some name, has it (or took its pause)
        del self._handed[key]
        if not _remembers(limiter):
            return
        self._resting[key] = limiter
        if len(self._resting) > self._sweep_at:
            self._sweep()
        if self._sweep_timer is None:
            # Also swept when nothing else happens: a burst of freed accounts is not kept
            # for ever by a client that goes quiet.
            self._sweep_later(sweep=False)

    def _sweep(self) -> None:
        self._resting = {s: lim for s, lim in self._resting.items() if _remembers(lim)}
        self._sweep_at = max(_SWEEP_MIN, 2 * len(self._resting))

    def _sweep_later(self, *, sweep: bool = True) -> None:
        """Sweep (the timer's call), then come back in LOG_SPAN while any limiter is kept."""
        if sweep:
            self._sweep()
        self._sweep_timer = None
        if self._resting and self._loop is not None:
            self._sweep_timer = self._loop.call_later(PacingModel.LOG_SPAN, self._sweep_later)

    @property
    def derives(self) -> bool:
        """True when other accounts' limiters are derived from the client's (``RedisLimiter``)."""
        return callable(getattr(self._given, "for_account", None))

    def _default_rate(self) -> RateLimit:
        """The limit of an account given none: the client's limiter's, or ``rate_limit``."""
        config = getattr(self._given, "config", None)
        return config if isinstance(config, RateLimit) else self._rate_limit

    def _limiter_for(self, source: TokenSource, member: Member) -> Limiter:
        given, scope, key, rate_limit = (
            self._given,
            source.scope,
            source.cache_scope,
            member.rate_limit,
        )
        own_token = not source.refreshable and key == self._own_key
        if given is not None and (scope == self._own_scope or own_token):
            return given  # the client's own account, under its name or another
        derive: Callable[..., Limiter] | None = getattr(given, "for_account", None)
        if derive is not None and scope != self._own_scope:
            # A fixed token's key goes by its fingerprint even when the account is named
            # (cache_scope): two processes that name one token differently share its limit.
            # Kept by that key too: a name given a new fixed key (rotated by hand) must not
            # find the old key's limiter.
            limiter = self._derived.get(key)
            if limiter is not None and getattr(limiter, "config", rate_limit) != rate_limit:
                if any(m.account.limiter is limiter for m in list(self._members.values())):
                    # ``member`` refuses another limit for a live token; a provider named
                    # like a token's fingerprint could still meet one here.
                    raise _two_limits(limiter.config)  # type: ignore[attr-defined]
                self._close_soon(limiter)  # a plan change: its pause lives on in Redis
                limiter = None
            if limiter is None:
                # Only an account's own rate is passed: otherwise the derived limiter is the
                # client's in every setting (its fallback_rate too).
                own = {"rate_limit": rate_limit} if member.own_plan else {}
                limiter = self._derived[key] = derive(key, **own)
            return limiter
        handed = self._handed.get(key)
        if handed is not None and self._live(key):
            return handed  # the token's other name lives: one limiter, one pause
        handed, resting = self._handed.pop(key, None), self._resting.pop(key, None)
        limiter = self._local(handed if handed is not None else resting, rate_limit)
        if source.lasting:
            # Recorded on the loop as it is handed out (not when the account is freed, in
            # whichever thread): the account's next view finds it here at once.
            self._handed[key] = limiter
        return limiter

    def _local(self, previous: Limiter | None, rate_limit: RateLimit) -> Limiter:
        """An in-process limiter for an account whose last limiter was ``previous``: that one
        while it still knows something at this rate, else a new one (carrying its pause)."""
        if (
            previous is not None
            and _remembers(previous)
            and getattr(previous, "config", rate_limit) == rate_limit
        ):
            return previous  # the account's pause and pace go on
        limiter = LocalLimiter(
            rate_limit,
            pause_policy=PausePolicy(
                default_retry_after=self._retries.default_retry_after,
                max_retry_after=self._retries.max_retry_after,
            ),
            rng=self._rng,  # one generator for all: each of its own costs 2.5 kB a view
        )
        if isinstance(previous, LocalLimiter):
            # A plan change: the pace starts afresh at the new rate, but the server's pause
            # for this account still runs (a RedisLimiter's lives on in Redis).
            limiter.carry_pause(previous.pause_remaining(), previous.pause_asked)
        return limiter

    def open(self) -> None:
        """Give every live account its limiter (they are bound to the running loop)."""
        self.opened = True
        self._loop = asyncio.get_running_loop()
        for key in list(self._aliases):
            self._forget_aliases(key)  # names freed before open(), with no loop to tell
        for member in list(self._members.values()):
            if member.account.limiter is None:
                member.account.limiter = self._limiter_for(member.account.token, member)

    def cancel_all(self) -> list[asyncio.Task[Any]]:
        """Cancel every account's running shared calls; their tasks, to await."""
        tasks: list[asyncio.Task[Any]] = []
        for member in list(self._members.values()):
            tasks += member.shared.cancel_all()
        return tasks

    def _close_soon(self, limiter: Limiter) -> None:
        """Close a derived limiter that a plan change replaced (on the loop; ``aclose`` waits)."""
        assert self._loop is not None  # limiters are made once the client is open
        task = self._loop.create_task(limiter.aclose())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        """Release the limiters made here (a limiter given to the client stays its caller's)."""
        if self._sweep_timer is not None:
            self._sweep_timer.cancel()
            self._sweep_timer = None
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        limiters = [m.account.limiter for m in list(self._members.values())]
        limiters += self._derived.values()
        limiters += self._resting.values()
        limiters += self._handed.values()
        self._derived.clear()
        self._resting.clear()
        self._handed.clear()
        closed: set[int] = set()
        for limiter in limiters:
            if limiter is None or limiter is self._given or id(limiter) in closed:
                continue
            closed.add(id(limiter))
            await limiter.aclose()


def _check_one_limit(aliases: weakref.WeakSet[Member], rate_limit: RateLimit) -> None:
    """Refuse a second limit for one token: its names share one limiter, which has one rate.
    Checked when the view is made, before any request (and before ``open``, which would
    otherwise be the one to fail)."""
    for alias in list(aliases):
        if alias.rate_limit != rate_limit:
            raise _two_limits(alias.rate_limit)


def _two_limits(in_use: RateLimit) -> InvalidArgumentError:
    """The error of a second limit for a token whose names share one limiter."""
    return InvalidArgumentError(
        f"this token is in use by another account with rate_limit {in_use.max_rate:g}/s: "
        "give one token one limit"
    )


def _remembers(limiter: Limiter) -> bool:
    """Whether a freed account's limiter knows what a new one would not: a pause in progress,
    or (ours) a pace used within the last ``LOG_SPAN`` s, what the pacing model keeps."""
    if limiter.pause_remaining() > 0:
        return True
    idle = getattr(limiter, "idle", None)
    return idle is not None and idle() < PacingModel.LOG_SPAN
