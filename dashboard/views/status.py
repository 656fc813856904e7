"""Status: can the dashboard reach its servers, and how is the flow doing: the live flow's
heartbeat (its counters and each feed connection's state, rewritten every few seconds) judged
as `klineflow status` judges it (``flows.app.health``), what the stored klines show (when the
newest kline of each series closes and how long ago the last one closed), and the signed-in
user's traders' signal counts.

The page reads everything again every REFRESH_S seconds by itself (a fragment), so the age of
a heartbeat that is no longer rewritten grows and the flow turns unhealthy on screen."""

from __future__ import annotations

import pandas as pd  # type: ignore[import-untyped]
import streamlit as st

from dashboard.data import flow_status, sources
from dashboard.ui.common import banner, current_user, utc, utc_text

REFRESH_S = 3.0


def duration_text(ms: int) -> str:
    """A span for people: '42 s', '17 min', '3 h 30 min', '2 d 4 h' (rounded down)."""
    seconds = max(0, ms // 1000)
    if seconds < 120:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 120:
        return f"{minutes} min"
    hours = minutes // 60
    if hours < 48:
        return f"{hours} h {minutes % 60} min" if minutes % 60 else f"{hours} h"
    return f"{hours // 24} d {hours % 24} h" if hours % 24 else f"{hours // 24} d"


def _age(now_ms: int, ms: int | None) -> str:
    return "-" if ms is None else duration_text(now_ms - ms)


def _ends(now_ms: int, end_ms: int | None) -> str:
    """When a kline closes, from now: 'in 25 min' or '3 h ago'."""
    if end_ms is None:
        return "-"
    if end_ms > now_ms:
        return f"in {duration_text(end_ms - now_ms)}"
    return f"{duration_text(now_ms - end_ms)} ago"


def render() -> None:
    st.header("Status")
    live()


@st.fragment(run_every=REFRESH_S)
def live() -> None:
    """The whole page, read again every REFRESH_S seconds."""
    cfg = sources.config()
    redis_answer = sources.market(cfg).status()
    db_answer = sources.database(cfg).status()
    banner(redis_answer, db_answer)
    rs = redis_answer.value
    ds = db_answer.value
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Redis", "reachable" if not redis_answer.stale else "unreachable")
    c2.metric("PostgreSQL", "reachable" if not db_answer.stale else "unreachable")
    c3.metric("Symbols", rs.symbols)
    c4.metric("Dead letters", rs.dead_letters)
    if ds.server_version:
        st.caption(f"PostgreSQL {ds.server_version}; Redis key namespace {cfg.namespace!r}")

    now = rs.now_ms
    st.caption(f"As of {utc_seconds(now)} UTC; read again every {REFRESH_S:.0f} s.")
    st.subheader("Flow")
    beat = rs.heartbeat
    health = flow_status.flow_health(rs)
    if beat is None:
        if rs.heartbeat_error:
            st.error(f"The flow's heartbeat in Redis cannot be read: {rs.heartbeat_error}")
        else:
            st.caption("No live flow heartbeat: no `klineflow up` or `demo` is running on this "
                       "Redis and namespace (replays and backtests publish none).")  # fmt: skip
    else:
        c = beat.counters
        f1, f2, f3, f4 = st.columns(4)
        f1.metric("Flow", beat.state, f"heartbeat {_age(now, beat.ts_ms)} ago",
                  delta_color="off", delta_arrow="off")  # fmt: skip
        f2.metric("Trades read", f"{c.trades_read:,}")
        f3.metric("Late / duplicate", f"{c.late} / {c.duplicates}")
        f4.metric("Reconnects / gaps", f"{c.feed_reconnects} / {c.gaps}")
        when = " (as of the data shown)" if redis_answer.stale else ""
        if health is not None and health.healthy:
            st.success(f"Healthy{when}.")
        elif health is not None:
            st.error(f"Not healthy{when}: " + "; ".join(health.reasons) + ".")
        if beat.waiting_for:
            st.warning(f"The flow is paused, waiting for {', '.join(beat.waiting_for)}: nothing "
                       "is lost, it goes on when the server answers.")  # fmt: skip
        if c.klines_amended or c.implausible or c.store_repairs:
            st.caption(f"{c.klines_amended} kline(s) amended by trades that came after their "
                       f"close, {c.implausible} implausible trade(s) refused, {c.store_repairs} "
                       "Redis repair(s) (see the data-quality records below).")  # fmt: skip
        if beat.processes > 1:
            st.caption(f"Cluster: {beat.processes_seen} of {beat.processes} processes "
                       "heard from; feeds are listed as process/connection.")  # fmt: skip
        if beat.feeds:
            st.dataframe(
                pd.DataFrame(
                    [
                        {
                            "connection": f.connection,
                            "streams": f.streams,
                            "state": f.state,
                            "last message": "-"
                            if f.last_message_age_s is None
                            else f"{f.last_message_age_s:.1f} s ago",
                            "reconnects": f.reconnects,
                            "frames": f.frames,
                        }
                        for f in beat.feeds
                    ]
                ),
                hide_index=True,
                key="status_feeds",
            )

    st.subheader("Klines")
    st.caption(
        "The newest kline of each series (when it closes, or closed) and the newest one the "
        "flow closed, with how long ago. A kline closes at its open plus its interval; a live "
        "flow writes the forming kline about every second."
    )
    if rs.series:
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "symbol": s.symbol,
                        "interval": s.interval,
                        "stored": s.stored,
                        "newest open (UTC)": _when(s.newest_open_ms),
                        "newest closes": _ends(now, s.newest_end_ms),
                        "forming": s.forming,
                        "last closed (UTC)": _when(s.last_closed_end_ms),
                        "last closed age": _age(now, s.last_closed_end_ms),
                    }
                    for s in rs.series
                ]
            ),
            hide_index=True,
            key="status_series",
        )
    for note in rs.notes:
        st.caption(note)

    st.subheader("Rejected input and data quality")
    d1, d2, d3, d4 = st.columns(4)
    d1.metric("Late trades", rs.dead_letter_reasons.get("late", 0))
    d2.metric("Data-quality records", rs.data_quality)
    d3.metric("Gaps (incomplete ranges)", sum(rs.gaps.values()))
    d4.metric("Reconcile mismatches", rs.reconcile_mismatches)
    st.caption(
        f"Dead letters by reason among the newest {rs.dead_letters_scanned:,} of "
        f"{rs.dead_letters:,} (the stream is capped, so counts are of what it still holds)."
    )
    if rs.dead_letter_reasons:
        st.dataframe(
            pd.DataFrame(
                sorted(rs.dead_letter_reasons.items()), columns=["reason", "dead letters"]
            ),
            hide_index=True,
            key="status_reasons",
        )
    if rs.recent_dead_letters:
        with st.expander("Newest dead letters"):
            st.dataframe(pd.DataFrame(rs.recent_dead_letters), hide_index=True)
    if rs.gaps:
        st.dataframe(
            pd.DataFrame(sorted(rs.gaps.items()), columns=["symbol", "gaps"]),
            hide_index=True,
            key="status_gaps",
        )
    if rs.recent_data_quality:
        with st.expander("Newest data-quality records"):
            st.dataframe(pd.DataFrame(rs.recent_data_quality), hide_index=True)

    user = current_user()
    if user is not None:
        st.subheader("Your traders' signals")
        counts = flow_status.signal_counts(sources.database(cfg), user, now)
        if counts.value:
            st.dataframe(
                pd.DataFrame(
                    [{"trader": t.trader, "enabled": t.enabled, "signals": t.total,
                      "last 24 h": t.last_24h} for t in counts.value]
                ),
                hide_index=True,
                key="status_signal_counts",
            )  # fmt: skip
        else:
            st.caption("No traders yet.")
        st.subheader("Your traders' rule errors")
        errors = sources.database(cfg).rule_errors(user)
        if errors.value:
            st.dataframe(
                pd.DataFrame(
                    [{"trader": e.trader, "symbol": e.symbol, "error": e.error}
                     for e in errors.value]
                ),
                hide_index=True,
            )  # fmt: skip
        else:
            st.caption("None recorded.")


def _when(ms: int | None) -> str:
    return "-" if ms is None else utc_text(ms)


def utc_seconds(ms: int) -> str:
    return utc(ms).strftime("%Y-%m-%d %H:%M:%S")


if __name__ == "__main__":
    render()
