"""The benchmark suite's quick mode runs end to end: a smoke test, nothing here is timed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.run_all import BY_HAND

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = (
    "bucket",
    "below",
    "fixed_window",
    "sliding_window",
    "in_flight",
    "drop",
    "no_retry_after",
    "random",
    "short_job",
)
CONTENDERS = ("library (default: adaptive)", "library, adaptive=False", "hand-written gather")
TABLES = ("## decode", "## throughput", "## per-request CPU overhead", "## goals")
#: What .ci/run installs; without it the nginx case skips (and fails under CI=true).
NGINX_HINT = "nginx is not installed: apt-get install nginx-light (.ci/run does)"
#: How the suite names the server it used.
SERVER_LINES = {"nginx": "server: nginx/", "raw": "server: a raw asyncio server"}


def _has_nginx() -> bool:
    return shutil.which("nginx") is not None or any(
        os.access(path, os.X_OK) for path in ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
    )


def _benchmark(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """``python -m benchmarks.<args>`` from the project's root; it must exit 0."""
    done = subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done


@pytest.mark.parametrize("server", ["nginx", "raw"])
def test_quick_benchmarks_run_and_print_their_tables(tmp_path: Path, server: str) -> None:
    """`python -m benchmarks.run_all --quick` exits 0 against nginx and against the raw server,
    prints every table and writes RESULTS.md, keeping its records by hand as they were."""
    if server == "nginx" and not _has_nginx():
        pytest.skip(NGINX_HINT)
    by_hand = f"{BY_HAND}\n\n## 7. A record measured by hand\n\n| kept | as it was |\n"
    (tmp_path / "RESULTS.md").write_text("# An older run\n\n## Goals\n\nstale\n\n" + by_hand)
    done = _benchmark(
        "benchmarks.run_all",
        "--quick",
        "--no-throttle",
        "--no-install",
        "--server",
        server,
        "--out-dir",
        str(tmp_path),
        timeout=180,
    )
    # The server asked for is the one that ran (no silent fallback from nginx to raw).
    assert SERVER_LINES[server] in done.stdout, done.stdout[:2000]
    for heading in TABLES:
        assert heading in done.stdout, heading
    assert "| commbox_async" in done.stdout
    assert "raw aiohttp + msgspec" in done.stdout
    assert "Traceback" not in done.stderr
    results = (tmp_path / "RESULTS.md").read_text()
    assert results.startswith("# Benchmark results")
    assert "## 5. What was changed to meet the goals" in results
    assert "{" not in results.split("## 5.")[1]  # every figure of the template was filled in
    assert results.endswith("\n\n" + by_hand) and "stale" not in results


def test_results_without_the_marker_are_refused_before_measuring(tmp_path: Path) -> None:
    """A RESULTS.md without the line that starts the records by hand: `run_all` refuses at
    once (before an hour of measuring) and leaves the file as it was."""
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n## 7. A record measured by hand\n")
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run_all", "--quick", "--out-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "records by hand" in done.stderr
    assert "## decode" not in done.stdout  # nothing was measured
    assert results.read_text() == "# Benchmark results\n\n## 7. A record measured by hand\n"


def test_the_pacing_goals_beyond_the_scenarios_run() -> None:
    """`bench_pacing_goals --quick` runs a remembered `fetch`, the demo and the simulator's
    goals, and prints a row for each (not judged in the quick mode)."""
    done = _benchmark("benchmarks.bench_pacing_goals", "--quick", timeout=300)
    rows = ("| remembered limits", "| `commbox-async demo`", "| burst3_ra3", "| the soak's mix")
    for row in rows:
        assert row in done.stdout, row
    assert "not judged" in done.stdout and "Traceback" not in done.stderr


def test_quick_throttle_benchmark_reports_every_scenario(tmp_path: Path) -> None:
    """`python -m benchmarks.bench_throttle --quick` exits 0 and reports every scenario (the
    eight and the short job) for all three contenders, the goals, memory, and a chart (the
    library's figures are not judged here: the full run judges them)."""
    done = _benchmark(
        "benchmarks.bench_throttle", "--quick", "--out-dir", str(tmp_path), timeout=600
    )
    assert "Traceback" not in done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    for scenario in SCENARIOS:
        for contender in CONTENDERS:
            assert any(f"| {scenario} " in r and f"| {contender} " in r for r in rows), (
                scenario,
                contender,
            )
        assert any(f"| {scenario} " in r and "adaptive / adaptive=False" in r for r in rows)
    assert "peak RSS ratio" in done.stdout
    assert "goals: " in done.stdout
    assert (tmp_path / "throttle.png").stat().st_size > 10_000


def test_hot_path_and_two_kb_throughput_run() -> None:
    """`bench_hotpath` (the library's own cost over an instant transport) and the throughput
    benchmark's 2 KB body, library and raw loop only, run to the end and print their tables."""
    hot = _benchmark("benchmarks.bench_hotpath", "--rounds", "1", "--requests", "300", timeout=120)
    assert "library's own cost (difference)" in hot.stdout
    server = "nginx" if _has_nginx() else "raw"
    fanout = _benchmark(
        "benchmarks.bench_throughput",
        "--quick",
        "--goal-only",
        "--body",
        "2 KB",
        "--server",
        server,
        timeout=180,
    )
    assert "| 2 KB (1x1, 2 KiB)" in fanout.stdout
    assert "raw aiohttp + msgspec" in fanout.stdout
    assert "httpx" not in fanout.stdout


@pytest.mark.parametrize("part", ["limiter", "account", "fan-out", "unread_counts"])
def test_instruction_parts_run(part: str) -> None:
    """Each part that `bench_instructions` counts under callgrind runs on its own (no valgrind
    here: one short run, which is what callgrind would watch)."""
    _benchmark("benchmarks.bench_instructions", "--run", part, "20", timeout=120)
