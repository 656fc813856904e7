"""Backtest: run some of the user's traders, or a rule typed here, over stored recordings
(replayed through the live dataflow) or over the klines stored in Redis (the ones the
Traders preview reads), and read what their signals would have done.

A run goes on in a thread of the Streamlit process (one per session at a time) with its
progress redrawn by a fragment; it is stored in PostgreSQL as the user's, with what it
covered (rule, interval, symbols, span, source), and can be opened again from the list of
runs: statistics from the outcomes stored with its signals, chart from the klines of its
span (``dashboard.data.backtest_runs.run_klines``).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd  # type: ignore[import-untyped]
import streamlit as st

from dashboard.data import backtest_runs, backtests, sources
from dashboard.data.backtest_runs import ChartKlines, RunRow
from dashboard.data.backtests import BacktestJob, FromKlines, RunRequest
from dashboard.data.config import DashboardConfig
from dashboard.data.db import Session
from dashboard.ui.backtest_results import download, results, signals_chart
from dashboard.ui.common import banner, current_user, md_escape, utc_text
from flows.app.backtests import STORED_KLINES as FROM_STORED_KLINES
from flows.domain.kline import Kline
from flows.rules.errors import RuleError
from flows.signals.book import TRIGGER_MODES, TraderRow, compile_trader

JOB = "klineflow_backtest_job"
A_RULE = "A rule"
MY_TRADERS = "My traders"
RECORDINGS = "Recordings"
STORED_KLINES = "Stored klines"
TYPED_RULE = "typed rule"  # the name a typed rule is stored under (trader id 0)
PROGRESS_EVERY_S = 1.0
INTERVALS = ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d")
HOUR_MS = 3_600_000
SPANS: dict[str, int | None] = {
    "everything stored": None,
    "last 6 hours": 6 * HOUR_MS,
    "last 24 hours": 24 * HOUR_MS,
    "last 7 days": 7 * 24 * HOUR_MS,
    "last 30 days": 30 * 24 * HOUR_MS,
}
SYMBOLS_SHOWN = 3  # a run's symbols listed by name; more are counted


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
    stored_runs(user, cfg)


# -- starting a run -----------------------------------------------------------------------------
def new_run(who: Session, cfg: DashboardConfig, running: bool) -> None:
    st.subheader("New run")
    data = st.radio("Data", [RECORDINGS, STORED_KLINES], key="bt_data", horizontal=True)
    paths: tuple[Path, ...] = ()
    symbols: frozenset[str] | None = None
    klines: FromKlines | None = None
    if data == STORED_KLINES:
        klines = stored_klines_choice(cfg)
    else:
        paths = recordings_choice()
        text = st.text_input("Only these symbols (comma separated, empty: all)", key="bt_symbols")
        symbols = frozenset(s.strip().upper() for s in text.split(",") if s.strip()) or None
    rows, problem = traders_choice(who, cfg)
    if running:
        st.caption("A run is going on: wait for it to finish to start another.")
    has_data = klines is not None or bool(paths)
    ready = not running and problem is None and has_data and bool(rows)
    start = st.button("Start backtest", type="primary", disabled=not ready)
    if start and ready:
        request = RunRequest(paths, tuple(rows), symbols, klines)
        st.session_state[JOB] = backtests.start_backtest(request, who, sources.database(cfg))


def recordings_choice() -> tuple[Path, ...]:
    """The picked recordings, in name order (the order a run reads them in)."""
    folder = backtests.recordings_dir()
    files = backtests.recordings(folder)
    if not files:
        st.caption(
            f"No recordings in {md_escape(str(folder))} (`klineflow demo` records there; or "
            "set KLINEFLOW_RECORDINGS_DIR, or put files ending in .jsonl.gz, .csv, .zip, "
            ".txt, .json or .json.gz there)."
        )
    names = [str(p.relative_to(folder)) for p in files]
    picked = set(st.multiselect("Recordings", names, key="bt_recordings"))
    return tuple(folder / n for n in names if n in picked)


def stored_klines_choice(cfg: DashboardConfig) -> FromKlines:
    answer = sources.market(cfg).symbols()
    banner(answer)
    if not answer.value:
        st.caption("No klines stored yet: run the live flow (`klineflow up` or `demo`).")
    picked = st.multiselect("Symbols (empty: every stored symbol)", answer.value,
                            key="bt_kl_symbols")  # fmt: skip
    span = st.selectbox("Span (back from the newest closed kline)", list(SPANS), key="bt_span")
    st.caption("The rules warm up on the klines stored before the span, as the live flow's do.")
    return FromKlines(cfg.redis_url, cfg.namespace, tuple(picked), SPANS[str(span)])


def traders_choice(who: Session, cfg: DashboardConfig) -> tuple[list[TraderRow], str | None]:
    """The traders of the run and what is wrong with them (None: nothing)."""
    source = st.radio("Traders", [A_RULE, MY_TRADERS], key="bt_source", horizontal=True)
    if source != MY_TRADERS:
        row, wrong = typed_rule(cfg)
        return ([row] if row is not None else []), wrong
    answer = sources.database(cfg).traders(who)
    banner(answer)
    mine = {f"{t.name} (id {t.id})": t for t in answer.value}
    if not mine:
        st.caption("You have no traders yet: create some on the Traders page.")
    chosen = st.multiselect("Your traders", list(mine), key="bt_traders")
    rows = [mine[c] for c in chosen]
    problem: str | None = None
    for t in rows:
        try:
            compile_trader(t)
        except RuleError as exc:
            st.error(f"{md_escape(t.name)}: {md_escape(exc.message)}")
            problem = exc.message
    return rows, problem or (None if rows else "no traders")


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
    read = (f"{sum(len(k) for k in done.klines.values()):,} stored klines"
            if job.request.klines else f"{done.trades:,} trades")  # fmt: skip
    st.caption(f"Run {done.run_id}: {read} in {done.seconds:.1f} s, {len(done.rows):,} signals")
    if done.failures:
        st.warning(f"The rules raised {done.failures:,} times (see the flow's rule errors).")
    results(done.rows, done.span_ms, names, f"run{done.run_id}")

    def klines_of(symbol: str, interval: str) -> tuple[list[Kline], str]:
        return list(done.klines.get((symbol, interval), [])), ""

    signals_chart(done.rows, klines_of, names, f"run{done.run_id}")
    download(done.rows, done.run_id, f"run{done.run_id}")


@st.fragment(run_every=PROGRESS_EVERY_S)
def progress(job: BacktestJob) -> None:
    """Redrawn every second from the run's counters; the whole page once the run is over."""
    if job.done:
        st.rerun()
    frac, eta = job.progress()
    left = "estimating…" if eta is None else f"about {timedelta(seconds=round(eta))} left"
    if job.request.klines is not None:
        done, total = job.stats.files_done, job.stats.bytes_total
        st.progress(frac, text=f"{done:,} of {total:,} symbols evaluated, {left}")
        return
    st.progress(frac, text=f"{frac * 100:.1f}% of the input read, {job.stats.trades_read:,} "
                f"trades, {left}")  # fmt: skip


# -- stored runs --------------------------------------------------------------------------------
def stored_runs(who: Session, cfg: DashboardConfig) -> None:
    st.subheader("Your runs")
    db = sources.database(cfg)
    answer = backtest_runs.runs(db, who)
    banner(answer)
    listed = answer.value
    if not listed:
        st.caption("No runs yet.")
        return
    st.dataframe(
        pd.DataFrame([run_line(r, who.user_id) for r in listed]), hide_index=True, key="bt_runs"
    )
    labels = {f"run {r.id} · {rule_text(r)} · {', '.join(r.intervals)} · {span_text(r)}": r
              for r in listed}  # fmt: skip
    pick = st.selectbox("Open a run", ["", *labels], key="bt_open")
    if not pick:
        return
    run = labels[str(pick)]
    st.markdown(f"**Run {run.id}** ({run.status}): {md_escape(rule_text(run))}")
    st.caption(
        f"{md_escape(', '.join(run.intervals))} · {md_escape(symbols_text(run))} · "
        f"{span_text(run)} · {md_escape(source_text(run))}"
    )
    got = backtest_runs.run_signals(db, who, run.id)
    banner(got)
    rows = got.value
    results(rows, backtest_runs.stored_span_ms(run, rows), run.trader_names, f"stored{run.id}")

    def klines_of(symbol: str, interval: str) -> tuple[list[Kline], str]:
        try:
            found = chart_klines(run, symbol, interval, cfg.redis_url, cfg.namespace)
        except Exception as exc:  # Redis away, a recording unreadable: said, page goes on
            return [], f"The klines could not be read: {md_escape(str(exc))[:300]}"
        return found.klines, found.note

    signals_chart(rows, klines_of, run.trader_names, f"stored{run.id}")
    download(rows, run.id, f"stored{run.id}")


@st.cache_data(ttl=600, max_entries=16, show_spinner="Reading the run's klines…")
def chart_klines(
    run: RunRow, symbol: str, interval: str, redis_url: str, namespace: str
) -> ChartKlines:
    """A reopened run's klines (a recording run's are built again: seconds), kept a while."""
    return backtest_runs.run_klines(run, symbol, interval, redis_url, namespace)


def rule_text(r: RunRow) -> str:
    return "; ".join(f"{name}: {rule}" if name else rule for name, rule in r.rules)


def symbols_text(r: RunRow) -> str:
    found = r.symbols
    if not found:
        return "all symbols"
    if len(found) <= SYMBOLS_SHOWN:
        return ", ".join(found)
    return f"{', '.join(found[:SYMBOLS_SHOWN])} + {len(found) - SYMBOLS_SHOWN} more"


def span_text(r: RunRow) -> str:
    """From the first kline's open to the last kline's close, in UTC."""
    if r.span is None:
        return "span not recorded"
    first, last = r.span
    return f"{utc_text(first)} → {utc_text(last + 1)} UTC"


def source_text(r: RunRow) -> str:
    if r.source == FROM_STORED_KLINES:
        return "stored klines"
    folder = backtests.recordings_dir()
    names = []
    for p in r.recordings:
        try:
            names.append(str(p.relative_to(folder)))
        except ValueError:  # elsewhere (the command line's): its name
            names.append(p.name)
    return f"recordings: {', '.join(names)}"


def run_line(r: RunRow, user_id: int) -> dict[str, Any]:
    return {
        "run": r.id,
        "status": r.status,
        "rule": rule_text(r),
        "interval": ", ".join(r.intervals),
        "symbols": symbols_text(r),
        "span (UTC)": span_text(r).removesuffix(" UTC"),
        "source": source_text(r),
        "signals": r.signals,
        "owner": "you" if r.owner_id == user_id else "command line",
        "started (UTC)": f"{r.created_at:%Y-%m-%d %H:%M:%S}",
    }


if __name__ == "__main__":
    render()
