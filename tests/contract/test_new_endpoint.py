"""A sink written in one file, outside the package and listed nowhere but in
KLINEFLOW_IO_MODULES, is found and run by the contract suite; a broken one fails it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from flows.domain.keys import KeySpace

ROOT = Path(__file__).resolve().parents[2]

NEW_SINK = '''
"""Klines kept in a dict of JSON text: a data engineer's new sink, in one file."""
import json
from flows.io.contracts import KlineSink


class JsonKlines(KlineSink):
    def __init__(self):
        self.rows = {}

    def write_batch(self, records):
        for r in records:
            self.rows[(r.symbol, r.interval, r.kline.open_ms)] = json.dumps(
                [*r.kline, r.closed]){extra}

    def contents(self):
        return dict(self.rows)

    @classmethod
    def for_contract(cls, env):
        return cls()
'''

BROKEN = """
        self.rows[("written", len(self.rows), 0)] = "a second copy of each batch" """


def _suite(tmp_path: Path, module: str, source: str, redis_url: str) -> str:
    (tmp_path / f"{module}.py").write_text(source)
    env = {**os.environ, "KLINEFLOW_IO_MODULES": module, "KLINEFLOW_REDIS_URL": redis_url,
           "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}  # fmt: skip
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "JsonKlines",
         "-rA", str(ROOT / "tests" / "contract" / "test_endpoints.py")],
        check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return f"exit {run.returncode}\n{run.stdout}{run.stderr}"


def test_a_sink_in_a_new_file_is_run_by_the_contract_suite(
    tmp_path: Path, redis_url: str, keys: KeySpace
) -> None:
    good = _suite(tmp_path, "json_klines", NEW_SINK.replace("{extra}", ""), redis_url)
    assert good.startswith("exit 0"), good
    assert good.count("PASSED") == 2 and "json_klines.JsonKlines" in good, good

    broken = _suite(tmp_path, "json_klines_broken",
                    NEW_SINK.replace("{extra}", BROKEN), redis_url)  # fmt: skip
    assert broken.startswith("exit 1"), broken
    assert "FAILED" in broken and "json_klines_broken.JsonKlines" in broken, broken
