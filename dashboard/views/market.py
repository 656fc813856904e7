"""Market: candles of one symbol and interval, indicators, and the user's signals on them.

The URL keeps the view shareable: `?symbol=XRPETH&interval=1m` (and `open_ms=` to open the
chart at a kline, `signal=` to show a signal's recorded values there).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pandas as pd  # type: ignore[import-untyped]
import streamlit as st

from dashboard.data import sources
from dashboard.data.indicators import Indicator, cached_series, overlay_choices, panel_choices
from dashboard.data.market import Candles
from dashboard.data.stale import Fetched
from dashboard.ui.charts import Marker, build_frame, chart_spec
from dashboard.ui.common import (
    banner,
    current_user,
    int_param,
    md_escape,
    query_param,
    utc_text,
)
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


def _index(options: Sequence[str], wanted: str | None, fallback: int = 0) -> int:
    return options.index(wanted) if wanted in options else fallback


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
    c1, c2, c3 = st.columns([2, 1, 2])
    symbol = c1.selectbox(
        "Symbol", symbols.value, index=_index(symbols.value, query_param("symbol"))
    )
    interval = c2.selectbox(
        "Interval",
        intervals,
        index=_index(intervals, query_param("interval"), _index(intervals, "1m")),
    )
    limit_qp = int_param("limit")
    limit = c3.select_slider(
        "Candles", options=LIMITS, value=limit_qp if limit_qp in LIMITS else DEFAULT_LIMIT
    )
    if query_param("symbol") != symbol:
        st.query_params["symbol"] = symbol
    if query_param("interval") != interval:
        st.query_params["interval"] = interval
    c4, c5, c6 = st.columns([3, 2, 1])
    overlays = c4.multiselect("Overlays", OVERLAYS, key="market_overlays")
    panels = c5.multiselect("Panels", PANELS, key="market_panels")
    open_ms = int_param("open_ms")
    live = c6.toggle("Live", value=open_ms is None, help="redraw the forming candle every 2 s")
    with st.expander("Indicator settings"):
        s1, s2, s3, s4, s5, s6 = st.columns(6)
        settings = {
            "ema": int(s1.number_input("EMA period", 2, 500, 20)),
            "sma": int(s2.number_input("SMA period", 2, 500, 50)),
            "bb": int(s3.number_input("Bollinger period", 2, 500, 20)),
            "bb_k": float(s4.number_input("Bollinger width", 0.5, 5.0, 2.0, 0.5)),
            "vwap": int(s5.number_input("VWAP bars (0: since 00:00 UTC)", 0, 1000, 0)),
            "rsi": int(s6.number_input("RSI period", 2, 200, 14)),
        }
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
        frame, overlays, panels, markers, focus_ms=open_ms, title=f"{symbol} {interval}"
    )
    built = time.perf_counter()
    st.vega_lite_chart(spec=spec)
    shown = time.perf_counter()
    last = candles.klines[-1]
    state = "forming" if forming is not None else "closed"
    st.caption(
        f"{len(candles.klines):,} klines, newest opened {utc_text(last.open_ms)} UTC ({state}), "
        f"close {last.close / 1e8:.8f}; "
        + (f"{len(markers)} of your signals marked." if user else "sign in to see your signals.")
        + " Drag to pan, scroll to zoom, double-click to reset."
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
        f"kline opened {utc_text(sig.kline_open_ms)} UTC, price {sig.price}, "
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
