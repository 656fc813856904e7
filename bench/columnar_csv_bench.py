"""Columnar CSV dump parse vs today's per-row reader (flows.sources.dumps.read_csv).

Reads the largest real aggTrades dump under ../shared/data/binance (if present) and a
generated aggTrades dump of --rows rows (Binance's form: 8 decimals, ms times), plain and
zipped, with both readers, alternately, and prints trades/s of each and their ratio, all
measured in this run. Both readers' results are checked equal before timing.

    .venv/bin/python bench/columnar_csv_bench.py --rows 2000000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flows.sources.chunks import ReadOptions
from flows.sources.columnar_csv import read_columns
from flows.sources.dumps import read_csv
from tests.reference_rules import write_day

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "binance"
OPTIONS = ReadOptions(symbol="XRPETH", chunk_records=65_536)


def per_row(path: Path) -> int:
    return sum(chunk.trade_count for chunk in read_csv(path, OPTIONS, 0))


def columnar(path: Path) -> int:
    return sum(len(batch) for batch in read_columns(path, OPTIONS))


def timed(read: Callable[[Path], int], path: Path) -> tuple[float, int]:
    start = time.perf_counter()
    trades = read(path)
    return time.perf_counter() - start, trades


def same(path: Path) -> bool:
    rows = [t for c in read_csv(path, OPTIONS, 0) for v in c.trades.values() for t in v]
    cols = [t for b in read_columns(path, OPTIONS) for t in b.trades()]
    return rows == cols


def compare(label: str, path: Path, runs: int) -> None:
    equal = same(path)
    row_s: list[float] = []
    col_s: list[float] = []
    trades = 0
    for _ in range(runs):  # alternate, so the machine's noise hits both alike
        seconds, trades = timed(per_row, path)
        row_s.append(seconds)
        seconds, _ = timed(columnar, path)
        col_s.append(seconds)
    row, col = statistics.median(row_s), statistics.median(col_s)
    print(
        f"{label}: {trades:,} trades, equal={equal}; per-row {trades / row / 1e6:.2f} M/s, "
        f"columnar {trades / col / 1e6:.2f} M/s, ratio {row / col:.1f}x (median of {runs})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    real = sorted(SHARED.glob("*aggTrades*.csv*"), key=lambda p: p.stat().st_size)
    if real:
        compare(f"real {real[-1].name}", real[-1], max(args.runs, 5))
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "XRPETH-aggTrades-generated.csv"
        write_day(plain, args.rows, seed=17)
        compare(f"generated {plain.name}", plain, args.runs)
        zipped = plain.with_suffix(".zip")
        with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.write(plain, plain.name)
        compare(f"generated {zipped.name}", zipped, args.runs)


if __name__ == "__main__":
    main()
