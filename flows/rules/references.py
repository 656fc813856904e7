"""The batch definitions of the rule helpers: each helper's quantity over a whole history.

These are the ``reference`` functions the helper library in ``flows.rules.helpers`` declares,
against which ``tests/contract`` checks every incremental helper at every bar: TA-Lib's batch
functions where TA-Lib has them, plain numpy loops where it has not. They take ``bars`` (numpy
arrays: open, high, low, close, volume, quote_volume, trades, time) then the helper's arguments
in order; conditions are 1.0/0.0, NaN where undefined.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import talib as _talib_module

from flows.indicators.extra import pattern_lookback

Arrays = Mapping[str, npt.NDArray[np.float64]]
Series = npt.NDArray[np.float64]
_talib = cast(Any, _talib_module)
NAN = math.nan


def talib_over(func: str, *fields: str) -> Callable[..., Series]:
    """TA-Lib's ``func`` over ``fields`` of the bars, then the helper's literal arguments."""

    def reference(bars: Arrays, *args: Any) -> Series:
        result: Series = _talib.__dict__[func](*(bars[f] for f in fields), *args)
        return result

    return reference


def batch_vwap(bars: Arrays, period: int) -> tuple[Series, Series]:
    """Volume-weighted typical price and its weighted deviation, per session or N bars."""
    tp = (bars["high"] + bars["low"] + bars["close"]) / 3.0
    vol, times = bars["volume"], bars["time"]
    n = len(tp)
    vwap, dev = np.full(n, NAN), np.full(n, NAN)
    for i in range(n):
        if period:
            if i + 1 < period:
                continue
            lo = i + 1 - period
        else:
            day = math.floor(times[i] / 86_400_000)
            lo = i
            while lo > 0 and math.floor(times[lo - 1] / 86_400_000) == day:
                lo -= 1
        sv = svp = svpp = 0.0
        for j in range(lo, i + 1):
            sv += vol[j]
            svp += vol[j] * tp[j]
            svpp += vol[j] * tp[j] * tp[j]
        if sv > 0:
            vwap[i] = svp / sv
            dev[i] = math.sqrt(max(0.0, svpp / sv - vwap[i] ** 2))
    return vwap, dev


def batch_profile_nodes(bars: Arrays, period: int, bins: int = 24) -> list[tuple[float, ...]]:
    """The high-volume nodes of the volume profile over the last ``period`` bars, per bar."""
    tp = (bars["high"] + bars["low"] + bars["close"]) / 3.0
    out: list[tuple[float, ...]] = []
    for i in range(len(tp)):
        if i + 1 < period:
            out.append((NAN,))
            continue
        lo_i = i + 1 - period
        lo = float(np.min(bars["low"][lo_i : i + 1]))
        hi = float(np.max(bars["high"][lo_i : i + 1]))
        if hi == lo:
            out.append((lo,))
            continue
        width = (hi - lo) / bins
        hist = [0.0] * bins
        for j in range(lo_i, i + 1):
            b = min(int((tp[j] - lo) / width), bins - 1)
            hist[max(b, 0)] += float(bars["volume"][j])
        mean = sum(hist) / bins
        nodes = []
        for b in range(bins):
            left = hist[b - 1] if b > 0 else -math.inf
            right = hist[b + 1] if b + 1 < bins else -math.inf
            if hist[b] >= 1.5 * mean and hist[b] > left and hist[b] >= right:
                nodes.append(lo + (b + 0.5) * width)
        out.append(tuple(nodes))
    return out


def batch_divergence(bars: Arrays, period: int, lookback: int) -> tuple[Series, Series]:
    rsi = _talib.RSI(bars["close"], period)
    low, high = bars["low"], bars["high"]
    n = len(rsi)
    bull, bear = np.full(n, NAN), np.full(n, NAN)
    for i in range(n):
        if i - lookback < 0 or np.isnan(rsi[i - lookback : i + 1]).any():
            continue
        window_low = low[i - lookback : i]
        j_low = i - lookback + int(np.flatnonzero(window_low == window_low.min())[-1])
        bull[i] = float(low[i] < window_low.min() and rsi[i] > rsi[j_low])
        window_high = high[i - lookback : i]
        j_high = i - lookback + int(np.flatnonzero(window_high == window_high.max())[-1])
        bear[i] = float(high[i] > window_high.max() and rsi[i] < rsi[j_high])
    return bull, bear


def batch_pvi(bars: Arrays) -> Series:
    close, vol = bars["close"], bars["volume"]
    out = np.full(len(close), NAN)
    value = 1000.0
    for i in range(len(close)):
        if i and vol[i] > vol[i - 1]:
            value = value * (1.0 + (close[i] - close[i - 1]) / close[i - 1])
        out[i] = value
    return out


def batch_pattern(bars: Arrays, func: str) -> Series:
    """TA-Lib's pattern values, NaN (not TA-Lib's 0) before its first evaluated bar."""
    out = np.asarray(
        _talib.__dict__[func](bars["open"], bars["high"], bars["low"], bars["close"]), float
    )
    out[: pattern_lookback(func)] = NAN
    return out


def shifted(x: Series, n: int) -> Series:
    out = np.full(len(x), NAN)
    if n < len(x):
        out[n:] = x[: len(x) - n]
    return out


def batch_crosses(a: Series, b: Series, above: bool) -> Series:
    pa, pb = shifted(a, 1), shifted(b, 1)
    hit = (a > b) & (pa <= pb) if above else (a < b) & (pa >= pb)
    undefined = np.isnan(a) | np.isnan(b) | np.isnan(pa) | np.isnan(pb)
    return np.where(undefined, NAN, hit.astype(float))
