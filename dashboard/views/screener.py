"""Screener: every tracked symbol with its last price, 24h change, 24h quote volume and a
sparkline of its day, the most traded first; each symbol links to its chart on Market.

The filters are the page's; the table under them is read again every REFRESH_S seconds by
itself (a fragment, which keeps the filters as they are). Its height fits every row, so the
page scrolls to the last symbol rather than the table hiding rows in a scroll of its own.
"""

from __future__ import annotations

from urllib.parse import urlencode

import pandas as pd  # type: ignore[import-untyped]
import streamlit as st

from dashboard.data import sources
from dashboard.data.market import Ticker
from dashboard.ui.common import banner

REFRESH_S = 5.0
TABLE = "screener_table"
DIRECTIONS = ["any", "up", "down"]
COLUMNS = ["symbol", "last price", "24h change %", "24h quote volume", "last 24 h", "klines"]


def market_link(symbol: str, interval: str) -> str:
    """The Market page on this symbol and interval, relative to the page (so the link works
    under any base path the dashboard is served at)."""
    return "market?" + urlencode({"symbol": symbol, "interval": interval})


def picked(tickers: list[Ticker], text: str, min_volume: float, direction: str) -> list[Ticker]:
    """The tickers the filters keep, in the order given."""
    wanted = text.strip().upper()
    return [
        t
        for t in tickers
        if wanted in t.symbol
        and t.quote_volume >= min_volume
        and (
            direction == "any"
            or (t.change_pct is not None and (t.change_pct > 0) == (direction == "up"))
        )
    ]


def screener_frame(tickers: list[Ticker]) -> pd.DataFrame:
    rows = [
        {
            "symbol": market_link(t.symbol, t.interval),
            "last price": t.last_price,
            "24h change %": t.change_pct,
            "24h quote volume": t.quote_volume,
            "last 24 h": list(t.closes),
            "klines": t.bars,
        }
        for t in tickers
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def render() -> None:
    st.header("Screener")
    c1, c2, c3 = st.columns([2, 1, 1])
    text = c1.text_input("Filter symbols", placeholder="e.g. USDT or BTC", key="screener_text")
    min_volume = c2.number_input(
        "Least 24h quote volume", min_value=0.0, value=0.0, key="screener_min_volume"
    )
    direction = c3.selectbox("Change", DIRECTIONS, key="screener_direction")

    @st.fragment(run_every=REFRESH_S)
    def table() -> None:
        live_table(text, float(min_volume), str(direction))

    table()


def live_table(text: str, min_volume: float, direction: str) -> None:
    answer = sources.market().tickers()
    banner(answer)
    tickers = answer.value
    if not tickers:
        st.info("No klines are stored yet.")
        return
    shown = picked(tickers, text, min_volume, direction)
    st.dataframe(
        screener_frame(shown),
        hide_index=True,
        height="content",  # every row on the page: nothing hidden in the table's own scroll
        key=TABLE,
        column_config={
            "symbol": st.column_config.LinkColumn(
                "symbol",
                display_text=r"symbol=([^&]+)",
                help="Opens the symbol's chart on the Market page",
            ),
            "last price": st.column_config.NumberColumn(format="%.8f"),
            "24h change %": st.column_config.NumberColumn(format="%.2f"),
            "24h quote volume": st.column_config.NumberColumn(format="%.2f"),
            "last 24 h": st.column_config.LineChartColumn(
                "last 24 h",
                help="closes over the same day as the 24h figures (green: up, red: down)",
                color="auto",
            ),
            "klines": st.column_config.NumberColumn(
                help="klines the 24h figures come from (1,440 for a full day of 1m)"
            ),
        },
    )
    interval = tickers[0].interval
    st.caption(
        f"{len(shown)} of {len(tickers)} symbols, the most traded first; read again every "
        f"{REFRESH_S:.0f} s. From the newest day of stored {interval} klines (the forming one "
        "included); fewer klines than a day means a shorter window. A symbol opens its chart; "
        "click a column header to sort."
    )


if __name__ == "__main__":
    render()
