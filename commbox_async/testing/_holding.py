"""The requests in the server's hands now, by account, and held there until a test lets go.

A test of how a client shares its connections needs to see, at one moment, how many requests
of each account are open at the server, and to decide when each is answered, without timing
anything. ``in_flight`` counts, by account, the requests the server is handling now (and
``peak`` the most at once, of all accounts); ``hold()`` makes requests (every account's, or
one account's) wait before they are answered, until ``release()`` lets the oldest go. A held
request counts as in flight, and holds its connection, until it is let go: a test waits for a
count (``held() == 4``), looks who holds what, then releases one and waits again.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque

__all__ = ["Holding"]


class Holding:
    """Counts of the requests being handled, by account, and the requests held back."""

    def __init__(self) -> None:
        #: Requests being handled now, by account ("" for a token the server never knew);
        #: an account with none is not kept (a server may see 10,000 accounts).
        self.in_flight: Counter[str] = Counter()
        #: The most requests handled at once, all accounts together.
        self.peak = 0
        self._total = 0
        self._all = False  # hold every account's requests
        self._accounts: set[str] = set()  # or these accounts' only
        self._held: deque[tuple[str, asyncio.Future[None]]] = deque()

    def enter(self, account: str) -> bool:
        """A request of ``account`` comes in; True when it is to be held."""
        self.in_flight[account] += 1
        self._total += 1
        if self._total > self.peak:
            self.peak = self._total
        return self._all or account in self._accounts

    def leave(self, account: str) -> None:
        """The request of ``account`` is answered (or failed)."""
        left = self.in_flight[account] = self.in_flight[account] - 1
        if not left:
            del self.in_flight[account]
        self._total -= 1

    async def wait(self, account: str) -> None:
        """Hold this request of ``account`` until ``release`` lets it go."""
        turn = asyncio.get_running_loop().create_future()
        self._held.append((account, turn))
        try:
            await turn
        finally:
            if (account, turn) in self._held:  # cancelled (the server stops): not held now
                self._held.remove((account, turn))

    def hold(self, account: str | None = None) -> None:
        """From now on, hold the requests of ``account`` (None: of every account)."""
        if account is None:
            self._all = True
        else:
            self._accounts.add(account)

    def held(self, account: str | None = None) -> int:
        """How many requests (of ``account``, or of all) are held now."""
        return sum(1 for who, _ in self._held if account is None or who == account)

    def release(self, count: int = 1, account: str | None = None) -> int:
        """Let the ``count`` oldest held requests (of ``account``, or of any) be answered;
        how many were let go."""
        chosen = [item for item in self._held if account is None or item[0] == account][:count]
        for item in chosen:
            self._held.remove(item)
            item[1].set_result(None)
        return len(chosen)

    def unhold(self, *, release: bool = True) -> None:
        """Hold no more requests, and let every held one go (``release=False``: keep those
        held now until ``release``, so that a test can answer them after later requests)."""
        self._all = False
        self._accounts.clear()
        if release:
            self.release(len(self._held))
