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
}


def array_twin(twin: Indicator, factory: Callable[..., Indicator]) -> ArrayIndicator | None:
    """The array twin of a freshly made indicator, or None (it then runs per row). Only the
    project's own classes have twins: a data engineer's replacement under the same name
    runs per row as written."""
    from flows.indicators import REGISTRY

    name = twin.spec[0]
    if REGISTRY.get(name) is not factory:
        return None
    from flows.indicators.extra_twins import EXTRA_TWINS
    from flows.indicators.window_twins import windowed_twin

    cls = _TWINS.get(name) or EXTRA_TWINS.get(name)
    if cls is not None:
        return cls(twin, factory)

    return windowed_twin(twin, factory)
