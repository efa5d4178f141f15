"""Two `commbox-async fetch` runs in a row against one throttled server: the second starts from
the limit the first one met (issue 19's goal: the second of two runs of 300 ids against a
bucket of 100/s with --rate 1000 within 1.15x its ideal time).

Each round starts `commbox-async mock --throttle-rate 100` (burst 10, Retry-After 1) on a free
loopback port, runs `fetch` twice with an empty state directory of its own (the first run
cold, the second from what the first saved), then once more with `--fresh` for comparison;
the time of each is the summary's `elapsed_s`, the ideal 300 / 100 = 3 s.

Run: ``python -m benchmarks.bench_remembered [--rounds 3] [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from commbox_async.testing import unused_port

IDS, RATE, CLIENT_RATE = 300, 100.0, 1000.0
TOKEN = "bench-remembered-token"


def _fetch(url: str, ids: Path, state: Path, summary: Path, *extra: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMBOX_")}
    env.update(COMMBOX_TOKEN=TOKEN, COMMBOX_STATE_DIR=str(state))
    command = [sys.executable, "-m", "commbox_async", "fetch", str(ids), "-o", os.devnull]
    command += ["--base-url", url, "--rate", f"{CLIENT_RATE:g}", "--summary-json", str(summary)]
    subprocess.run([*command, *extra], env=env, check=True, capture_output=True, timeout=300)
    result: float = json.loads(summary.read_text())["elapsed_s"]
    return result


def one_round(count: int) -> tuple[float, float, float]:
    """(cold, remembered, --fresh) times over the ideal, against a new server."""
    port = unused_port()
    mock = subprocess.Popen(
        [sys.executable, "-m", "commbox_async", "mock", "--port", str(port), "--token", TOKEN,
         "--throttle-rate", f"{RATE:g}", "--conversations", "1", "--childs", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert mock.stdout is not None
        mock.stdout.readline()  # it prints its URL once it listens
        with tempfile.TemporaryDirectory() as folder:
            tmp = Path(folder)
            ids = tmp / "ids.txt"
            ids.write_text("".join(f"{558300 + n}\n" for n in range(count)))
            url, summary, ideal = f"http://127.0.0.1:{port}", tmp / "summary.json", count / RATE
            cold = _fetch(url, ids, tmp / "state", summary)
            time.sleep(1.5)  # the server's bucket refills between jobs, as between cron runs
            warm = _fetch(url, ids, tmp / "state", summary)
            time.sleep(1.5)
            fresh = _fetch(url, ids, tmp / "state", summary, "--fresh")
            return cold / ideal, warm / ideal, fresh / ideal
    finally:
        mock.terminate()
        mock.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one round of 100 ids")
    args = parser.parse_args()
    rounds, count = (1, 100) if args.quick else (args.rounds, IDS)
    results = [one_round(count) for _ in range(rounds)]
    print(f"{count} ids, bucket {RATE:g}/s (burst 10, Retry-After 1), --rate {CLIENT_RATE:g}; "
          f"time / ideal over {rounds} round(s)")  # fmt: skip
    print("| run | median | worst | all |")
    print("|---|---|---|---|")
    names = ("first (cold)", "second (remembered)", "third (--fresh)")
    for name, column in zip(names, zip(*results, strict=True), strict=True):
        cells = ", ".join(f"{v:.2f}x" for v in column)
        print(f"| {name} | {statistics.median(column):.2f}x | {max(column):.2f}x | {cells} |")


if __name__ == "__main__":
    main()
