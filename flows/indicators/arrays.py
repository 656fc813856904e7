"""Indicators advanced for many symbols at once: one numpy step per indicator per close.

Each class here is the array twin of one class of ``library`` (or ``extra``): the same spec,
the same warm-up, the same state, held as one array per state variable with one element per
symbol (a *row*), and the same floating-point operations in the same order, applied to every
row that closed with a handful of numpy operations. The scalar branches (warming up, the
seed bar, running) are all computed and picked per row with ``np.where``, so a row's value is
bit for bit the value its scalar twin gives (``tests/unit/test_array_indicators.py`` runs both
side by side at every bar). Windowed indicators replay TA-Lib's code over the newest bars
(``flows.indicators.window_twins``), as the scalar classes call TA-Lib over the same bars.

``STATE`` names, for each state array, the attribute of the scalar twin holding that value
(dotted for nested objects), so a row's state moves between the two losslessly: ``export``
makes the scalar indicator of one row (used when an array step raises: the indicator then goes
on per row, so one symbol's failure cannot stop another's), ``load`` takes one in.

An indicator without a twin here runs per row as its scalar class (``flows.rules.block``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

import numpy as np
import numpy.typing as npt

from flows.indicators.library import Indicator

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
NAN = np.nan


class Bars(Protocol):
    """The bars of the rows being advanced (see ``flows.rules.block.Step``)."""

    def last(self, field: str, back: int = 0) -> FloatArray: ...

    def window(self, field: str, n: int) -> FloatArray: ...


class ArrayIndicator:
    """State arrays for every row, advanced together; built from a fresh scalar twin."""

    STATE: ClassVar[dict[str, str]] = {}  # array name -> attribute path in the scalar twin
    outputs: int = 1

    def __init__(self, twin: Indicator, factory: Callable[..., Indicator]) -> None:
        self.spec = twin.spec
        self.window = twin.window
        self.warmup_bars = twin.warmup_bars
        self._factory = factory
        self._initial = {name: _get(twin, path) for name, path in self.STATE.items()}
        self.state: dict[str, np.ndarray] = {
            name: np.zeros(0, dtype=np.int64 if isinstance(v, int) else np.float64)
            for name, v in self._initial.items()
        }
        self.setup(twin)

    def setup(self, twin: Indicator) -> None:
        """Copy the parameters a subclass needs from its twin."""

    def grow(self, size: int) -> None:
        for name, arr in self.state.items():
            if len(arr) < size:
                bigger = np.full(size, self._initial[name], dtype=arr.dtype)
                bigger[: len(arr)] = arr
                self.state[name] = bigger

    def reset(self, rows: IntArray) -> None:
        for name, arr in self.state.items():
            arr[rows] = self._initial[name]

    def update(self, bars: Bars, rows: IntArray, n: IntArray) -> FloatArray:
        """The value at each row's newest bar: shape (outputs, len(rows)). ``n``: bars each
        row has taken, this one included. Writes the state only once everything is computed,
        so an update that raises leaves every row as it was."""
        raise NotImplementedError

    def export(self, row: int, n: int) -> Indicator:
        twin = self._factory(*self.spec[1])
        twin._n = n
        for name, path in self.STATE.items():
            _set(twin, path, self.state[name][row].item())
        self.sync_twin(twin, n)
        return twin

    def sync_twin(self, twin: Indicator, n: int) -> None:
        """Set the twin's counters that follow from ``n``."""

    def load(self, row: int, twin: Indicator) -> None:
        for name, path in self.STATE.items():
            self.state[name][row] = _get(twin, path)

    def to_value(self, at: FloatArray) -> Any:
        """One row's stored outputs as the scalar class's value."""
        return float(at[0]) if self.outputs == 1 else tuple(float(v) for v in at)

    def from_value(self, value: Any) -> Any:
        """The scalar class's value as this twin stores it."""
        return value


def _get(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _set(obj: Any, path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for part in parents:
        obj = getattr(obj, part)
    setattr(obj, last, value)


def _ema_step(value: FloatArray, count: IntArray, x: FloatArray, period: int, k: float
              ) -> tuple[FloatArray, FloatArray]:  # fmt: skip
    """``_Ema.push`` for every row: (new running value, output); ``count`` after the push."""
    summed = value + x
    new = np.where(
        count < period,
        summed,
        np.where(count == period, summed / period, ((x - value) * k) + value),
    )
    return new, np.where(count < period, NAN, new)


class ArraySma(ArrayIndicator):
    STATE: ClassVar[dict[str, str]] = {"total": "_total"}

    def setup(self, twin: Indicator) -> None:
        self.period, self.field = twin.period, twin.field  # type: ignore[attr-defined]

    def update(self, bars: Bars, rows: IntArray, n: IntArray) -> FloatArray:
        total = self.state["total"][rows] + bars.last(self.field)
        ready = n >= self.period
        out = np.where(ready, total / self.period, NAN)
        self.state["total"][rows] = np.where(
            ready, total - bars.last(self.field, self.period - 1), total
        )
        return out[None]


class ArrayWma(ArrayIndicator):
    STATE: ClassVar[dict[str, str]] = {
        "sub": "_sub",
        "sum": "_sum",
        "trailing": "_trailing",
        "reseed": "_reseed",
    }

    def setup(self, twin: Indicator) -> None:
        self.period = twin.period  # type: ignore[attr-defined]
        self.divider = twin._divider  # type: ignore[attr-defined]

    def update(self, bars: Bars, rows: IntArray, n: IntArray) -> FloatArray:
        p = self.period
        x = bars.last("close")
        if p == 1:
            return x[None]
        s = self.state
        sub, total = s["sub"][rows], s["sum"][rows]
        warming = n < p
        warm_sub = sub + x
        warm_sum = total + x * n
        run_sub = (sub + x) - s["trailing"][rows]
        run_sum = total + x * p
        reseed = s["reseed"][rows] - np.where(warming, 0, 1)
        again = ~warming & (reseed <= 0)
        if again.any():
            # TA-Lib 0.8 rebuilds both sums from the window every 8 * period outputs
            win = bars.window("close", p)[again]
            fresh_sub = np.zeros(len(win))
            fresh_sum = np.zeros(len(win))
            for weight in range(1, p + 1):
                v = win[:, weight - 1]
                fresh_sub = fresh_sub + v
                fresh_sum = fresh_sum + v * weight
            run_sub[again], run_sum[again] = fresh_sub, fresh_sum
            reseed[again] = 8 * p
        out = np.where(warming, NAN, run_sum / self.divider)
        s["sub"][rows] = np.where(warming, warm_sub, run_sub)
        s["sum"][rows] = np.where(warming, warm_sum, run_sum - run_sub)
        s["reseed"][rows] = reseed
        s["trailing"][rows] = np.where(warming, s["trailing"][rows], bars.last("close", p - 1))
        return out[None]


class ArrayEma(ArrayIndicator):
    STATE: ClassVar[dict[str, str]] = {"value": "_ema.value"}

    def setup(self, twin: Indicator) -> None:
        self.period = twin._ema.period  # type: ignore[attr-defined]
        self.k = twin._ema.k  # type: ignore[attr-defined]

    def update(self, bars: Bars, rows: IntArray, n: IntArray) -> FloatArray:
        value, out = _ema_step(
            self.state["value"][rows], n, bars.last("close"), self.period, self.k
        )
        self.state["value"][rows] = value
        return out[None]

    def sync_twin(self, twin: Indicator, n: int) -> None:
        twin._ema.n = n  # type: ignore[attr-defined]


def _rsi_step(state: dict[str, np.ndarray], rows: IntArray, n: IntArray, close: FloatArray,
              period: int, inv: float) -> FloatArray:  # fmt: skip
    """``TalibRsi.push`` for every row (state arrays ``prev``, ``gain``, ``loss``)."""
    prev = state["prev"][rows]
    diff = close - prev
    up = np.where(diff > 0.0, diff, 0.0)
    down = up - diff
    gain, loss = state["gain"][rows], state["loss"][rows]
    seeding = n <= period + 1
    seed_gain, seed_loss = gain + up, loss + down
    at_seed = n == period + 1
    seed_gain = np.where(at_seed, seed_gain * inv, seed_gain)
    seed_loss = np.where(at_seed, seed_loss * inv, seed_loss)
    run_gain = (gain * (period - 1) + up) * inv
    run_loss = (loss * (period - 1) + down) * inv
    first = n == 1
    gain = np.where(first, gain, np.where(seeding, seed_gain, run_gain))
    loss = np.where(first, loss, np.where(seeding, seed_loss, run_loss))
    total = gain + loss
    value = np.where(total > 0.0, 100.0 * (gain / total), 0.0)
    state["prev"][rows], state["gain"][rows], state["loss"][rows] = close, gain, loss
    return np.where(n < period + 1, NAN, value)


class ArrayRsi(ArrayIndicator):
    STATE: ClassVar[dict[str, str]] = {
        "prev": "_rsi._prev",
        "gain": "_rsi._gain",
        "loss": "_rsi._loss",
    }

    def setup(self, twin: Indicator) -> None:
        self.period = twin.period  # type: ignore[attr-defined]
        self.inv = twin._rsi._inv  # type: ignore[attr-defined]

    def update(self, bars: Bars, rows: IntArray, n: IntArray) -> FloatArray:
        close = bars.last("close")
        return _rsi_step(self.state, rows, n, close, self.period, self.inv)[None]

    def sync_twin(self, twin: Indicator, n: int) -> None:
        twin._rsi._n = n  # type: ignore[attr-defined]


def _true_range(bars: Bars) -> FloatArray:
    """``max(high - low, abs(prev_close - high), abs(prev_close - low))`` with Python's
    ``max`` order (a later value wins only when greater), NaN included."""
    high, low, prev = bars.last("high"), bars.last("low"), bars.last("close", 1)
    best = high - low
    b = np.abs(prev - high)
    best = np.where(b > best, b, best)
    c = np.abs(prev - low)
    return np.where(c > best, c, best)


class ArrayAtr(ArrayIndicator):
    STATE: ClassVar[dict[str, str]] = {"atr": "_atr"}

    def setup(self, twin: Indicator) -> None:
        self.period = twin.period  # type: ignore[attr-defined]

    def update(self, bars: Bars, rows: IntArray, n: IntArray) -> FloatArray:
        p = self.period
        atr = self.state["atr"][rows]
        tr = _true_range(bars)
        seeding = n <= p + 1
        seed = atr + tr
        seed = np.where(n == p + 1, seed / p, seed)
        run = ((atr * (p - 1)) + tr) / p
        atr = np.where(n == 1, atr, np.where(seeding, seed, run))
        self.state["atr"][rows] = atr
        return np.where(n < p + 1, NAN, atr)[None]


def _is_zero(x: FloatArray) -> np.ndarray:
    return (x > -0.00000001) & (x < 0.00000001)


class ArrayAdx(ArrayIndicator):
    STATE: ClassVar[dict[str, str]] = {
        "pdm": "_pdm",
        "mdm": "_mdm",
        "tr": "_tr",
        "sum_dx": "_sum_dx",
        "adx": "_adx",
    }

    def setup(self, twin: Indicator) -> None:
        self.period = twin.period  # type: ignore[attr-defined]

    def update(self, bars: Bars, rows: IntArray, n: IntArray) -> FloatArray:
        p = self.period
        s = self.state
        pdm, mdm, tr_s = s["pdm"][rows], s["mdm"][rows], s["tr"][rows]
        sum_dx, adx = s["sum_dx"][rows], s["adx"][rows]
        first = n == 1
        high, low = bars.last("high"), bars.last("low")
        diff_p = high - bars.last("high", 1)
        diff_m = bars.last("low", 1) - low
        tr = _true_range(bars)
        smooth = n > p
        mdm = np.where(smooth, mdm - mdm / p, mdm)
        pdm = np.where(smooth, pdm - pdm / p, pdm)
        minus_move = (diff_m > 0) & (diff_p < diff_m)
        plus_move = ~minus_move & (diff_p > 0) & (diff_p > diff_m)
        mdm = np.where(minus_move, mdm + diff_m, mdm)
        pdm = np.where(plus_move, pdm + diff_p, pdm)
        tr_s = np.where(n <= p, tr_s + tr, (tr_s - (tr_s / p)) + tr)
        minus_di = 100.0 * (mdm / tr_s)
        plus_di = 100.0 * (pdm / tr_s)
        total = minus_di + plus_di
        dx = np.where(
            _is_zero(tr_s) | _is_zero(total), NAN, 100.0 * (np.abs(minus_di - plus_di) / total)
        )
        has_dx = ~np.isnan(dx) & (n > p)
        sum_dx = np.where(has_dx & (n <= 2 * p), sum_dx + dx, sum_dx)
        adx = np.where(n == 2 * p, sum_dx / p, adx)
        adx = np.where(has_dx & (n > 2 * p), ((adx * (p - 1)) + dx) / p, adx)
        keep = ~first
        s["pdm"][rows] = np.where(keep, pdm, s["pdm"][rows])
        s["mdm"][rows] = np.where(keep, mdm, s["mdm"][rows])
        s["tr"][rows] = np.where(keep, tr_s, s["tr"][rows])
        s["sum_dx"][rows] = sum_dx
        s["adx"][rows] = adx
        return np.where(n < 2 * p, NAN, adx)[None]


class ArrayMacd(ArrayIndicator):
    outputs = 3
    STATE: ClassVar[dict[str, str]] = {
        "fast": "_fast.value",
        "slow": "_slow.value",
        "signal": "_signal.value",
        "signal_n": "_signal.n",
    }

    def setup(self, twin: Indicator) -> None:
        self.delay = twin.fast_delay  # type: ignore[attr-defined]
        self.emas = twin._fast, twin._slow, twin._signal  # type: ignore[attr-defined]

    def update(self, bars: Bars, rows: IntArray, n: IntArray) -> FloatArray:
        s = self.state
        fast_e, slow_e, signal_e = self.emas
        x = bars.last("close")
        slow_v, slow = _ema_step(s["slow"][rows], n, x, slow_e.period, slow_e.k)
        pushed = n > self.delay
        fast_before = s["fast"][rows]
        fast_v, fast = _ema_step(fast_before, n - self.delay, x, fast_e.period, fast_e.k)
        fast = np.where(pushed, fast, NAN)
        line = fast - slow
        on = ~np.isnan(slow)
        count = s["signal_n"][rows] + on
        sig_before = s["signal"][rows]
        sig_v, signal = _ema_step(sig_before, count, line, signal_e.period, signal_e.k)
        s["slow"][rows] = slow_v
        s["fast"][rows] = np.where(pushed, fast_v, fast_before)
        s["signal"][rows] = np.where(on, sig_v, sig_before)
        s["signal_n"][rows] = count
        ok = on & ~np.isnan(signal)
        line = np.where(ok, line, NAN)
        signal = np.where(ok, signal, NAN)
        return np.stack((line, signal, line - signal))

    def sync_twin(self, twin: Indicator, n: int) -> None:
        twin._slow.n = n  # type: ignore[attr-defined]
        twin._fast.n = max(0, n - self.delay)  # type: ignore[attr-defined]


class ArrayObv(ArrayIndicator):
    STATE: ClassVar[dict[str, str]] = {"obv": "_obv"}

    def update(self, bars: Bars, rows: IntArray, n: IntArray) -> FloatArray:
        vol = bars.last("volume")
        close, prev = bars.last("close"), bars.last("close", 1)
        obv = self.state["obv"][rows]
        moved = np.where(close > prev, obv + vol, np.where(close < prev, obv - vol, obv))
        obv = np.where(n == 1, vol, moved)
        self.state["obv"][rows] = obv
        return obv[None]


class ArrayPvi(ArrayIndicator):
    STATE: ClassVar[dict[str, str]] = {"pvi": "_pvi"}

    def update(self, bars: Bars, rows: IntArray, n: IntArray) -> FloatArray:
        pvi = self.state["pvi"][rows]
        prev = bars.last("close", 1)
        step = (n > 1) & (bars.last("volume") > bars.last("volume", 1)) & (prev != 0.0)
        pvi = np.where(step, pvi * (1.0 + (bars.last("close") - prev) / prev), pvi)
        self.state["pvi"][rows] = pvi
        return pvi[None]


_DAY_MS = 86_400_000.0


def _pow2(x: FloatArray) -> FloatArray:
    """``x ** 2`` as Python computes it for a float (libm's pow, which now and then rounds
    differently from ``x * x``, as numpy's power does)."""
    return np.array([v**2 for v in x.tolist()], dtype=np.float64)


def _vwap_result(sv: FloatArray, spv: FloatArray, spv2: FloatArray) -> FloatArray:
    """``Vwap._result`` for every row."""
    vwap = spv / sv
    spread = spv2 / sv - _pow2(vwap)
    stdev = np.sqrt(np.where(spread > 0.0, spread, 0.0))  # max(0.0, NaN) is 0.0
    empty = sv == 0.0
    return np.stack((np.where(empty, NAN, vwap), np.where(empty, NAN, stdev)))


class ArrayVwap(ArrayIndicator):
    """``Vwap``: a session VWAP (running sums reset at each UTC day) or one over a window."""

    outputs = 2
    STATE: ClassVar[dict[str, str]] = {"sv": "_sv", "spv": "_spv", "spv2": "_spv2"}

    def setup(self, twin: Indicator) -> None:
        self.period = twin.period  # type: ignore[attr-defined]
        self.day = np.zeros(0, dtype=np.int64)  # the session's UTC day; -1: none

    def grow(self, size: int) -> None:
        super().grow(size)
        if len(self.day) < size:
            self.day = np.concatenate((self.day, np.full(size - len(self.day), -1)))

    def reset(self, rows: IntArray) -> None:
        super().reset(rows)
        self.day[rows] = -1

    def export(self, row: int, n: int) -> Indicator:
        twin = super().export(row, n)
        day = int(self.day[row])
        twin._day = None if day < 0 else day  # type: ignore[attr-defined]
        return twin

    def load(self, row: int, twin: Indicator) -> None:
        super().load(row, twin)
        day = twin._day  # type: ignore[attr-defined]
        self.day[row] = -1 if day is None else day

    def update(self, bars: Bars, rows: IntArray, n: IntArray) -> FloatArray:
        if self.period:
            return self._window(bars, n)
        s = self.state
        t = bars.last("time")
        timeless = np.isnan(t)
        day = np.where(timeless, -1, np.floor_divide(np.where(timeless, 0.0, t), _DAY_MS))
        day = day.astype(np.int64)
        new = day != self.day[rows]
        sv = np.where(new, 0.0, s["sv"][rows])
        spv = np.where(new, 0.0, s["spv"][rows])
        spv2 = np.where(new, 0.0, s["spv2"][rows])
        v = bars.last("volume")
        tp = (bars.last("high") + bars.last("low") + bars.last("close")) / 3.0
        pv = v * tp
        sv, spv, spv2 = sv + v, spv + pv, spv2 + pv * tp
        out = _vwap_result(sv, spv, spv2)
        out[:, timeless] = NAN
        s["sv"][rows] = np.where(timeless, s["sv"][rows], sv)
        s["spv"][rows] = np.where(timeless, s["spv"][rows], spv)
        s["spv2"][rows] = np.where(timeless, s["spv2"][rows], spv2)
        self.day[rows] = day
        return out

    def _window(self, bars: Bars, n: IntArray) -> FloatArray:
        p = self.period
        v = bars.window("volume", p)
        tp = (bars.window("high", p) + bars.window("low", p) + bars.window("close", p)) / 3.0
        pv = v * tp
        pv2 = pv * tp
        sv, spv, spv2 = v[:, 0].copy(), pv[:, 0].copy(), pv2[:, 0].copy()
        for i in range(1, p):  # oldest first, one bar after another
            sv += v[:, i]
            spv += pv[:, i]
            spv2 += pv2[:, i]
        out = _vwap_result(sv, spv, spv2)
        out[:, n < p] = NAN
        return out


class ArrayVolumeProfile(ArrayIndicator):
    """``VolumeProfile`` for every row: stored as (count, node prices..., NaN padding), so
    ``to_value`` gives back exactly the scalar tuple (see ``extra.volume_nodes``)."""

    def setup(self, twin: Indicator) -> None:
        self.period, self.bins = twin.period, twin.bins  # type: ignore[attr-defined]
        self.outputs = self.bins + 1

    def to_value(self, at: FloatArray) -> Any:
        return tuple(float(v) for v in at[1 : 1 + int(at[0])])

    def from_value(self, value: Any) -> Any:
        out = np.full(self.outputs, NAN)
        out[0] = len(value)
        out[1 : 1 + len(value)] = value
        return out

    def update(self, bars: Bars, rows: IntArray, n: IntArray) -> FloatArray:
        p, bins = self.period, self.bins
        out = np.full((self.outputs, len(rows)), NAN)
        out[0] = 1.0  # (nan,) while warming up
        ready = n >= p
        if not ready.any():
            return out
        high, low = bars.window("high", p)[ready], bars.window("low", p)[ready]
        close, volume = bars.window("close", p)[ready], bars.window("volume", p)[ready]
        lo, hi = np.min(low, axis=1), np.max(high, axis=1)
        width = (hi - lo) / bins
        tp = (high + low + close) / 3.0
        idx = np.clip(((tp - lo[:, None]) / width[:, None]).astype(np.int64), 0, bins - 1)
        m = len(lo)
        # one bincount over every row: each (row, bin) adds its volumes in bar order
        flat = (np.arange(m)[:, None] * bins + idx).ravel()
        vol = np.bincount(flat, weights=volume.ravel(), minlength=m * bins).reshape(m, bins)
        total = np.zeros(m)
        for i in range(bins):
            total += vol[:, i]
        floor = 1.5 * (total / bins)
        edge = np.full((m, 1), -np.inf)
        left = np.concatenate((edge, vol[:, :-1]), axis=1)
        right = np.concatenate((vol[:, 1:], edge), axis=1)
        node = (vol >= floor[:, None]) & (vol > left) & (vol >= right)
        prices = lo[:, None] + (np.arange(bins) + 0.5) * width[:, None]
        count = node.sum(axis=1)
        packed = np.full((m, bins), NAN)
        order = np.argsort(~node, axis=1, kind="stable")  # the nodes first, in bin order
        packed[:] = np.take_along_axis(prices, order, axis=1)
        packed[np.arange(bins)[None, :] >= count[:, None]] = NAN
        flat_range = hi == lo
        packed[flat_range] = NAN
        packed[flat_range, 0] = lo[flat_range]
        count = np.where(flat_range, 1, count)
        sub = np.full((self.outputs, m), NAN)
        sub[0] = count
        sub[1:] = packed.T
        out[:, ready] = sub
        return out


class _Rings:
    """A ring of the last ``width`` values per row (a scalar class's bounded deque)."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.vals = np.full((0, width), NAN)
        self.count = np.zeros(0, dtype=np.int64)  # values ever pushed per row

    def grow(self, size: int) -> None:
        old = len(self.count)
        if old < size:
            self.vals = np.concatenate((self.vals, np.full((size - old, self.width), NAN)))
            self.count = np.concatenate((self.count, np.zeros(size - old, dtype=np.int64)))

    def reset(self, rows: IntArray) -> None:
        self.vals[rows] = NAN
        self.count[rows] = 0

    def push(self, rows: IntArray, values: FloatArray, mask: np.ndarray) -> None:
        at, v = rows[mask], values[mask]
        self.vals[at, self.count[at] % self.width] = v
        self.count[at] += 1

    def window(self, rows: IntArray) -> FloatArray:
        """Each row's last ``width`` values, oldest first."""
        idx = (self.count[rows][:, None] + np.arange(self.width)) % self.width
        values: FloatArray = self.vals[rows[:, None], idx]
        return values

    def to_deque(self, row: int) -> deque[float]:
        held = min(int(self.count[row]), self.width)
        idx = (int(self.count[row]) - held + np.arange(held)) % self.width
        return deque(self.vals[row, idx].tolist(), maxlen=self.width)

    def load(self, row: int, values: deque[float]) -> None:
        self.vals[row] = NAN
        self.count[row] = len(values)
        for i, v in enumerate(values):
            self.vals[row, i % self.width] = v


class ArrayStochRsi(ArrayIndicator):
    """``StochRsi``: the RSI recurrence, then its last ``fastk`` values and last ``fastd``
    %K as rings per row."""

    outputs = 2
    STATE: ClassVar[dict[str, str]] = {
        "prev": "_rsi._prev", "gain": "_rsi._gain", "loss": "_rsi._loss", "total": "_total",
    }  # fmt: skip

    def setup(self, twin: Indicator) -> None:
        self.period = twin._rsi.period  # type: ignore[attr-defined]
        self.inv = twin._rsi._inv  # type: ignore[attr-defined]
        self.fastk, self.fastd = twin.fastk, twin.fastd  # type: ignore[attr-defined]
        self.rsis, self.ks = _Rings(self.fastk), _Rings(self.fastd)

    def grow(self, size: int) -> None:
        super().grow(size)
        self.rsis.grow(size)
        self.ks.grow(size)

    def reset(self, rows: IntArray) -> None:
        super().reset(rows)
        self.rsis.reset(rows)
        self.ks.reset(rows)

    def export(self, row: int, n: int) -> Indicator:
        twin = super().export(row, n)
        twin._rsi._n = n  # type: ignore[attr-defined]
        twin._rsis = self.rsis.to_deque(row)  # type: ignore[attr-defined]
        twin._ks = self.ks.to_deque(row)  # type: ignore[attr-defined]
        return twin

    def load(self, row: int, twin: Indicator) -> None:
        super().load(row, twin)
        self.rsis.load(row, twin._rsis)  # type: ignore[attr-defined]
        self.ks.load(row, twin._ks)  # type: ignore[attr-defined]

    def update(self, bars: Bars, rows: IntArray, n: IntArray) -> FloatArray:
        s = self.state
        rsi = _rsi_step(s, rows, n, bars.last("close"), self.period, self.inv)
        out = np.full((2, len(rows)), NAN)
        has = ~np.isnan(rsi)
        self.rsis.push(rows, rsi, has)
        full_k = has & (self.rsis.count[rows] >= self.fastk)
        if not full_k.any():
            return out
        window = self.rsis.window(rows)
        hi, lo = np.max(window, axis=1), np.min(window, axis=1)
        diff = hi - lo
        flat = np.abs(diff) <= (np.abs(hi) + np.abs(lo)) * 1e-14
        k = np.where(flat, 0.0, ((rsi - lo) / diff) * 100.0)
        self.ks.push(rows, k, full_k)
        total = np.where(full_k, s["total"][rows] + k, s["total"][rows])
        count = self.ks.count[rows]
        full_d = full_k & (count >= self.fastd)
        out[0] = np.where(full_d, k, NAN)
        out[1] = np.where(full_d, total / self.fastd, NAN)
        oldest = self.ks.vals[rows, (count - self.fastd) % self.fastd]
        s["total"][rows] = np.where(full_d, total - oldest, total)
        return out


class ArrayRsiDivergence(ArrayIndicator):
    """``RsiDivergence``: the RSI recurrence, its last ``lookback + 1`` values as a ring
    aligned with the bars, and the extremes of the window per row."""

    outputs = 2
    STATE: ClassVar[dict[str, str]] = {
        "prev": "_rsi._prev", "gain": "_rsi._gain", "loss": "_rsi._loss",
    }  # fmt: skip

    def setup(self, twin: Indicator) -> None:
        self.period = twin._rsi.period  # type: ignore[attr-defined]
        self.inv = twin._rsi._inv  # type: ignore[attr-defined]
        self.lookback = twin.lookback  # type: ignore[attr-defined]
        self.rsis = _Rings(self.lookback + 1)

    def grow(self, size: int) -> None:
        super().grow(size)
        self.rsis.grow(size)

    def reset(self, rows: IntArray) -> None:
        super().reset(rows)
        self.rsis.reset(rows)

    def export(self, row: int, n: int) -> Indicator:
        twin = super().export(row, n)
        twin._rsi._n = n  # type: ignore[attr-defined]
        twin._rsis = self.rsis.to_deque(row)  # type: ignore[attr-defined]
        return twin

    def load(self, row: int, twin: Indicator) -> None:
        super().load(row, twin)
        self.rsis.load(row, twin._rsis)  # type: ignore[attr-defined]

    def update(self, bars: Bars, rows: IntArray, n: IntArray) -> FloatArray:
        rsi = _rsi_step(self.state, rows, n, bars.last("close"), self.period, self.inv)
        self.rsis.push(rows, rsi, np.ones(len(rows), dtype=bool))
        out = np.full((2, len(rows)), NAN)
        ready = n >= self.warmup_bars
        if not ready.any():
            return out
        w = self.lookback + 1
        rsis = self.rsis.window(rows)
        m = np.arange(len(rows))
        for i, (field, pick, newer) in enumerate(
            (("low", np.min, np.less), ("high", np.max, np.greater))
        ):
            values = bars.window(field, w)
            prior = pick(values[:, :-1], axis=1)
            moved = ready & newer(values[:, -1], prior)
            # the most recent bar of the earlier extreme
            at = w - 2 - np.argmax((values[:, :-1] == prior[:, None])[:, ::-1], axis=1)
            then = rsis[m, at]
            confirm = np.greater(rsi, then) if i == 0 else np.less(rsi, then)
            out[i] = np.where(ready, np.where(moved & confirm, 1.0, 0.0), NAN)
        return out


_TWINS: dict[str, type[ArrayIndicator]] = {
    "sma": ArraySma,
    "avg_volume": ArraySma,
    "wma": ArrayWma,
    "ema": ArrayEma,
    "rsi": ArrayRsi,
    "atr": ArrayAtr,
    "adx": ArrayAdx,
    "macd": ArrayMacd,
    "obv": ArrayObv,
    "pvi": ArrayPvi,
    "vwap": ArrayVwap,
    "vprofile": ArrayVolumeProfile,
    "stochrsi": ArrayStochRsi,
    "rsi_divergence": ArrayRsiDivergence,
}


def array_twin(twin: Indicator, factory: Callable[..., Indicator]) -> ArrayIndicator | None:
    """The array twin of a freshly made indicator, or None (it then runs per row). Only the
    project's own classes have twins: a data engineer's replacement under the same name
    runs per row as written."""
    from flows.indicators import REGISTRY

    name = twin.spec[0]
    if REGISTRY.get(name) is not factory:
        return None
    cls = _TWINS.get(name)
    if cls is not None:
        return cls(twin, factory)
    from flows.indicators.window_twins import windowed_twin

    return windowed_twin(twin, factory)
