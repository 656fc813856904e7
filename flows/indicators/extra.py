"""More incremental indicators: stochastic RSI, VWAP, positive volume index, volume profile,
RSI divergence and TA-Lib candlestick patterns. Same contract as ``library``: ``update`` is
called exactly once per bar appended to the series and returns NaN (or a tuple of NaNs) until
the value is defined; all state is plain Python/numpy, so every indicator pickles.

Exactness against a batch computation over the full history:

* ``stochrsi`` replays, operation for operation, the RSI and STOCHF code of the TA-Lib build
  bundled with the ta-lib 0.8 wheels, so it equals ``talib.STOCHRSI`` bit for bit. That build's
  RSI differs from the classic C code in two ways that matter here: its Wilder smoothing
  multiplies by a precomputed ``1/period`` instead of dividing by ``period``, and it gives 0
  only when ``gain + loss`` is not positive (no 1e-8 threshold, which would zero the RSI of
  low-priced pairs). Its STOCHF treats the RSI range as empty (%K = 0) when
  ``|hi - lo| <= (|hi| + |lo|) * 1e-14``, which also absorbs rounding noise on flat stretches.
* ``rsi_divergence`` uses the same RSI replay, so its comparisons see TA-Lib's exact values.
* ``vwap``, ``pvi`` and ``vprofile`` are defined here; each documents its arithmetic order so
  that a plain batch loop reproduces it bit for bit.
* ``pattern`` runs the TA-Lib candlestick function over the newest ``lookback + 1`` bars.
  On long random, tick-quantised and real series every one of TA-Lib's 61 patterns gives, with
  that window, exactly the value of the full-history batch, so no extra margin is kept.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, cast

import numpy as np
import talib as _talib_module
from talib import abstract as _abstract_module

from flows.indicators.library import NAN, Indicator, TalibRsi
from flows.indicators.series import BarSeries, FloatArray

_talib = cast(Any, _talib_module)
_abstract = cast(Any, _abstract_module)

_DAY_MS = 86_400_000


class StochRsi(Indicator):
    """TA-Lib's STOCHRSI: %K is the raw stochastic of RSI(period) over ``fastk`` RSI values
    (not smoothed), %D the simple mean of the last ``fastd`` %K. Both appear together, after
    ``period + fastk + fastd - 1`` bars, as in the batch function."""

    def __init__(self, period: int = 14, fastk: int = 14, fastd: int = 3) -> None:
        super().__init__()
        if period < 2 or fastk < 1 or fastd < 1:
            raise ValueError("bad stochrsi periods")
        self.spec = ("stochrsi", (period, fastk, fastd))
        self.fastk, self.fastd = fastk, fastd
        self.warmup_bars = period + fastk + fastd - 1
        self.window = 1
        self._rsi = TalibRsi(period)
        self._rsis: deque[float] = deque(maxlen=fastk)
        self._ks: deque[float] = deque(maxlen=fastd)
        self._total = 0.0  # running sum of %K, kept the way TA-Lib's SMA keeps it

    def update(self, series: BarSeries) -> tuple[float, float]:
        self._n += 1
        rsi = self._rsi.push(series.last("close"))
        if math.isnan(rsi):
            return (NAN, NAN)
        self._rsis.append(rsi)
        if len(self._rsis) < self.fastk:
            return (NAN, NAN)
        hi, lo = max(self._rsis), min(self._rsis)
        diff = hi - lo
        k = 0.0 if abs(diff) <= (abs(hi) + abs(lo)) * 1e-14 else ((rsi - lo) / diff) * 100.0
        self._ks.append(k)
        self._total += k
        if len(self._ks) < self.fastd:
            return (NAN, NAN)
        total = self._total
        self._total -= self._ks[0]  # the oldest %K leaves the next mean
        return (k, total / self.fastd)


class Vwap(Indicator):
    """Volume-weighted typical price and the volume-weighted standard deviation around it.

    ``period == 0``: a session VWAP restarting with the first bar of each UTC day (by the bar's
    open time, field ``time``; bars of one day or longer are each their own session, and a bar
    without a time gives NaN and restarts the session). ``period >= 1``: over the newest
    ``period`` bars, NaN before that many bars.

    Arithmetic, for bit-for-bit batch checks: ``tp = (high + low + close) / 3.0``; three sums
    ``sv += v``, ``spv += v * tp``, ``spv2 += v * tp * tp`` (evaluated left to right), each
    started from 0.0 and added oldest bar first (kept running for sessions, recomputed over the
    window for ``period >= 1``); ``vwap = spv / sv``;
    ``stdev = sqrt(max(0.0, spv2 / sv - vwap**2))`` (``**`` is libm's pow, which now and then
    differs in the last bit from ``vwap * vwap``). Both are NaN while ``sv == 0``.
    """

    def __init__(self, period: int = 0) -> None:
        super().__init__()
        if period < 0:
            raise ValueError("bad vwap period")
        self.spec = ("vwap", (period,))
        self.period = period
        self.warmup_bars = max(period, 1)
        self.window = max(period, 1)
        self._day: int | None = None
        self._sv = self._spv = self._spv2 = 0.0

    @staticmethod
    def _result(sv: float, spv: float, spv2: float) -> tuple[float, float]:
        if sv == 0.0:
            return (NAN, NAN)
        vwap = spv / sv
        return (vwap, math.sqrt(max(0.0, spv2 / sv - vwap**2)))

    def update(self, series: BarSeries) -> tuple[float, float]:
        self._n += 1
        if self.period:
            return self._update_window(series)
        t = series.last("time")
        if math.isnan(t):
            self._day = None
            return (NAN, NAN)
        day = int(t // _DAY_MS)
        if day != self._day:
            self._day = day
            self._sv = self._spv = self._spv2 = 0.0
        v = series.last("volume")
        tp = (series.last("high") + series.last("low") + series.last("close")) / 3.0
        pv = v * tp
        self._sv += v
        self._spv += pv
        self._spv2 += pv * tp
        return self._result(self._sv, self._spv, self._spv2)

    def _update_window(self, series: BarSeries) -> tuple[float, float]:
        if self._n < self.period:
            return (NAN, NAN)
        n = self.period
        v = series.window("volume", n)
        tp = (series.window("high", n) + series.window("low", n) + series.window("close", n)) / 3.0
        pv = v * tp
        # add.accumulate adds strictly in order, oldest first, unlike np.sum's pairwise sums
        sv = float(np.add.accumulate(v)[-1])
        spv = float(np.add.accumulate(pv)[-1])
        spv2 = float(np.add.accumulate(pv * tp)[-1])
        return self._result(sv, spv, spv2)


class Pvi(Indicator):
    """Positive volume index: 1000.0 at the first bar; on a bar whose volume exceeds the
    previous bar's, ``pvi = pvi * (1.0 + (close - prev_close) / prev_close)``, otherwise
    unchanged (also unchanged if the previous close is 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.spec = ("pvi", ())
        self.warmup_bars = 1
        self.window = 2
        self._pvi = 1000.0

    def update(self, series: BarSeries) -> float:
        self._n += 1
        if self._n > 1 and series.last("volume") > series.last("volume", 1):
            prev = series.last("close", 1)
            if prev != 0.0:
                self._pvi = self._pvi * (1.0 + (series.last("close") - prev) / prev)
        return self._pvi


def volume_nodes(
    high: FloatArray, low: FloatArray, close: FloatArray, volume: FloatArray, bins: int
) -> tuple[float, ...]:
    """High-volume nodes of a profile of the given bars (see ``VolumeProfile``)."""
    lo, hi = float(np.min(low)), float(np.max(high))
    if hi == lo:
        return (lo,)
    width = (hi - lo) / bins
    tp = (high + low + close) / 3.0
    # truncation like int(); clipped so hi (and rounding strays) stay in the end bins
    idx = np.clip(((tp - lo) / width).astype(np.int64), 0, bins - 1)
    # bincount adds each bin's volumes in bar order, oldest first
    vol = np.bincount(idx, weights=volume, minlength=bins).tolist()
    total = 0.0
    for v in vol:
        total += v
    floor = 1.5 * (total / bins)
    nodes = []
    for i, v in enumerate(vol):
        left = vol[i - 1] if i > 0 else -math.inf
        right = vol[i + 1] if i + 1 < bins else -math.inf
        if v >= floor and v > left and v >= right:
            nodes.append(lo + (i + 0.5) * width)
    return tuple(nodes)


class VolumeProfile(Indicator):
    """High-volume nodes of the newest ``period`` bars, ascending.

    With ``lo = min(low)``, ``hi = max(high)`` over those bars and ``width = (hi - lo) / bins``,
    each bar's whole volume goes to bin ``min(int((tp - lo) / width), bins - 1)`` (at least 0)
    of its typical price ``tp = (high + low + close) / 3.0``; bin volumes add up in bar order,
    oldest first, and their mean is their sum (in bin order) divided by ``bins``. A node is a
    bin with volume >= 1.5 times that mean, more than its left neighbour and at least its
    right one (a missing neighbour counts as -inf); its price is the bin centre
    ``lo + (i + 0.5) * width``. A flat range (``hi == lo``) has the single node ``lo``. Taken
    literally, a window with a price range but no volume at all has one node, at the lowest
    bin (Binance's empty klines are flat, so such a window is flat and gets ``(lo,)``). Before
    ``period`` bars the value is ``(nan,)``.
    """

    def __init__(self, period: int = 100, bins: int = 24) -> None:
        super().__init__()
        if period < 1 or bins < 1:
            raise ValueError("bad vprofile arguments")
        self.spec = ("vprofile", (period, bins))
        self.period, self.bins = period, bins
        self.warmup_bars = self.window = period

    def update(self, series: BarSeries) -> tuple[float, ...]:
        self._n += 1
        if self._n < self.period:
            return (NAN,)
        n = self.period
        return volume_nodes(
            series.window("high", n),
            series.window("low", n),
            series.window("close", n),
            series.window("volume", n),
            self.bins,
        )


# Helpers over a ``vprofile`` value. A warm-up value ``(nan,)`` (or a NaN close) is undefined:
# every helper then returns NaN, which callers treat as "not ready".


def _undefined(nodes: tuple[float, ...], close: float) -> bool:
    return math.isnan(close) or any(math.isnan(x) for x in nodes)


def _within(nodes: tuple[float, ...], close: float, pct: float) -> list[float]:
    reach = abs(close) * pct / 100.0
    return [x for x in nodes if abs(x - close) <= reach]


def hvn_near(nodes: tuple[float, ...], close: float, pct: float) -> bool | float:
    """Whether some node lies within ``pct`` percent of ``close`` (NaN if undefined)."""
    if _undefined(nodes, close):
        return NAN
    return bool(_within(nodes, close, pct))


def hvn_count(nodes: tuple[float, ...], close: float, pct: float) -> float:
    """How many nodes lie within ``pct`` percent of ``close`` (NaN if undefined)."""
    if _undefined(nodes, close):
        return NAN
    return float(len(_within(nodes, close, pct)))


def hvn_above(nodes: tuple[float, ...], close: float) -> float:
    """The nearest node strictly above ``close``; NaN if none or undefined."""
    if _undefined(nodes, close):
        return NAN
    return min((x for x in nodes if x > close), default=NAN)


def hvn_below(nodes: tuple[float, ...], close: float) -> float:
    """The nearest node strictly below ``close``; NaN if none or undefined."""
    if _undefined(nodes, close):
        return NAN
    return max((x for x in nodes if x < close), default=NAN)


class RsiDivergence(Indicator):
    """Regular RSI divergence at the newest bar, as (bullish, bearish) 1.0/0.0 flags.

    Bullish: the newest low is below every low of the previous ``lookback`` bars, and the RSI
    is higher than at the bar of that earlier lowest low (the most recent one on a tie).
    Bearish: the mirror image with highs and a lower RSI. Defined once the RSI exists at the
    newest bar and the ``lookback`` before it, i.e. from bar ``period + 1 + lookback`` on.
    """

    def __init__(self, period: int = 14, lookback: int = 30) -> None:
        super().__init__()
        if lookback < 1:
            raise ValueError("bad divergence lookback")
        self.spec = ("rsi_divergence", (period, lookback))
        self.lookback = lookback
        self.warmup_bars = period + 1 + lookback
        self.window = lookback + 1
        self._rsi = TalibRsi(period)
        self._rsis: deque[float] = deque(maxlen=lookback + 1)  # aligned with the ring's bars

    def update(self, series: BarSeries) -> tuple[float, float]:
        self._n += 1
        self._rsis.append(self._rsi.push(series.last("close")))
        if self._n < self.warmup_bars:
            return (NAN, NAN)
        n = self.lookback + 1
        rsi = self._rsis[-1]
        lows, highs = series.window("low", n), series.window("high", n)
        bull = bear = 0.0
        prior_low = float(np.min(lows[:-1]))
        if lows[-1] < prior_low:
            at = int(np.flatnonzero(lows[:-1] == prior_low)[-1])
            bull = 1.0 if rsi > self._rsis[at] else 0.0
        prior_high = float(np.max(highs[:-1]))
        if highs[-1] > prior_high:
            at = int(np.flatnonzero(highs[:-1] == prior_high)[-1])
            bear = 1.0 if rsi < self._rsis[at] else 0.0
        return (bull, bear)


# our pattern names -> TA-Lib candlestick functions
PATTERNS: dict[str, str] = {
    "engulfing": "CDLENGULFING",
    "hammer": "CDLHAMMER",
    "inverted_hammer": "CDLINVERTEDHAMMER",
    "hanging_man": "CDLHANGINGMAN",
    "shooting_star": "CDLSHOOTINGSTAR",
    "doji": "CDLDOJI",
    "dragonfly_doji": "CDLDRAGONFLYDOJI",
    "gravestone_doji": "CDLGRAVESTONEDOJI",
    "long_legged_doji": "CDLLONGLEGGEDDOJI",
    "doji_star": "CDLDOJISTAR",
    "morning_star": "CDLMORNINGSTAR",
    "evening_star": "CDLEVENINGSTAR",
    "morning_doji_star": "CDLMORNINGDOJISTAR",
    "evening_doji_star": "CDLEVENINGDOJISTAR",
    "harami": "CDLHARAMI",
    "harami_cross": "CDLHARAMICROSS",
    "piercing": "CDLPIERCING",
    "dark_cloud_cover": "CDLDARKCLOUDCOVER",
    "three_white_soldiers": "CDL3WHITESOLDIERS",
    "three_black_crows": "CDL3BLACKCROWS",
    "three_inside": "CDL3INSIDE",
    "three_outside": "CDL3OUTSIDE",
    "marubozu": "CDLMARUBOZU",
    "closing_marubozu": "CDLCLOSINGMARUBOZU",
    "spinning_top": "CDLSPINNINGTOP",
    "belt_hold": "CDLBELTHOLD",
    "kicking": "CDLKICKING",
    "takuri": "CDLTAKURI",
    "hikkake": "CDLHIKKAKE",
}


def pattern_lookback(func: str) -> int:
    """Bars before the first one TA-Lib evaluates ``func`` at (with the current candle
    settings)."""
    return int(_abstract.Function(func).lookback)


class Pattern(Indicator):
    """A TA-Lib candlestick pattern's value at the newest bar, as a float (100 bullish, -100
    bearish, 0 none; some patterns also give 80/-80 or 200/-200). NaN for the first
    ``lookback`` bars, where the batch function evaluates nothing and writes 0."""

    def __init__(self, name: str) -> None:
        super().__init__()
        func = PATTERNS.get(name)
        if func is None:
            raise ValueError(f"unknown pattern {name!r}")
        self.spec = ("pattern", (name,))
        self.func = func
        self.warmup_bars = self.window = pattern_lookback(func) + 1

    def update(self, series: BarSeries) -> float:
        self._n += 1
        if self._n < self.warmup_bars:
            return NAN
        n = self.window
        out: Any = getattr(_talib, self.func)(
            series.window("open", n),
            series.window("high", n),
            series.window("low", n),
            series.window("close", n),
        )
        return float(out[-1])
