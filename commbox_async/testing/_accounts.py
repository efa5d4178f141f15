"""The fake server's accounts: the tokens it accepts, each account's bucket, revoked tokens.

Every token belongs to an account (by default named by the token's fingerprint, never the
token). An account may have a token bucket of its own (``Throttling``), so that many accounts
on one server each meet their own limit; a rotated key is a new token of the same account,
with the same bucket. A revoked token keeps working for its grace period (as CommBox's keys
do), then is answered 401.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .._protocol import token_fingerprint
from ._throttling import Bucket, Throttling

__all__ = ["Accounts", "Verdict"]

_BEARER = "Bearer "


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the server makes of a request's credentials, before it looks at anything else."""

    account: str | None  # None: no token the server ever knew
    outcome: str | None  # "unauthorized", "revoked", "throttled", or None: go on
    retry_after: str | None = None


class Accounts:
    """The tokens the server accepts, by account; see the module docstring."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._account_of: dict[str, str] = {}  # token -> account
        self._revoked_at: dict[str, float] = {}  # token -> refused from then on
        self._buckets: dict[str, tuple[Throttling, Bucket]] = {}  # account -> its bucket

    def add(
        self, token: str, *, account: str | None = None, throttling: Throttling | None = None
    ) -> str:
        """Accept ``token`` for ``account`` (default: a new one named by its fingerprint),
        with ``throttling`` as that account's own limit; returns the account's name."""
        name = account or token_fingerprint(token)
        self._account_of[token] = name
        self._revoked_at.pop(token, None)
        if throttling is not None:
            self.limit(name, throttling)
        return name

    def limit(self, account: str, throttling: Throttling | None) -> None:
        """Give ``account`` a token bucket of its own (None: no limit of its own)."""
        if throttling is None:
            self._buckets.pop(account, None)
        else:
            bucket = Bucket(throttling.rate, throttling.burst, self._clock)
            self._buckets[account] = (throttling, bucket)

    def account_of(self, token: str) -> str:
        """The account ``token`` belongs to (KeyError for a token never accepted)."""
        return self._account_of[token]

    def revoke(self, token: str, *, grace: float = 0.0) -> None:
        """``token`` keeps working for ``grace`` seconds of the server's clock, then gets 401."""
        if token not in self._account_of:
            raise KeyError("no such token")
        self._revoked_at[token] = self._clock() + grace

    def rotate(self, token: str, new_token: str, *, grace: float = 0.0) -> None:
        """A new key for ``token``'s account; the old one is revoked after ``grace``."""
        self.add(new_token, account=self.account_of(token))
        self.revoke(token, grace=grace)

    def whose(self, authorization: str | None) -> str | None:
        """The account of the token in ``authorization``, taking nothing from its bucket."""
        if authorization is None or not authorization.startswith(_BEARER):
            return None
        return self._account_of.get(authorization[len(_BEARER) :])

    def check(self, authorization: str | None) -> Verdict:
        """Whose request this is, and whether the token or the account's bucket refuses it."""
        if authorization is None or not authorization.startswith(_BEARER):
            return Verdict(None, "unauthorized")
        token = authorization[len(_BEARER) :]
        account = self._account_of.get(token)
        if account is None:
            return Verdict(None, "unauthorized")
        revoked = self._revoked_at.get(token)
        if revoked is not None and self._clock() >= revoked:
            return Verdict(account, "revoked")
        limit = self._buckets.get(account)
        if limit is not None and not limit[1].take():
            return Verdict(account, "throttled", limit[0].retry_after)
        return Verdict(account, None)
