"""Market: candles of one symbol and interval, indicators, and the user's signals on them.

The URL keeps the view shareable: `?symbol=XRPETH&interval=1m` (and `open_ms=` to open the
chart at a kline, `signal=` to show a signal's recorded values there). Without a symbol the
page opens on the most traded one (highest 24h quote volume).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pandas as pd  # type: ignore[import-untyped]
import streamlit as st

from dashboard.data import sources
from dashboard.data.indicators import Indicator, cached_series, overlay_choices, panel_choices
from dashboard.data.market import Candles, Ticker
from dashboard.data.stale import Fetched
from dashboard.ui.charts import Marker, build_frame, chart_spec
from dashboard.ui.common import (
    banner,
    current_user,
    int_param,
    md_escape,
    query_param,
    signal_time_text,
    utc_text,
)
from dashboard.ui.url_state import UrlField, adopt, choice, codes, number, publish
from flows.domain.intervals import get_interval

LIMITS = [100, 200, 300, 500, 1000, 1500]
DEFAULT_LIMIT = 300
LIVE_EVERY_S = 2.0
TIMINGS = "klineflow_market_timings"
OVERLAYS = ["EMA", "SMA", "Bollinger bands", "VWAP"]
PANELS = ["RSI", "MACD"]


def chosen_indicators(
    overlays: Sequence[str], panels: Sequence[str], settings: dict[str, Any]
) -> tuple[list[Indicator], list[Indicator]]:
    over = overlay_choices(
        settings["ema"], settings["sma"], settings["bb"], settings["bb_k"], settings["vwap"]
    )
    pan = panel_choices(settings["rsi"])
    by_kind = dict(zip(OVERLAYS, over, strict=True))
    by_panel = dict(zip(PANELS, pan, strict=True))
    return [by_kind[o] for o in overlays], [by_panel[p] for p in panels]


OVERLAY_CODES = {"ema": "EMA", "sma": "SMA", "bb": "Bollinger bands", "vwap": "VWAP"}
PANEL_CODES = {"rsi": "RSI", "macd": "MACD"}
URL_MEMORY = "market_url"  # the chart settings as this page last wrote them to the URL
# indicator settings: query parameter, label, lowest, highest, default, step
NUMBERS: list[tuple[str, str, float, float, float, float]] = [
    ("ema", "EMA period", 2, 500, 20, 1),
    ("sma", "SMA period", 2, 500, 50, 1),
    ("bb", "Bollinger period", 2, 500, 20, 1),
    ("bb_k", "Bollinger width", 0.5, 5.0, 2.0, 0.5),
    ("vwap", "VWAP bars (0: since 00:00 UTC)", 0, 1000, 0, 1),
    ("rsi", "RSI period", 2, 200, 14, 1),
]


def _kind(step: float) -> type[int] | type[float]:
    return float if step % 1 else int


def most_traded(tickers: Sequence[Ticker], symbols: Sequence[str]) -> str:
    """The symbol with the highest 24h quote volume (the first by name among equals, or
    when no ticker is known)."""
    volumes = {t.symbol: t.quote_volume for t in tickers}
    return min(symbols, key=lambda s: (-volumes.get(s, -1.0), s))


def url_fields(
    symbols: Sequence[str], intervals: Sequence[str], default_symbol: str | None = None
) -> list[UrlField]:
    """Every chart setting, each in its query parameter (symbol and interval always)."""
    over_parse, over_text = codes(OVERLAY_CODES)
    pan_parse, pan_text = codes(PANEL_CODES)
    symbol = default_symbol if default_symbol in symbols else symbols[0]
    fields = [
        UrlField("market_symbol", "symbol", symbol, choice(symbols), always=True),
        UrlField(
            "market_interval",
            "interval",
            "1m" if "1m" in intervals else intervals[0],
            choice(intervals),
            always=True,
        ),
        UrlField("market_limit", "limit", DEFAULT_LIMIT, number(int, LIMITS[0], LIMITS[-1])),
        UrlField("market_overlays", "overlays", [], over_parse, over_text),
        UrlField("market_panels", "panels", [], pan_parse, pan_text),
    ]
    for param, _, low, high, default, step in NUMBERS:
        kind = _kind(step)
        fields.append(UrlField(f"market_{param}", param, kind(default), number(kind, low, high)))
    return fields


def render() -> None:
    st.header("Market")
    cfg = sources.config()
    market = sources.market(cfg)
    symbols = market.symbols()
    banner(symbols)
    if not symbols.value:
        st.info("No klines are stored yet: start the flow (`klineflow up`) or replay a file.")
        return
    intervals = list(cfg.intervals)
    asked = query_param("symbol")
    # with no symbol asked for (or an unknown one), the most traded one
    default = (
        asked if asked in symbols.value else most_traded(market.tickers().value, symbols.value)
    )
    fields = url_fields(symbols.value, intervals, default)
    adopt(fields, URL_MEMORY)
    # keyed widgets without index/value: their identity never changes between runs
    c1, c2, c3 = st.columns([2, 1, 2])
    symbol = c1.selectbox("Symbol", symbols.value, key="market_symbol")
    interval = c2.selectbox("Interval", intervals, key="market_interval")
    limit = c3.select_slider("Candles", options=LIMITS, key="market_limit")
    c4, c5, c6 = st.columns([3, 2, 1])
    overlays = c4.multiselect("Overlays", OVERLAYS, key="market_overlays")
    panels = c5.multiselect("Panels", PANELS, key="market_panels")
    open_ms = int_param("open_ms")
    live = c6.toggle("Live", value=open_ms is None, help="redraw the forming candle every 2 s")
    with st.expander("Indicator settings"):
        settings: dict[str, Any] = {}
        for column, (param, label, low, high, _, step) in zip(
            st.columns(len(NUMBERS)), NUMBERS, strict=True
        ):
            kind = _kind(step)
            settings[param] = kind(
                column.number_input(
                    label, kind(low), kind(high), step=kind(step), key=f"market_{param}"
                )
            )
    publish(fields, URL_MEMORY)
    over, pan = chosen_indicators(overlays, panels, settings)
    signal_id = query_param("signal")

    @st.fragment(run_every=LIVE_EVERY_S if live and open_ms is None else None)
    def chart() -> None:
        draw(symbol, interval, int(limit), over, pan, open_ms)

    chart()
    if signal_id:
        show_signal(signal_id)


def draw(
    symbol: str,
    interval: str,
    limit: int,
    overlays: Sequence[Indicator],
    panels: Sequence[Indicator],
    open_ms: int | None,
) -> None:
    market = sources.market()
    started = time.perf_counter()
    end_ms = None
    if open_ms is not None:
        end_ms = open_ms + (limit // 2) * get_interval(interval).length_ms
    answer = market.candles(symbol, interval, limit, end_ms)
    user = current_user()
    marks: Fetched[Any] | None = None
    fetched = time.perf_counter()
    candles: Candles = answer.value
    if not candles.klines:
        banner(answer)
        if open_ms is None:
            st.info(f"No {interval} klines of {symbol} are stored.")
        else:
            st.info(
                f"No {interval} klines of {symbol} are stored around {utc_text(open_ms)} UTC "
                "(older than the stored history, or not reached yet)."
            )
        return
    closed = candles.closed
    expressions = [text for ind in (*overlays, *panels) for _, text in ind.series]
    values = cached_series(symbol, interval, closed, expressions)
    series: dict[str, list[float | None]] = {}
    for ind in (*overlays, *panels):
        for name, text in ind.series:
            column = values[text]
            series[name] = column + [None] * (len(candles.klines) - len(column))
    computed = time.perf_counter()
    markers: list[Marker] = []
    if user is not None:
        marks = sources.database().signals_on(
            user, symbol, interval, candles.klines[0].open_ms, candles.klines[-1].open_ms
        )
        markers = [
            Marker(s.kline_open_ms, f"{s.trader} (x{s.repeat_count})", _values_text(s.values))
            for s in marks.value
        ]
    banner(answer, *([marks] if marks is not None else []))
    forming = candles.forming
    frame = build_frame(
        candles.klines, interval, series, forming.open_ms if forming is not None else None
    )
    spec = chart_spec(
        frame,
        overlays,
        panels,
        markers,
        focus_ms=open_ms,
        title=f"{symbol} {interval}",
        interval=interval,
    )
    built = time.perf_counter()
    st.vega_lite_chart(spec=spec, width="stretch")
    shown = time.perf_counter()
    last = candles.klines[-1]
    state = "forming" if forming is not None else "closed"
    st.caption(
        f"{len(candles.klines):,} klines, newest opened {utc_text(last.open_ms)} UTC ({state}), "
        f"close {last.close / 1e8:.8f}; "
        + (f"{len(markers)} of your signals marked." if user else "sign in to see your signals.")
        + " Point at a kline to read it at the top left; drag to pan, scroll to zoom (prices "
        "fit the klines in sight), double-click to reset."
    )
    st.session_state[TIMINGS] = {
        "fetch_ms": (fetched - started) * 1000,
        "indicators_ms": (computed - fetched) * 1000,
        "chart_ms": (built - computed) * 1000,
        "render_ms": (shown - built) * 1000,
        "candles": len(candles.klines),
    }


def _values_text(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_num(v)}" for k, v in values.items())


def _num(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.8g}"
    return str(v)


def show_signal(signal_id: str) -> None:
    user = current_user()
    st.subheader("Signal")
    if user is None:
        st.info("Sign in to see this signal's recorded values")
        return
    answer = sources.database().signal(user, signal_id)
    banner(answer)
    sig = answer.value
    if sig is None:
        st.info("No signal with that id is visible to you.")
        return
    st.caption(
        f"{md_escape(sig.trader)} (version {sig.trader_version}) on {sig.symbol} {sig.interval}, "
        f"kline closed {signal_time_text(sig.kline_close_ms)}, price {sig.price}, "
        f"repeats {sig.repeat_count}, status {sig.status}"
    )
    st.dataframe(
        pd.DataFrame(
            {"value": list(sig.values), "at the signal": [_num(v) for v in sig.values.values()]}
        ),
        hide_index=True,
    )


if __name__ == "__main__":
    render()
