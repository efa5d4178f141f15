"""What the client's log of attempts says about the server's limit: pure functions, no state.

The log is the model's record of its attempts (``Ticket``: when it was sent and how it ended),
oldest first. Each reading here takes the log, or numbers read from it, and the times and
thresholds it needs, and returns a number; none keeps anything, none reads a clock. Which
reading to trust, and what to do about it, is the model's business (``_pacing``).
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Callable, Sequence
from functools import partial

import msgspec

__all__ = [
    "Outcome",
    "Ticket",
    "accepted_rate",
    "beyond_noise",
    "bucket_fit",
    "counts_at_this_rate",
    "drain_to_drain",
    "first_burst",
    "is_flood",
    "noise_allowance",
    "not_cured",
    "saturated_rate",
    "whole_capacity",
    "window_counts",
]


class Outcome(enum.IntEnum):
    """How one attempt ended, as far as pacing is concerned."""

    PENDING = 0
    ACCEPTED = 1  # any answer but a 429 (errors included: the server took the request)
    THROTTLED = 2  # a 429, in the HTTP status or in the body's envelope
    FAILED = 3  # no answer (connection refused or reset, timeout): says nothing of the limit


class Ticket(msgspec.Struct, gc=False):
    """One attempt's slot: when it was sent and, once known, how it ended.

    gc=False: one is made per attempt and the model keeps thousands; it holds two numbers and
    cannot be part of a reference cycle.
    """

    sent: float
    state: Outcome = Outcome.PENDING
    answered: float = 0.0


def window_counts(log: deque[Ticket], start: float, end: float) -> tuple[int, int]:
    """(accepted, throttled) among the attempts sent in [start, end)."""
    accepted = throttled = 0
    for ticket in reversed(log):
        if ticket.sent >= end:
            continue
        if ticket.sent < start:
            break
        if ticket.state is Outcome.ACCEPTED:
            accepted += 1
        elif ticket.state is Outcome.THROTTLED:
            throttled += 1
    return accepted, throttled


def counts_at_this_rate(
    log: deque[Ticket], drained: float, window: float, rate_since: float
) -> tuple[int, int]:
    """(accepted, throttled) among the attempts of the last ``window`` seconds sent at the rate
    set at ``rate_since``, up to the one sent at ``drained`` (those sent faster before it are
    still being answered, and a cap on requests in flight still holds them)."""
    return window_counts(log, max(drained - window, rate_since), drained + 1e-9)


def accepted_rate(
    log: deque[Ticket], start: float, end: float, seconds: float
) -> tuple[float, int]:
    """(accepted per second, accepted) among the attempts sent in [start, end), over
    ``seconds`` (the stretch, or the stretch and the pause that ended it)."""
    accepted, _ = window_counts(log, start, end)
    return accepted / seconds, accepted


def first_burst(
    log: deque[Ticket], start: float, drained: float, now: float, late: float
) -> tuple[int, float]:
    """(accepted, when the last of them was sent) of a first burst from ``start`` until the
    429 sent at ``drained`` was answered at ``now``: the attempts sent before the refused one,
    and those sent up to ``late`` seconds after it that were accepted before its answer came
    back (a busy client's requests, on connections still opening, reach the server out of
    order: a bucket of 5 showed 3 accepted before its first refused attempt, and 2 after).
    Later ones, or ones answered later, are the bucket's refill, not its burst."""
    accepted, last = 0, drained
    for ticket in reversed(log):
        if ticket.sent < start:
            break
        if ticket.state is not Outcome.ACCEPTED:
            continue
        if ticket.sent < drained:
            accepted += 1
        elif ticket.sent < drained + late and ticket.answered <= now:
            accepted += 1
            last = max(last, ticket.sent)
    return accepted, last


def drain_to_drain(
    log: deque[Ticket], last_drain: float, drained: float
) -> tuple[float, int, float] | None:
    """(rate, accepted, seconds) between two 429s sent at ``last_drain`` and ``drained``: a
    floor, since a bucket was empty at both ends (pauses included, so a window reads about
    right). None over 0.2 s or less, too short to say anything."""
    accepted, _ = window_counts(log, last_drain, drained)
    gap = drained - last_drain
    if gap <= 0.2:
        return None
    return accepted / gap, accepted, gap


def saturated_rate(
    log: deque[Ticket], now: float, window: float, min_span: float = 0.02
) -> float | None:
    """Accepted answers per second over the last ``window`` (among the attempts sent in the
    last two): what an overloaded server takes. None with fewer than 5 of them, or in less
    than ``min_span`` seconds (20 ms)."""
    first = last = None
    count = 0
    for ticket in reversed(log):
        if ticket.sent < now - 2 * window:
            break
        if ticket.state is Outcome.ACCEPTED and ticket.answered >= now - window:
            count += 1
            first = ticket.answered if first is None else min(first, ticket.answered)
            last = ticket.answered if last is None else max(last, ticket.answered)
    if count < 5 or first is None or last is None or last - first < min_span:
        return None
    return (count - 1) / (last - first)


def whole_capacity(taken: float, least: float) -> float | None:
    """The capacity of a bucket as a whole number of tokens, when its first burst allows only
    one: ``taken`` tokens (the burst less the refill during it) and, at the 429, less than a
    token left, at least ``least`` of one (see ``bucket_fit``), which puts the capacity in
    [taken + least, taken + 1), an interval under a token wide. The limiters servers run count
    their burst in whole requests. None when no whole number is in it. (The middle of that
    interval read burst 3 as 3.25 when 0.3 of a token was left, and the refill 1.7% low:
    every small burst from full pace leaves about the same part of a token.)"""
    whole = math.ceil(taken + least)
    return float(whole) if whole < taken + 1.0 else None


def _root(left: Callable[[float], float], lo: float, hi: float) -> float | None:
    """The rate in [lo, hi] at which ``left``, rising with the rate, reaches 0 (to 30
    halvings, in ratio); None when it is below 0 at ``hi`` or not below at ``lo``."""
    if left(hi) < 0.0 or left(lo) >= 0.0:
        return None
    for _ in range(30):
        mid = math.sqrt(lo * hi)
        if left(mid) >= 0.0:
            hi = mid
        else:
            lo = mid
    return hi


def bucket_fit(
    sent: Sequence[float],
    *,
    origin: float,
    drained: float,
    burst: float,
    first_span: float,
    first_pace: float,
    full: bool,
    lo: float,
    hi: float,
    steady: bool = True,
) -> float | None:
    """The refill rate in [lo, hi] of a token bucket that is empty at ``drained``, after the
    accepted attempts ``sent`` since ``origin`` (where it was full if ``full``, else empty),
    sent at a pace of ``hi`` at the end.

    Its capacity is read from the first 429: ``burst`` accepted in ``first_span`` seconds at
    ``first_pace`` from a full bucket that refilled meanwhile, taken first at the middle of the
    interval that leaves. From a ``steady`` first burst (as the pacer sent it, not clumped by a
    busy client), the whole number in that interval at the rate so read, if there is one, is
    the capacity, and the rate is read again with it (the first reading stands if none then
    explains the drain). None when no rate in the range explains the drain (not a bucket).
    """

    # At a 429 the bucket held less than a token: at a pace p over a refill rate r it loses
    # 1 - r/p of a token per attempt, so it held between r/p and 1 of one, on average
    # (1 + r/p) / 2 (a pace just over the rate finds it nearly full of that token).
    def first(rate: float) -> tuple[float, float]:
        """At the first 429: (the burst less the refill during it, the least left of a token)."""
        return burst - rate * first_span, min(1.0, rate / first_pace)

    def left(rate: float, capacity: float | None = None) -> float:
        if capacity is None:
            taken, least = first(rate)
            capacity = taken + (1.0 + least) / 2.0
        cap = max(1.0, capacity)
        tokens, last = (cap if full else 0.0), origin
        for when in sent:
            tokens = min(cap, tokens + rate * (when - last)) - 1.0
            last = when
        held = (1.0 + min(1.0, rate / hi)) / 2.0
        return min(cap, tokens + rate * (drained - last)) - held

    rate = _root(left, lo, hi)
    if rate is None or not steady:
        return rate
    whole = whole_capacity(*first(rate))
    if whole is None:
        return rate
    # Fixed, not read again at each rate tried: a whole number that stepped down as the rate
    # rose would make what is left at the 429 fall with the rate, and the root ambiguous.
    again = _root(partial(left, capacity=whole), lo, hi)
    return rate if again is None else again


def is_flood(accepted: int, throttled: int, share: float) -> bool:
    """Ten attempts or more, at least ``share`` of them refused: far more than the server takes."""
    return accepted + throttled >= 10 and throttled >= share * (accepted + throttled)


def noise_allowance(answered: int, share: float) -> float:
    """The most 429s among ``answered`` attempts that random 429s at ``share`` explain, with
    two standard deviations of slack."""
    return share * answered + 2.0 * math.sqrt(share * answered)


def beyond_noise(throttled: int, answered: int, share: float, strays: int) -> bool:
    """More 429s than a few ``strays`` (a busy event loop bunches sends even well below a cap)
    and than a share ``share`` of ``answered`` explains. No slack of standard deviations: under
    a cap, a few percent more is the cap (measured: 2.2% of 429s against 2.8% with two)."""
    return throttled > strays and throttled > share * answered


def not_cured(share_before: float, share_after: float, noise_max: float) -> bool:
    """After slowing down, the share of 429s fell by less than 30%, and stays low enough to be
    noise. (A share above ``noise_max`` means the step was too small for a real limit, a cap on
    requests in flight still overrun, not that slowing down cannot help.)"""
    return share_after >= 0.7 * share_before and share_after <= noise_max
