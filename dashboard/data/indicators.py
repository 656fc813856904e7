"""Indicator series for charts, computed with the rule language's own helpers.

Each series is an expression such as ``ema(20)`` or ``bb_upper(20, 2)``, compiled with
``compile_rule(..., condition=False)`` and evaluated bar by bar over the klines fed into one
shared frame, so the chart shows exactly the values a trader's rule reads (undefined during
warm-up, exactly where TA-Lib's batch function is).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flows.domain.kline import Kline
from flows.rules.evaluate import Program, compile_rule
from flows.rules.frame import Frame, Requirements, Undefined
from flows.rules.helpers import DEFAULT_REGISTRY


@dataclass(frozen=True)
class Indicator:
    """A choice offered on the Market page: its series, and where it is drawn."""

    label: str
    series: tuple[tuple[str, str], ...]  # (column name, expression)
    panel: str | None = None  # None: over the candles; else the name of its own panel


def overlay_choices(ema: int, sma: int, bb: int, bb_k: float, vwap: int) -> list[Indicator]:
    return [
        Indicator(f"EMA({ema})", ((f"EMA({ema})", f"ema({ema})"),)),
        Indicator(f"SMA({sma})", ((f"SMA({sma})", f"sma({sma})"),)),
        Indicator(
            f"Bollinger({bb}, {bb_k:g})",
            (
                ("BB upper", f"bb_upper({bb}, {bb_k:g})"),
                ("BB middle", f"bb_middle({bb}, {bb_k:g})"),
                ("BB lower", f"bb_lower({bb}, {bb_k:g})"),
            ),
        ),
        Indicator(
            "VWAP" if vwap == 0 else f"VWAP({vwap})",
            (("VWAP", "vwap()" if vwap == 0 else f"vwap({vwap})"),),
        ),
    ]


def panel_choices(rsi: int) -> list[Indicator]:
    return [
        Indicator(f"RSI({rsi})", ((f"RSI({rsi})", f"rsi({rsi})"),), panel="RSI"),
        Indicator(
            "MACD(12, 26, 9)",
            (("MACD", "macd()"), ("Signal", "macd_signal()"), ("Histogram", "macd_hist()")),
            panel="MACD",
        ),
    ]


def compute(
    expressions: Sequence[str], interval: str, klines: Sequence[Kline]
) -> dict[str, list[float | None]]:
    """Each expression's value at every kline (None where undefined). RuleError if one of
    them does not compile."""
    programs: list[Program] = [
        compile_rule(text, interval, DEFAULT_REGISTRY, condition=False) for text in expressions
    ]
    needs = Requirements()
    for p in programs:
        for iv, req in p.requirements.items():
            if iv == interval:
                needs.merge(req)
    frames = {interval: Frame(interval, needs, DEFAULT_REGISTRY.factories)}
    out: dict[str, list[float | None]] = {text: [] for text in expressions}
    columns = [(out[p.text], p.condition) for p in programs]
    frame = frames[interval]
    for k in klines:
        frame.on_bar(k)
        for values, fn in columns:
            try:
                v = float(fn(frames, 0))
                values.append(v if math.isfinite(v) else None)
            except Undefined:
                values.append(None)
    return out


_lock = threading.Lock()
_cache: OrderedDict[tuple[Any, ...], dict[str, list[float | None]]] = OrderedDict()


def cached_series(
    symbol: str, interval: str, closed: Sequence[Kline], expressions: Sequence[str]
) -> dict[str, list[float | None]]:
    """`compute` over closed klines, kept per process until a kline closes (every session
    and every live refresh of the same chart shares it)."""
    if not closed or not expressions:
        return {e: [None] * len(closed) for e in expressions}
    key = (symbol, interval, closed[0].open_ms, closed[-1], len(closed), tuple(expressions))
    with _lock:
        hit = _cache.get(key)
    if hit is not None:
        return hit
    values = compute(expressions, interval, closed)
    with _lock:
        _cache[key] = values
        while len(_cache) > 64:
            _cache.popitem(last=False)
    return values


def clear_cache() -> None:
    with _lock:
        _cache.clear()
