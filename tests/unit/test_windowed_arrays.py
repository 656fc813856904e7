"""flows.indicators.windowed gives, row for row and bit for bit, what talib gives on each row.

Every expected value is ``talib.FUNC(row windows..., same kwargs)[-1]`` computed one row at a
time. The windows mix random walks at price scales from 1e-8 to 1e5, tick-quantised prices
(ties, flat stretches), fully flat rows, zero volume, NaN and inf in any field and position
(the oldest bar included), and closes outside their bar's range. The last tests show that the
data tells apart operation orders that are equal in exact arithmetic: a replay that is only
close would fail here.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import talib
from talib import abstract

from flows.indicators import windowed
from flows.indicators.extra import PATTERNS

Arrays = tuple[np.ndarray, ...]
ROWS = 640


def _market(seed: int, w: int, rows: int = ROWS) -> Arrays:
    """(open, high, low, close, volume) windows, shape (rows, w); row kinds cycle through
    random walks, tick-quantised walks, flat rows, zero volume, NaN, inf and wild closes."""
    rng = np.random.default_rng(seed)
    kind = np.arange(rows) % 8
    scale = 10.0 ** rng.uniform(-8, 5, (rows, 1))
    c = scale * np.exp(np.cumsum(rng.normal(0, 0.02, (rows, w)), axis=1))
    o = np.concatenate([c[:, :1], c[:, :-1]], axis=1) * np.exp(rng.normal(0, 0.004, (rows, w)))
    h = np.maximum(o, c) * np.exp(np.abs(rng.normal(0, 0.01, (rows, w))))
    lo = np.minimum(o, c) * np.exp(-np.abs(rng.normal(0, 0.01, (rows, w))))
    v = np.exp(rng.normal(5, 2, (rows, w))) * (rng.random((rows, w)) > 0.1)
    fields = [o, h, lo, c, v]
    # tick-quantised: prices 0.05 to 50 moving by whole cents, often not at all
    ticks = kind == 1
    base = rng.choice([0.05, 0.5, 5.0, 50.0], (rows, 1))
    walk = base + 0.01 * np.cumsum(rng.choice([-1, 0, 0, 1], (rows, w + 1)), axis=1)
    body_top, body_bottom = (
        np.maximum(walk[:, :-1], walk[:, 1:]),
        np.minimum(walk[:, :-1], walk[:, 1:]),
    )
    wick = 0.01 * rng.integers(0, 3, (2, rows, w))
    quantised = (walk[:, :-1], body_top + wick[0], body_bottom - wick[1], walk[:, 1:])
    for f, q in zip(fields[:4], quantised, strict=True):
        f[ticks] = np.round(q[ticks], 2)
    for f in fields[:4]:
        f[kind == 2] = scale[kind == 2]  # flat
    v[kind == 3] = 0.0
    wild = kind == 6  # highs, lows and closes unrelated to each other
    for f in (h, lo, c):
        f[wild] = scale[wild] * rng.normal(1, 0.05, (wild.sum(), w))
    for k, bad in ((4, np.nan), (5, np.nan), (7, np.inf)):
        for r in np.flatnonzero(kind == k):
            value = -bad if bad == np.inf and rng.random() < 0.5 else bad
            col = rng.choice([0, w - 1, int(rng.integers(0, w))])
            fields[int(rng.integers(0, 5))][r, col] = value
    return tuple(fields)


def _grid(seed: int, w: int, rows: int = 2000) -> Arrays:
    """(open, high, low, close) windows in whole ticks (1e-6 to 100): bodies, gaps and shadows
    drawn from a few sizes, so candle patterns and their ties occur; every other row ends in
    four long, mostly same-coloured bars with short shadows."""
    rng = np.random.default_rng(seed)
    tick = 10.0 ** rng.integers(-6, 3, (rows, 1))
    tail = (np.arange(rows) % 2 == 1)[:, None] & (np.arange(w) >= w - 4)
    trend = rng.choice([-1, 1], (rows, 1)) * np.where(rng.random((rows, w)) < 0.75, 1, -1)
    trend[np.arange(rows) % 4 == 3, w - 4] *= -1  # a turn before three bars (crows, soldiers)
    sign = np.where(tail, trend, rng.choice([-1, 1], (rows, w)))
    body = np.where(
        tail, rng.choice([0, 12, 20], (rows, w)), rng.choice([0, 0, 1, 2, 3, 12, 20], (rows, w))
    )
    gap = np.where(
        tail,
        rng.choice([-25, -8, -3, 0, 3, 8, 25], (rows, w)),
        rng.choice([0, 0, 1, -1, 2, -2, 15, -15, 25, -25], (rows, w)),
    )
    up, dn = (
        np.where(tail, rng.choice([0, 0, 1], (rows, w)), rng.choice([0, 0, 0, 1, 3, 15], (rows, w)))
        for _ in range(2)
    )
    o, c = np.empty((rows, w)), np.empty((rows, w))
    prev = np.full(rows, 1000.0)
    for j in range(w):
        o[:, j] = prev + gap[:, j]
        c[:, j] = prev = o[:, j] + sign[:, j] * body[:, j]
    return o * tick, (np.maximum(o, c) + up) * tick, (np.minimum(o, c) - dn) * tick, c * tick


def _quiet(func: Callable[..., Any], *args: Any) -> Any:
    """Call ``func`` turning any warning into an error: nothing may leak out of windowed."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return func(*args)


def _per_row(func: Callable[..., Any], arrays: Arrays, **kwargs: Any) -> np.ndarray:
    """The last value of ``func`` run on each row alone: shape (rows,) or (outputs, rows)."""
    out = []
    for row in zip(*arrays, strict=True):
        result = func(*(np.ascontiguousarray(a) for a in row), **kwargs)
        out.append([r[-1] for r in result] if isinstance(result, (list, tuple)) else result[-1])
    return np.asarray(out, dtype=np.float64).T


def _assert_same(got: Any, expected: np.ndarray) -> None:
    got = np.asarray(got)
    assert got.shape == expected.shape
    bad = ~((got == expected) | (np.isnan(got) & np.isnan(expected)))
    assert not bad.any(), f"{bad.sum()} values differ, e.g. {got[bad][:3]} vs {expected[bad][:3]}"
    assert np.array_equal(got, expected, equal_nan=True)


def _differs(got: Any, expected: np.ndarray) -> bool:
    return not np.array_equal(np.asarray(got), expected, equal_nan=True)


@pytest.mark.parametrize(
    ("period", "nbdev"), [(2, 2.0), (3, 1.0), (5, 2.0), (14, 2.5), (20, 2.0), (21, 1.0)]
)
def test_bbands(period: int, nbdev: float) -> None:
    close = _market(period, period)[3]
    expected = _per_row(
        talib.BBANDS, (close,), timeperiod=period, nbdevup=nbdev, nbdevdn=nbdev, matype=0
    )
    _assert_same(_quiet(windowed.bbands, close, period, nbdev), expected)


def test_bbands_recomputes_a_cancelled_variance() -> None:
    """TA-Lib recomputes the variance around the mean when the variance of the data shifted by
    the first value cancels (below 1e-6 of the shifted second moment). In a first window that
    needs squares that underflow into subnormals, so such windows are picked from many."""
    period, rng, inv = 8, np.random.default_rng(2), 1.0 / 8
    scale = 10.0 ** rng.uniform(-165, -158, (20000, 1))
    x = scale * np.exp(np.cumsum(rng.normal(0, 0.3, (20000, period)), axis=1))
    t = x - x[:, :1]
    s1, s2 = np.zeros(len(x)), np.zeros(len(x))
    for j in range(period):  # TA-Lib's shifted sums, in its order
        s1, s2 = s1 + t[:, j], s2 + t[:, j] * t[:, j]
    shifted_var = s2 * inv - (s1 * inv) * (s1 * inv)
    cancelled = shifted_var < 1e-6 * (s2 * inv)
    assert cancelled.sum() >= 2
    close = x[cancelled]
    expected = _per_row(talib.BBANDS, (close,), timeperiod=period, nbdevup=2.0, nbdevdn=2.0)
    _assert_same(_quiet(windowed.bbands, close, period, 2.0), expected)
    with np.errstate(all="ignore"):  # without the recomputation the bands would differ
        kept = np.where(shifted_var[cancelled] != 0, np.sqrt(shifted_var[cancelled]), 0.0)
    assert _differs(expected[1] + kept * 2.0, expected[0])


@pytest.mark.parametrize("period", [2, 3, 5, 14, 20, 21])
def test_cci(period: int) -> None:
    _, high, low, close, _ = _market(100 + period, period)
    expected = _per_row(talib.CCI, (high, low, close), timeperiod=period)
    _assert_same(_quiet(windowed.cci, high, low, close, period), expected)


@pytest.mark.parametrize("period", [2, 3, 5, 14, 21])
def test_mfi(period: int) -> None:
    _, high, low, close, volume = _market(200 + period, period + 1)
    expected = _per_row(talib.MFI, (high, low, close, volume), timeperiod=period)
    _assert_same(_quiet(windowed.mfi, high, low, close, volume, period), expected)


@pytest.mark.parametrize(
    ("fastk", "slowk", "slowd"), [(5, 3, 3), (14, 3, 3), (2, 2, 2), (3, 1, 1), (1, 2, 3), (9, 4, 5)]
)
def test_stoch(fastk: int, slowk: int, slowd: int) -> None:
    _, high, low, close, _ = _market(300 + fastk * 10 + slowk, fastk + slowk + slowd - 2)
    kw = {"fastk_period": fastk, "slowk_period": slowk, "slowd_period": slowd}
    expected = _per_row(talib.STOCH, (high, low, close), slowk_matype=0, slowd_matype=0, **kw)
    _assert_same(_quiet(windowed.stoch, high, low, close, fastk, slowk, slowd), expected)


@pytest.mark.parametrize("period", [2, 3, 14, 20, 21])
def test_highest_and_lowest(period: int) -> None:
    for field in _market(400 + period, period):
        for mine, theirs in ((windowed.highest, talib.MAX), (windowed.lowest, talib.MIN)):
            expected = _per_row(theirs, (field,), timeperiod=period)
            _assert_same(_quiet(mine, field, period), expected)


def test_every_pattern_has_a_known_name() -> None:
    assert windowed.PATTERN_ARRAYS
    assert set(windowed.PATTERN_ARRAYS) <= set(PATTERNS)
    assert windowed.PATTERN_ARRAYS["engulfing"] is windowed.engulfing


@pytest.mark.parametrize("name", sorted(windowed.PATTERN_ARRAYS))
def test_pattern(name: str) -> None:
    func = PATTERNS[name]
    w = int(abstract.Function(func).lookback) + 1
    o, h, lo, c, _ = _market(500 + len(name), w)
    go, gh, gl, gc = _grid(600 + len(name), w)
    arrays = tuple(
        np.concatenate(pair) for pair in zip((o, h, lo, c), (go, gh, gl, gc), strict=True)
    )
    expected = _per_row(getattr(talib, func), arrays)
    got = _quiet(windowed.PATTERN_ARRAYS[name], *arrays)
    assert got.dtype == np.float64
    _assert_same(got, expected)
    assert (expected != 0).sum() >= 3, "the data should make the pattern fire"
    with pytest.raises(ValueError, match="windows"):
        windowed.PATTERN_ARRAYS[name](*(a[:, 1:] for a in arrays))


def test_windows_of_another_width_are_refused() -> None:
    x = np.ones((4, 6))
    with pytest.raises(ValueError, match="windows"):
        windowed.bbands(x, 5, 2.0)
    with pytest.raises(ValueError, match="windows"):
        windowed.stoch(x, x, x, 5, 3, 3)
    with pytest.raises(ValueError, match="windows"):
        windowed.mfi(x, x, x, x, 6)


# --- the data is sharp enough: close-but-different replays fail on it ------------------------


def test_summation_order_matters_on_this_data(monkeypatch: pytest.MonkeyPatch) -> None:
    close = _market(20, 20)[3]
    expected = _per_row(talib.BBANDS, (close,), timeperiod=20, nbdevup=2.0, nbdevdn=2.0)
    with np.errstate(all="ignore"):
        naive_middle = close.mean(axis=1)  # pairwise summation
        naive_dev = 2.0 * close.std(axis=1)
    assert _differs(naive_middle, expected[1])
    assert _differs(naive_middle + naive_dev, expected[0])
    # the same replay with numpy's pairwise row sums instead of bar after bar
    monkeypatch.setattr(windowed, "_sum", lambda xt: np.sum(np.ascontiguousarray(xt.T), axis=1))
    assert _differs(windowed.bbands(close, 20, 2.0), expected)


def test_tolerances_and_formulas_matter_on_this_data(monkeypatch: pytest.MonkeyPatch) -> None:
    _, high, low, close, _ = _market(14, 14)
    with np.errstate(all="ignore"):
        tp = (high + low + close) / 3
        fixed_band = np.abs(tp[:, -1] - tp.mean(axis=1)) < 1e-8  # classic TA_IS_ZERO: absolute
    expected_cci = _per_row(talib.CCI, (high, low, close), timeperiod=14)
    assert (fixed_band & (expected_cci != 0)).any()
    _, high, low, close, _ = _market(55, 9)
    kw = {"fastk_period": 5, "slowk_period": 3, "slowd_period": 3}
    expected = _per_row(talib.STOCH, (high, low, close), **kw)
    hi = np.lib.stride_tricks.sliding_window_view(high, 5, axis=1).max(axis=2)
    lo = np.lib.stride_tricks.sliding_window_view(low, 5, axis=1).min(axis=2)
    clean = np.isfinite(high).all(axis=1) & np.isfinite(low).all(axis=1) & (hi > lo).all(axis=1)
    clean &= np.isfinite(close).all(axis=1)
    for spelling, matches in (
        (lambda: ((close[:, 4:] - lo) / (hi - lo)) * 100.0, True),  # this build
        (lambda: (close[:, 4:] - lo) / ((hi - lo) / 100.0), False),  # the classic C code
    ):
        with np.errstate(all="ignore"):
            k = spelling()
            total = k[:, 0] + k[:, 1]  # slow %K(3): TA-Lib's running sum, then the last value
            for j in range(3):
                total = total + k[:, 2 + j]
                slow = total / 3
                total = total - k[:, j]
        assert np.array_equal(slow[clean], expected[0][clean]) is matches
    # plain NaN-propagating window extremes instead of TA-Lib's scan
    monkeypatch.setattr(
        windowed,
        "_scan_extreme",
        lambda xt, period, lowest: (
            np.lib.stride_tricks.sliding_window_view(xt, period, axis=0).min(axis=-1)
            if lowest
            else np.lib.stride_tricks.sliding_window_view(xt, period, axis=0).max(axis=-1)
        ),
    )
    assert _differs(windowed.stoch(high, low, close, 5, 3, 3), expected)


def test_candle_details_matter_on_this_data() -> None:
    w = int(abstract.Function("CDLDOJI").lookback) + 1
    arrays = tuple(np.concatenate(p) for p in zip(_market(7, w)[:4], _grid(8, w), strict=True))
    expected = _per_row(talib.CDLDOJI, arrays)
    bars = windowed._Bars(*arrays)
    strict = np.where(bars.body() < bars.avg("BodyDoji"), 100.0, 0.0)  # < instead of <=
    assert _differs(strict, expected)
    # averages that include the bar they describe
    o, h, lo, c = arrays
    with np.errstate(all="ignore"):
        including = 0.1 * (h[:, 1:] - lo[:, 1:]).mean(axis=1)
    assert _differs(np.where(np.abs(c[:, -1] - o[:, -1]) <= including, 100.0, 0.0), expected)
