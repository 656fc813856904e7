"""The batch baseline of bench/replay_vs_pandas.py: pandas read_csv + resample of an aggTrades
dump to 1m, 5m, 1h and 1d OHLCV (floats, not exact; run as its own process).

    .venv/bin/python bench/pandas_resample.py XRPETH-aggTrades-2019-10-11.csv
"""

from __future__ import annotations

import sys

import pandas as pd


def main() -> None:
    frame = pd.read_csv(sys.argv[1], header=None, usecols=[1, 2, 5], names=["p", "q", "t"])
    frame.index = pd.to_datetime(frame["t"], unit="ms")
    bars = {}
    for rule in ("1min", "5min", "1h", "1D"):
        grouped = frame.resample(rule)
        bars[rule] = pd.concat([grouped["p"].ohlc(), grouped["q"].sum()], axis=1)
    print(len(frame), {rule: len(b) for rule, b in bars.items()})


if __name__ == "__main__":
    main()
