"""Trades per second of the columnar kline builder against the per-trade builder.

One generated single-symbol stream (2M aggTrades by default: a random-walk price, gaps of
0-60 ms with a few quiet minutes, ids consecutive, spans of 1-3 trades) is built by both, in
one run, for two interval sets: the default six (1m base) and six with 1s (1s base). The
columnar builder is fed in batches of several sizes; its output is checked equal to the
builder's before any figure is printed. Figures are wall-clock rates on a shared machine:
compare the ratios.

    .venv/bin/python bench/columnar_klines_bench.py [trades]
"""

from __future__ import annotations

import sys
import time

import numpy as np

from flows.domain.intervals import DEFAULT_INTERVALS
from flows.domain.kline import Kline, Trade
from flows.klines.builder import build_klines
from flows.klines.columnar import ColumnarKlines

WITH_1S = ("1s", "1m", "5m", "15m", "1h", "1d")
BATCHES = (1_000, 10_000, 100_000, 0)  # 0: the whole stream at once


def generate(count: int, seed: int = 17) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    gaps = rng.integers(0, 60, count)
    gaps[rng.random(count) < 1e-4] += 180_000  # a few quiet minutes: flat klines
    ts = 1_700_000_000_000 + np.cumsum(gaps)
    steps = rng.integers(-2, 3, count) * 1_000
    price = 3_000_000_000 + np.cumsum(steps)
    price = np.maximum(price, 1_000)
    qty = rng.integers(1, 50_000_000_000, count)
    span = rng.integers(1, 4, count)
    last = 10**9 + np.cumsum(span)
    first = last - span + 1
    maker = rng.random(count) < 0.5
    return [ts.astype(np.int64), price, qty, first, last, maker]


def columnar(
    cols: list[np.ndarray], intervals: tuple[str, ...], batch: int
) -> dict[str, list[Kline]]:
    ck = ColumnarKlines(intervals)
    out: dict[str, list[Kline]] = {name: [] for name in intervals}
    size = batch or len(cols[0])
    for lo in range(0, len(cols[0]), size):
        for name, ks in ck.process(*(c[lo : lo + size] for c in cols)).closed.items():
            out[name].extend(ks)
    for name, ks in ck.final_klines().items():
        out[name].extend(ks)
    return out


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2_000_000
    cols = generate(count)
    trades: list[Trade] = list(
        zip(
            *(c.tolist() for c in (cols[3], cols[4], cols[1], cols[2], cols[0], cols[5])),
            strict=True,
        )
    )
    print(f"{count:,} trades of one symbol over {(cols[0][-1] - cols[0][0]) / 3.6e6:.1f} h")
    for intervals in (DEFAULT_INTERVALS, WITH_1S):
        t0 = time.perf_counter()
        expected = build_klines(trades, intervals)
        per_trade = time.perf_counter() - t0
        klines = sum(len(ks) for ks in expected.values())
        print(f"\nintervals {','.join(intervals)}: {klines:,} klines")
        print(f"  builder.py (per trade)      {count / per_trade / 1e6:6.2f} M trades/s")
        for batch in BATCHES:
            t0 = time.perf_counter()
            got = columnar(cols, intervals, batch)
            took = time.perf_counter() - t0
            if got != expected:
                raise SystemExit(f"columnar klines differ from builder.py (batch {batch})")
            label = f"batch {batch:,}" if batch else "one batch"
            print(
                f"  columnar, {label:<16}  {count / took / 1e6:6.2f} M trades/s"
                f"  ({per_trade / took:4.1f}x)"
            )


if __name__ == "__main__":
    main()
