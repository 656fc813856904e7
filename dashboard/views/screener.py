"""Screener: every tracked symbol with its last price, 24h change and 24h quote volume."""

from __future__ import annotations

import pandas as pd  # type: ignore[import-untyped]
import streamlit as st

from dashboard.data import sources
from dashboard.ui.common import banner


def render() -> None:
    st.header("Screener")
    market = sources.market()
    answer = market.tickers()
    banner(answer)
    tickers = answer.value
    if not tickers:
        st.info("No klines are stored yet.")
        return
    c1, c2, c3 = st.columns([2, 1, 1])
    text = c1.text_input("Filter symbols", placeholder="e.g. USDT or BTC")
    min_volume = c2.number_input("Least 24h quote volume", min_value=0.0, value=0.0)
    direction = c3.selectbox("Change", ["any", "up", "down"])
    rows = [
        {
            "symbol": t.symbol,
            "last price": t.last_price,
            "24h change %": t.change_pct,
            "24h quote volume": t.quote_volume,
            "klines": t.bars,
        }
        for t in tickers
        if text.strip().upper() in t.symbol
        and t.quote_volume >= min_volume
        and (
            direction == "any"
            or (t.change_pct is not None and (t.change_pct > 0) == (direction == "up"))
        )
    ]
    frame = pd.DataFrame(
        rows, columns=["symbol", "last price", "24h change %", "24h quote volume", "klines"]
    ).sort_values("24h quote volume", ascending=False)
    st.dataframe(
        frame,
        hide_index=True,
        column_config={
            "last price": st.column_config.NumberColumn(format="%.8f"),
            "24h change %": st.column_config.NumberColumn(format="%.2f"),
            "24h quote volume": st.column_config.NumberColumn(format="%.2f"),
            "klines": st.column_config.NumberColumn(
                help="klines the 24h figures come from (1,440 for a full day of 1m)"
            ),
        },
    )
    interval = tickers[0].interval
    st.caption(
        f"{len(rows)} of {len(tickers)} symbols. From the newest day of stored {interval} "
        "klines (the forming one included); fewer klines than a day means a shorter window. "
        "Click a column header to sort."
    )


if __name__ == "__main__":
    render()
