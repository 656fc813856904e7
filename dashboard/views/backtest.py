"""Backtest: replay stored recordings through the live dataflow with some of the user's
traders, or a rule typed here, and read what their signals would have done.

A run goes on in a thread of the Streamlit process (one per session at a time) with its
progress redrawn by a fragment; it is stored in PostgreSQL as the user's. The statistics
are `flows.backtest.report.summary` over the signals' forward returns; a stored run's are
computed again from the outcomes recorded with its signals.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd  # type: ignore[import-untyped]
import streamlit as st

from dashboard.data import backtests, sources
from dashboard.data.backtests import BacktestJob, RunRequest, RunRow, Stats
from dashboard.data.config import DashboardConfig
from dashboard.data.db import Session
from dashboard.ui.charts import Marker, build_frame, chart_spec
from dashboard.ui.common import banner, current_user, md_escape, utc_text
from flows.backtest.report import HORIZONS, SignalOutcome, summary
from flows.rules.errors import RuleError
from flows.signals.book import TRIGGER_MODES, TraderRow, compile_trader

JOB = "klineflow_backtest_job"
A_RULE = "A rule"
MY_TRADERS = "My traders"
TYPED_RULE = "typed rule"  # the name a typed rule is stored under (trader id 0)
PROGRESS_EVERY_S = 1.0
CHART_CANDLES = 1500
INTERVALS = ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d")
PERCENT_COLUMNS = [
    c
    for n in HORIZONS
    for c in (f"ret{n}_mean", f"ret{n}_median", f"ret{n}_hit_rate", f"mfe{n}_mean",
              f"mae{n}_mean")
]  # fmt: skip


def render() -> None:
    st.header("Backtest")
    user = current_user()
    if user is None:
        st.info("Sign in to run backtests")
        return
    cfg = sources.config()
    job: BacktestJob | None = st.session_state.get(JOB)
    if job is not None and job.owner_id != user.user_id:  # signed out and in as someone else
        job = None
    new_run(user, cfg, running=job is not None and not job.done)
    job = st.session_state.get(JOB)
    if job is not None and job.owner_id == user.user_id:
        st.divider()
        this_run(job)
    st.divider()
    stored_runs(user)


# -- starting a run -----------------------------------------------------------------------------
def new_run(who: Session, cfg: DashboardConfig, running: bool) -> None:
    st.subheader("New run")
    folder = backtests.recordings_dir()
    files = backtests.recordings(folder)
    if not files:
        st.caption(
            f"No recordings in {md_escape(str(folder))} (set KLINEFLOW_RECORDINGS_DIR, or put "
            "files ending in .jsonl.gz, .csv, .zip, .txt, .json or .json.gz there)."
        )
    names = [str(p.relative_to(folder)) for p in files]
    picked = st.multiselect("Recordings", names, key="bt_recordings")
    source = st.radio("Traders", [A_RULE, MY_TRADERS], key="bt_source", horizontal=True)
    rows: list[TraderRow] = []
    problem: str | None = None
    if source == MY_TRADERS:
        answer = sources.database(cfg).traders(who)
        banner(answer)
        mine = {f"{t.name} (id {t.id})": t for t in answer.value}
        if not mine:
            st.caption("You have no traders yet: create some on the Traders page.")
        chosen = st.multiselect("Your traders", list(mine), key="bt_traders")
        rows = [mine[c] for c in chosen]
        for t in rows:
            try:
                compile_trader(t)
            except RuleError as exc:
                st.error(f"{md_escape(t.name)}: {md_escape(exc.message)}")
                problem = exc.message
        if not rows:
            problem = problem or "no traders"
    else:
        row, problem = typed_rule(cfg)
        if row is not None:
            rows = [row]
    text = st.text_input("Only these symbols (comma separated, empty: all)", key="bt_symbols")
    symbols = frozenset(s.strip().upper() for s in text.split(",") if s.strip()) or None
    if running:
        st.caption("A run is going on: wait for it to finish to start another.")
    start = st.button(
        "Start backtest",
        type="primary",
        disabled=running or problem is not None or not picked or not rows,
    )
    if start and not running and problem is None and picked and rows:
        request = RunRequest(tuple(folder / n for n in picked), tuple(rows), symbols)
        st.session_state[JOB] = backtests.start_backtest(request, who, sources.database(cfg))


def typed_rule(cfg: DashboardConfig) -> tuple[TraderRow | None, str | None]:
    """The typed rule as a trader (id 0), or what is wrong with it (with a caret)."""
    expression = st.text_area("Rule", key="bt_rule", placeholder="rsi(14) < 30")
    c1, c2, c3 = st.columns(3)
    intervals = list(dict.fromkeys([*cfg.intervals, *INTERVALS]))
    interval = c1.selectbox("Interval", intervals, key="bt_interval")
    trigger = c2.radio(
        "Trigger", TRIGGER_MODES, index=TRIGGER_MODES.index("on_change"), key="bt_trigger",
        horizontal=True,
    )  # fmt: skip
    cooldown = c3.number_input("Cooldown (bars)", 0, 100_000, 0, key="bt_cooldown")
    if not expression.strip():
        st.caption("Type a rule, e.g. `rsi(14) < 30 and close > ema(50)`.")
        return None, "empty"
    row = TraderRow(0, TYPED_RULE, expression, str(interval), trigger_mode=str(trigger),
                    cooldown_bars=int(cooldown))  # fmt: skip
    try:
        compile_trader(row)
    except RuleError as exc:
        st.error(f"Rule error at character {exc.position + 1}: {md_escape(exc.message)}")
        st.code(exc.caret(expression), language=None)
        return None, exc.message
    return row, None


# -- the session's run --------------------------------------------------------------------------
def this_run(job: BacktestJob) -> None:
    st.subheader("This run")
    if job.error is not None:
        where = f" (run {job.run_id}, marked failed)" if job.run_id is not None else ""
        st.error(f"The backtest failed{where}: {md_escape(job.error)}")
        return
    if job.finished is None:
        progress(job)
        return
    done = job.finished
    names = {t.id: t.name for t in job.request.traders}
    st.caption(
        f"Run {done.run_id}: {done.trades:,} trades in {done.seconds:.1f} s, "
        f"{len(done.rows):,} signals"
    )
    if done.failures:
        st.warning(f"The rules raised {done.failures:,} times (see the flow's rule errors).")
    stats = summary(done.rows, done.span_ms)
    results(stats, done.rows, names, f"run{done.run_id}")
    signals_chart(done.rows, done.klines, names, f"run{done.run_id}")
    download(done.rows, done.run_id, f"run{done.run_id}")


@st.fragment(run_every=PROGRESS_EVERY_S)
def progress(job: BacktestJob) -> None:
    """Redrawn every second from the run's counters; the whole page once the run is over."""
    if job.done:
        st.rerun()
    frac, eta = job.progress()
    left = "estimating…" if eta is None else f"about {timedelta(seconds=round(eta))} left"
    st.progress(frac, text=f"{frac * 100:.1f}% of the input read, {job.stats.trades_read:,} "
                f"trades, {left}")  # fmt: skip


# -- stored runs --------------------------------------------------------------------------------
def stored_runs(who: Session) -> None:
    st.subheader("Your runs")
    db = sources.database()
    answer = backtests.runs(db, who)
    banner(answer)
    listed = answer.value
    if not listed:
        st.caption("No runs yet.")
        return
    st.dataframe(
        pd.DataFrame([run_line(r, who.user_id) for r in listed]), hide_index=True, key="bt_runs"
    )
    labels = {f"run {r.id} · {r.status} · {r.created_at:%Y-%m-%d %H:%M} UTC": r for r in listed}
    pick = st.selectbox("Open a run", ["", *labels], key="bt_open")
    if not pick:
        return
    run = labels[str(pick)]
    got = backtests.run_signals(db, who, run.id)
    banner(got)
    rows = got.value
    if run.status != "done":
        st.caption(f"Run {run.id} is {run.status}.")
    stats = backtests.stored_stats(run, rows)
    results(stats, rows, run.trader_names, f"stored{run.id}")
    st.caption("The chart of a stored run's signals is drawn for the session's own run only "
               "(its klines are not stored); the Market page shows stored klines.")  # fmt: skip
    download(rows, run.id, f"stored{run.id}")


def run_line(r: RunRow, user_id: int) -> dict[str, Any]:
    return {
        "run": r.id,
        "status": r.status,
        "started (UTC)": f"{r.created_at:%Y-%m-%d %H:%M:%S}",
        "owner": "you" if r.owner_id == user_id else "command line",
        "recordings": ", ".join(Path(str(i.get("path", ""))).name for i in r.inputs),
        "traders": ", ".join(str(t.get("name", "")) for t in r.traders),
        "signals": r.signals,
        "trades": r.trades,
        "seconds": r.seconds,
    }


# -- what a run shows ---------------------------------------------------------------------------
def results(stats: Stats, rows: Sequence[SignalOutcome], names: dict[int, str], key: str) -> None:
    if not rows:
        st.info("No signals: the rules never fired on these recordings.")
        return
    table = pd.DataFrame(stats)
    table.insert(1, "trader", [names.get(int(str(t)), "") for t in table["trader_id"]])
    st.dataframe(
        table,
        hide_index=True,
        key=f"bt_stats_{key}",
        column_config={
            **{c: st.column_config.NumberColumn(format="percent") for c in PERCENT_COLUMNS},
            "signals_per_day": st.column_config.NumberColumn(format="%.2f"),
        },
    )
    horizon = st.selectbox(
        "Forward return after (bars)", HORIZONS, index=HORIZONS.index(15), key=f"bt_h_{key}"
    )
    values = backtests.returns_of(rows, int(horizon))
    if not values:
        st.caption(f"No signal has {horizon} bars after it in the data.")
        return
    st.altair_chart(histogram(values, int(horizon)))


def histogram(values: Sequence[float], horizon: int) -> alt.Chart:
    frame = pd.DataFrame({"ret": list(values)})
    chart: alt.Chart = (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X(
                "ret:Q",
                bin=alt.Bin(maxbins=40),
                title=f"forward return after {horizon} bars",
                axis=alt.Axis(format="%"),
            ),
            y=alt.Y("count():Q", title="signals"),
        )
        .properties(name="returns histogram", width="container", height=260)
    )
    return chart


def signals_chart(
    rows: Sequence[SignalOutcome],
    klines: dict[tuple[str, str], list[Any]],
    names: dict[int, str],
    key: str,
) -> None:
    series = sorted(klines)
    if not series:
        return
    labels = [f"{s} {iv}" for s, iv in series]
    pick = st.selectbox("Signals on", labels, key=f"bt_series_{key}")
    symbol, interval = series[labels.index(str(pick))]
    bars = klines[(symbol, interval)]
    shown = bars[-CHART_CANDLES:]
    first = shown[0].open_ms if shown else 0
    marks = [
        Marker(
            r.signal.fire.open_ms,
            f"{names.get(r.signal.fire.trader_id, '')} (x{r.signal.repeat_count})",
            ", ".join(f"{k}={v}" for k, v in r.signal.fire.values.items()),
        )
        for r in rows
        if (r.signal.fire.symbol, r.signal.fire.interval) == (symbol, interval)
        and r.signal.fire.open_ms >= first
    ]
    frame = build_frame(shown, interval, {})
    st.vega_lite_chart(
        spec=chart_spec(frame, markers=marks, title=f"{symbol} {interval}: backtest signals")
    )
    if len(bars) > len(shown):
        st.caption(
            f"The newest {len(shown):,} of {len(bars):,} klines, from "
            f"{utc_text(first)} UTC; the statistics cover every one."
        )


def download(rows: Sequence[SignalOutcome], run_id: int, key: str) -> None:
    st.download_button(
        "Download signals (CSV)",
        data=backtests.export_csv(rows),
        file_name=f"backtest-{run_id}.csv",
        mime="text/csv",
        key=f"bt_download_{key}",
    )


if __name__ == "__main__":
    render()
