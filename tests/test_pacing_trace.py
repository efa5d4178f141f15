"""The pacing model's decisions, seed for seed, are what the golden file recorded.

Every limiter kind of the simulator (tests/pacing_sim.py: the goal scenarios, the known limit
and the extras that reach every phase and reason), a few seeds each, with adaptation on and once
off, plus a few seeded feeds of odd inputs given to the model directly. Each run's trace is every
input the model was given (sends; answers with their outcome, pause and asked pause) and every
change of what it shows after an input or a read of the rate (rate, phase, last change with its
reason and evidence), floats written exactly. The golden file
(tests/fixtures/pacing_traces.jsonl) keeps, per run, the trace's sha256, its length, a short
digest every ``CHECKPOINT`` events (to say where a trace left the recorded one) and the rate
changes rounded for people to read.

A restructure must leave this file as it is. A deliberate change of behaviour regenerates it,
in the same commit, with:

    .venv/bin/python tests/test_pacing_trace.py --regenerate
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pacing_sim import (
    EXTRA_SCENARIOS,
    RANDOM_WITH_PAUSE,
    SCENARIOS,
    SMALL_BURST_SCENARIOS,
    Scenario,
    simulate,
)

from commbox_async._pacing import Outcome, PacingModel, Ticket

GOLDEN = Path(__file__).parent / "fixtures" / "pacing_traces.jsonl"
SEEDS = (1, 2, 3)
FEED_SEEDS = (3, 6, 10, 22)  # among the first 40, the ones that reach the rarest branches
CHECKPOINT = 1000  # events between two digests kept in the golden file


class TracedModel(PacingModel):
    """A ``PacingModel`` that writes down every input and every change of what it shows."""

    def __init__(self, max_rate: float, *, adaptive: bool = True) -> None:
        super().__init__(max_rate, adaptive=adaptive)
        self.events: list[str] = []
        self.shown = self._shows()

    def _shows(self) -> str:
        c = self.last_change
        return (
            f"= {self.rate!r} {self.phase.value} | {c.at!r} {c.old!r} {c.new!r} "
            f"{c.reason.value} {c.evidence}"
        )

    def _note_change(self) -> None:
        shown = self._shows()
        if shown != self.shown:
            self.shown = shown
            self.events.append(shown)

    def on_send(self, now: float) -> Ticket:
        self.events.append(f"s {now!r}")
        ticket = super().on_send(now)
        self._note_change()
        return ticket

    def on_answer(
        self,
        ticket: Ticket,
        now: float,
        outcome: Outcome,
        *,
        pause: float = 0.0,
        asked: float | None = None,
    ) -> None:
        self.events.append(f"a {ticket.sent!r} {now!r} {outcome.name} {pause!r} {asked!r}")
        super().on_answer(ticket, now, outcome, pause=pause, asked=asked)
        self._note_change()

    def rate_at(self, now: float) -> float:
        rate = super().rate_at(now)
        self._note_change()
        return rate

    def changes_for_people(self) -> list[str]:
        """Each rate change (and each 429 noted without one) as "time new-rate reason"."""
        out = []
        for event in self.events:
            if event.startswith("= "):
                rate, phase, _, at, _, _, reason = event[2:].split(" ")[:7]
                out.append(f"{float(at):.3f} {float(rate):.4g} {reason} {phase}")
        return out


@dataclass(frozen=True)
class Run:
    """One traced run: a scenario and a seed, or a direct feed."""

    kind: str
    seed: int
    adaptive: bool = True

    @property
    def key(self) -> str:
        return f"{self.kind} seed={self.seed}" + ("" if self.adaptive else " adaptive=off")


def _scenarios() -> list[Scenario]:
    return [*SCENARIOS, RANDOM_WITH_PAUSE, *SMALL_BURST_SCENARIOS, *EXTRA_SCENARIOS]


def runs() -> Iterator[Run]:
    """Every run the golden file records, in its order."""
    for sc in _scenarios():
        for seed in SEEDS:
            yield Run(sc.name, seed)
        yield Run(sc.name, 1, adaptive=False)
    for seed in FEED_SEEDS:
        yield Run("direct_feed", seed)


def _direct_feed(model: TracedModel, seed: int) -> None:
    """Odd inputs straight to the model: bursts and lulls, answers in any order, every outcome,
    pauses and asked pauses of every size (the simulator never sends some of these)."""
    rng = random.Random(seed)
    pending: list[Ticket] = []
    now = 0.0
    for step in range(3000):
        if step % 250 == 0:  # a new regime: how many 429s, and what pauses they ask for
            refused = rng.choice((0, 3, 10, 25, 60))
            pauses = rng.choice(((0.0,), (0.0, 0.05), (1.0,), (0.0, 0.05, 0.2, 1.0, 3.0)))
        now += rng.choice((0.0005, 0.002, 0.01, 0.05, 0.3, 2.5))
        for _ in range(rng.choice((0, 1, 1, 2, 8))):
            pending.append(model.on_send(now))
        rng.shuffle(pending)
        for _ in range(min(len(pending), rng.choice((0, 1, 2, 6)))):
            outcome = rng.choices(
                (Outcome.ACCEPTED, Outcome.THROTTLED, Outcome.FAILED),
                weights=(95 - refused, refused, 5),
            )[0]
            pause = rng.choice(pauses)
            asked = rng.choice((None, pause, 0.0))
            model.on_answer(pending.pop(), now, outcome, pause=pause, asked=asked)
        model.rate_at(now)


def trace(run: Run) -> TracedModel:
    """The model after ``run``, with its trace."""
    if run.kind == "direct_feed":
        model = TracedModel(800.0)
        _direct_feed(model, run.seed)
        return model
    sc = next(s for s in _scenarios() if s.name == run.kind)
    models: list[TracedModel] = []

    def factory(rate: float, adaptive: bool) -> PacingModel:
        models.append(TracedModel(rate, adaptive=adaptive))
        return models[-1]

    simulate(
        sc.make(run.seed),
        ids=sc.ids,
        max_rate=sc.max_rate,
        adaptive=run.adaptive,
        seed=run.seed,
        model_factory=factory,
    )
    return models[0]


def record(run: Run) -> dict[str, object]:
    """What the golden file keeps of one run."""
    model = trace(run)
    whole = hashlib.sha256()
    checkpoints = []
    for i, event in enumerate(model.events, 1):
        whole.update(event.encode())
        whole.update(b"\n")
        if i % CHECKPOINT == 0:
            checkpoints.append(whole.hexdigest()[:10])
    return {
        "run": run.key,
        "events": len(model.events),
        "sha256": whole.hexdigest(),
        "checkpoints": checkpoints,
        "changes": model.changes_for_people(),
    }


def _first_difference(got: dict[str, object], want: dict[str, object]) -> str:
    """Where ``got`` left ``want``, as precisely as the golden file can say."""
    got_changes, want_changes = got["changes"], want["changes"]
    assert isinstance(got_changes, list) and isinstance(want_changes, list)
    for i, (g, w) in enumerate(zip(got_changes, want_changes, strict=False)):
        if g != w:
            return f"change #{i}: got {g!r}, recorded {w!r}"
    got_points, want_points = got["checkpoints"], want["checkpoints"]
    assert isinstance(got_points, list) and isinstance(want_points, list)
    for i, (g, w) in enumerate(zip(got_points, want_points, strict=False)):
        if g != w:
            return f"between events {i * CHECKPOINT} and {(i + 1) * CHECKPOINT}"
    if len(got_changes) != len(want_changes):
        return f"{len(got_changes)} changes, {len(want_changes)} recorded"
    done = len(want_points) * CHECKPOINT
    return f"after event {done} ({got['events']} events, {want['events']} recorded)"


def _load() -> dict[str, dict[str, object]]:
    lines = GOLDEN.read_text(encoding="utf-8").splitlines()
    return {entry["run"]: entry for entry in map(json.loads, lines)}


def test_traces_are_the_recorded_ones_seed_for_seed() -> None:
    """Every run's trace of decisions is identical to the golden file's, event for event."""
    golden = _load()
    keys = [run.key for run in runs()]
    assert sorted(golden) == sorted(keys), "runs differ from the golden file: regenerate it?"
    for run in runs():
        got, want = record(run), golden[run.key]
        if got["sha256"] != want["sha256"]:
            raise AssertionError(f"{run.key} diverged first, {_first_difference(got, want)}")


def regenerate() -> None:
    """Write the golden file from the model as it is now."""
    lines = [json.dumps(record(run), separators=(",", ":")) for run in runs()]
    GOLDEN.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(lines)} traces to {GOLDEN}")


if __name__ == "__main__":  # pragma: no cover - run by hand
    if sys.argv[1:] != ["--regenerate"]:
        sys.exit(f"usage: {sys.argv[0]} --regenerate")
    regenerate()
