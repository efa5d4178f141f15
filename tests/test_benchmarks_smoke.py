"""The benchmark suite's quick mode runs end to end: a smoke test, nothing here is timed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TABLES = ("## decode", "## throughput", "## per-request CPU overhead", "## goals")


@pytest.mark.parametrize("server", ["auto", "raw"])
def test_quick_benchmarks_run_and_print_their_tables(tmp_path: Path, server: str) -> None:
    """`python -m benchmarks.run_all --quick` exits 0, prints every table and writes RESULTS.md."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.run_all",
            "--quick",
            "--no-throttle",
            "--no-install",
            "--server",
            server,
            "--out-dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    for heading in TABLES:
        assert heading in done.stdout, heading
    assert "| commbox_async" in done.stdout
    assert "raw aiohttp + msgspec" in done.stdout
    assert "Traceback" not in done.stderr
    results = (tmp_path / "RESULTS.md").read_text()
    assert results.startswith("# Benchmark results")
    assert "## 5. What was changed to meet the goals" in results
    assert "{" not in results.split("## 5.")[1]  # every figure of the template was filled in


def test_quick_throttle_benchmark_runs_and_loses_nothing() -> None:
    """`benchmarks/bench_throttle.py --quick` exits 0: its tables print and no id was lost or
    fetched twice (its time goals are judged only in the full run)."""
    done = subprocess.run(
        [sys.executable, "benchmarks/bench_throttle.py", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "| library, client at 10x the server" in done.stdout
    assert "memory: peak RSS ratio" in done.stdout
    assert "quick mode: nothing lost or duplicated: yes" in done.stdout
