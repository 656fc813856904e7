"""Incremental per-symbol indicators over closed klines, equal to TA-Lib's batch functions.

One ``IndicatorSet`` per symbol holds a ``BarSeries`` ring and one shared instance per
distinct spec such as ``("rsi", (14,))``; ``on_bar`` appends a closed bar and updates every
indicator exactly once. Everything in it is plain Python/numpy state, so it pickles for
recovery snapshots. See ``library`` for which indicators are bit-exact and which agree to a
tiny tolerance.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from flows.indicators.extra import (
    Pattern,
    Pvi,
    RsiDivergence,
    StochRsi,
    VolumeProfile,
    Vwap,
)
from flows.indicators.library import (
    Adx,
    Atr,
    AvgVolume,
    Bbands,
    Cci,
    Ema,
    Highest,
    Indicator,
    Lowest,
    Macd,
    Mfi,
    Obv,
    Rsi,
    Sma,
    Spec,
    Stoch,
    Value,
    Wma,
)
from flows.indicators.series import BarSeries

REGISTRY: dict[str, Callable[..., Indicator]] = {
    "sma": Sma,
    "ema": Ema,
    "wma": Wma,
    "rsi": Rsi,
    "macd": Macd,
    "bbands": Bbands,
    "atr": Atr,
    "adx": Adx,
    "cci": Cci,
    "mfi": Mfi,
    "obv": Obv,
    "stoch": Stoch,
    "highest": Highest,
    "lowest": Lowest,
    "avg_volume": AvgVolume,
    "stochrsi": StochRsi,
    "vwap": Vwap,
    "pvi": Pvi,
    "vprofile": VolumeProfile,
    "rsi_divergence": RsiDivergence,
    "pattern": Pattern,
}


def create(spec: Spec) -> Indicator:
    """A fresh indicator for ``(name, args)``; raises KeyError/ValueError on a bad spec."""
    name, args = spec
    try:
        factory = REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown indicator {name!r}") from None
    return factory(*args)


class IndicatorSet:
    """All indicators of one symbol, sharing one bar ring; each distinct spec exists once."""

    def __init__(self, capacity: int = 64) -> None:
        self.series = BarSeries(capacity)
        self._by_spec: dict[Spec, Indicator] = {}
        self._values: dict[Spec, Value] = {}
        self._distinct: list[Indicator] = []

    def get(self, spec: Spec) -> Indicator:
        """The shared indicator for ``spec`` (created on first use).

        Specs are canonicalised, so ``("rsi", ())`` and ``("rsi", (14,))`` are one object.
        Register specs before streaming bars: an indicator added later starts from the next
        bar (memory indicators then follow TA-Lib over the bars since they were added).
        """
        found = self._by_spec.get(spec)
        if found is not None:
            return found
        ind = create(spec)
        found = self._by_spec.get(ind.spec)
        if found is None:
            found = ind
            self._by_spec[ind.spec] = ind
            self._distinct.append(ind)
            self.series.ensure_capacity(ind.window)
        self._by_spec[spec] = found
        return found

    def indicators(self) -> list[Indicator]:
        """Each distinct indicator once, in creation order."""
        return list(self._distinct)

    def on_bar(
        self,
        open: float,
        high: float,
        low: float,
        close: float,
        volume: float,
        quote_volume: float = math.nan,
        trades: float = math.nan,
        time: float = math.nan,
    ) -> None:
        """Append one closed bar and update every indicator once."""
        self.series.append(open, high, low, close, volume, quote_volume, trades, time)
        for ind in self._distinct:
            self._values[ind.spec] = ind.update(self.series)

    def value(self, spec: Spec) -> Value:
        """The value of ``spec`` at the newest bar (NaN/NaN-tuple before its first update)."""
        ind = self.get(spec)
        found = self._values.get(ind.spec)
        if found is None:
            raise LookupError(f"{ind.spec!r} has not seen a bar yet")
        return found


__all__ = [
    "REGISTRY",
    "BarSeries",
    "Indicator",
    "IndicatorSet",
    "Spec",
    "Value",
    "create",
]
