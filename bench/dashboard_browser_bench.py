"""NOTIFY-to-visible time of a new signal in the dashboard, in a real browser.

Runs the end-to-end test (tests/e2e: Debian's chromium driven by Playwright against the
dashboard process, real Redis and PostgreSQL) `--runs` times and prints the time from a
signal's commit in PostgreSQL to its row being visible on the Signals page, as the test
measured it (target: at most 2 s).

    python bench/dashboard_browser_bench.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    seen: list[float] = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="kf-e2e-") as out:
            env = dict(os.environ, KLINEFLOW_TEST_OUTPUT=out, PYTHONPATH=str(REPO))
            subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/e2e"],
                cwd=REPO, env=env, check=True,
            )  # fmt: skip
            data = json.loads((Path(out) / "dashboard-e2e" / "latency.json").read_text())
            seen.append(float(data["notify_to_visible_s"]))
    print(
        f"signal commit -> visible on the Signals page, {len(seen)} runs: "
        f"median {statistics.median(seen):.2f} s, max {max(seen):.2f} s (target 2 s); "
        f"all: {', '.join(f'{s:.2f}' for s in seen)}"
    )


if __name__ == "__main__":
    main()
