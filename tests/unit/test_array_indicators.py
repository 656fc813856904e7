"""Every indicator advanced for many symbols at once (``flows.rules.block``) gives, row by
row and bar by bar, exactly the value its scalar class gives one symbol at a time: the
recurrences and windowed ones through their array twins, the rest per row. Rows listed at
different bars, at price scales from 1e-8 to 1e5, flat, tick-quantised, with holes (a NaN
bar) and closing in different subsets at each step."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flows.indicators import REGISTRY, Indicator
from flows.indicators.arrays import ArrayIndicator, ArraySma
from flows.indicators.series import BarSeries
from flows.rules.block import Block
from flows.rules.columns import ArrayColumn, ScalarColumn
from flows.rules.frame import Requirements

SPECS = [
    ("sma", (2, "close")), ("sma", (7, "high")), ("avg_volume", (5,)), ("wma", (1,)),
    ("wma", (3,)), ("wma", (5,)), ("ema", (2,)), ("ema", (9,)), ("rsi", (2,)), ("rsi", (14,)),
    ("atr", (2,)), ("atr", (14,)), ("adx", (2,)), ("adx", (5,)), ("macd", (12, 26, 9)),
    ("macd", (5, 3, 2)), ("obv", ()), ("pvi", ()), ("bbands", (20, 2.0)), ("bbands", (5, 1.5)),
    ("cci", (14,)), ("mfi", (14,)), ("mfi", (3,)), ("stoch", (5, 3, 3)), ("stoch", (14, 3, 4)),
    ("highest", (20, "high")), ("lowest", (7, "close")), ("stochrsi", (14, 14, 3)),
    ("vwap", (0,)), ("vwap", (5,)), ("pvi", ()), ("vprofile", (30, 12)),
    ("rsi_divergence", (14, 10)), ("pattern", ("engulfing",)), ("pattern", ("hammer",)),
    ("sma", (10,)), ("rsi", ()),  # as rules name them: their canonical specs differ
    ("pattern", ("morning_star",)), ("pattern", ("doji",)),
]  # fmt: skip
ROWS = 24
BARS = 420


def _series(rng: np.random.Generator, kind: int, n: int) -> np.ndarray:
    """(n, 8) bars: open, high, low, close, volume, quote volume, trades, time."""
    scale = 10.0 ** rng.uniform(-8, 5)
    close = scale * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    if kind % 4 == 1:
        tick = scale / 100
        close = np.maximum(np.round(close / tick) * tick, tick)
    if kind % 4 == 2:
        close[: n // 3] = close[0]  # a flat stretch (no trades: Binance's empty klines)
    open_ = np.concatenate(([close[0]], close[:-1]))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, n))
    volume = rng.lognormal(3, 1, n)
    if kind % 4 == 2:
        high[: n // 3] = low[: n // 3] = close[: n // 3]
        volume[: n // 3] = 0.0
    if kind % 7 == 3:
        close[n // 2] = math.nan  # a hole
    time = 1_700_000_000_000.0 + 3_600_000.0 * np.arange(n)
    return np.stack([open_, high, low, close, volume, volume * close, 10.0 + 0 * close, time], 1)


def _run(spec: tuple, seed: int = 7) -> tuple[int, int]:
    rng = np.random.default_rng(seed)
    req = Requirements()
    req.need(spec, 3)
    block = Block("1h", req, REGISTRY)
    data = [_series(rng, r, BARS) for r in range(ROWS)]
    starts = [int(rng.integers(0, 60)) for _ in range(ROWS)]
    rows = np.array([block.row(f"S{r}") for r in range(ROWS)], dtype=np.int64)
    twins: list[Indicator] = [REGISTRY[spec[0]](*spec[1]) for _ in range(ROWS)]
    series = [BarSeries(block.cap) for _ in range(ROWS)]
    hist: list[list] = [[] for _ in range(ROWS)]
    column = block.by_spec[spec]
    checked = 0
    for t in range(BARS):
        closing = [r for r in range(ROWS) if t >= starts[r] and rng.random() > 0.1]
        if not closing:
            continue
        sel = rows[closing]
        bars = np.stack([data[r][t] for r in closing], 1)
        block.take(sel, bars, np.full(len(closing), t, dtype=np.int64))
        for r in closing:
            series[r].append(*data[r][t])
            hist[r].append(twins[r].update(series[r]))
            for back in range(min(4, len(hist[r]))):
                want = hist[r][-1 - back]
                got = column.value_row(block, r, back)
                assert _same(got, want), (spec, r, t, back, got, want)
                checked += 1
    return checked, isinstance(column, ArrayColumn)


def _same(a: object, b: object) -> bool:
    if isinstance(a, tuple) or isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))  # type: ignore[arg-type]
    return (math.isnan(a) and math.isnan(b)) or a == b  # type: ignore[arg-type]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s[0]}{s[1]}")
def test_every_row_equals_its_scalar_twin_at_every_bar(spec: tuple) -> None:
    checked, _ = _run(spec)
    assert checked > ROWS * BARS  # every row, every bar, several bars back


def test_the_recurrences_and_windowed_ones_run_as_arrays() -> None:
    """The twins exist (else every indicator would run per row and the test above would
    compare the scalar class with itself)."""
    req = Requirements()
    for spec in SPECS:
        req.need(spec, 0)
    block = Block("1m", req, REGISTRY)
    kinds = {c.ind.spec[0] for c in block.columns if isinstance(c, ArrayColumn)}
    twins = {"sma", "avg_volume", "wma", "ema", "rsi", "atr", "adx", "macd", "obv", "pvi", "vwap",
             "vprofile", "stochrsi", "rsi_divergence"}  # fmt: skip
    assert twins | {"bbands", "cci", "mfi", "stoch", "highest", "lowest", "pattern"} <= kinds
    assert not [c for c in block.columns if isinstance(c, ScalarColumn)]


class _Exploding(ArraySma):
    """An array step that raises once a row's close passes a threshold."""

    def update(self, bars, rows, n):  # type: ignore[no-untyped-def]
        if (bars.last("close") > 1e9).any():
            raise FloatingPointError("boom")
        return super().update(bars, rows, n)


class _ExplodingSma(REGISTRY["sma"]):  # type: ignore[misc,valid-type]
    def update(self, series: BarSeries) -> float:
        if series.last("close") > 1e9:
            raise FloatingPointError("boom")
        return super().update(series)


def test_an_array_step_that_raises_goes_on_per_row_and_drops_only_the_row_at_fault() -> None:
    req = Requirements()
    req.need(("sma", (3, "close")), 2)
    block = Block("1m", req, REGISTRY)
    column = block.columns[0]
    assert isinstance(column, ArrayColumn)
    column.ind = _Exploding(_ExplodingSma(3, "close"), _ExplodingSma)
    for r in range(3):
        block.row(f"S{r}")
    rows = np.arange(3, dtype=np.int64)
    closes = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0], [10.0, 2e9, 12.0],
              [13.0, 14.0, 15.0]]  # fmt: skip
    for t, c in enumerate(closes):
        bars = np.zeros((8, 3))
        bars[3] = c
        bars[7] = t
        block.take(rows, bars, np.full(3, t, dtype=np.int64))
    column = block.columns[0]
    assert isinstance(column, ScalarColumn)
    assert set(column.broken) == {1} and "boom" in column.broken[1]
    # the other rows went on from their exact state: sma(3) of the last three closes
    assert column.value_row(block, 0, 0) == (7.0 + 10.0 + 13.0) / 3
    assert column.value_row(block, 2, 0) == (9.0 + 12.0 + 15.0) / 3
    assert column.value_row(block, 2, 1) == (6.0 + 9.0 + 12.0) / 3


def test_state_moves_between_the_twins_losslessly() -> None:
    rng = np.random.default_rng(3)
    twin = REGISTRY["macd"](5, 3, 2)
    series = BarSeries(64)
    for x in rng.normal(100, 1, 50):
        series.append(x, x, x, x, 1.0)
        twin.update(series)
    from flows.indicators.arrays import array_twin

    arr = array_twin(REGISTRY["macd"](5, 3, 2), REGISTRY["macd"])
    assert isinstance(arr, ArrayIndicator)
    arr.grow(2)
    arr.load(1, twin)
    back = arr.export(1, 50)
    assert vars(back["_signal"] if isinstance(back, dict) else back._signal) == vars(twin._signal)
    assert back._slow.value == twin._slow.value and back._fast.n == twin._fast.n


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s[0]}{s[1]}")
def test_a_row_moved_to_another_block_goes_on_exactly(spec: tuple) -> None:
    """A row's state exported (to the scalar class) and loaded into another block's row,
    midway, then both fed the same bars: the values never differ (what moving a shard's
    state between its forms, or between blocks, relies on)."""
    rng = np.random.default_rng(11)
    req = Requirements()
    req.need(spec, 3)
    first, second = Block("1h", req, REGISTRY), Block("1h", req, REGISTRY)
    data = [_series(rng, r, 300) for r in range(4)]
    rows = np.array([first.row(f"S{r}") for r in range(4)], dtype=np.int64)
    moved = False
    compared = 0
    for t in range(300):
        bars = np.stack([d[t] for d in data], 1)
        opens = np.full(4, t, dtype=np.int64)
        first.take(rows, bars, opens)
        if t == 150:
            for r in range(4):
                second.adopt(second.row(f"S{r}"), first.frame(r))
            moved = True
        elif moved:
            second.take(rows, bars, opens)
            for r in range(4):
                for back in range(4):
                    a = first.by_spec[spec].value_row(first, r, back)
                    b = second.by_spec[spec].value_row(second, r, back)
                    assert _same(a, b), (spec, t, r, back, a, b)
                    compared += 1
    assert compared == 149 * 16
