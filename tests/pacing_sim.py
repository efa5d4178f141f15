"""A deterministic, event-driven simulator of a fan-out against every kind of server limiter.

Virtual time, no sockets, no sleeping: a job of 1,500 ids runs in a few milliseconds of CPU, so
the tests can run hundreds of simulated jobs and a change that breaks one kind of server fails a
test. The client side is the real ``PacingModel`` and ``PausePolicy`` with a simple slot pacer
(one slot every 1/rate, no slot inside a pause), ``concurrency`` workers, and the client's own
retry decision (``decide_retry``) after each 429. The server side is one of the limiter
kinds below; each answers at arrival time after a one-way latency, and the cap on requests in
flight holds each accepted request for its service time.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from yarl import URL

from commbox_async import Retries
from commbox_async._errors import (
    CommboxConnectionError,
    CommboxError,
    RateLimitError,
    ServerError,
)
from commbox_async._pacing import Outcome, PacingModel, PausePolicy, Ticket
from commbox_async._retry import CallState, RetryBudget, decide_retry

# --- server-side limiters --------------------------------------------------------------------


class ServerLimit:
    """decide(now) -> (accepted, Retry-After seconds or None); ``hold`` is the service time.
    ``fault()`` says how an accepted request is answered: None (a page), "5xx" (an error
    answer, retried) or "reset" (no answer, retried), and any extra seconds it is held."""

    hold = 0.0

    def decide(self, now: float) -> tuple[bool, float | None]:
        raise NotImplementedError

    def fault(self) -> tuple[str | None, float]:
        return None, 0.0

    def release(self) -> None:
        """An accepted request's answer left (only the in-flight cap cares)."""


class TokenBucket(ServerLimit):
    """Refill at a rate that may change with time (``schedule``: (from, rate) pairs), up to
    ``burst``; full at the start. ``retry_after`` None sends no header. ``cotenant`` is another
    client's steady rate on the same bucket, served first."""

    def __init__(
        self,
        rate: float,
        burst: float,
        retry_after: float | None = 1.0,
        schedule: list[tuple[float, float]] | None = None,
        cotenant: float = 0.0,
    ) -> None:
        self.schedule = schedule or [(0.0, rate)]
        self.burst = burst
        self.retry_after = retry_after
        self.cotenant = cotenant
        self.tokens = float(burst)
        self.last = 0.0

    def rate_at(self, t: float) -> float:
        rate = self.schedule[0][1]
        for start, r in self.schedule:
            if t >= start:
                rate = r
        return max(0.0, rate - self.cotenant)

    def decide(self, now: float) -> tuple[bool, float | None]:
        # Piecewise refill, exact at the schedule's edges.
        t = self.last
        for start, _ in [*self.schedule[1:], (now, 0.0)]:
            edge = min(max(start, t), now)
            self.tokens = min(self.burst, self.tokens + self.rate_at(t) * (edge - t))
            t = edge
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True, None
        return False, self.retry_after

    def ideal(self, ids: int) -> float:
        done, t = 0.0, 0.0
        edges = [s for s, _ in self.schedule[1:]] + [math.inf]
        for end in edges:
            rate = self.rate_at(t)
            if done + rate * (end - t) >= ids:
                return t + (ids - done) / rate
            done += rate * (end - t)
            t = end
        return t


class FixedWindow(ServerLimit):
    """``limit`` per window of ``window`` s on the server's clock (offset ``phase``);
    Retry-After = whole seconds to the next window, at least 1."""

    def __init__(self, limit: int, window: float, phase: float = 0.0) -> None:
        self.limit, self.window, self.phase = limit, window, phase
        self.index = -1
        self.count = 0

    def decide(self, now: float) -> tuple[bool, float | None]:
        index = math.floor((now + self.phase) / self.window)
        if index != self.index:
            self.index, self.count = index, 0
        if self.count < self.limit:
            self.count += 1
            return True, None
        left = (index + 1) * self.window - (now + self.phase)
        return False, float(max(1, math.ceil(left)))


class SlidingWindow(ServerLimit):
    """``limit`` in any trailing ``span`` s; Retry-After = whole seconds until the oldest leaves."""

    def __init__(self, limit: int, span: float) -> None:
        self.limit, self.span = limit, span
        self.log: list[float] = []
        self.head = 0

    def decide(self, now: float) -> tuple[bool, float | None]:
        while self.head < len(self.log) and self.log[self.head] <= now - self.span:
            self.head += 1
        if len(self.log) - self.head < self.limit:
            self.log.append(now)
            return True, None
        return False, float(max(1, math.ceil(self.log[self.head] + self.span - now)))


class InFlightCap(ServerLimit):
    """At most ``cap`` accepted requests in flight, each held ``hold`` s; beyond, 429 (RA 0)."""

    def __init__(self, cap: int, hold: float) -> None:
        self.cap, self.hold = cap, hold
        self.in_flight = 0

    def decide(self, now: float) -> tuple[bool, float | None]:
        if self.in_flight < self.cap:
            self.in_flight += 1
            return True, None
        return False, 0.0

    def release(self) -> None:
        self.in_flight -= 1


class RandomThrottle(ServerLimit):
    """No limit; a share ``p`` of requests answered 429 at random (seeded)."""

    def __init__(self, p: float, retry_after: float | None, seed: int = 7) -> None:
        self.p, self.retry_after = p, retry_after
        self.rng = random.Random(seed)

    def decide(self, now: float) -> tuple[bool, float | None]:
        if self.rng.random() < self.p:
            return False, self.retry_after
        return True, None


class WithNoise(ServerLimit):
    """``limit``, and a share ``p`` of the requests it accepts answered 429 at random
    (Retry-After 0) instead: random 429s on top of a real limit."""

    def __init__(self, limit: ServerLimit, p: float, seed: int = 7) -> None:
        self.limit, self.noise = limit, RandomThrottle(p, 0.0, seed)
        self.hold = limit.hold

    def decide(self, now: float) -> tuple[bool, float | None]:
        ok, retry_after = self.limit.decide(now)
        if not ok:
            return ok, retry_after
        ok, retry_after = self.noise.decide(now)
        if not ok:
            self.limit.release()
        return ok, retry_after

    def release(self) -> None:
        self.limit.release()


class RandomMix(ServerLimit):
    """No limit; at random (seeded), a share ``p429`` answered 429 with a Retry-After drawn
    from ``retry_afters``, and of the others a share ``p5xx`` answered 503, ``preset`` reset
    with no answer, ``pslow`` held ``slow`` seconds: the soak's faults, none about rate."""

    def __init__(
        self,
        p429: float,
        retry_afters: tuple[float | None, ...],
        *,
        p5xx: float = 0.0,
        preset: float = 0.0,
        pslow: float = 0.0,
        slow: float = 0.3,
        seed: int = 7,
    ) -> None:
        self.p429, self.retry_afters = p429, retry_afters
        self.p5xx, self.preset, self.pslow, self.slow = p5xx, preset, pslow, slow
        self.rng = random.Random(seed)

    def decide(self, now: float) -> tuple[bool, float | None]:
        if self.rng.random() < self.p429:
            return False, self.rng.choice(self.retry_afters)
        return True, None

    def fault(self) -> tuple[str | None, float]:
        draw = self.rng.random()
        if draw < self.p5xx:
            return "5xx", 0.0
        if draw < self.p5xx + self.preset:
            return "reset", 0.0
        if draw < self.p5xx + self.preset + self.pslow:
            return None, self.slow
        return None, 0.0


# --- the client ------------------------------------------------------------------------------


@dataclass
class SimResult:
    """What one simulated job measured."""

    time: float
    sent: int
    throttled: int
    done: int
    rates: list[tuple[float, float]] = field(default_factory=list)  # (time, rate) at changes

    @property
    def share_429(self) -> float:
        return self.throttled / self.sent if self.sent else 0.0


def simulate(
    server: ServerLimit,
    *,
    ids: int,
    max_rate: float,
    adaptive: bool = True,
    concurrency: int = 32,
    latency: float = 0.0005,
    seed: int = 1,
    deadline: float = 600.0,
    model_factory: Callable[[float, bool], PacingModel] | None = None,
    start_rate: float | None = None,
    busy: tuple[float, ...] | None = None,
) -> SimResult:
    """Run one job of ``ids`` ids through ``server``; returns when every id was accepted.
    ``start_rate`` starts the model there (``RateLimit.start_rate``), unless ``model_factory``
    makes the model. ``busy`` = (until, sends a second, lag[, in order]): a client busy with
    other work until ``until``: it sends no faster than that, and its requests reach the server
    up to ``lag`` seconds late (in the order sent, unless the fourth item is False)."""
    rng = random.Random(seed)
    model = (
        model_factory or (lambda rate, on: PacingModel(rate, adaptive=on, start_rate=start_rate))
    )(max_rate, adaptive)
    policy = PausePolicy()
    events: list[tuple[float, int, Callable[[], None]]] = []
    seq = 0
    now = 0.0
    last_release = -math.inf
    pending = list(range(ids))
    state = {"sent": 0, "throttled": 0, "done": 0, "failed": 0}
    retries = Retries()
    budget = RetryBudget(retries.budget_ratio, retries.budget_reserve)
    rates: list[tuple[float, float]] = []
    queue = {"last": 0.0}  # a busy client's last request to reach the server

    def at(when: float, action: Callable[[], None]) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (when, seq, action))

    waiting: deque[Callable[[], None]] = deque()
    dispatching = False

    def acquire(then: Callable[[], None]) -> None:
        # One queue of waiting attempts, released one every 1/rate (the rate read at each
        # release, so a new rate applies at once) and never inside a pause.
        waiting.append(then)
        if not dispatching:
            dispatch()

    def dispatch() -> None:
        nonlocal dispatching, last_release
        dispatching = bool(waiting)
        if not waiting:
            return
        rate = model.rate_at(now)
        if not rates or rates[-1][1] != rate:
            rates.append((now, rate))
        gap = 1.0 / rate
        if busy is not None and now < busy[0]:
            gap = max(gap, 1.0 / busy[1])  # a busy client cannot send faster than this
        slot = max(now, last_release + gap, now + model.pause_remaining(now))
        if slot > now:
            at(slot, dispatch)
            return
        last_release = now
        waiting.popleft()()
        at(now, dispatch)

    def start_call(ident: int, call: CallState | None = None) -> None:
        if call is None:
            call = CallState(ident, URL("http://127.0.0.1/"), now + retries.max_time, now)
            budget.earn()

        def send() -> None:
            state["sent"] += 1
            ticket = model.on_send(now)
            arrival = now + latency
            if busy is not None and now < busy[0]:
                # Requests queue for a connection (in order); answers queue for the event
                # loop, and are read out of order.
                arrival = now + rng.uniform(0.3, 1.0) * busy[2]
                if len(busy) < 4 or busy[3]:
                    arrival = queue["last"] = max(arrival, queue["last"])
            at(arrival, lambda: arrive(ident, ticket, call))

        acquire(send)

    def arrive(ident: int, ticket: Ticket, call: CallState) -> None:
        ok, retry_after = server.decide(now)
        if ok:
            fault, slower = server.fault()

            def answered() -> None:
                server.release()
                if fault is None:
                    at(now + latency, lambda: accepted(ticket))
                else:
                    at(now + latency, lambda: failed(ident, ticket, call, fault))

            at(now + server.hold + slower, answered)
        else:
            at(now + latency, lambda: throttled(ident, ticket, call, retry_after))

    def accepted(ticket: Ticket) -> None:
        model.on_answer(ticket, now, Outcome.ACCEPTED)
        state["done"] += 1
        next_call()

    def failed(ident: int, ticket: Ticket, call: CallState, fault: str) -> None:
        # An error answer is the server's (it took the request); a reset says nothing.
        error: CommboxError
        if fault == "5xx":
            model.on_answer(ticket, now, Outcome.ACCEPTED)
            error = ServerError("HTTP 503", status=503)
        else:
            model.on_answer(ticket, now, Outcome.FAILED)
            error = CommboxConnectionError("the server closed the connection")
        retry(ident, call, error)

    def retry(ident: int, call: CallState, error: CommboxError) -> None:
        decision = decide_retry(
            call,
            error,
            retries,
            budget,
            rng,
            now=now,
            pause_remaining=model.pause_remaining(now),
            accepted_total=state["done"],
        )
        if decision.delay is None:
            state["failed"] += 1
            next_call()
            return
        at(now + decision.delay, lambda: start_call(ident, call))

    def throttled(ident: int, ticket: Ticket, call: CallState, retry_after: float | None) -> None:
        state["throttled"] += 1
        pause = policy.pause_for(retry_after, rng)
        model.on_answer(
            ticket, now, Outcome.THROTTLED, pause=pause, asked=policy.asked(retry_after)
        )
        # The client's own retry decision: the shared pause, and a call's own back-off.
        retry(ident, call, RateLimitError("HTTP 429", status=429, retry_after=retry_after))

    def next_call() -> None:
        if pending:
            start_call(pending.pop())

    for _ in range(concurrency):
        next_call()
    while events and state["done"] + state["failed"] < ids:
        now, _, action = heapq.heappop(events)
        if now > deadline:
            break
        action()
    return SimResult(now, state["sent"], state["throttled"], state["done"], rates)


# --- the scenarios of the pacing issue --------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str
    make: Callable[[int], ServerLimit]  # seed -> a fresh server
    max_rate: float
    ids: int
    ideal: float  # seconds
    goal: float  # time / ideal
    goal_429: float  # share of 429s


def _drop_ideal() -> float:
    return TokenBucket(100, 10, schedule=[(0.0, 100.0), (8.0, 40.0), (16.0, 100.0)]).ideal(1800)


SCENARIOS = [
    Scenario("bucket", lambda s: TokenBucket(100, 10, 1.0), 1000, 1500, 15.0, 1.25, 0.03),
    Scenario("below", lambda s: TokenBucket(100, 10, 1.0), 90, 900, 10.0, 1.05, 0.0),
    Scenario(
        "fixed_window",
        lambda s: FixedWindow(100, 1.0, phase=random.Random(s).random()),
        1000,
        1500,
        15.0,
        1.20,
        0.03,
    ),
    Scenario("sliding_window", lambda s: SlidingWindow(100, 1.0), 1000, 1500, 15.0, 1.20, 0.03),
    Scenario("in_flight", lambda s: InFlightCap(6, 0.040), 1000, 1500, 1500 / 147.0, 1.20, 0.03),
    Scenario(
        "drop",
        lambda s: TokenBucket(100, 10, 1.0, schedule=[(0.0, 100.0), (8.0, 40.0), (16.0, 100.0)]),
        1000,
        1800,
        _drop_ideal(),
        1.30,
        0.03,
    ),
    Scenario("no_retry_after", lambda s: TokenBucket(100, 10, None), 1000, 1500, 15.0, 1.25, 0.03),
    Scenario("random", lambda s: RandomThrottle(0.03, 0.0, seed=s), 400, 3000, 7.5, 1.15, 1.0),
    Scenario(
        "cotenant", lambda s: TokenBucket(100, 10, 1.0, cotenant=30.0), 1000, 1050, 15.0, 1.30, 0.03
    ),
    Scenario("bucket_burst_50", lambda s: TokenBucket(100, 50, 1.0), 1000, 1500, 15.0, 1.25, 0.03),
    Scenario(
        "window_5s",
        lambda s: FixedWindow(500, 5.0, phase=5.0 * random.Random(s).random()),
        1000,
        3000,
        30.0,
        1.20,
        0.03,
    ),
    # Beyond the list, so that tuning for it shows elsewhere: a longer sliding window,
    # and a cap on requests in flight at four times the rate.
    Scenario("sliding_2s", lambda s: SlidingWindow(200, 2.0), 1000, 1500, 15.0, 1.20, 0.03),
    Scenario(
        "in_flight_12", lambda s: InFlightCap(12, 0.020), 1000, 3000, 3000 / 571.0, 1.20, 0.03
    ),
    # The command line's demo: a limit half the configured rate, a larger burst, a short job
    # (6.7 s at the limit), so that the first pause and the search weigh heavily.
    Scenario("demo", lambda s: TokenBucket(300, 20, 1.0), 600, 2000, 2000 / 300, 1.85, 0.03),
    # throttle_zoo's short job, from a cold start (3 s at the limit). One pause is 1.29x; a
    # second drain, to read the refill rate, a second pause: 1.60x at best ((450 - 3 x 10) /
    # 150 + 2 s), which is the zoo's goal; this one is what two pauses and a search allow.
    Scenario("short_job", lambda s: TokenBucket(150, 10, 1.0), 1500, 450, 3.0, 1.70, 0.05),
]
BY_NAME = {s.name: s for s in SCENARIOS}


def run(name: str, *, adaptive: bool = True, seed: int = 1) -> tuple[float, float, SimResult]:
    """(time / ideal, share of 429s, the result) of one scenario."""
    sc = BY_NAME[name]
    result = simulate(sc.make(seed), ids=sc.ids, max_rate=sc.max_rate, adaptive=adaptive, seed=seed)
    return result.time / sc.ideal, result.share_429, result


if __name__ == "__main__":  # pragma: no cover - a table for people
    import sys

    seeds = range(1, 1 + (int(sys.argv[1]) if len(sys.argv) > 1 else 5))
    for sc in SCENARIOS:
        on = [run(sc.name, seed=s) for s in seeds]
        off = [run(sc.name, adaptive=False, seed=s) for s in seeds]
        med = sorted(r[0] for r in on)[len(on) // 2]
        worst = max(r[0] for r in on)
        share = max(r[1] for r in on)
        off_med = sorted(r[0] for r in off)[len(off) // 2]
        print(
            f"{sc.name:18s} adaptive {med:5.2f}x (worst {worst:5.2f}) 429 {share:5.1%}"
            f"  off {off_med:5.2f}x  goal {sc.goal:.2f}  ratio {med / off_med:4.2f}"
        )


#: Known limitation, measured but not a goal (docs/pacing.md): 1% random 429s that ask for a
#: 0.2 s pause are read as a limit, and adapting costs more than pausing alone.
RANDOM_WITH_PAUSE = Scenario(
    "random_pause", lambda s: RandomThrottle(0.01, 0.2, seed=s), 200, 1000, 5.0, 9.9, 1.0
)


def floor_time(ids: int, rate: float, burst: float, retry_after: float) -> float:
    """A token bucket's floor from a cold start: the ideal time plus the two pauses finding
    its limit cannot avoid (the first drain, at full pace; a second, to read the refill rate,
    since an accepted answer says nothing of it), less the burst each of the three starts (at
    0 and after each pause) gets at once."""
    return (ids - 3 * burst) / rate + 2 * retry_after


def _small_burst(name: str, rate: float, burst: float, retry_after: float, ids: int) -> Scenario:
    floor = floor_time(ids, rate, burst, retry_after)
    return Scenario(
        name,
        lambda s: TokenBucket(rate, burst, retry_after),
        1000,
        ids,
        ids / rate,
        round(1.05 * floor / (ids / rate), 3),  # 1.05x the floor
        0.03,
    )


#: Issue 19, item 3: a burst small against a long Retry-After, so that each pause refills only
#: the burst and every drain costs nearly the whole pause: the kinds where the gap between
#: finding the limit and the ideal is widest. Their goal is 1.05x their floor (``floor_time``).
SMALL_BURST_SCENARIOS = [
    _small_burst("burst3_ra3", 100, 3, 3.0, 1500),
    _small_burst("burst5_ra2", 60, 5, 2.0, 1200),
    _small_burst("burst2_ra5", 40, 2, 5.0, 1600),
]


#: Issue 20's many accounts, one at a time: buckets of 5 to 25/s with a burst of 5 and
#: ``Retry-After: 1``, each account's client at 250/s (10x the fastest), 200 ids. The goal is
#: 1.35x each account's ideal. (Pausing alone gets about 6/s from any of them: a pause refills
#: the burst only.)
ACCOUNT_SCENARIOS = [
    Scenario(
        f"account_{rate:g}",
        lambda s, rate=rate: TokenBucket(rate, 5, 1.0),
        250,
        200,
        200 / rate,
        1.35,
        0.10,
    )
    for rate in (5.0, 6.0, 8.0, 10.0, 11.5, 12.5, 15.0, 17.5, 20.0, 22.5, 25.0)
]


#: Issue 19, item 2: the soak's mix, 2% random 429s asking for no pause or for a second's,
#: among 503s, resets and slow answers; none is about rate. Its goal is against pausing alone:
#: adapting takes at most 1.10x the time of the same job with ``adaptive=False``.
RANDOM_MIX = Scenario(
    "random_mix",
    lambda s: RandomMix(0.02, (0.0, 1.0), p5xx=0.02, preset=0.01, pslow=0.02, seed=s),
    400,
    3000,
    3000 / 400,
    9.9,
    1.0,
)


#: Beyond the goals, so that the traces (tests/test_pacing_trace.py) reach every phase and reason:
#: a limit that goes away (``recovered``), one that drops under 429s with no pause
#: (``saturated``), and random 429s behind a cap (``not-cured``). Their goals are not goals.
EXTRA_SCENARIOS = [
    Scenario(
        "limit_lifted",
        lambda s: TokenBucket(100, 10, 0.0, schedule=[(0.0, 100.0), (3.0, 10000.0)]),
        300,
        3000,
        3000 / 300,
        9.9,
        1.0,
    ),
    Scenario(
        "drop_no_pause",
        lambda s: TokenBucket(100, 10, 0.0, schedule=[(0.0, 100.0), (5.0, 20.0)]),
        1000,
        1000,
        TokenBucket(100, 10, schedule=[(0.0, 100.0), (5.0, 20.0)]).ideal(1000),
        9.9,
        1.0,
    ),
    Scenario(
        "noisy_in_flight",
        lambda s: WithNoise(InFlightCap(6, 0.040), 0.03, seed=s),
        1000,
        1500,
        1500 / 147.0,
        9.9,
        1.0,
    ),
]


# --- issue 19's measurements, shared by its tests and tests/pacing_goals.py ----------------------

#: The seeds its goals are judged over: the median of ten jobs.
GOAL_SEEDS = range(1, 11)

#: 220 token buckets from 17 to 300/s, bursts of 2 to 20, Retry-After of 1 to 5 s.
BUCKET_GRID = [
    (rate, burst, retry_after)
    for rate in (17.0, 23.0, 31.0, 40.0, 47.0, 60.0, 77.0, 100.0, 130.0, 170.0, 300.0)
    for burst in (2.0, 3.0, 5.0, 10.0, 20.0)
    for retry_after in (1.0, 2.0, 3.0, 5.0)
]


def small_burst_ratios(sc: Scenario, seeds: Iterable[int] = GOAL_SEEDS) -> list[float]:
    """A small-burst kind's jobs, one per seed: time / its floor (its goal is 1.05x the floor)."""
    floor = sc.goal / 1.05  # in ideals
    ratios = []
    for seed in seeds:
        result = simulate(sc.make(seed), ids=sc.ids, max_rate=sc.max_rate, seed=seed)
        if result.done != sc.ids:
            raise AssertionError(f"{sc.name}, seed {seed}: {result.done} of {sc.ids} ids done")
        ratios.append(result.time / sc.ideal / floor)
    return ratios


def mix_pairs(
    seeds: Iterable[int] = GOAL_SEEDS,
) -> list[tuple[SimResult, SimResult, PacingModel]]:
    """The soak's mix (``RANDOM_MIX``) once adapting and once pausing alone, per seed: the two
    results, and the adapting run's model (its changes say what it read)."""
    sc = RANDOM_MIX
    pairs = []
    for seed in seeds:
        model = PacingModel(sc.max_rate)
        on = simulate(
            sc.make(seed), ids=sc.ids, max_rate=sc.max_rate, seed=seed,
            model_factory=lambda r, a, m=model: m,
        )  # fmt: skip
        off = simulate(sc.make(seed), ids=sc.ids, max_rate=sc.max_rate, seed=seed, adaptive=False)
        pairs.append((on, off, model))
    return pairs


def bucket_job(rate: float, burst: float, retry_after: float, seed: int = 1) -> float:
    """A cold start against a bucket, 15 s of ids at its rate, client at 1,000/s: time / floor."""
    ids = int(rate * 15)
    result = simulate(TokenBucket(rate, burst, retry_after), ids=ids, max_rate=1000, seed=seed)
    if result.done != ids:
        raise AssertionError(f"{rate:g}/s, burst {burst:g}: {result.done} of {ids} ids done")
    return result.time / floor_time(ids, rate, burst, retry_after)
