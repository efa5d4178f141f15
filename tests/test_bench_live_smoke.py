"""benchmarks/bench_live.py's quick mode runs end to end (a smoke test: nothing here is timed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_live_benchmark_prints_its_three_parts() -> None:
    """`bench_live.py --quick` exits 0, every request count is 10, and no 429 was answered."""
    done = subprocess.run(
        [sys.executable, "benchmarks/bench_live.py", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    out = done.stdout
    assert "requests at the server per round: [10, 10] (goal: 10 each)" in out
    assert "429s: 0 (goal 0)" in out
    assert "### 3. watch memory: 10,000 identities x 10 open conversations" in out
