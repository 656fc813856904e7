"""Probe for issue 18: indicators and a rule advanced for every symbol at once, as arrays,
against the per-symbol objects the engine runs today, on the same closes.

Not product code: it measures what one close costs both ways for the bench's first trader,
`rsi(14) < 50 and crosses_above(ema(9), ema(21))`, over --symbols symbols that started at
different times (so some are still warming up), and checks at every close that the array
values are bit-for-bit the per-symbol ones (the same floating-point operations in the same
order; NaN while not ready) and that the rule holds for the same symbols. Prints the median
time of a close both ways and their ratio, measured in this run.

    .venv/bin/python bench/rules_arrays_probe.py [--symbols 1000] [--closes 300]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flows.indicators.library import TalibRsi, _Ema

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
NAN = float("nan")


class ArrayEma:
    """TA-Lib's EMA for every symbol: the mean of the first `period` closes, then
    ((x - ema) * k) + ema, as `flows.indicators.library._Ema` does it, element by element."""

    def __init__(self, symbols: int, period: int) -> None:
        self.period = period
        self.k = 2.0 / (period + 1)
        self.n = np.zeros(symbols, np.int64)
        self.value = np.zeros(symbols)

    def push(self, x: F64, rows: I64) -> F64:
        """Take the close of each symbol in `rows`; the EMA of every symbol (NaN: not yet)."""
        n = self.n[rows] + 1
        self.n[rows] = n
        v = self.value[rows]
        seeding = n < self.period
        seeded = n == self.period
        running = n > self.period
        v = np.where(seeding, v + x, v)
        v = np.where(seeded, (v + x) / self.period, v)
        v = np.where(running, ((x - v) * self.k) + v, v)
        self.value[rows] = v
        out = np.full(len(self.n), NAN)
        ready = self.n >= self.period
        out[ready] = self.value[ready]
        return out


class ArrayRsi:
    """TA-Lib's RSI for every symbol, as `flows.indicators.library.TalibRsi` does it."""

    def __init__(self, symbols: int, period: int) -> None:
        self.p = period
        self.inv = 1.0 / period
        self.n = np.zeros(symbols, np.int64)
        self.prev = np.zeros(symbols)
        self.gain = np.zeros(symbols)
        self.loss = np.zeros(symbols)
        self.last = np.full(symbols, NAN)

    def push(self, x: F64, rows: I64) -> F64:
        p = self.p
        n = self.n[rows] + 1
        self.n[rows] = n
        prev = self.prev[rows]
        self.prev[rows] = x
        diff = x - prev
        up = np.where(diff > 0.0, diff, 0.0)
        down = up - diff
        g, lo = self.gain[rows], self.loss[rows]
        seed = (n >= 2) & (n <= p + 1)
        g = np.where(seed, g + up, g)
        lo = np.where(seed, lo + down, lo)
        done = n == p + 1
        g = np.where(done, g * self.inv, g)
        lo = np.where(done, lo * self.inv, lo)
        run = n > p + 1
        g = np.where(run, (g * (p - 1) + up) * self.inv, g)
        lo = np.where(run, (lo * (p - 1) + down) * self.inv, lo)
        self.gain[rows], self.loss[rows] = g, lo
        total = g + lo
        with np.errstate(invalid="ignore", divide="ignore"):
            value = np.where(total > 0.0, 100.0 * (g / total), 0.0)
        self.last[rows] = np.where(n >= p + 1, value, NAN)
        return self.last.copy()


def crosses_above(a: F64, b: F64, a1: F64, b1: F64) -> npt.NDArray[np.bool_]:
    """a crossed above b at this close (NaN anywhere: does not hold)."""
    with np.errstate(invalid="ignore"):
        return (a > b) & (a1 <= b1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--symbols", type=int, default=1000)
    ap.add_argument("--closes", type=int, default=300)
    args = ap.parse_args()
    n = args.symbols
    rng = np.random.default_rng(18)
    steps = rng.normal(0, 0.01, (args.closes, n))
    closes = 100.0 * np.exp(np.cumsum(steps, axis=0))
    start = rng.integers(0, 40, n)  # symbols listed at different closes: warm-ups differ
    objects = [(_Ema(9), _Ema(21), TalibRsi(14)) for _ in range(n)]
    arrays = (ArrayEma(n, 9), ArrayEma(n, 21), ArrayRsi(n, 14))
    prev_obj = np.full((n, 2), NAN)
    prev_arr = (np.full(n, NAN), np.full(n, NAN))
    took_obj: list[float] = []
    took_arr: list[float] = []
    fires = 0
    for c in range(args.closes):
        rows = np.flatnonzero(start <= c)
        x = closes[c, rows]
        # per symbol, as the engine does today: one object per indicator per symbol
        t0 = time.perf_counter()
        held_obj = np.zeros(n, np.bool_)
        xs = x.tolist()
        for i, close in zip(rows.tolist(), xs, strict=True):
            fast, slow, rsi = objects[i]
            f, s, r = fast.push(close), slow.push(close), rsi.push(close)
            f1, s1 = prev_obj[i]
            held_obj[i] = r < 50 and f > s and f1 <= s1
            prev_obj[i] = (f, s)
        t1 = time.perf_counter()
        # every symbol at once
        ef, es, er = arrays
        f, s, r = ef.push(x, rows), es.push(x, rows), er.push(x, rows)
        with np.errstate(invalid="ignore"):
            held_arr = (r < 50) & crosses_above(f, s, *prev_arr)
        prev_arr = (f, s)
        t2 = time.perf_counter()
        took_obj.append(t1 - t0)
        took_arr.append(t2 - t1)
        # bit for bit: the same values (NaN where not ready), the same symbols fire
        for got, k in ((f, 0), (s, 1)):
            want = np.array([o[k].value if o[k].n >= o[k].period else NAN for o in objects])
            assert np.array_equal(want, got, equal_nan=True), c
        # the RSI's running averages (its value is a function of them)
        assert np.array_equal(np.array([o[2]._gain for o in objects]), er.gain), c
        assert np.array_equal(np.array([o[2]._loss for o in objects]), er.loss), c
        assert np.array_equal(held_obj, held_arr), c
        fires += int(held_arr.sum())
    a = statistics.median(took_obj) * 1e3
    b = statistics.median(took_arr) * 1e3
    print(f"{n} symbols, {args.closes} closes, rsi(14) < 50 and crosses_above(ema(9), ema(21)); "
          f"values bit-for-bit equal at every close; {fires} fires")  # fmt: skip
    print(f"per symbol (today's objects): {a:.2f} ms a close = {a * 1e3 / n:.2f} us a symbol")
    print(f"every symbol at once (arrays): {b:.2f} ms a close = {b * 1e3 / n:.2f} us a symbol")
    print(f"ratio: {a / b:.1f}x")


if __name__ == "__main__":
    main()
