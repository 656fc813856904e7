"""The rule reference on the Traders page, generated from the helper registry the checker
uses (``flows.rules.helpers.DEFAULT_REGISTRY``): a helper added there shows up here, with
its parameters' ranges and defaults as declared (``Arg.lo``/``Arg.hi``) and an example
rule built from them that the checker accepts (the tests hold every example to that)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd  # type: ignore[import-untyped]
import streamlit as st

from flows.rules.check import MAX_LOOKBACK
from flows.rules.helpers import DEFAULT_REGISTRY
from flows.rules.registry import Arg, HelperSpec, IndicatorBinding, Registry

# a few whole rules, as people write them (checked by the tests too)
FEATURED = (
    ("oversold", "rsi(14) < 30"),
    ("a fast EMA crosses a slow one", "crosses_above(ema(12), ema(26))"),
    ("a close above the upper Bollinger band", "close > bb_upper(20, 2)"),
    ("a 20-bar breakout", "close > highest(high, 20)[1]"),
    ("volume twice its average", "volume > 2 * avg_volume(20)"),
    ("the hourly RSI, on faster klines", 'rsi(14, tf="1h") < 30 and close > ema(50)'),
)
SERIES_ABOUT = {
    "open": "the kline's first price",
    "high": "its highest price",
    "low": "its lowest price",
    "close": "its last price",
    "volume": "base-asset volume",
    "quote_volume": "quote-asset volume",
    "trades": "number of trades",
    "price_change_pct_24h": "24 h price change, percent (from 1m klines)",
    "quote_volume_24h": "24 h quote volume (from 1m klines)",
}


@dataclass(frozen=True)
class HelperEntry:
    name: str
    parameters: str
    returns: str
    about: str
    example: str


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:g}"


def _parameter(name: str, arg: Arg) -> str:
    default = "" if arg.default is None else f", default {_number(arg.default)}"
    if arg.kind == "period":
        if arg.default is not None and arg.default < max(arg.lo, 1):  # a default not typed
            default = f", or left out ({_number(arg.default)})"
        return f"{name}: bars, {max(arg.lo, 1)} to {_number(arg.upper)}{default}"
    if arg.kind == "factor":
        return f"{name}: a number above 0, at most {_number(arg.upper)}{default}"
    return f"{name}: {'a condition' if arg.kind == 'bool' else 'a number (any expression)'}"


def _names(spec: HelperSpec) -> list[str]:
    """Names for the positional arguments: `period` (or `period1`, `period2`, ...), `factor`
    (likewise), and `x` for one value argument or `a`, `b` for two."""
    kinds = [("value" if not a.literal else a.kind) for a in spec.args]
    seen: dict[str, int] = {}
    out: list[str] = []
    for kind in kinds:
        seen[kind] = seen.get(kind, 0) + 1
        if kind == "value":
            out.append("x" if kinds.count("value") == 1 else "abcdefgh"[seen[kind] - 1])
        else:
            out.append(kind if kinds.count(kind) == 1 else f"{kind}{seen[kind]}")
    return out


def parameters_text(spec: HelperSpec) -> str:
    parts = [_parameter(n, a) for n, a in zip(_names(spec), spec.args, strict=True)]
    parts += [_parameter(f"{k}=", a) for k, a in sorted(spec.kwargs.items())]
    return "; ".join(parts) if parts else "none"


def _example_value(arg: Arg, index: int = 0) -> str | None:
    """A value for an argument, within its range; None: leave it to its default."""
    if arg.kind == "period":
        if arg.default is not None:
            return _number(arg.default) if arg.default >= max(arg.lo, 1) else None
        return str(int(min(max(20, arg.lo), arg.upper)))
    if arg.kind == "factor":
        return _number(arg.default) if arg.default is not None else "2"
    if arg.kind == "number":
        return ("close", "ema(20)")[min(index, 1)]
    return "close > open"


def call_example(spec: HelperSpec) -> str:
    args: list[str] = []
    values = 0
    for arg in spec.args:
        value = _example_value(arg, values)
        values += not arg.literal
        if value is None:  # only defaults may follow: stop here
            break
        args.append(value)
    for name, arg in sorted(spec.kwargs.items()):
        value = _example_value(arg)
        if value is not None and arg.default is None:
            args.append(f"{name}={value}")
    return f"{spec.name}({', '.join(args)})"


def _is_pattern(spec: HelperSpec) -> bool:
    binding = spec.binding
    return isinstance(binding, IndicatorBinding) and not spec.args and \
        binding.spec_of(())[0] == "pattern"  # fmt: skip


def example(spec: HelperSpec) -> str:
    """A whole rule using the helper: a condition helper as is, a candle pattern bullish
    (above 0), any other number rising (above its own value one bar earlier)."""
    call = call_example(spec)
    if spec.returns == "bool":
        return call
    return f"{call} > 0" if _is_pattern(spec) else f"{call} > {call}[1]"


def helper_entries(registry: Registry = DEFAULT_REGISTRY) -> list[HelperEntry]:
    return [
        HelperEntry(
            spec.name,
            parameters_text(spec),
            "a condition" if spec.returns == "bool" else "a number",
            spec.doc,
            example(spec),
        )
        for spec in registry.helpers()
    ]


def render_reference(registry: Registry = DEFAULT_REGISTRY) -> None:
    """An expander with the language in brief and every helper of the registry."""
    with st.expander("Rule reference: series, operators and every helper"):
        series = ", ".join(f"`{s}` ({SERIES_ABOUT.get(s, 'a series')})"
                           for s in sorted(registry.series))  # fmt: skip
        st.markdown(
            "A rule is a condition on each closed kline of the trader's interval.\n\n"
            f"* **Series**: {series}. `x[n]` is a value `n` bars ago (`close[1]`).\n"
            "* **Operators**: `+ - * / %`, comparisons `< <= > >= == !=` (one per "
            "comparison), `and`, `or`, `not`, parentheses.\n"
            '* **Another interval**: every helper takes `tf="1h"` (any Binance interval the '
            "flow builds).\n"
            f"* **History**: a rule may look back at most {MAX_LOOKBACK:,} bars; during "
            "warm-up it is not evaluated."
        )
        st.markdown("**Examples**")
        st.code("\n".join(f"{rule:<48} # {what}" for what, rule in FEATURED), language=None)
        st.markdown(f"**Helpers** ({len(registry.helpers())})")
        entries = helper_entries(registry)
        st.dataframe(
            pd.DataFrame(
                {
                    "helper": [e.name for e in entries],
                    "parameters": [e.parameters for e in entries],
                    "returns": [e.returns for e in entries],
                    "what it is": [e.about for e in entries],
                    "example": [e.example for e in entries],
                }
            ),
            hide_index=True,
            key="rule_reference_helpers",
        )
