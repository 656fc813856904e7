"""Array twins of the windowed indicators (bbands, cci, mfi, stoch, highest, lowest and the
candlestick patterns): functions of the newest ``window`` bars only, computed for every row
by ``flows.indicators.windowed``, which replays TA-Lib's code over those bars as the scalar
classes call TA-Lib over them."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from flows.indicators import windowed
from flows.indicators.arrays import NAN, ArrayIndicator, Bars, FloatArray, IntArray
from flows.indicators.library import Indicator, Spec


class ArrayWindowed(ArrayIndicator):
    """A windowed indicator: a function of the newest ``window`` bars only (picklable:
    the function is looked up by the spec's name)."""

    def __init__(self, twin: Indicator, factory: Callable[..., Indicator], outputs: int) -> None:
        super().__init__(twin, factory)
        self.outputs = outputs

    def update(self, bars: Bars, rows: IntArray, n: IntArray) -> FloatArray:
        out = np.full((self.outputs, len(rows)), NAN)
        ready = n >= self.warmup_bars
        if ready.all():
            got = _compute(self.spec, self.window, bars)
            out[:] = got if isinstance(got, tuple) else got[None]
        elif ready.any():
            got = _compute(self.spec, self.window, _Subset(bars, ready))
            out[:, ready] = got if isinstance(got, tuple) else got[None]
        return out


class _Subset:
    """The bars of the rows selected by a mask."""

    def __init__(self, bars: Bars, mask: np.ndarray) -> None:
        self._bars, self._mask = bars, mask

    def last(self, field: str, back: int = 0) -> FloatArray:
        picked: FloatArray = self._bars.last(field, back)[self._mask]
        return picked

    def window(self, field: str, n: int) -> FloatArray:
        picked: FloatArray = self._bars.window(field, n)[self._mask]
        return picked


def _compute(spec: Spec, w: int, b: Bars) -> tuple[FloatArray, ...] | FloatArray:
    name, args = spec
    if name == "bbands":
        return tuple(windowed.bbands(b.window("close", w), args[0], args[1]))
    if name == "cci":
        return windowed.cci(b.window("high", w), b.window("low", w), b.window("close", w),
                            args[0])  # fmt: skip
    if name == "mfi":
        return windowed.mfi(b.window("high", w), b.window("low", w), b.window("close", w),
                            b.window("volume", w), args[0])  # fmt: skip
    if name == "stoch":
        return tuple(windowed.stoch(b.window("high", w), b.window("low", w),
                                    b.window("close", w), *args))  # fmt: skip
    if name in ("highest", "lowest"):
        pick = windowed.highest if name == "highest" else windowed.lowest
        return pick(b.window(args[1], w), args[0])
    fn = windowed.PATTERN_ARRAYS[args[0]]
    return fn(b.window("open", w), b.window("high", w), b.window("low", w), b.window("close", w))


_OUTPUTS = {"bbands": 3, "cci": 1, "mfi": 1, "stoch": 2, "highest": 1, "lowest": 1}


def windowed_twin(twin: Indicator, factory: Callable[..., Indicator]) -> ArrayIndicator | None:
    """The array twin of a windowed indicator, or None if it has none."""
    name, args = twin.spec
    if name == "pattern":
        return ArrayWindowed(twin, factory, 1) if args[0] in windowed.PATTERN_ARRAYS else None
    outputs = _OUTPUTS.get(name)
    return ArrayWindowed(twin, factory, outputs) if outputs else None
