"""Where a draft trader would have fired: over every stored symbol it watches (its list, its
glob pattern matched as the flow matches it, or all), with the fires counted per symbol,
and one symbol's chart with the markers and the indicators the rule reads.

The preview runs the flow's own engine over the stored closed klines
(``MarketData.preview``: the newest PREVIEW_BARS of each interval the rule reads). The
indicator layers are the rule's helper calls (``dashboard.data.rule_indicators``), computed
over the same klines, so their warm-up matches the rule's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd  # type: ignore[import-untyped]
import redis
import streamlit as st

from dashboard.data import sources
from dashboard.data.indicators import cached_series
from dashboard.data.market import MarketData
from dashboard.data.rule_indicators import RuleLayers, column_name, rule_layers
from dashboard.ui.charts import Marker, build_frame, chart_spec
from dashboard.ui.common import md_escape, utc_text
from flows.domain.kline import Kline
from flows.rules.errors import RuleError
from flows.signals.book import TraderRow, compile_trader
from flows.signals.preview import PreviewResult

PREVIEW_CANDLES = 500  # drawn; the preview itself reads up to PREVIEW_BARS
MAX_COUNTED = 12  # symbols counted at once; any other watched one is counted when picked
STATE = "klineflow_preview"  # the last preview, for tests and for the page's own use


@dataclass(frozen=True)
class SymbolPreview:
    symbol: str
    result: PreviewResult
    klines: list[Kline]


def watched_symbols(draft: TraderRow, stored: Sequence[str]) -> list[str]:
    """The stored symbols the draft would watch, as the flow decides it (CompiledTrader)."""
    try:
        trader = compile_trader(draft)
    except RuleError:
        return []
    return [s for s in stored if trader.watches(s)]


def _run(market: MarketData, draft: TraderRow, symbol: str) -> SymbolPreview:
    result, klines = market.preview(draft.expression, draft.interval, symbol, draft.trigger_mode)
    return SymbolPreview(symbol, result, klines)


def preview_section(draft: TraderRow, k: str) -> None:
    """The preview of a draft whose rule compiles."""
    market = sources.market()
    stored = market.symbols()
    if not stored.value:
        st.caption("No klines stored: nothing to preview on.")
        return
    watched = watched_symbols(draft, stored.value)
    if not watched:
        st.info(f"This trader would watch none of the {len(stored.value)} stored symbols.")
        return
    done: dict[str, SymbolPreview] = {}
    try:
        for symbol in watched[:MAX_COUNTED]:
            done[symbol] = _run(market, draft, symbol)
    except redis.RedisError as exc:
        st.warning(f"No preview: Redis is unreachable ({md_escape(type(exc).__name__)})")
        return
    st.markdown(f"**Preview** over {len(watched)} stored symbol{'s' * (len(watched) != 1)} "
                "this trader watches")  # fmt: skip
    st.dataframe(
        pd.DataFrame(
            [
                {"symbol": p.symbol, "would have fired": len(p.result.fires),
                 "klines read": p.result.klines, "not ready (warm-up)": p.result.not_ready,
                 "errors": len(p.result.failures)}
                for p in done.values()
            ]
        ),
        hide_index=True,
        key=f"{k}_preview_counts",
    )  # fmt: skip
    if len(watched) > MAX_COUNTED:
        st.caption(f"Counted: the first {MAX_COUNTED} of {len(watched)} (by name); pick any "
                   "other below to preview it.")  # fmt: skip

    def label(symbol: str) -> str:
        found = done.get(symbol)
        return f"{symbol} · {len(found.result.fires)} fires" if found else symbol

    symbol = str(st.selectbox("Preview on", watched, format_func=label, key=f"{k}_preview_on"))
    try:
        shown = done.get(symbol) or _run(market, draft, symbol)
    except redis.RedisError as exc:
        st.warning(f"No preview: Redis is unreachable ({md_escape(type(exc).__name__)})")
        return
    layers = rule_layers(draft.expression, draft.interval)
    st.session_state[STATE] = {
        "symbols": {s: len(p.result.fires) for s, p in done.items()},
        "watched": list(watched),
        "symbol": symbol,
        "fires": len(shown.result.fires),
        "evaluated": shown.result.evaluated,
        "not_ready": shown.result.not_ready,
        "klines": shown.result.klines,
        "overlays": [i.label for i in layers.overlays],
        "panels": [i.panel for i in layers.panels],
    }
    symbol_chart(draft, shown, layers)


def symbol_chart(draft: TraderRow, shown: SymbolPreview, layers: RuleLayers) -> None:
    result, klines, symbol = shown.result, shown.klines, shown.symbol
    c1, c2, c3 = st.columns(3)
    c1.metric("Would have fired", len(result.fires))
    c2.metric("Klines read", result.klines)
    c3.metric("Not ready (warm-up)", result.not_ready)
    for failure in result.failures:
        st.error(f"The rule raised at {utc_text(failure.open_ms)} UTC: {md_escape(failure.error)}")
    if not klines:
        st.caption(f"No closed {draft.interval} klines of {symbol} are stored.")
        return
    drawn = klines[-PREVIEW_CANDLES:]
    first = drawn[0].open_ms
    marks = [
        Marker(f.open_ms, "would fire", _values_text(f.values))
        for f in result.fires
        if f.open_ms >= first
    ]
    # computed over every kline read (their warm-up is the rule's), drawn over the newest
    values = cached_series(symbol, draft.interval, klines, layers.expressions)
    series = {column_name(text): values[text][-len(drawn) :] for text in layers.expressions}
    frame = build_frame(drawn, draft.interval, series)
    spec = chart_spec(
        frame,
        overlays=layers.overlays,
        panels=layers.panels,
        preview=marks,
        title=f"{symbol} {draft.interval}: preview",
    )
    st.vega_lite_chart(spec=spec)
    st.caption(
        f"The newest {len(drawn)} of {len(klines)} klines read, with the indicators the rule "
        "reads; the markers show where the rule held (every close where it held, or where it "
        "started to hold for on_change), before any cooldown grouping."
    )


def _values_text(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.8g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in values.items())  # fmt: skip
