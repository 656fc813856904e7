"""The indicators a rule reads, as chart layers: the numbers its helper calls compute, drawn
over the candles (on the price scale) or in panels of their own, the way Market draws its
overlays and panels (``dashboard.data.indicators.Indicator``).

Each layer's series is the helper call as the checker writes it (``rsi(14)``,
``bb_upper(20, 2)``, defaults filled in), computed by ``dashboard.data.indicators`` with the
rule language itself, so the chart shows exactly the values the rule compared.

A call is on the price scale when its helper is a moving price (averages, bands, VWAP,
volume-profile nodes) or takes the highest / lowest / ... of a price series; every other
number (oscillators, volume, changes, patterns) gets a panel, one per helper family.
Conditions (``crosses_above``, divergences) are not drawn: their arguments are. Calls on
another interval (``tf=``) are left out: the chart shows the rule's own interval.
"""

from __future__ import annotations

from dataclasses import dataclass

from dashboard.data.indicators import Indicator
from flows.rules.check import CallInfo, parse_rule
from flows.rules.errors import RuleError
from flows.rules.syntax import Call, Expr, Index, Name

PRICE_SERIES = frozenset({"open", "high", "low", "close"})
PRICE_HELPERS = frozenset(
    {"sma", "ema", "wma", "bb_upper", "bb_middle", "bb_lower", "vwap", "vwap_upper",
     "vwap_lower", "hvn_above", "hvn_below"}
)  # fmt: skip
OF_ITS_ARGUMENT = frozenset({"highest", "lowest"})  # on the scale of their first argument
FAMILIES = {
    "macd_signal": "macd",
    "macd_hist": "macd",
    "stoch_d": "stoch",
    "stoch_k": "stoch",
    "stochrsi_d": "stochrsi",
    "stochrsi_k": "stochrsi",
}
PANEL_NAMES = {"rsi": "RSI"}  # the chart draws RSI's 30 / 70 levels in a panel named so
_FIELD_UNSAFE = str.maketrans({".": "\u2024", "[": "(", "]": ")", '"': "'", "\\": "/"})


@dataclass(frozen=True)
class RuleLayers:
    overlays: tuple[Indicator, ...] = ()
    panels: tuple[Indicator, ...] = ()

    @property
    def expressions(self) -> list[str]:
        return [text for ind in (*self.overlays, *self.panels) for _, text in ind.series]


def column_name(call_text: str) -> str:
    """A chart column for a call: Vega-Lite reads '.' and '[' in a field name as a path, so
    they become look-alike characters (a one-dot leader for the dot)."""
    return call_text.translate(_FIELD_UNSAFE)


def _on_price_scale(node: Expr, calls: dict[Call, CallInfo]) -> bool:
    if isinstance(node, Name):
        return node.name in PRICE_SERIES
    if isinstance(node, Index):
        return _on_price_scale(node.target, calls)
    if isinstance(node, Call) and node in calls:
        name = calls[node].spec.name
        if name in OF_ITS_ARGUMENT:
            return bool(node.args) and _on_price_scale(node.args[0], calls)
        return name in PRICE_HELPERS
    return False


def _family(node: Call, calls: dict[Call, CallInfo]) -> str:
    """The panel of a call: its helper's family; highest(rsi(14), 10) goes with rsi."""
    name = calls[node].spec.name
    first = node.args[0] if node.args else None
    if name in OF_ITS_ARGUMENT and isinstance(first, Call) and first in calls:
        return _family(first, calls)
    return FAMILIES.get(name, name)


def rule_layers(expression: str, interval: str) -> RuleLayers:
    """The layers of a rule that compiles; none for one that does not."""
    try:
        checked = parse_rule(expression)
    except RuleError:
        return RuleLayers()
    overlays: dict[str, Indicator] = {}
    families: dict[str, list[tuple[str, str]]] = {}
    for node, info in checked.calls.items():
        if info.spec.returns != "number" or info.tf not in (None, interval):
            continue
        text = info.text
        if text in overlays:
            continue
        if _on_price_scale(node, checked.calls):
            overlays[text] = Indicator(text, ((column_name(text), text),))
            continue
        family = _family(node, checked.calls)
        series = families.setdefault(family, [])
        if all(t != text for _, t in series):
            series.append((column_name(text), text))
    panels = tuple(
        Indicator(family, tuple(series), panel=PANEL_NAMES.get(family, family))
        for family, series in families.items()
    )
    return RuleLayers(tuple(overlays.values()), panels)
