"""An account's token: a fixed string, or a provider asked once for a fresh one after a 401.

``AsyncCommbox(token=...)`` takes a string, or a callable (plain or async) that returns the
current token, for keys that rotate. ``TokenSource`` holds the headers that carry the token
(built by ``_protocol.build_headers``, where the token lives) and, for a provider, the one
refresh that every call refused together shares:

- each attempt notes the source's ``epoch`` when it is sent;
- a 401 on an attempt sent in the current epoch asks the provider (one task; the other calls
  refused meanwhile wait for it); a 401 on an attempt sent before the last refresh ended takes
  that refresh's answer without asking again;
- the refresh succeeds when the provider returns a different token: the failed calls are sent
  once more. The same token back, or a provider that fails (or has not answered within
  ``PROVIDER_TIMEOUT``), leaves the 401 final; the next 401 asks again.

Nothing here logs, formats or keeps the token outside the headers (whose ``Authorization``
value hides itself from ``repr``).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
from collections.abc import Awaitable, Callable, Mapping

from ._errors import AuthenticationError, InvalidArgumentError
from ._protocol import check_token, token_fingerprint
from ._waiting import wait_for

__all__ = ["Token", "TokenProvider", "TokenSource", "no_token"]

logger = logging.getLogger("commbox_async")

#: A callable, plain or async, that returns the current token.
TokenProvider = Callable[[], str | Awaitable[str]]
#: What ``token=`` accepts: the token itself, or a provider of it.
Token = str | TokenProvider
MakeHeaders = Callable[[str], Mapping[str, str]]

#: Seconds an async provider may take to answer before it is given up: the calls waiting for
#: it get their 401, and the next 401 asks again (a provider that hung was otherwise asked
#: never again, and the account failed every call until the process restarted).
PROVIDER_TIMEOUT = 30.0

_provider_count = 0
_PROVIDER_SCOPE = "provider-"
_INTERNAL_SCOPE = re.compile(r"provider-[0-9]+")


def _scope_of_provider() -> str:
    """A name no other provider ever gets in this process (an ``id`` could be reused)."""
    global _provider_count
    _provider_count += 1
    return f"{_PROVIDER_SCOPE}{_provider_count}"


def no_token(why: str) -> AuthenticationError:
    """The error of a call that has no token to send: the provider ``why``."""
    return AuthenticationError(f"the token provider {why}; nothing was sent", status=401)


class TokenSource:
    """The token of one account, as the headers that carry it; see the module docstring."""

    __slots__ = (
        "_make",
        "_provider",
        "_renewed",
        "_renewing",
        "cache_scope",
        "epoch",
        "headers",
        "refused",
        "scope",
    )

    def __init__(self, token: object, make_headers: MakeHeaders) -> None:
        self._make = make_headers
        self._provider: TokenProvider | None = None
        self.headers: Mapping[str, str] | None = None
        if isinstance(token, str):
            self.headers = make_headers(check_token(token))
            #: The account's name among the client's (``with_token(account=)`` may rename it).
            self.scope = token_fingerprint(token)
            #: What keys its cache entries: a fixed token's own fingerprint, whatever the
            #: account's name, so that another token later given that name never gets them.
            self.cache_scope = self.scope
        elif callable(token):
            self._provider = token
            self.scope = self.cache_scope = _scope_of_provider()
        else:
            raise InvalidArgumentError(
                "token must be a str or a callable (plain or async) that returns one"
            )
        #: Refreshes ended so far (each ends an epoch): attempts remember the one they began in.
        self.epoch = 0
        self._renewing: asyncio.Future[bool] | None = None
        self._renewed = False
        #: Whether the last refresh that ended gave no fresh token (the same one back, a
        #: provider that failed or did not answer), and no page has come back with the key
        #: since: it is taken as refused.
        self.refused = False

    def __repr__(self) -> str:
        kind = "provider" if self._provider is not None else "fixed"
        return f"<TokenSource {kind} scope={self.scope} epoch={self.epoch}>"

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a CommBox token is never pickled")

    def same_account(self, other: TokenSource) -> bool:
        """Whether ``other`` may stand for the same account under one name: the same fixed
        token, or providers both (a provider's token is not known before it is asked)."""
        if self._provider is not None or other._provider is not None:
            return self._provider is not None and other._provider is not None
        assert self.headers is not None and other.headers is not None
        return self.headers["Authorization"] == other.headers["Authorization"]

    def name(self, account: str) -> None:
        """Call this account ``account`` (a provider's cache entries go by the name too: its
        token is not known before it is asked, and changes when the key rotates)."""
        if _INTERNAL_SCOPE.fullmatch(account):
            # An unnamed provider's own scope: that name would be given its account and token.
            raise InvalidArgumentError(
                f"account names like {account!r} are the client's own; choose another"
            )
        self.scope = account
        if self._provider is not None:
            self.cache_scope = account

    @property
    def lasting(self) -> bool:
        """Whether another source can stand for this account later: a fixed token's, or a
        named one (an unnamed provider's scope is its own, never made again)."""
        return self._provider is None or not self.scope.startswith(_PROVIDER_SCOPE)

    def accepted(self, epoch: int) -> None:
        """An attempt sent in ``epoch`` was answered with its page: the key in use works."""
        if epoch == self.epoch:
            self.refused = False

    @property
    def refreshable(self) -> bool:
        """True when a provider can be asked for a fresh token."""
        return self._provider is not None

    async def first(self) -> Mapping[str, str]:
        """The headers, asking the provider for the first token if none is known yet. A
        provider that gives none is an ``AuthenticationError`` (as a refused token is: a
        fan-out stops sending), though nothing was sent."""
        while self.headers is None:
            if not await self.renew(self.epoch) and self.headers is None:
                raise no_token("gave no usable token")
        return self.headers

    async def renew(self, epoch: int) -> bool:
        """After a 401 on an attempt sent in ``epoch``: True when a fresh token is in place."""
        if self._provider is None:
            return False
        renewing = self._renewing
        if renewing is None:
            if epoch != self.epoch:
                return self._renewed  # refused before the last refresh ended: its answer
            renewing = self._renewing = asyncio.ensure_future(self._ask(self._provider))
        return await asyncio.shield(renewing)

    async def _ask(self, provider: TokenProvider) -> bool:
        """Ask the provider once; the new headers when its token differs from the current."""
        renewed = False
        value: object = None
        try:
            value = provider()
            if inspect.iscoroutine(value):
                value = await wait_for(value, PROVIDER_TIMEOUT)
            elif inspect.isawaitable(value):
                # A future or task of the caller's (one refresh shared by several clients):
                # given up on, not cancelled.
                value = await wait_for(asyncio.shield(value), PROVIDER_TIMEOUT)
            headers = self._make(check_token(value))
        except asyncio.CancelledError:
            if not (isinstance(value, asyncio.Future) and value.cancelled()):
                raise  # this refresh itself was cancelled (the client closing)
            # A future of the provider's own, cancelled by its owner: a provider that failed,
            # not a cancellation of the calls waiting for it.
            logger.warning("the token provider failed: %s", "CancelledError")
        except Exception as exc:
            # Only the kind: the provider's message is the caller's, and may quote a secret.
            logger.warning("the token provider failed: %s", type(exc).__name__)
        else:
            current = self.headers
            if current is None or headers["Authorization"] != current["Authorization"]:
                self.headers = headers
                renewed = True
        finally:
            self.epoch += 1
            self._renewed = renewed
            self.refused = not renewed
            self._renewing = None
        return renewed
