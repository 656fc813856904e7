"""`klineflow record`: a status line while it records, then a readable summary and the
files it wrote (no Python repr), against the exchange simulator."""

from __future__ import annotations

import gzip
from pathlib import Path

from typer.testing import CliRunner

from flows.cli import app
from flows.simulator import SimConfig, Simulator


def test_record_prints_a_summary_and_the_files_it_wrote(tmp_path: Path) -> None:
    with Simulator(SimConfig(symbols=3, seed=5, rate=200.0)) as sim:
        result = CliRunner().invoke(app, ["record", "--exchange-url", sim.base_url,
                                          "--symbols", "BTCUSDT,ETHUSDT", "--out",
                                          str(tmp_path), "--duration", "3"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "recording summary" in result.stdout and "RecorderStats(" not in result.output
    files = sorted(tmp_path.glob("*.jsonl.gz"))
    assert files and all(str(f) in result.stdout for f in files)
    frames = int(next(line for line in result.stdout.splitlines() if "frames" in line)
                 .split("│")[2].strip().replace(",", ""))  # fmt: skip
    assert frames > 0
    lines = sum(len(gzip.decompress(f.read_bytes()).splitlines()) - 1 for f in files)
    assert lines == frames  # one line per frame after each file's header
