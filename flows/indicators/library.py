"""Incremental indicators over a symbol's closed bars, matching TA-Lib's batch functions.

Two kinds:

* Recurrence indicators (sma, avg_volume, wma, ema, rsi, atr, adx, macd, obv) keep their own
  running state and replay TA-Lib's C code operation for operation (same seeds, same order of
  floating-point operations), so each value is the one ``talib.FUNC`` returns at that bar
  over the WHOLE history since the indicator's first bar. sma, avg_volume, wma (including
  TA-Lib 0.8's periodic re-anchoring of its sums), ema, adx and obv are bit-for-bit equal;
  rsi, atr and macd differ from the installed TA-Lib build in the last bit now and then
  (~1e-15 relative, not accumulating: that build orders a few operations differently from the
  classic C code replayed here). None depends on the ring size: no unstable-period margin is
  needed, and old bars may leave the ring freely.
* Window indicators (bbands, cci, mfi, stoch, highest, lowest) are memory-free in theory, so
  they run ``talib.FUNC`` over the newest ``lookback + 1`` bars of the ring. MAX/MIN
  (highest/lowest) are exact; the others use running sums in TA-Lib's batch code, whose
  rounding depends on where the batch started, so they agree with the full-history batch to
  about 1e-12 relative (the contract suite allows 1e-9).

``update`` must be called exactly once per bar appended to the series. An indicator created
after bars went by starts counting from its first ``update``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, cast

import talib as _talib_module

from flows.indicators.series import FIELDS, BarSeries

Value = float | tuple[float, ...]
Spec = tuple[str, tuple[Any, ...]]
NAN = math.nan
_talib = cast(Any, _talib_module)


def _is_zero(x: float) -> bool:
    # TA-Lib's TA_IS_ZERO
    return -0.00000001 < x < 0.00000001


def _true_range(high: float, low: float, prev_close: float) -> float:
    return max(high - low, abs(prev_close - high), abs(prev_close - low))


class Indicator(ABC):
    """One indicator instance for one symbol. ``warmup_bars``: bars before the first value."""

    spec: Spec
    warmup_bars: int
    window: int = 2  # newest bars this indicator reads from the series

    def __init__(self) -> None:
        self._n = 0  # bars seen

    @abstractmethod
    def update(self, series: BarSeries) -> Value:
        """Take the newest bar of ``series``; return the value at it (NaN while warming up)."""


class _Ema:
    """TA-Lib's EMA: seeded by the plain mean of the first ``period`` inputs."""

    def __init__(self, period: int) -> None:
        self.period = period
        self.k = 2.0 / (period + 1)
        self.n = 0
        self.value = 0.0

    def push(self, x: float) -> float:
        self.n += 1
        if self.n < self.period:
            self.value += x
            return NAN
        if self.n == self.period:
            self.value = (self.value + x) / self.period
        else:
            self.value = ((x - self.value) * self.k) + self.value
        return self.value


class Sma(Indicator):
    def __init__(self, period: int = 30, field: str = "close") -> None:
        super().__init__()
        if period < 1 or field not in FIELDS:
            raise ValueError("bad sma arguments")
        self.spec = ("sma", (period, field))
        self.period, self.field = period, field
        self.warmup_bars = self.window = period
        self._total = 0.0

    def update(self, series: BarSeries) -> float:
        self._n += 1
        self._total += series.last(self.field)
        if self._n < self.period:
            return NAN
        out = self._total / self.period
        self._total -= series.last(self.field, self.period - 1)
        return out


class AvgVolume(Sma):
    def __init__(self, period: int = 20) -> None:
        super().__init__(period, "volume")
        self.spec = ("avg_volume", (period,))


class Wma(Indicator):
    def __init__(self, period: int = 30) -> None:
        super().__init__()
        if period < 1:
            raise ValueError("bad wma period")
        self.spec = ("wma", (period,))
        self.period = period
        self.warmup_bars = self.window = period
        self._divider = float((period * (period + 1)) >> 1)
        self._sum = self._sub = self._trailing = 0.0
        self._reseed = 8 * period

    def update(self, series: BarSeries) -> float:
        self._n += 1
        x = series.last("close")
        if self.period == 1:
            return x
        if self._n < self.period:
            self._sub += x
            self._sum += x * self._n
            return NAN
        self._sub += x
        self._sub -= self._trailing
        self._sum += x * self.period
        # TA-Lib 0.8 rebuilds both running sums from the window every 8*period outputs,
        # oldest first with weights counting up, to stop rounding residue from piling up
        self._reseed -= 1
        if self._reseed <= 0:
            self._reseed = 8 * self.period
            self._sub = self._sum = 0.0
            for weight, v in enumerate(series.window("close", self.period), start=1):
                self._sub += float(v)
                self._sum += float(v) * weight
        self._trailing = series.last("close", self.period - 1)
        out = self._sum / self._divider
        self._sum -= self._sub
        return out


class Ema(Indicator):
    def __init__(self, period: int = 30) -> None:
        super().__init__()
        if period < 1:
            raise ValueError("bad ema period")
        self.spec = ("ema", (period,))
        self.warmup_bars = period
        self._ema = _Ema(period)

    def update(self, series: BarSeries) -> float:
        self._n += 1
        return self._ema.push(series.last("close"))


class TalibRsi:
    """RSI exactly as the TA-Lib build in the ``ta-lib`` wheel computes it: the averages are
    multiplied by a precomputed 1/period (not divided by period), and the value is 0 only when
    gain + loss is not positive (the classic C code's 1e-8 threshold would give 0 for any pair
    priced around 1e-7). Bit-exact with ``talib.RSI``."""

    def __init__(self, period: int) -> None:
        if period < 2:
            raise ValueError("bad rsi period")
        self.period = period
        self._inv = 1.0 / period
        self._n = 0
        self._prev = 0.0
        self._gain = self._loss = 0.0

    def push(self, close: float) -> float:
        self._n += 1
        prev, self._prev = self._prev, close
        if self._n == 1:
            return NAN
        diff = close - prev
        up = diff if diff > 0.0 else 0.0
        down = up - diff  # -diff on a fall, 0.0 otherwise
        p = self.period
        if self._n <= p + 1:  # seed: plain sums of the first ``period`` moves
            self._gain += up
            self._loss += down
            if self._n < p + 1:
                return NAN
            self._gain *= self._inv
            self._loss *= self._inv
        else:
            self._gain = (self._gain * (p - 1) + up) * self._inv
            self._loss = (self._loss * (p - 1) + down) * self._inv
        total = self._gain + self._loss
        return 100.0 * (self._gain / total) if total > 0.0 else 0.0


class Rsi(Indicator):
    def __init__(self, period: int = 14) -> None:
        super().__init__()
        self.spec = ("rsi", (period,))
        self.period = period
        self.warmup_bars = period + 1
        self._rsi = TalibRsi(period)

    def update(self, series: BarSeries) -> float:
        self._n += 1
        return self._rsi.push(series.last("close"))


class Atr(Indicator):
    def __init__(self, period: int = 14) -> None:
        super().__init__()
        if period < 2:
            raise ValueError("bad atr period")
        self.spec = ("atr", (period,))
        self.period = period
        self.warmup_bars = period + 1
        self._atr = 0.0

    def update(self, series: BarSeries) -> float:
        self._n += 1
        if self._n == 1:
            return NAN
        tr = _true_range(series.last("high"), series.last("low"), series.last("close", 1))
        p = self.period
        if self._n <= p + 1:
            self._atr += tr
            if self._n < p + 1:
                return NAN
            self._atr /= p
            return self._atr
        self._atr *= p - 1
        self._atr += tr
        self._atr /= p
        return self._atr


class Adx(Indicator):
    def __init__(self, period: int = 14) -> None:
        super().__init__()
        if period < 2:
            raise ValueError("bad adx period")
        self.spec = ("adx", (period,))
        self.period = period
        self.warmup_bars = 2 * period
        self._pdm = self._mdm = self._tr = self._sum_dx = self._adx = 0.0

    def update(self, series: BarSeries) -> float:
        self._n += 1
        n, p = self._n, self.period
        if n == 1:
            return NAN
        high, low = series.last("high"), series.last("low")
        diff_p = high - series.last("high", 1)
        diff_m = series.last("low", 1) - low
        tr = _true_range(high, low, series.last("close", 1))
        if n > p:  # Wilder smoothing once the first period-1 sums are in
            self._mdm -= self._mdm / p
            self._pdm -= self._pdm / p
        if diff_m > 0 and diff_p < diff_m:
            self._mdm += diff_m
        elif diff_p > 0 and diff_p > diff_m:
            self._pdm += diff_p
        if n <= p:
            self._tr += tr
            return NAN
        self._tr = self._tr - (self._tr / p) + tr
        dx = NAN
        if not _is_zero(self._tr):
            minus_di = 100.0 * (self._mdm / self._tr)
            plus_di = 100.0 * (self._pdm / self._tr)
            total = minus_di + plus_di
            if not _is_zero(total):
                dx = 100.0 * (abs(minus_di - plus_di) / total)
        if n < 2 * p:
            if not math.isnan(dx):
                self._sum_dx += dx
            return NAN
        if n == 2 * p:
            if not math.isnan(dx):
                self._sum_dx += dx
            self._adx = self._sum_dx / p
        elif not math.isnan(dx):
            self._adx = ((self._adx * (p - 1)) + dx) / p
        return self._adx


class Macd(Indicator):
    """TA-Lib's MACD: the fast EMA is seeded late so that both EMAs start at bar slow-1."""

    def __init__(self, fast: int = 12, slow: int = 26, signal: int = 9) -> None:
        super().__init__()
        if min(fast, slow, signal) < 2:
            raise ValueError("bad macd periods")
        self.spec = ("macd", (fast, slow, signal))
        if slow < fast:
            fast, slow = slow, fast
        self.fast_delay = slow - fast
        self.warmup_bars = slow + signal - 1
        self._fast, self._slow, self._signal = _Ema(fast), _Ema(slow), _Ema(signal)

    def update(self, series: BarSeries) -> tuple[float, float, float]:
        self._n += 1
        x = series.last("close")
        slow = self._slow.push(x)
        fast = self._fast.push(x) if self._n > self.fast_delay else NAN
        if math.isnan(slow):
            return (NAN, NAN, NAN)
        line = fast - slow
        signal = self._signal.push(line)
        if math.isnan(signal):
            return (NAN, NAN, NAN)
        return (line, signal, line - signal)


class Obv(Indicator):
    def __init__(self) -> None:
        super().__init__()
        self.spec = ("obv", ())
        self.warmup_bars = 1
        self._obv = 0.0

    def update(self, series: BarSeries) -> float:
        self._n += 1
        vol = series.last("volume")
        if self._n == 1:
            self._obv = vol
        else:
            close, prev = series.last("close"), series.last("close", 1)
            if close > prev:
                self._obv += vol
            elif close < prev:
                self._obv -= vol
        return self._obv


class _Windowed(Indicator):
    """Runs TA-Lib's ``<func>`` over the newest ``window`` bars of the ring."""

    func: str
    inputs: tuple[str, ...] = ("close",)
    outputs: int = 1
    kwargs: dict[str, Any]

    def _setup(self, spec: Spec, func: str, lookback: int, **kwargs: Any) -> None:
        self.spec, self.func, self.kwargs = spec, func, kwargs
        self.warmup_bars = self.window = lookback + 1

    def update(self, series: BarSeries) -> Value:
        self._n += 1
        if self._n < self.warmup_bars:
            return (NAN,) * self.outputs if self.outputs > 1 else NAN
        arrays = (series.window(f, self.window) for f in self.inputs)
        out: Any = getattr(_talib, self.func)(*arrays, **self.kwargs)
        if isinstance(out, tuple):
            return tuple(float(v[-1]) for v in out)
        return float(out[-1])


class Bbands(_Windowed):
    outputs = 3

    def __init__(self, period: int = 20, nbdev: float = 2.0) -> None:
        super().__init__()
        kw = {"timeperiod": period, "nbdevup": nbdev, "nbdevdn": nbdev, "matype": 0}
        self._setup(("bbands", (period, nbdev)), "BBANDS", period - 1, **kw)


class Cci(_Windowed):
    inputs = ("high", "low", "close")

    def __init__(self, period: int = 14) -> None:
        super().__init__()
        self._setup(("cci", (period,)), "CCI", period - 1, timeperiod=period)


class Mfi(_Windowed):
    inputs = ("high", "low", "close", "volume")

    def __init__(self, period: int = 14) -> None:
        super().__init__()
        self._setup(("mfi", (period,)), "MFI", period, timeperiod=period)


class Stoch(_Windowed):
    inputs = ("high", "low", "close")
    outputs = 2

    def __init__(self, fastk: int = 5, slowk: int = 3, slowd: int = 3) -> None:
        super().__init__()
        kw = {"fastk_period": fastk, "slowk_period": slowk, "slowk_matype": 0}
        kw |= {"slowd_period": slowd, "slowd_matype": 0}
        lookback = (fastk - 1) + (slowk - 1) + (slowd - 1)
        self._setup(("stoch", (fastk, slowk, slowd)), "STOCH", lookback, **kw)


class Highest(_Windowed):
    def __init__(self, period: int = 20, field: str = "high") -> None:
        super().__init__()
        if field not in FIELDS:
            raise ValueError(f"unknown field {field!r}")
        self.inputs = (field,)
        self._setup(("highest", (period, field)), "MAX", period - 1, timeperiod=period)


class Lowest(_Windowed):
    def __init__(self, period: int = 20, field: str = "low") -> None:
        super().__init__()
        if field not in FIELDS:
            raise ValueError(f"unknown field {field!r}")
        self.inputs = (field,)
        self._setup(("lowest", (period, field)), "MIN", period - 1, timeperiod=period)
