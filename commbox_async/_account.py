"""One token's calls over a shared transport: its limiter, budget and stats, and the retry loop.

An ``Account`` is what is particular to one CommBox token: the headers that carry it, the limiter
that paces it, the retry budget it spends and the counters it keeps. The connection pool is the
``Transport``'s, which many accounts can share.

One call is one visible loop, driven by ``backoff``:

1. ``_attempt`` takes a slot from the limiter, sends through the transport, and lets
   ``_protocol.parse_response`` turn the answer into a page or an error;
2. on an error it asks ``decide_retry`` (``_retry``) how long to wait, or whether to stop;
3. after the first wait, backoff waits exactly what each failed attempt says
   (``backoff.runtime``) and calls ``_attempt`` again, until one says stop or succeeds.

The limiter hears how every attempt ended (a 429 pauses the account; an answer is evidence for
the pacing model), so retries are paced like first attempts.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import backoff
import msgspec
from yarl import URL

from ._config import Retries, Timeout
from ._errors import (
    AuthenticationError,
    ClientClosedError,
    CommboxDecodeError,
    CommboxError,
    CommboxTimeoutError,
    RateLimitError,
)
from ._models import UserObjectsPage
from ._pacing import Outcome, Ticket
from ._protocol import RequestUrls, parse_response
from ._retry import CallState, RetryBudget, decide_retry
from ._stats import ClientStats
from ._throttle import Limiter
from ._tokens import TokenSource, no_token
from ._transport import Response, Transport
from ._waiting import wait_for

__all__ = ["Account"]

logger = logging.getLogger("commbox_async")
#: One INFO record per scheduled retry, so that a caller (the command line on a terminal) can
#: show a slow call's progress instead of silence.
retry_logger = logging.getLogger("commbox_async.retries")

T = TypeVar("T")


class Attempt(msgspec.Struct):
    """How one attempt ended: a page, or an error and the wait before the next try (``None``:
    the call ends with this error).

    A Struct, not a dataclass: one is made per attempt, and a Struct is cheaper to make.
    Tracked by the garbage collector (the default): it can hold an exception.
    """

    page: UserObjectsPage | None = None
    error: CommboxError | None = None
    wait: float | None = None


class Call(CallState):
    """One call across its attempts, whether a 401 already made it ask for a new token, and
    the retries and per-attempt timeout given to this call alone (None: the client's)."""

    renewed: bool = False
    retries: Retries | None = None
    timeout: Timeout | None = None


class Account:
    """One token's calls: ``request()`` is one call, retries included.

    ``limiter`` is set when the client opens (it is bound to the running loop). ``token`` is
    the account's ``TokenSource``: the headers that carry its token, and their refresh after
    a 401 when the token comes from a provider.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        base_url: str,
        token: TokenSource,
        retries: Retries,
        rng: random.Random,
    ) -> None:
        self._transport = transport
        self._lane = transport.lane()  # this account's turn for the shared pool's connections
        self._urls = RequestUrls(URL(base_url))
        self.token = token
        self._retries = retries
        self._rng = rng
        self.limiter: Limiter | None = None
        self.stats = ClientStats()
        self._budget = RetryBudget(retries.budget_ratio, retries.budget_reserve)
        self._answered = 0  # answers that were not 429s (a 429 asks whether others got through)
        # backoff's loop around _attempt, made at the first retry: an account that never
        # retries (one of 10,000 views that made one call) does not pay for it.
        self._retrying: Callable[[Call], Awaitable[Attempt]] | None = None

    async def request(
        self,
        identity_id: int,
        query_string: str,
        deadline: float,
        retries: Retries | None = None,
        timeout: Timeout | None = None,
    ) -> UserObjectsPage:
        """One call, retries included: the page, or the error that ended the call.

        ``retries`` and ``timeout`` replace the account's for this call only."""
        now = time.monotonic()
        url = self._urls.url(identity_id, query_string)
        call = Call(identity_id, url, now + deadline, now, retries=retries, timeout=timeout)
        if self.token.headers is None:
            await self._first_token(call)  # a provider's first token, asked on the first call
        self._budget.earn()
        attempt = await self._attempt(call)
        if attempt.wait is not None:
            # Only a call whose first attempt failed enters backoff's loop: its set-up on
            # every call cost 5% of a small page's CPU (benchmarks/RESULTS.md, section 5).
            self.stats.retries += 1
            await asyncio.sleep(attempt.wait)
            attempt = await (self._retrying or self._make_retrying())(call)
        if attempt.page is not None:
            return attempt.page
        error = attempt.error
        assert error is not None
        self.stats.failures += 1
        if call.attempts > 1 or (call.attempts and type(error).retryable):
            _count_attempts(error, call)
        error.retryable = False  # the loop has decided: this error is final
        raise error

    def _make_retrying(self) -> Callable[[Call], Awaitable[Attempt]]:
        self._retrying = retrying = backoff.on_predicate(
            backoff.runtime,
            predicate=lambda attempt: attempt.wait is not None,
            value=lambda attempt: attempt.wait,
            max_tries=None,  # decide_retry ends every call (tries, 429s in a row, deadline)
            jitter=None,  # decide_retry's waits are jittered already
            on_backoff=self._on_backoff,
            logger=None,  # backoff's own log lines would carry call arguments
        )(self._attempt)
        return retrying

    async def _attempt(self, call: Call) -> Attempt:
        """One attempt: a slot from the limiter, the exchange, the verdict. A failure comes
        back as a value, with ``decide_retry``'s wait; the limiter hears how it ended."""
        stats = self.stats
        token = self.token
        epoch = token.epoch
        try:
            limiter = self.limiter
            if limiter is None or self._transport.closed:
                raise ClientClosedError("this AsyncCommbox is closed")
            _check_pause(limiter.pause_remaining(), call)
            try:
                # Our limiters bound their own wait (free when there is none); others, here.
                ticket = await (
                    limiter.acquire(call.deadline)
                    if _bounds_deadline(type(limiter))
                    else _within(limiter.acquire(), call)
                )
            except (asyncio.TimeoutError, TimeoutError):  # (two classes before Python 3.11)
                raise _no_slot(limiter) from None
            call.attempts += 1
            stats.requests += 1
            stats.in_flight += 1
            started = time.perf_counter()
            epoch = token.epoch  # the headers sent are this epoch's
            headers = token.headers
            assert headers is not None
            try:
                response = await self._transport.send(
                    call.url, headers, call.deadline, call.timeout, self._lane
                )
            except CommboxDecodeError:  # a body over max_body_bytes: the server did answer
                limiter.report(ticket, Outcome.ACCEPTED)
                raise
            except CommboxError:  # no answer: says nothing of the server's limit
                limiter.report(ticket, Outcome.FAILED)
                raise
            finally:
                stats.in_flight -= 1
            page = self._verdict(call, limiter, ticket, response, started, headers)
            if token.refused:
                token.accepted(epoch)  # a refresh found the key refused; this answer did not
            return Attempt(page=page)
        except CommboxError as exc:
            stats.errors_by_kind[exc.kind] += 1
            if isinstance(exc, RateLimitError):
                stats.throttled += 1
            if exc.identity_id is None:
                exc.identity_id = call.identity_id
            if isinstance(exc, AuthenticationError) and await self._renewed(call, epoch, exc):
                return Attempt(error=exc, wait=0.0)  # once more, with the fresh token
            return Attempt(error=exc, wait=self._decide(call, exc))

    async def _renewed(self, call: Call, epoch: int, exc: AuthenticationError) -> bool:
        """After a 401 (``exc``): whether this call is sent once more with a fresh token. One
        refresh serves every call refused together; a call is sent again once, outside its
        tries."""
        if call.renewed or not self.token.refreshable:
            return False
        call.renewed = True
        try:
            return await _within(self.token.renew(epoch), call)
        except asyncio.TimeoutError:
            # No fresh token before the call's deadline: the 401 is this call's end, and,
            # unless the last refresh that ended already found the key refused, it says the
            # deadline ended it, not the token. A fan-out must not take it for a refused
            # token and fail every id not sent yet (a refresh that outlasts one call's
            # deadline serves the next calls), nor a caller with a later deadline that
            # joined this call (it tries again). But a refused key with a slow provider
            # must still stop a fan-out: each call would start a refresh and time out.
            if not self.token.refused:
                exc.ended_by_deadline = True
            return False

    async def _first_token(self, call: Call) -> None:
        """A provider's first token, within the call's deadline (a provider that hangs must
        not hold the call past it: ``deadline=`` is what a page view relies on)."""
        try:
            await _within(self.token.first(), call)
        except asyncio.TimeoutError:
            error = no_token("gave no token within the call's deadline")
            error.identity_id = call.identity_id
            # As after a 401 (``_renewed``): the deadline's end, unless an ask already failed.
            error.ended_by_deadline = not self.token.refused
            raise error from None
        except AuthenticationError as exc:
            exc.identity_id = call.identity_id  # (raised by the source, which knows no call)
            raise

    def _verdict(
        self,
        call: CallState,
        limiter: Limiter,
        ticket: Ticket,
        response: Response,
        started: float,
        sent: Mapping[str, str],
    ) -> UserObjectsPage:
        """The answer as a page or an error; the limiter hears which (a 429 is its evidence).
        ``sent``: the headers this attempt carried."""
        elapsed = time.perf_counter() - started
        self.stats.record_latency(elapsed)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "GET %s -> %d in %.1f ms (attempt %d)",
                call.url.path,
                response.status,
                elapsed * 1000,
                call.attempts,
            )
        try:
            page = parse_response(
                response.status, response.headers, response.body, call.identity_id
            )
        except RateLimitError as exc:
            # One verdict: a 429 in the status or in the body's envelope is the same event
            # for the limiter (a pause, evidence for the rate) and for the retry decision.
            limiter.report(ticket, Outcome.THROTTLED, exc.retry_after)
            _scrub(exc, sent)
            raise
        except CommboxError as exc:
            limiter.report(ticket, Outcome.ACCEPTED)
            self._answered += 1
            _scrub(exc, sent)
            raise
        limiter.report(ticket, Outcome.ACCEPTED)
        self._answered += 1
        self.stats.successes += 1
        return page

    def _decide(self, call: Call, exc: CommboxError) -> float | None:
        """``decide_retry``'s answer for this failure: the wait, or None to end the call."""
        limiter = self.limiter
        pause = limiter.pause_remaining() if limiter is not None else 0.0
        decision = decide_retry(
            call,
            exc,
            call.retries or self._retries,
            self._budget,
            self._rng,
            now=time.monotonic(),
            pause_remaining=pause,
            accepted_total=self._answered,
        )
        # (an error that says so already, a pause or no rate slot before the deadline, keeps it)
        exc.ended_by_deadline = exc.ended_by_deadline or decision.by_deadline
        if decision.delay is not None and retry_logger.isEnabledFor(logging.INFO):
            # The wait includes the account-wide pause that a 429 started.
            retry_logger.info(
                "identity %s: retrying in %.1f s: %s",
                call.identity_id,
                pause + decision.delay,
                _reason(exc),
            )
        return decision.delay

    def _on_backoff(self, details: Any) -> None:
        self.stats.retries += 1


def _scrub(error: CommboxError, sent: Mapping[str, str]) -> None:
    """Blank the token the attempt ``sent`` wherever a response put it on ``error`` (a proxy
    that echoes the request's headers into its answer): the token never reaches an error. The
    token sent, not the account's current one: after a refresh, the old key (which may still
    work during its grace period) is the one an echo carries. And whatever follows "Bearer ":
    the body and message were cut before this runs (a token at the cut is only its start),
    and an echo in JSON may escape it (a plus as a unicode escape, a slash after a backslash),
    which no literal match finds."""
    token = str(sent.get("Authorization", "")).removeprefix("Bearer ")
    if not token:
        return

    def blank(text: str) -> str:
        return _BEARER.sub("Bearer ***", text.replace(token, "***"))

    if error.headers:
        error.headers = {k: blank(v) for k, v in error.headers.items()}
    error.body = _BEARER_BYTES.sub(b"Bearer ***", error.body.replace(token.encode(), b"***"))
    error.message = blank(error.message)
    error.args = (error.message,)  # the message as first given, token and all
    description = getattr(error, "description", None)
    if isinstance(description, str):
        error.description = blank(description)  # type: ignore[attr-defined]


#: "Bearer" and what follows it up to a space, a quote or the end of a JSON value.
_BEARER = re.compile(r"Bearer\s+[^\s\"',;}\]]+", re.IGNORECASE)
_BEARER_BYTES = re.compile(_BEARER.pattern.encode(), re.IGNORECASE)


async def _within(waiting: Awaitable[T], call: CallState) -> T:
    """``waiting``, or ``asyncio.TimeoutError`` at the call's deadline. (A refresh that others
    share is shielded inside ``TokenSource``: giving up here cancels only this call's wait.)"""
    return await wait_for(waiting, max(call.deadline - time.monotonic(), 0.0))


#: Whether a limiter class's ``acquire`` takes a deadline, by class (read on every attempt).
_BOUNDS: dict[type, bool] = {}


def _bounds_deadline(kind: type) -> bool:
    """True when the class that defines ``kind``'s ``acquire`` says it honours a deadline
    (``bounds_deadline = True``): a subclass of ours that overrides ``acquire(self)`` does
    not inherit the promise, and is bounded by the client like any other limiter."""
    known = _BOUNDS.get(kind)
    if known is None:
        owner = next((c for c in kind.__mro__ if "acquire" in vars(c)), kind)
        known = _BOUNDS[kind] = vars(owner).get("bounds_deadline", False) is True
    return known


def _no_slot(limiter: Limiter) -> CommboxTimeoutError:
    """The final error of a call whose deadline came while it waited for a rate slot (a page
    view with ``deadline=0.5`` must not queue for seconds behind a slow rate)."""
    error = CommboxTimeoutError(
        f"no slot under the rate limit ({limiter.current_rate:.3g}/s) before this call's deadline"
    )
    error.reason = "no rate slot before the deadline"
    error.retryable = False
    error.ended_by_deadline = True
    return error


def _check_pause(pause: float, call: CallState) -> None:
    """A call may not wait out a pause that outlasts its deadline: it fails at once, as a
    timeout that no retry can cure (a page view with ``deadline=3`` during a 20 s pause)."""
    if pause <= 0.0 or call.deadline - time.monotonic() > pause:
        return
    error = CommboxTimeoutError(
        f"the client is paused for {pause:.1f} s more (the server asked to wait), "
        "past this call's deadline"
    )
    error.reason = "paused past the deadline"
    error.retryable = False
    error.ended_by_deadline = True
    raise error


def _reason(exc: CommboxError) -> str:
    """A failure in a few words, for the retry log: "connection refused", "HTTP 503"."""
    if exc.reason is not None:
        return exc.reason
    status = getattr(exc, "status", None)
    return f"HTTP {status}" if isinstance(status, int) else exc.message


def _count_attempts(exc: CommboxError, call: CallState) -> None:
    """Say in the final error of a call how many attempts it made and over how long."""
    elapsed = time.monotonic() - call.started
    plural = "s" if call.attempts != 1 else ""
    exc.message = f"{exc.message} ({call.attempts} attempt{plural} over {elapsed:.1f} s)"
