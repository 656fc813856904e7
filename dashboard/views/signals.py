"""Signals: the signed-in user's signals, newest first, live.

The table refreshes every second from the process's listener (a NOTIFY bumps its `seq`, and
only then is PostgreSQL asked again, under row-level security); when the listener is down
it falls back to asking every few seconds. A signal's time is the one every page shows: the
moment its kline closed, in UTC (ui.common.signal_time). Selecting a row links to the Market
page at that signal's kline and offers to mark it seen or dismiss it (signals.status, which
the user may change under row-level security); dismissed signals are hidden unless asked
for. New-signal toasts come from the app's frame (ui.alerts), on every page.

The filters sit in a collapsed expander (a line under it says which are set), so that on a
phone the signals themselves are on the first screen.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pandas as pd  # type: ignore[import-untyped]
import streamlit as st

from dashboard.data import sources
from dashboard.data.db import DB_ERRORS, STATUSES, Session, SignalFilter, SignalRow, WriteRefused
from dashboard.data.stale import Fetched
from dashboard.ui.common import banner, current_user, md_escape, signal_time, signal_time_text, utc
from flows.domain.clock import SYSTEM_CLOCK

REFRESH_S = 1.0
FALLBACK_POLL_S = 5.0  # the listener is down: ask PostgreSQL this often
RECHECK_S = 15.0  # repeat counts and statuses change without a NOTIFY
RANGES = {
    "All": None,
    "Last hour": timedelta(hours=1),
    "Last 24 hours": timedelta(days=1),
    "Last 7 days": timedelta(days=7),
}
CACHE = "klineflow_signals_cache"
TABLE = "signals_table"
SHOWN_STATUSES = ("new", "seen")  # by default: dismissed ones are hidden


def render() -> None:
    st.header("Signals")
    user = current_user()
    if user is None:
        st.info("Sign in to see your signals")
        return
    cfg = sources.config()
    db = sources.database(cfg)
    sources.listener(cfg)  # started on first use
    traders = db.signal_traders(user)  # removed ones too: their signals stay
    symbols = sources.market(cfg).symbols()
    banner(traders, symbols)
    names = traders.value
    with st.expander("Filters", icon=":material/filter_list:"):
        c1, c2, c3, c4, c5 = st.columns(5)
        picked = c1.multiselect("Trader", sorted(names))
        syms = c2.multiselect("Symbol", symbols.value)
        ivs = c3.multiselect("Interval", list(cfg.intervals))
        span = c4.selectbox("Recorded", list(RANGES))
        statuses = c5.multiselect("Status", list(STATUSES), default=list(SHOWN_STATUSES))
    st.caption(filters_text(picked, syms, ivs, span, statuses))
    delta = RANGES[span]
    since = utc(SYSTEM_CLOCK.now_ms()) - delta if delta is not None else None
    flt = SignalFilter(
        trader_ids=tuple(sorted(names[n] for n in picked)),
        symbols=tuple(syms),
        intervals=tuple(ivs),
        statuses=tuple(s for s in STATUSES if s in statuses),
        since=since.replace(second=0, microsecond=0) if since is not None else None,
    )

    @st.fragment(run_every=REFRESH_S)
    def table() -> None:
        live_table(user, flt)

    table()


def filters_text(
    traders: list[str], symbols: list[str], intervals: list[str], span: str, statuses: list[str]
) -> str:
    """One line saying what the (collapsed) filters hold."""
    parts = [
        f"{label} {', '.join(md_escape(v) for v in values)}"
        for label, values in (("trader", traders), ("symbol", symbols), ("interval", intervals))
        if values
    ]
    if span != "All":
        parts.append(f"recorded in the {span.lower()}")
    parts.append("status " + (", ".join(statuses) if statuses else "any"))
    return "Showing " + "; ".join(parts)


def _rows(who: Session, flt: SignalFilter) -> Fetched[list[SignalRow]]:
    """The user's signals, asked again only when something may have changed."""
    lis = sources.listener()
    now = SYSTEM_CLOCK.monotonic_s()
    cached: dict[str, Any] | None = st.session_state.get(CACHE)
    due = (
        cached is None
        or cached["user"] != who.user_id
        or cached["filter"] != flt
        or cached["seq"] != lis.seq
        or now - cached["at"] >= (RECHECK_S if lis.connected.is_set() else FALLBACK_POLL_S)
    )
    if not due:
        assert cached is not None
        answer: Fetched[list[SignalRow]] = cached["answer"]
        return answer
    seq = lis.seq  # read before the query: a signal arriving meanwhile triggers another
    answer = sources.database().signals(who, flt)
    st.session_state[CACHE] = {"user": who.user_id, "filter": flt, "seq": seq, "at": now,
                               "answer": answer}  # fmt: skip
    return answer


def live_table(who: Session, flt: SignalFilter) -> None:
    answer = _rows(who, flt)
    rows = answer.value
    market = sources.market()
    symbols = sorted({r.symbol for r in rows})
    prices = market.last_prices(symbols)
    tickers = market.tickers()
    banner(answer, prices, tickers)
    if rows:
        newest = rows[0]
        st.caption(f"Latest: {md_escape(newest.trader)} · {newest.symbol} · {newest.interval}")
    else:
        st.caption("Latest: none yet")
    volume = {t.symbol: t.quote_volume for t in tickers.value}
    frame = signals_frame(rows, prices.value, volume)
    event: Any = st.dataframe(
        frame,
        hide_index=True,
        on_select="rerun",
        selection_mode="single-row",
        key=TABLE,
        column_config={
            "time": st.column_config.DatetimeColumn(
                "kline closed (UTC)", format="YYYY-MM-DD HH:mm:ss"
            ),
            "recorded": st.column_config.DatetimeColumn(
                "recorded (UTC)", format="YYYY-MM-DD HH:mm:ss"
            ),
            "change %": st.column_config.NumberColumn(format="%.2f"),
            "24h volume": st.column_config.NumberColumn(format="%.2f"),
            "price at signal": st.column_config.NumberColumn(format="%.8f"),
            "current price": st.column_config.NumberColumn(format="%.8f"),
        },
    )
    st.caption(f"{len(rows)} signals shown (newest {flt.limit} at most).")
    selected = list(event.selection.rows) if event is not None else []
    if selected and selected[0] < len(rows):
        selected_signal(who, rows[selected[0]])


def selected_signal(who: Session, sig: SignalRow) -> None:
    """The selected signal: a link to its kline on Market, and its status to change."""
    st.page_link(
        "views/market.py",
        label=f"Open {sig.symbol} {sig.interval} at the kline closed "
        f"{signal_time_text(sig.kline_close_ms)}",
        icon=":material/candlestick_chart:",
        query_params={
            "symbol": sig.symbol,
            "interval": sig.interval,
            "open_ms": str(sig.kline_open_ms),
            "signal": sig.id,
        },
    )
    st.caption(f"Status: {sig.status}")
    c1, c2, c3 = st.columns(3)
    wanted = None
    if c1.button("Mark seen", disabled=sig.status == "seen", key="signal_seen"):
        wanted = "seen"
    if c2.button("Dismiss", disabled=sig.status == "dismissed", key="signal_dismiss"):
        wanted = "dismissed"
    if c3.button("Mark new", disabled=sig.status == "new", key="signal_new"):
        wanted = "new"
    if wanted is None:
        return
    try:
        changed = sources.database().set_status(who, [sig.id], wanted)
    except WriteRefused as exc:
        st.error(f"Not changed: {md_escape(str(exc))}")
        return
    except DB_ERRORS:
        st.error("PostgreSQL is unreachable: try again in a moment")
        return
    if not changed:
        st.error("Not changed: the signal is no longer visible to you")
        return
    st.session_state.pop(CACHE, None)  # ask again now
    st.session_state.pop(TABLE, None)  # the selected row may leave the table
    st.rerun()


def signals_frame(
    rows: list[SignalRow], prices: dict[str, float], volume: dict[str, float]
) -> pd.DataFrame:
    records = []
    for r in rows:
        at_signal = float(r.price)
        now = prices.get(r.symbol)
        change = (now - at_signal) / at_signal * 100 if now is not None and at_signal else None
        records.append(
            {
                "time": signal_time(r.kline_close_ms),
                "symbol": r.symbol,
                "trader": r.trader,
                "interval": r.interval,
                "price at signal": at_signal,
                "current price": now,
                "change %": change,
                "24h volume": volume.get(r.symbol),
                "repeats": r.repeat_count,
                "status": r.status,
                "recorded": r.created_at,
                "id": r.id,
            }
        )
    columns = ["time", "symbol", "trader", "interval", "price at signal", "current price",
               "change %", "24h volume", "repeats", "status", "recorded", "id"]  # fmt: skip
    return pd.DataFrame.from_records(records, columns=columns)


if __name__ == "__main__":
    render()
