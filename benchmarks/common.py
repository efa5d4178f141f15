"""Small helpers shared by the benchmarks: samples, medians with spread, ratios, tables."""

from __future__ import annotations

import os
import platform
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


@dataclass
class Series:
    """The samples of one contender in one scenario (higher is better unless noted)."""

    name: str
    unit: str
    samples: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    @property
    def low(self) -> float:
        return min(self.samples) if self.samples else float("nan")

    @property
    def high(self) -> float:
        return max(self.samples) if self.samples else float("nan")


def paired_ratios(a: Series, b: Series) -> list[float]:
    """Round-by-round ratios a/b: both were measured side by side in the same round."""
    return [x / y for x, y in zip(a.samples, b.samples, strict=False) if y]


def ratio_text(a: Series, b: Series) -> str:
    """``median (min-max)`` of the paired ratios a/b."""
    ratios = paired_ratios(a, b)
    if not ratios:
        return "n/a"
    return f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"


def ratio_median(a: Series, b: Series) -> float:
    ratios = paired_ratios(a, b)
    return statistics.median(ratios) if ratios else float("nan")


def fmt(value: float) -> str:
    if value != value:
        return "n/a"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table (also readable as plain text)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out.extend(line(r) for r in rows)
    return "\n".join(out)


def rotate(items: Sequence[T], round_no: int) -> list[T]:
    """The contenders in a different order each round, so none always runs first or last."""
    k = round_no % len(items)
    order = list(items[k:]) + list(items[:k])
    return order if round_no % 2 == 0 else order[::-1]


def machine() -> str:
    """One line about where the numbers come from."""
    try:
        load = "load {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())
    except OSError:
        load = "load n/a"
    return (
        f"Python {sys.version.split()[0]} on {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs, {load} at start"
    )
