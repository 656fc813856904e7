"""The batch baseline of bench/replay_vs_pandas.py: pandas read_csv + resample of aggTrades
dumps to 1m, 5m, 1h and 1d OHLCV (floats, not exact; run as its own process). Several files
(one symbol each, the symbol from the name) are read, put together and grouped by symbol.

    .venv/bin/python bench/pandas_resample.py XRPETH-aggTrades-2019-10-11.csv [more.csv ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd


def main() -> None:
    frames = []
    for name in sys.argv[1:]:
        frame = pd.read_csv(name, header=None, usecols=[1, 2, 5], names=["p", "q", "t"])
        frame["symbol"] = Path(name).name.split("-", 1)[0]
        frames.append(frame)
    trades = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    trades.index = pd.to_datetime(trades["t"], unit="ms")
    bars = {}
    for rule in ("1min", "5min", "1h", "1D"):
        if len(frames) > 1:
            grouped = trades.groupby("symbol").resample(rule)
        else:
            grouped = trades.resample(rule)
        bars[rule] = pd.concat([grouped["p"].ohlc(), grouped["q"].sum()], axis=1)
    print(len(trades), {rule: len(b) for rule, b in bars.items()})


if __name__ == "__main__":
    main()
