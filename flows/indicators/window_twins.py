"""Array twins of the windowed indicators (bbands, cci, mfi, stoch, highest, lowest and the
candlestick patterns): functions of the newest ``window`` bars only, computed for every row
by ``flows.indicators.windowed``, which replays TA-Lib's code over those bars as the scalar
classes call TA-Lib over them."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from flows.indicators import windowed
from flows.indicators.arrays import NAN, ArrayIndicator, Bars, FloatArray, IntArray
from flows.indicators.library import Indicator


class ArrayWindowed(ArrayIndicator):
    """A windowed indicator: a function of the newest ``window`` bars only."""

    def __init__(
        self,
        twin: Indicator,
        factory: Callable[..., Indicator],
        compute: Callable[[Bars], tuple[FloatArray, ...] | FloatArray],
        outputs: int,
    ) -> None:
        super().__init__(twin, factory)
        self.compute = compute
        self.outputs = outputs

    def update(self, bars: Bars, rows: IntArray, n: IntArray) -> FloatArray:
        out = np.full((self.outputs, len(rows)), NAN)
        ready = n >= self.warmup_bars
        if ready.all():
            got = self.compute(bars)
            out[:] = got if isinstance(got, tuple) else got[None]
        elif ready.any():
            sub = _Subset(bars, ready)
            got = self.compute(sub)
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


def windowed_twin(twin: Indicator, factory: Callable[..., Indicator]) -> ArrayIndicator | None:
    name, args = twin.spec
    w = twin.window
    if name == "bbands":
        period, nbdev = args

        def bb(b: Bars) -> tuple[FloatArray, ...]:
            return tuple(windowed.bbands(b.window("close", w), period, nbdev))

        return ArrayWindowed(twin, factory, bb, 3)
    if name == "cci":

        def cci(b: Bars) -> FloatArray:
            return windowed.cci(b.window("high", w), b.window("low", w), b.window("close", w),
                                args[0])  # fmt: skip

        return ArrayWindowed(twin, factory, cci, 1)
    if name == "mfi":

        def mfi(b: Bars) -> FloatArray:
            return windowed.mfi(b.window("high", w), b.window("low", w), b.window("close", w),
                                b.window("volume", w), args[0])  # fmt: skip

        return ArrayWindowed(twin, factory, mfi, 1)
    if name == "stoch":

        def stoch(b: Bars) -> tuple[FloatArray, ...]:
            return tuple(windowed.stoch(b.window("high", w), b.window("low", w),
                                        b.window("close", w), *args))  # fmt: skip

        return ArrayWindowed(twin, factory, stoch, 2)
    if name in ("highest", "lowest"):
        period, field = args
        pick = windowed.highest if name == "highest" else windowed.lowest

        def extreme(b: Bars) -> FloatArray:
            return pick(b.window(field, w), period)

        return ArrayWindowed(twin, factory, extreme, 1)
    if name == "pattern":
        fn = windowed.PATTERN_ARRAYS.get(args[0])
        if fn is None:
            return None

        def pattern(b: Bars) -> FloatArray:
            return fn(b.window("open", w), b.window("high", w), b.window("low", w),
                      b.window("close", w))  # fmt: skip

        return ArrayWindowed(twin, factory, pattern, 1)
    return None
