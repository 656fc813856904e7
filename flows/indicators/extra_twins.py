"""Array twins of the indicators of ``flows.indicators.extra``: VWAP, the volume profile,
the stochastic RSI and RSI divergence (see ``flows.indicators.arrays`` for the contract)."""

from __future__ import annotations

from collections import deque
from typing import Any, ClassVar

import numpy as np

from flows.indicators.arrays import (
    NAN,
    ArrayIndicator,
    Bars,
    FloatArray,
    IntArray,
    _rsi_step,
)
from flows.indicators.library import Indicator

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


EXTRA_TWINS: dict[str, type[ArrayIndicator]] = {
    "vwap": ArrayVwap,
    "vprofile": ArrayVolumeProfile,
    "stochrsi": ArrayStochRsi,
    "rsi_divergence": ArrayRsiDivergence,
}
