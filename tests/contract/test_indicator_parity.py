"""Contract: every registered indicator, fed bar by bar, equals TA-Lib's batch function run
over the full history up to that bar — at every bar, NaN exactly where the batch is NaN.

sma, avg_volume, wma, ema, rsi, adx, obv and MAX/MIN must match bit for bit. atr and macd
replay the classic TA-Lib recurrence but the installed TA-Lib build orders a few operations
differently (ULP-level differences, ~1e-15 relative, not accumulating), so they get 1e-9.
The windowed ones that TA-Lib computes with running sums (bbands, cci, mfi, stoch) may
differ in the last bits because the batch's running sums start at bar 0 while the
incremental value starts at the window; they must agree to 1e-9 relative."""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import talib

from flows.indicators import REGISTRY, IndicatorSet, Spec, create

N_BARS = 600
Arrays = dict[str, np.ndarray]


def random_walk(seed: int, n: int = N_BARS) -> Arrays:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    open_ = np.empty(n)
    open_[0] = 100.0
    open_[1:] = close[:-1] * (1.0 + rng.normal(0.0, 0.001, n - 1))
    flat = rng.random(n) < 0.05  # some unchanged closes: exercises the tie branches
    close[1:][flat[1:]] = close[:-1][flat[1:]]
    high = np.maximum(open_, close) * (1.0 + np.abs(rng.normal(0.0, 0.004, n)))
    low = np.minimum(open_, close) * (1.0 - np.abs(rng.normal(0.0, 0.004, n)))
    volume = rng.lognormal(3.0, 1.0, n)
    return {"open": open_, "high": high, "low": low, "close": close, "volume": volume}


Batch = Callable[[Arrays], Any]

# spec -> (batch function over the full history, exact?)
CASES: dict[Spec, tuple[Batch, bool]] = {
    ("sma", (20, "close")): (lambda a: talib.SMA(a["close"], 20), True),
    ("sma", (7, "high")): (lambda a: talib.SMA(a["high"], 7), True),
    ("ema", (20,)): (lambda a: talib.EMA(a["close"], 20), True),
    ("ema", (3,)): (lambda a: talib.EMA(a["close"], 3), True),
    ("wma", (10,)): (lambda a: talib.WMA(a["close"], 10), True),
    ("rsi", (14,)): (lambda a: talib.RSI(a["close"], 14), True),
    ("rsi", (2,)): (lambda a: talib.RSI(a["close"], 2), True),
    ("macd", (12, 26, 9)): (lambda a: talib.MACD(a["close"], 12, 26, 9), False),
    ("macd", (5, 8, 4)): (lambda a: talib.MACD(a["close"], 5, 8, 4), False),
    ("atr", (14,)): (lambda a: talib.ATR(a["high"], a["low"], a["close"], 14), False),
    ("adx", (14,)): (lambda a: talib.ADX(a["high"], a["low"], a["close"], 14), True),
    ("adx", (5,)): (lambda a: talib.ADX(a["high"], a["low"], a["close"], 5), True),
    ("obv", ()): (lambda a: talib.OBV(a["close"], a["volume"]), True),
    ("highest", (20, "high")): (lambda a: talib.MAX(a["high"], 20), True),
    ("highest", (10, "close")): (lambda a: talib.MAX(a["close"], 10), True),
    ("lowest", (20, "low")): (lambda a: talib.MIN(a["low"], 20), True),
    ("avg_volume", (20,)): (lambda a: talib.SMA(a["volume"], 20), True),
    ("bbands", (20, 2.0)): (lambda a: talib.BBANDS(a["close"], 20, 2.0, 2.0, 0), False),
    ("cci", (14,)): (lambda a: talib.CCI(a["high"], a["low"], a["close"], 14), False),
    ("mfi", (14,)): (
        lambda a: talib.MFI(a["high"], a["low"], a["close"], a["volume"], 14),
        False,
    ),
    ("stoch", (5, 3, 3)): (
        lambda a: talib.STOCH(a["high"], a["low"], a["close"], 5, 3, 0, 3, 0),
        False,
    ),
}


def _as_tuple(v: Any) -> tuple[float, ...]:
    return tuple(float(x) for x in v) if isinstance(v, tuple) else (float(v),)


def _same(got: float, want: float, exact: bool) -> bool:
    if math.isnan(want) or math.isnan(got):
        return math.isnan(want) and math.isnan(got)
    if exact:
        return got == want
    return math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9)


# covered by test_extra_indicators.py
EXTRA = {"stochrsi", "vwap", "pvi", "vprofile", "rsi_divergence", "pattern"}


def test_every_registered_indicator_is_covered() -> None:
    assert {name for name, _ in CASES} == set(REGISTRY) - EXTRA


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("spec", list(CASES), ids=lambda s: f"{s[0]}{s[1]}")
def test_incremental_equals_batch_at_every_bar(spec: Spec, seed: int) -> None:
    batch, exact = CASES[spec]
    data = random_walk(seed)
    iset = IndicatorSet()
    ind = iset.get(spec)
    assert ind.spec == spec
    first_valid = None
    for i in range(N_BARS):
        iset.on_bar(*(float(data[f][i]) for f in ("open", "high", "low", "close", "volume")))
        got = _as_tuple(iset.value(spec))
        want = _as_tuple(
            tuple(o[-1] for o in out)
            if isinstance(out := batch({k: v[: i + 1] for k, v in data.items()}), tuple)
            else out[-1]
        )
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert _same(g, w, exact), (spec, i, got, want, (np.array(got) - np.array(want)))
        if first_valid is None and not any(math.isnan(g) for g in got):
            first_valid = i
        if i < ind.warmup_bars - 1:
            assert all(math.isnan(g) for g in got), (spec, i)
    assert first_valid == ind.warmup_bars - 1


def _feed(iset: IndicatorSet, data: Arrays, lo: int, hi: int) -> list[tuple[float, ...]]:
    out = []
    for i in range(lo, hi):
        iset.on_bar(*(float(data[f][i]) for f in ("open", "high", "low", "close", "volume")))
        out.append(tuple(x for spec in CASES for x in _as_tuple(iset.value(spec))))
    return out


def test_pickle_mid_stream_continues_identically() -> None:
    data = random_walk(7)
    iset = IndicatorSet()
    for spec in CASES:
        iset.get(spec)
    _feed(iset, data, 0, 250)
    clone = pickle.loads(pickle.dumps(iset))
    a = _feed(iset, data, 250, N_BARS)
    b = _feed(clone, data, 250, N_BARS)
    assert np.array_equal(np.array(a), np.array(b), equal_nan=True)


def test_specs_are_shared() -> None:
    iset = IndicatorSet()
    rsi = iset.get(("rsi", (14,)))
    assert iset.get(("rsi", (14,))) is rsi
    assert iset.get(("rsi", ())) is rsi  # defaults canonicalise to the same spec
    assert iset.get(("rsi", (7,))) is not rsi
    assert len(iset.indicators()) == 2


def test_ring_holds_what_the_indicators_read() -> None:
    iset = IndicatorSet(capacity=4)
    for spec in CASES:
        iset.get(spec)
    need = max(create(spec).window for spec in CASES)
    assert iset.series.capacity >= need


def test_unknown_indicator_is_rejected() -> None:
    with pytest.raises(KeyError):
        IndicatorSet().get(("nope", ()))
