"""What each of the pacing model's constants changes: the simulator's goals at half and double.

For every class constant of ``PacingModel``, the simulator's scenarios (tests/pacing_sim.py: the
goals, then the kinds beyond them) run with the constant at half and at double its value, and
each kind's median time / ideal and median share of 429s over the seeds are compared with the
model as it is. A constant that is a fraction just under or over 1 (``HOLD`` 0.97) is varied by
its distance from 1: half and double of the 3% it takes off. A whole-number constant is rounded.
Virtual time only, no wall clock; about two minutes on one core:

    .venv/bin/python tests/pacing_sensitivity.py            # the markdown table of docs/pacing.md
    .venv/bin/python tests/pacing_sensitivity.py HOLD QUIET  # some constants only
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Iterable

from pacing_sim import (
    ACCOUNT_SCENARIOS,
    EXTRA_SCENARIOS,
    RANDOM_MIX,
    RANDOM_WITH_PAUSE,
    SCENARIOS,
    SMALL_BURST_SCENARIOS,
    Scenario,
    simulate,
)

from commbox_async._pacing import PacingModel

SEEDS = (1, 2, 3)
KINDS = [
    *SCENARIOS,
    RANDOM_WITH_PAUSE,
    RANDOM_MIX,
    *SMALL_BURST_SCENARIOS,
    *EXTRA_SCENARIOS,
    *ACCOUNT_SCENARIOS,
]
GOALS = {sc.name for sc in [*SCENARIOS, *SMALL_BURST_SCENARIOS, *ACCOUNT_SCENARIOS]}
# Below these, a change of a median is not an outcome: it shows as "under 1%" with the largest.
TIME_STEP = 0.01  # of the ideal time
SHARE_STEP = 0.001  # of the attempts


def constants() -> list[str]:
    """The model's class constants, in the order of the class."""
    return [name for name, value in vars(PacingModel).items() if name.isupper() and name[0] != "_"]


def varied(name: str, scale: float) -> float:
    """``name``'s value at ``scale`` (0.5 or 2) of what it does."""
    value = getattr(PacingModel, name)
    if 0.5 < value < 1.0:
        out = 1.0 - (1.0 - value) * scale
    elif 1.0 < value < 1.5:
        out = 1.0 + (value - 1.0) * scale
    else:
        out = value * scale
    return max(1, round(out)) if isinstance(value, int) else out


Outcomes = dict[str, tuple[float, float]]  # kind -> (median time / ideal, median share of 429s)


def outcomes(changes: dict[str, float]) -> Outcomes:
    """Each kind's medians with the constants in ``changes`` replaced."""
    model = type("Varied", (PacingModel,), changes)
    out = {}
    for sc in KINDS:
        runs = [
            simulate(
                sc.make(seed),
                ids=sc.ids,
                max_rate=sc.max_rate,
                seed=seed,
                model_factory=lambda rate, on: model(rate, adaptive=on),
            )
            for seed in SEEDS
        ]
        ratio = statistics.median(r.time / sc.ideal for r in runs)
        out[sc.name] = (ratio, statistics.median(r.share_429 for r in runs))
    return out


def _missed(sc: Scenario, ratio: float, share: float) -> bool:
    return sc.name in GOALS and (ratio > sc.goal or (sc.goal_429 > 0 and share > sc.goal_429))


def effect(base: Outcomes, new: Outcomes, kinds: Iterable[Scenario]) -> list[str]:
    """The kinds whose outcome moved, as "kind 1.12->1.20x, 429s 1.0->2.0%" (! misses a goal)."""
    out = []
    for sc in kinds:
        (r0, s0), (r1, s1) = base[sc.name], new[sc.name]
        parts = []
        if abs(r1 - r0) >= TIME_STEP:
            parts.append(f"{r0:.2f}->{r1:.2f}x")
        if abs(s1 - s0) >= SHARE_STEP:
            parts.append(f"429s {s0:.1%}->{s1:.1%}")
        if parts:
            mark = " !" if _missed(sc, r1, s1) and not _missed(sc, r0, s0) else ""
            out.append(f"{sc.name} {', '.join(parts)}{mark}")
    return out


def _largest(base: Outcomes, new: Outcomes) -> str:
    """For a change under the steps: "no change", or the largest move of a time."""
    kind = max(base, key=lambda k: abs(new[k][0] - base[k][0]))
    delta = new[kind][0] - base[kind][0]
    if delta == 0 and new == base:
        return "no change"
    return f"under 1% (at most {kind} {delta:+.3f}x)"


def main(names: list[str]) -> None:
    base = outcomes({})
    print("| kind | time / ideal | 429s | goal |")
    print("| --- | --- | --- | --- |")
    for sc in KINDS:
        ratio, share = base[sc.name]
        goal = f"{sc.goal:.2f}x, {sc.goal_429:.0%}" if sc.name in GOALS else "(beyond the goals)"
        print(f"| {sc.name} | {ratio:.2f}x | {share:.1%} | {goal} |")
    print()
    print("| constant | value | at half | at double |")
    print("| --- | --- | --- | --- |")
    for name in names or constants():
        cells = []
        for scale in (0.5, 2.0):
            value = varied(name, scale)
            new = outcomes({name: value})
            moved = effect(base, new, KINDS) or [_largest(base, new)]
            cells.append(f"{value:g}: " + "; ".join(moved))
        print(f"| {name} | {getattr(PacingModel, name):g} | {cells[0]} | {cells[1]} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
