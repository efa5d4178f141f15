"""The throttle benchmark's results: one run's figures, the goals judged, the tables and the chart.

The goals are the pacing issue's, judged on the library with its defaults: per scenario the
median time / ideal within the goal and the worst run within the goal + 0.10; the median share
of 429s within its goal (and no 429 at all in any run where the goal is none); no id lost or
duplicated in any run; no run cut off; and do no harm: adaptive / ``adaptive=False``, paired run
by run, at most 1.10 at the median and 1.20 at the worst.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from .throttle_scenarios import Scenario

CONTENDERS = {
    "adaptive": "library (default: adaptive)",
    "fixed": "library, adaptive=False",
    "gather": "hand-written gather",
}
SLACK = 0.10  # the worst run may exceed a goal by this much
HARM = 1.10  # adaptive / adaptive=False


@dataclass
class RunResult:
    scenario: Scenario
    contender: str
    elapsed: float | None  # None: cut off or failed
    cut_off: float | None  # the timeout, when the run was cut off
    error: str
    requests: int
    throttled: int
    lost: int
    duplicated: int
    server_busy: float | None = None  # the server process's CPU use during the run, in cores
    held: str = ""  # the in-flight cap: the most requests it held at once, their mean hold

    @property
    def finished(self) -> bool:
        return self.elapsed is not None

    @property
    def ratio(self) -> float:
        """time / ideal; a cut-off run counts its timeout (a lower bound), a failed one inf."""
        seconds = self.elapsed if self.elapsed is not None else self.cut_off
        return math.inf if seconds is None else seconds / self.scenario.ideal()

    @property
    def share(self) -> float:
        return self.throttled / max(1, self.requests)

    def ratio_text(self) -> str:
        if self.elapsed is not None:
            return f"{self.ratio:.2f}x"
        return f">={self.ratio:.1f}x" if self.cut_off is not None else "failed"

    def _busy(self) -> str:
        return "" if self.server_busy is None else f"; server busy {self.server_busy:.0%}"

    def line(self) -> str:
        note = f" [{self.error}]" if self.error else ""
        return (
            f"{self.scenario.name:<15} {self.contender:<9} time/ideal {self.ratio_text():>8} "
            f"(ideal {self.scenario.ideal():.1f} s) 429s {self.share:6.1%} of {self.requests:>5} "
            f"lost {self.lost} dup {self.duplicated}{self.held}{note}{self._busy()}"
        )


@dataclass
class Verdict:
    scenario: str
    what: str
    target: str
    measured: str
    holds: bool

    def row(self) -> list[str]:
        return [self.scenario, self.what, self.target, self.measured, _mark(self.holds)]


def _mark(holds: bool) -> str:
    return "holds" if holds else "**MISSED**"


def runs_of(results: list[RunResult], sc: Scenario, contender: str) -> list[RunResult]:
    return [r for r in results if r.scenario.name == sc.name and r.contender == contender]


def harm_ratios(results: list[RunResult], sc: Scenario) -> list[float]:
    """adaptive / adaptive=False, run by run (the two ran side by side in the same round).

    A cut-off run counts its timeout: a lower bound for the one, so an upper bound of the
    ratio when only adaptation off was cut off; nothing can be said when both were."""
    pairs = zip(runs_of(results, sc, "adaptive"), runs_of(results, sc, "fixed"), strict=False)
    return [
        a.ratio / f.ratio
        for a, f in pairs
        if math.isfinite(a.ratio) and math.isfinite(f.ratio) and (a.finished or f.finished)
    ]


def spread(values: list[float], fmt: str = "{:.2f}x") -> str:
    """``median (worst)``, worst being the largest."""
    if not values:
        return "n/a"
    return f"{fmt.format(statistics.median(values))} ({fmt.format(max(values))})"


def judge(chosen: list[Scenario], results: list[RunResult]) -> list[Verdict]:
    out: list[Verdict] = []
    for sc in chosen:
        runs = runs_of(results, sc, "adaptive")
        if not runs:
            continue
        ratios = [r.ratio for r in runs]
        cut = sum(not r.finished for r in runs)
        med, worst = statistics.median(ratios), max(ratios)
        out.append(
            Verdict(
                sc.name,
                "time / ideal, median (worst)",
                f"<= {sc.goal.ratio:.2f}x ({sc.goal.ratio + SLACK:.2f}x)",
                spread(ratios) + (f", {cut} run(s) cut off" if cut else ""),
                not cut and med <= sc.goal.ratio and worst <= sc.goal.ratio + SLACK,
            )
        )
        shares = [r.share for r in runs]
        if sc.goal.share_429 == 0:
            out.append(Verdict(sc.name, "429s", "none", spread(shares, "{:.1%}"), max(shares) == 0))
        elif sc.goal.share_429 < 1:
            out.append(
                Verdict(
                    sc.name,
                    "429s, median (worst)",
                    f"<= {sc.goal.share_429:.0%}",
                    spread(shares, "{:.1%}"),
                    statistics.median(shares) <= sc.goal.share_429,
                )
            )
        lost, dup = max(r.lost for r in runs), max(r.duplicated for r in runs)
        out.append(
            Verdict(
                sc.name,
                "lost / duplicated (worst run)",
                "0 / 0",
                f"{lost} / {dup}",
                lost == 0 and dup == 0,
            )
        )
        harm = harm_ratios(results, sc)
        if runs_of(results, sc, "fixed"):
            out.append(
                Verdict(
                    sc.name,
                    "adaptive / adaptive=False, median (worst)",
                    f"<= {HARM:.2f}x ({HARM + SLACK:.2f}x)",
                    spread(harm),
                    bool(harm)
                    and len(harm) == len(runs)
                    and statistics.median(harm) <= HARM
                    and max(harm) <= HARM + SLACK,
                )
            )
    return out


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join(
        [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        + [line(r) for r in rows]
    )


def report(
    command: str,
    chosen: list[Scenario],
    contenders: list[str],
    results: list[RunResult],
    verdicts: list[Verdict],
    runs: int,
) -> str:
    rows = []
    for sc in chosen:
        for contender in contenders:
            mine = runs_of(results, sc, contender)
            if not mine:
                continue
            ratios = [r.ratio for r in mine]
            cut = sum(not r.finished for r in mine)
            ratio_cell = spread(ratios) + (f", {cut} cut off" if cut else "")
            rows.append(
                [
                    sc.name,
                    CONTENDERS[contender],
                    ratio_cell,
                    spread([r.share for r in mine], "{:.1%}"),
                    str(max(r.lost for r in mine)),
                    str(max(r.duplicated for r in mine)),
                ]
            )
    scenario_rows = [
        [
            sc.name,
            sc.server,
            f"{sc.client_max:g}/s",
            f"{sc.ids:,}",
            f"{sc.ideal():.1f} s",
            sc.goal.text(),
        ]
        for sc in chosen
    ]
    errors = sorted({f"{r.scenario.name}, {r.contender}: {r.error}" for r in results if r.error})
    parts = [
        f"`{command}`: {runs} run(s) per contender, interleaved in a rotating order; "
        "median (worst) over the runs; a run cut off counts its timeout as a lower bound.",
        "",
        table(["scenario", "server's limit", "client max", "ids", "ideal", "goal"], scenario_rows),
        "",
        table(
            ["scenario", "contender", "time / ideal", "429s", "lost (worst)", "dup (worst)"], rows
        ),
    ]
    if verdicts:
        parts += [
            "",
            "Goals, judged on the library with its defaults (the worst run may exceed a goal "
            f"by {SLACK:.2f}):",
            "",
            table(["scenario", "goal", "target", "measured", ""], [v.row() for v in verdicts]),
        ]
    busy = [r.server_busy for r in results if r.server_busy is not None]
    if busy:
        most = max(busy)
        verdict = (
            "the server was not the bottleneck"
            if most <= 0.8
            else "**the server may have been the bottleneck**"
        )
        parts += [
            "",
            f"The server's process used at most {most:.0%} of a core during any run (read from "
            f"/proc): {verdict}.",
        ]
    if errors:
        parts += ["", "Runs that did not finish:", *(f"- {e}" for e in errors)]
    return "\n".join(parts)


def chart(
    chosen: list[Scenario], contenders: list[str], results: list[RunResult], path: Path
) -> str:
    """Grouped bars: time / ideal per scenario, one bar per contender (median, whiskers to the
    best and the worst run), each scenario's goal as a black dash; a log scale, since a
    contender that stampedes can take ten times the ideal."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "chart skipped: matplotlib is not installed (pip install -e '.[bench]')"
    fig, ax = plt.subplots(figsize=(12, 5), constrained_layout=True)
    width = 0.8 / max(1, len(contenders))
    for c, contender in enumerate(contenders):
        xs, meds, lows, highs, cut = [], [], [], [], []
        for i, sc in enumerate(chosen):
            ratios = [r.ratio for r in runs_of(results, sc, contender) if math.isfinite(r.ratio)]
            if not ratios:
                continue
            med = statistics.median(ratios)
            xs.append(i + (c - (len(contenders) - 1) / 2) * width)
            meds.append(med)
            lows.append(med - min(ratios))
            highs.append(max(ratios) - med)
            cut.append(any(not r.finished for r in runs_of(results, sc, contender)))
        bars = ax.bar(
            xs, meds, width=width, yerr=[lows, highs], capsize=2, label=CONTENDERS[contender]
        )
        labels = [f"{'>=' if was_cut else ''}{m:.2f}" for m, was_cut in zip(meds, cut, strict=True)]
        ax.bar_label(bars, labels=labels, fontsize="x-small", padding=2)
        for bar, was_cut in zip(bars, cut, strict=True):
            if was_cut:  # a lower bound: the run was cut off at its timeout
                bar.set_hatch("//")
    for i, sc in enumerate(chosen):
        ax.hlines(sc.goal.ratio, i - 0.45, i + 0.45, colors="black", linewidth=1.5)
    ax.axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
    ax.set_yscale("log")
    ax.set_xticks(range(len(chosen)), labels=[sc.name for sc in chosen])
    ax.set_ylabel("time / ideal (median; whiskers best-worst run)")
    ax.set_title(
        "Fan-out against servers with limits the client cannot see "
        "(black: the goal; hatched: a run cut off, a lower bound)"
    )
    ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3)
    ax.set_ylim(top=ax.get_ylim()[1] * 1.15)  # room for the labels of the tallest bars
    ax.grid(axis="y", alpha=0.3, which="both")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"![time / ideal per scenario]({path.name})"
