"""An independent batch computation of `rsi(n) < limit and crosses_above(ema(fast), ema(slow))`
on 1m klines, every close, with pandas and TA-Lib: the reference the backtest is compared with
(tests/integration/test_backtest_reference.py) and timed against (bench/backtest_vs_pandas.py).

It shares no code with the product: the CSV is read by pandas (floats), minutes by resample
(an empty minute keeps the last close, as a flat kline does), the indicators by TA-Lib's batch
functions, the cross by numpy. As the dataflow does, it decides every closed minute but the
last one (which closes only when the input ends).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import talib


class RsiCross(NamedTuple):
    rsi: int
    limit: float
    fast: int
    slow: int

    def expression(self) -> str:
        return (f"rsi({self.rsi}) < {self.limit:g} and "
                f"crosses_above(ema({self.fast}), ema({self.slow}))")  # fmt: skip


TEN = [
    RsiCross(14, 60, 9, 21), RsiCross(14, 55, 5, 13), RsiCross(7, 65, 9, 21),
    RsiCross(21, 60, 12, 26), RsiCross(14, 50, 3, 8), RsiCross(10, 60, 8, 20),
    RsiCross(14, 70, 9, 21), RsiCross(28, 55, 5, 34), RsiCross(9, 65, 4, 9),
    RsiCross(14, 65, 20, 50),
]  # fmt: skip


DAY_MS = 86_400_000


def write_day(
    path: Path, trades: int, seed: int, days: int = 1, first_day_ms: int = 1_570_752_000_000
) -> int:
    """`days` days of `trades` aggTrades each in Binance's CSV form (8 decimals, ms times), the
    price a random walk (so that rules of every kind hold now and then), ids counting up,
    times spread over each day; the rows written."""
    rng = np.random.default_rng(seed)
    step = 200_000
    price = 141_342_000
    rows = trades * days
    with path.open("w") as out:
        for start in range(0, rows, step):
            n = min(step, rows - start)
            walk = price + np.cumsum(rng.integers(-40_000, 40_001, n))
            walk = np.maximum(walk, 1_000)
            price = int(walk[-1])
            ids = np.arange(start, start + n) + 13_519_807
            qty = rng.integers(1, 10**12, n)
            times = first_day_ms + np.arange(start, start + n) * (DAY_MS - 1_000) // trades
            maker = rng.integers(0, 2, n)
            out.writelines(
                f"{i},{p // 10**8}.{p % 10**8:08d},{q // 10**8}.{q % 10**8:08d},{i + 2000},"
                f"{i + 2000},{t},{'True' if m else 'False'},True\n"
                for i, p, q, t, m in zip(ids.tolist(), walk.tolist(), qty.tolist(),
                                         times.tolist(), maker.tolist(), strict=True)
            )  # fmt: skip
    return rows


def minute_closes(csv: Path) -> tuple[np.ndarray, np.ndarray]:
    """(open times in ms, closes) of the 1m klines of an aggTrades dump."""
    trades = pd.read_csv(csv, header=None, usecols=[1, 5], names=["price", "time"])
    trades.index = pd.to_datetime(trades["time"], unit="ms")
    closes = trades["price"].resample("1min").last().ffill()
    opens = closes.index.as_unit("ms").asi8
    return opens.astype(np.int64), closes.to_numpy(dtype=np.float64)


def fires(opens: np.ndarray, closes: np.ndarray, rule: RsiCross) -> list[int]:
    """Open times of the minutes where the rule holds (the last minute left out)."""
    rsi = talib.RSI(closes, rule.rsi)
    fast = talib.EMA(closes, rule.fast)
    slow = talib.EMA(closes, rule.slow)
    now_above = fast[1:] > slow[1:]
    was_below = fast[:-1] <= slow[:-1]
    ready = ~(np.isnan(rsi[1:]) | np.isnan(fast[:-1]) | np.isnan(slow[:-1]))
    holds = ready & (rsi[1:] < rule.limit) & now_above & was_below
    at = np.flatnonzero(holds) + 1
    return [int(opens[i]) for i in at if i < len(opens) - 1]


def all_fires(csv: Path, rules: list[RsiCross]) -> dict[RsiCross, list[int]]:
    opens, closes = minute_closes(csv)
    return {rule: fires(opens, closes, rule) for rule in rules}
