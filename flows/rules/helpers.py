"""The helper library every rule can call: the declaration of each helper.

Indicator helpers read one shared incremental indicator per symbol (``flows.indicators``);
function helpers combine the values of their arguments at earlier bars. Each declares its
``reference``: the same quantity over a whole history at once (TA-Lib's batch function where
TA-Lib has it, else a batch definition in ``flows.rules.references``), against which
``tests/contract`` checks it at every bar.

Reference functions take ``bars`` (numpy arrays: open, high, low, close, volume,
quote_volume, trades, time) then the helper's arguments in order: literal arguments as
numbers, expression arguments as arrays of their values. Conditions are 1.0/0.0, NaN where
undefined.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, cast

import numpy as np
import talib as _talib_module

from flows.indicators.extra import (
    PATTERNS,
    hvn_above,
    hvn_below,
    hvn_count,
    hvn_near,
)
from flows.rules.frame import UNDEFINED, Frame, SeriesRef
from flows.rules.references import (
    Arrays,
    Series,
    batch_crosses,
    batch_divergence,
    batch_pattern,
    batch_profile_nodes,
    batch_pvi,
    batch_vwap,
    shifted,
    talib_over,
)
from flows.rules.registry import Arg, FunctionBinding, LiteralArgs, Registry

Thunk = Callable[[int], float]
_talib = cast(Any, _talib_module)
NAN = math.nan


def _int(value: int | float | None) -> int:
    return int(value or 0)


def _first(a: LiteralArgs) -> int:
    return _int(a[0])


def _second(a: LiteralArgs) -> int:
    return _int(a[1])


def _one(_: LiteralArgs) -> int:
    return 1


def _double(a: LiteralArgs) -> int:
    return 2 * _first(a)


def _one_period_spec(name: str) -> Callable[[LiteralArgs], tuple[str, tuple[Any, ...]]]:
    def spec_of(a: LiteralArgs) -> tuple[str, tuple[Any, ...]]:
        return (name, (_first(a),))

    return spec_of


def _pattern_spec(name: str) -> Callable[[LiteralArgs], tuple[str, tuple[Any, ...]]]:
    def spec_of(_: LiteralArgs) -> tuple[str, tuple[Any, ...]]:
        return ("pattern", (name,))

    return spec_of


def _pattern_reference(func: str) -> Callable[[Arrays], Series]:
    def reference(bars: Arrays) -> Series:
        return batch_pattern(bars, func)

    return reference


def _period(value: int, lo: int = 1) -> Arg:
    return Arg("period", value, lo=lo)


# ---------------------------------------------------------------- the default library


def _library() -> Registry:
    reg = Registry()
    close_only = "over the closing prices"

    for name, func in (("sma", "SMA"), ("ema", "EMA"), ("wma", "WMA")):
        reg.bind_indicator(
            name,
            _one_period_spec(name),
            args=[Arg("period")],
            lookback=_first,
            reference=talib_over(func, "close"),
            doc=f"{func} {close_only}",
        )
    reg.bind_indicator(
        "rsi",
        lambda a: ("rsi", (_first(a),)),
        args=[_period(14, lo=2)],
        lookback=lambda a: _first(a) + 1,
        reference=lambda bars, p: _talib.RSI(bars["close"], p),
        doc="Wilder's RSI",
    )
    for index, name in enumerate(("macd", "macd_signal", "macd_hist")):
        reg.bind_indicator(
            name,
            lambda a: ("macd", (_int(a[0]), _int(a[1]), _int(a[2]))),
            args=[_period(12, lo=2), _period(26, lo=2), _period(9, lo=2)],
            lookback=lambda a: max(_int(a[0]), _int(a[1])) + _int(a[2]),
            output=index,
            reference=lambda bars, f, s, g: _talib.MACD(bars["close"], f, s, g),
            doc="MACD line, signal line, histogram",
        )
    for index, name in enumerate(("bb_upper", "bb_middle", "bb_lower")):
        reg.bind_indicator(
            name,
            lambda a: ("bbands", (_int(a[0]), float(a[1] or 2))),
            args=[_period(20, lo=2), Arg("factor", 2)],
            lookback=_first,
            output=index,
            reference=lambda bars, p, k: _talib.BBANDS(bars["close"], p, k, k, 0),
            doc="Bollinger bands (period, standard deviations)",
        )
    for index, name in enumerate(("stoch_k", "stoch_d")):
        reg.bind_indicator(
            name,
            lambda a: ("stoch", (_int(a[0]), _int(a[1]), _int(a[2]))),
            args=[_period(14), _period(3), _period(3)],
            lookback=lambda a: _int(a[0]) + _int(a[1]) + _int(a[2]),
            output=index,
            reference=lambda bars, k, sk, sd: _talib.STOCH(
                bars["high"], bars["low"], bars["close"], k, sk, 0, sd, 0
            ),
            doc="slow stochastic %K and %D",
        )
    for index, name in enumerate(("stochrsi_k", "stochrsi_d")):
        reg.bind_indicator(
            name,
            lambda a: ("stochrsi", (_int(a[0]), _int(a[1]), _int(a[2]))),
            args=[_period(14, lo=2), _period(14), _period(3)],
            lookback=lambda a: _int(a[0]) + _int(a[1]) + _int(a[2]) + 1,
            output=index,
            reference=lambda bars, p, k, d: _talib.STOCHRSI(bars["close"], p, k, d, 0),
            doc="stochastic RSI fast %K and %D",
        )
    hlc = ("high", "low", "close")
    for name, func in (("adx", "ADX"), ("atr", "ATR"), ("cci", "CCI")):
        reg.bind_indicator(
            name,
            _one_period_spec(name),
            args=[_period(20 if name == "cci" else 14, lo=2)],
            lookback=_double if name == "adx" else _first,
            reference=talib_over(func, *hlc),
            doc=func,
        )
    reg.bind_indicator(
        "mfi",
        lambda a: ("mfi", (_first(a),)),
        args=[_period(14, lo=2)],
        lookback=lambda a: _first(a) + 1,
        reference=lambda bars, p: _talib.MFI(*(bars[f] for f in hlc), bars["volume"], p),
        doc="money flow index",
    )
    reg.bind_indicator(
        "obv",
        lambda a: ("obv", ()),
        lookback=_one,
        reference=lambda bars: _talib.OBV(bars["close"], bars["volume"]),
        doc="on-balance volume",
    )
    reg.bind_indicator(
        "avg_volume",
        lambda a: ("avg_volume", (_first(a),)),
        args=[Arg("period")],
        lookback=_first,
        reference=lambda bars, p: _talib.SMA(bars["volume"], p),
        doc="average volume over N bars",
    )
    reg.bind_indicator(
        "vwap",
        lambda a: ("vwap", (_first(a),)),
        args=[_period(0)],
        lookback=_first,  # its window is held in memory: bounded like any lookback
        output=0,
        reference=batch_vwap,
        doc="VWAP of the typical price: since UTC midnight, or over the last N bars",
    )
    reg.bind_indicator(
        "pvi",
        lambda a: ("pvi", ()),
        lookback=_one,
        reference=batch_pvi,
        doc="positive volume index (starts at 1000)",
    )
    for name, output in (("rsi_bullish_divergence", 0), ("rsi_bearish_divergence", 1)):
        reg.bind_indicator(
            name,
            lambda a: ("rsi_divergence", (_int(a[0]), _int(a[1]))),
            args=[_period(14, lo=2), _period(30)],
            returns="bool",
            lookback=lambda a: _int(a[0]) + _int(a[1]) + 1,
            output=output,
            reference=batch_divergence,
            doc="regular RSI divergence: a new N-bar low (high) that RSI does not confirm",
        )
    for name, func in PATTERNS.items():
        reg.bind_indicator(
            name,
            _pattern_spec(name),
            lookback=_one,
            reference=_pattern_reference(func),
            doc=f"TA-Lib's {func}: 100 bullish, -100 bearish, 0 none",
        )
    _functions(reg)
    return reg


def _vwap_needs(a: LiteralArgs) -> list[tuple[str, tuple[Any, ...]]]:
    return [("vwap", (_first(a),))]


def _vwap_band(sign: float) -> Callable[..., float]:
    def band(frame: Frame, back: int, period: int, mult: float = 1.0) -> float:
        vwap, dev = cast(tuple[float, float], frame.value(("vwap", (period,)), back))
        return _finite(vwap + sign * mult * dev)

    return band


def _vwap_band_reference(sign: float) -> Callable[..., Series]:
    def reference(bars: Arrays, period: int, mult: float = 1.0) -> Series:
        vwap, dev = batch_vwap(bars, period)
        return vwap + sign * mult * dev

    return reference


def _crosses(above: bool) -> Callable[..., bool]:
    def crosses(frame: Frame, back: int, a: Thunk, b: Thunk) -> bool:
        a0, b0, a1, b1 = a(back), b(back), a(back + 1), b(back + 1)  # all four must exist
        return (a0 > b0 and a1 <= b1) if above else (a0 < b0 and a1 >= b1)

    return crosses


def _crosses_reference(above: bool) -> Callable[..., Series]:
    def reference(bars: Arrays, a: Series, b: Series) -> Series:
        return batch_crosses(a, b, above=above)

    return reference


def _extreme(pick: Callable[[Iterable[float]], float]) -> Callable[..., float]:
    def extreme(frame: Frame, back: int, x: Thunk, n: int) -> float:
        if isinstance(x, SeriesRef):  # a plain series: one slice instead of n calls
            return pick(x.window(back, n))
        return pick(x(back + i) for i in range(n))

    return extreme


def _finite(value: float) -> float:
    if not math.isfinite(value):  # NaN or infinite
        raise UNDEFINED
    return value


def _functions(reg: Registry) -> None:
    for name, sign in (("vwap_upper", 1.0), ("vwap_lower", -1.0)):
        reg.declare(
            name,
            [_period(0)],
            kwargs={"mult": Arg("factor", 1)},
            lookback=_first,
            binding=FunctionBinding(_vwap_band(sign), _vwap_needs),
            reference=_vwap_band_reference(sign),
            doc="VWAP plus (minus) mult weighted standard deviations; vwap_upper(20, mult=2)",
        )

    def nodes(frame: Frame, back: int, period: int) -> tuple[float, ...]:
        value = cast(tuple[float, ...], frame.value(("vprofile", (period, 24)), back))
        if value and value[0] != value[0]:
            raise UNDEFINED
        return value

    def profile_needs(a: LiteralArgs) -> list[tuple[str, tuple[Any, ...]]]:
        return [("vprofile", (_first(a), 24))]

    def close_at(frame: Frame, back: int) -> float:
        try:
            return frame.series.last("close", back)
        except IndexError:
            raise UNDEFINED from None

    def profile_reference(fn: Callable[..., float], *extra: float) -> Callable[..., Series]:
        def reference(bars: Arrays, period: int, *pct: float) -> Series:
            per_bar = batch_profile_nodes(bars, period)
            out = np.full(len(per_bar), NAN)
            for i, found in enumerate(per_bar):
                if found and found[0] == found[0]:
                    out[i] = float(fn(found, float(bars["close"][i]), *pct))
            return out

        return reference

    @reg.function(
        "hvn_near",
        args=[_period(100), Arg("factor", 0.5)],
        returns="bool",
        lookback=_first,
        needs=profile_needs,
        reference=profile_reference(hvn_near),
        doc="close within pct % of a high-volume node of the last N bars' volume profile",
    )
    def _hvn_near(frame: Frame, back: int, period: int, pct: float) -> bool:
        return bool(hvn_near(nodes(frame, back, period), close_at(frame, back), pct))

    @reg.function(
        "hvn_above",
        args=[_period(100)],
        lookback=_first,
        needs=profile_needs,
        reference=profile_reference(hvn_above),
        doc="the nearest high-volume node above the close",
    )
    def _hvn_above(frame: Frame, back: int, period: int) -> float:
        return _finite(hvn_above(nodes(frame, back, period), close_at(frame, back)))

    @reg.function(
        "hvn_below",
        args=[_period(100)],
        lookback=_first,
        needs=profile_needs,
        reference=profile_reference(hvn_below),
        doc="the nearest high-volume node below the close",
    )
    def _hvn_below(frame: Frame, back: int, period: int) -> float:
        return _finite(hvn_below(nodes(frame, back, period), close_at(frame, back)))

    @reg.function(
        "hvn_count",
        args=[_period(100), Arg("factor", 5)],
        lookback=_first,
        needs=profile_needs,
        reference=profile_reference(hvn_count),
        doc="how many high-volume nodes lie within pct % of the close",
    )
    def _hvn_count(frame: Frame, back: int, period: int, pct: float) -> float:
        return _finite(hvn_count(nodes(frame, back, period), close_at(frame, back), pct))

    for above in (True, False):
        word = "above" if above else "below"
        reg.function(
            f"crosses_{word}",
            args=["number", "number"],
            returns="bool",
            lookback=_one,
            reference=_crosses_reference(above),
            doc=f"a is {word} b at this bar and was not at the previous one",
        )(_crosses(above))
    for name, pick, func in (("highest", max, "MAX"), ("lowest", min, "MIN")):
        reg.function(
            name,
            args=["number", Arg("period")],
            lookback=lambda a: _second(a) - 1,
            reference=talib_over(func),
            doc=f"the {name} value of x over the last N bars (this one included)",
        )(_extreme(pick))

    @reg.function(
        "change",
        args=["number", _period(1)],
        lookback=_second,
        reference=lambda bars, x, n: x - shifted(x, n),
        doc="x now minus x N bars ago",
    )
    def _change(frame: Frame, back: int, x: Thunk, n: int) -> float:
        return x(back) - x(back + n)

    @reg.function(
        "pct_change",
        args=["number", _period(1)],
        lookback=_second,
        reference=lambda bars, x, n: (x - shifted(x, n)) / shifted(x, n) * 100.0,
        doc="percent change of x over N bars",
    )
    def _pct_change(frame: Frame, back: int, x: Thunk, n: int) -> float:
        before = x(back + n)
        if before == 0:
            raise UNDEFINED
        return (x(back) - before) / before * 100.0


DEFAULT_REGISTRY = _library()
