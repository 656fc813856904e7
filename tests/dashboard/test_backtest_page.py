"""Backtest page: a run over the real XRPETH trades started from the page gives the
statistics a direct backtest gives (under readable names, in a layout a phone shows whole),
is stored as the user's, listed with its rule, interval, symbols, span and source, and draws
its chart when opened again from the list (klines built again from the recording); a run over
the klines stored in Redis fires where TA-Lib says the rule holds; a bad rule starts nothing."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
import talib
from streamlit.testing.v1 import AppTest

from dashboard.data import backtest_runs, backtests, sources
from dashboard.data.users import add_user
from dashboard.views.backtest import JOB
from flows.backtest.report import HORIZONS, SignalOutcome, outcomes, summary
from flows.backtest.run import run_backtest
from flows.domain.keys import KeySpace
from flows.domain.kline import Kline, decode_member, kline_of_row
from flows.rules.errors import RuleError
from flows.signals.book import Book, TraderRow, compile_trader
from tests.dashboard.conftest import (
    BOB_PASSWORD,
    PASSWORD,
    XRPETH,
    Filled,
    as_user,
    chart_datasets,
    chart_spec,
    charts,
    make_app,
    no_exceptions,
    open_page,
    session_for,
    view_names,
)

RULE = "rsi(14) < 35"
INTERVAL = "5m"
COOLDOWN = 6
POLLS = 600  # at most this many reruns (half a second apart) while the run goes on
RAW_NAME = re.compile(r"\b(ret|mfe|mae)\d+_|signals_per_day|hit_rate")


@dataclass(frozen=True)
class Users:
    database_url: str
    ana: int
    bob: int
    folder: Path


@pytest.fixture
def users(
    shared_data: Path,
    signals_db: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    app_env: None,
) -> Iterator[Users]:
    folder = tmp_path / "recordings"
    folder.mkdir()
    (folder / XRPETH).symlink_to(shared_data / XRPETH)
    (folder / "notes.md").write_text("not a recording")
    monkeypatch.setenv(backtests.RECORDINGS_ENV, str(folder))
    ana = add_user(signals_db, "ana", PASSWORD)
    bob = add_user(signals_db, "bob", BOB_PASSWORD)
    yield Users(signals_db, ana, bob, folder)


@pytest.fixture
def stored_users(
    filled: Filled, app_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Users:
    """ana and bob with the klines of a replay of XRPETH stored in Redis (1m, 5m)."""
    folder = tmp_path / "recordings"
    folder.mkdir()
    monkeypatch.setenv(backtests.RECORDINGS_ENV, str(folder))
    return Users(filled.database_url, filled.ana, filled.bob, folder)


def backtest_page(user_id: int | None = None, name: str = "") -> AppTest:
    return open_page("views/backtest.py", user_id, name)


def type_rule(at: AppTest, rule: str, interval: str = INTERVAL, cooldown: int = COOLDOWN) -> None:
    at.selectbox(key="bt_interval").set_value(interval)
    at.number_input(key="bt_cooldown").set_value(cooldown)
    at.text_area(key="bt_rule").input(rule).run()
    no_exceptions(at)


def start_button(at: AppTest) -> Any:
    return next(b for b in at.button if b.label == "Start backtest")


def run_to_the_end(at: AppTest) -> Any:
    """Press Start, rerun the page until the run is over; the finished job."""
    start_button(at).click().run()
    no_exceptions(at)
    job = at.session_state[JOB]
    polls = 0
    while not job.done and polls < POLLS:
        job.wait(0.5)
        at.run()
        no_exceptions(at)
        polls += 1
    assert job.done, "the run did not finish"
    assert job.error is None, job.error
    at.run()
    no_exceptions(at)
    return job


# -- the statistics as the page shows them -------------------------------------------------------
def expected_labels(n: int) -> dict[str, str]:
    """The readable name of each statistic of `summary` for horizon n (what an analyst reads)."""
    bars = "1 bar" if n == 1 else f"{n} bars"
    return {
        f"ret{n}_mean": f"mean return after {bars}, %",
        f"ret{n}_median": f"median return after {bars}, %",
        f"ret{n}_hit_rate": f"hit rate after {bars} (returns above 0), %",
        f"mfe{n}_mean": f"mean best move within {bars} (MFE), %",
        f"mae{n}_mean": f"mean worst move within {bars} (MAE), %",
    }


def agrees(shown: str, value: float | int | None, key: str) -> bool:
    """Whether a value as printed is `value` (a fraction for the % statistics), to the
    printed digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return shown == "–"
    number = float(shown.replace(",", ""))
    if key in ("signals", "signals_per_day"):
        return abs(number - float(value)) <= 0.005 + 1e-9
    digits = len(shown.split(".")[1]) if "." in shown else 0
    return abs(number - float(value) * 100) <= 0.5 * 10**-digits + 1e-9


def check_statistics(at: AppTest, expected: dict[str, Any], table: int = 0) -> None:
    """The metrics (horizon 15) and the every-statistic table of one group are `expected`
    (a line of summary), under readable names; no raw column name anywhere on the page."""
    metrics = {m.label: m.value for m in at.metric}
    names = {"signals": "signals", "signals_per_day": "signals per day", **expected_labels(15)}
    for key, label in names.items():
        assert label in metrics, (label, list(metrics))
        assert agrees(metrics[label], expected[key], key), (label, metrics[label], expected[key])
    frame = at.table[table].value
    assert list(frame.columns) == ["statistic", "value"]  # two columns: fits a phone
    rows = dict(zip(frame["statistic"], frame["value"], strict=True))
    every = {"signals": "signals", "signals_per_day": "signals per day"}
    for n in HORIZONS:
        every.update(expected_labels(n))
    assert set(rows) == set(every.values())
    for key, label in every.items():
        assert agrees(rows[label], expected[key], key), (label, rows[label], expected[key])
    texts = [str(e.value) for kind in ("markdown", "caption", "metric", "selectbox") for e in
             at.get(kind) if hasattr(e, "value")]  # fmt: skip
    texts += [m.label for m in at.metric] + [str(c) for d in at.dataframe for c in d.value.columns]
    assert not [t for t in texts if RAW_NAME.search(t)]


def direct_backtest(path: Path, redis_url: str) -> tuple[list[dict[str, Any]], list[Any], Any]:
    row = TraderRow(0, "typed rule", RULE, INTERVAL, trigger_mode="on_change",
                    cooldown_bars=COOLDOWN)  # fmt: skip
    book = Book((compile_trader(row),), version=1)
    needed = sorted({iv for t in book.traders for iv in (*t.program.requirements, t.row.interval)})
    result = run_backtest([path], book, tuple(needed), redis_url)
    rows = outcomes(result.signals, result.klines)
    span = max(ks[-1].close_ms - ks[0].open_ms for ks in result.klines.values() if ks)
    return summary(rows, span), rows, result


def signals_on_chart(at: AppTest) -> tuple[list[int], list[int]]:
    """(open times of the candles drawn, open times marked as signals) of the last chart of
    backtest signals on the page."""
    specs = [(c, chart_spec(c)) for c in charts(at)]
    found = [c for c, s in specs if any(n.startswith("signals") for n in view_names(s))]
    assert found, "no chart of signals"
    tables = chart_datasets(found[-1])
    (drawn,) = [t.to_pydict() for t in tables.values() if "open" in t.column_names]
    (marked,) = [t.to_pydict() for t in tables.values() if "label" in t.column_names]
    return list(drawn["t"]), list(marked["t"])


def runs_line(at: AppTest, run_id: int) -> dict[str, Any]:
    table = next(d.value for d in at.dataframe if "rule" in d.value.columns)
    line = table[table["run"] == run_id].to_dict("records")
    assert line, f"run {run_id} is not listed"
    return dict(line[0])


def utc_minute(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def open_run(at: AppTest, run_id: int) -> None:
    pick = at.selectbox(key="bt_open")
    label = next(o for o in pick.options if o.startswith(f"run {run_id} "))
    pick.set_value(label).run()
    no_exceptions(at)


def test_signed_out_sees_an_invitation(users: Users) -> None:
    at = backtest_page()
    assert [i.value for i in at.info] == ["Sign in to run backtests"]


def test_a_run_from_the_page_is_the_backtest_and_is_stored_as_the_users(
    users: Users, redis_url: str
) -> None:
    at = backtest_page(users.ana, "ana")
    assert at.radio(key="bt_data").value == "Recordings"
    assert at.multiselect(key="bt_recordings").options == [XRPETH]
    at.multiselect(key="bt_recordings").set_value([XRPETH])
    type_rule(at, RULE)
    assert not at.error
    job = run_to_the_end(at)
    run_id = job.finished.run_id

    # the statistics are summary(outcomes(...)) of the same backtest run directly, under
    # readable names: metrics and a two-column table (nothing wider than a phone)
    expected, direct_rows, direct = direct_backtest(users.folder / XRPETH, redis_url)
    (line,) = expected
    check_statistics(at, line)
    at.selectbox(key=f"bt_h_run{run_id}").set_value(1).run()
    assert {m.label for m in at.metric} >= set(expected_labels(1).values())

    # the histogram of the 1-bar returns, and the signals on the chart
    specs = [chart_spec(c) for c in charts(at)]
    (hist,) = [c for c, s in zip(charts(at), specs, strict=True)
               if s.get("name") == "returns histogram"]  # fmt: skip
    counted = sum(t.num_rows for t in chart_datasets(hist).values())
    assert counted == len([r for r in direct_rows if r.returns[1] is not None])
    drawn, marked = signals_on_chart(at)
    fired = {r.signal.fire.open_ms for r in direct_rows if r.signal.fire.open_ms >= drawn[0]}
    assert fired and set(marked) == fired

    # stored as ana's, with its signals and their outcomes, and what it covered
    with psycopg.connect(users.database_url) as conn:
        owner, status, params = conn.execute(
            "SELECT owner_id, status, params FROM backtest_runs WHERE id = %s", (run_id,)
        ).fetchone()  # type: ignore[misc]
        stored = conn.execute(
            "SELECT count(*) FROM backtest_signals WHERE run_id = %s", (run_id,)
        ).fetchone()
    assert (owner, status) == (users.ana, "done")
    assert stored == (len(direct_rows),)
    assert params["intervals"] == [INTERVAL] and params["source"] == "recordings"
    bars = direct.klines[("XRPETH", INTERVAL)]
    assert (params["first_open_ms"], params["last_close_ms"]) == (bars[0].open_ms,
                                                                  bars[-1].close_ms)  # fmt: skip

    # listed for ana with its rule, interval, symbols, span and source
    listed = runs_line(at, run_id)
    assert listed["owner"] == "you" and listed["rule"] == RULE
    assert (listed["interval"], listed["symbols"]) == (INTERVAL, "XRPETH")
    assert listed["span (UTC)"] == f"{utc_minute(bars[0].open_ms)} → " + utc_minute(
        bars[-1].close_ms + 1
    )
    assert listed["source"] == f"recordings: {XRPETH}"
    assert "typed rule" not in " ".join(str(v) for v in listed.values())

    # opened again in another session: the same statistics from the stored outcomes, and the
    # chart, its klines built again from the recording
    again = backtest_page(users.ana, "ana")
    open_run(again, run_id)
    check_statistics(again, line)
    drawn_again, marked_again = signals_on_chart(again)
    assert drawn_again == [k.open_ms for k in bars][-len(drawn_again) :]
    assert set(marked_again) == {r.signal.fire.open_ms for r in direct_rows
                                 if r.signal.fire.open_ms >= drawn_again[0]}  # fmt: skip
    assert len(again.get("download_button")) == 1
    db = sources.database()
    ana = session_for(users.database_url, users.ana)
    bob = session_for(users.database_url, users.bob)
    assert backtests.export_csv(backtest_runs.run_signals(db, ana, run_id).value) == (
        backtests.export_csv(direct_rows)
    )

    # bob sees neither the run in his list nor its signals
    assert run_id not in [r.id for r in backtest_runs.runs(db, bob).value]
    assert backtest_runs.run_signals(db, bob, run_id).value == []
    other = backtest_page(users.bob, "bob")
    assert not any("rule" in d.value.columns for d in other.dataframe)
    assert "No runs yet." in [c.value for c in other.caption]


def test_a_bad_rule_shows_a_caret_and_starts_nothing(users: Users) -> None:
    at = backtest_page(users.ana, "ana")
    at.multiselect(key="bt_recordings").set_value([XRPETH])
    bad = "rsi(14) < 30 and emma(9) > close"
    type_rule(at, bad)
    with pytest.raises(RuleError) as caught:
        compile_trader(TraderRow(0, "x", bad, INTERVAL))
    err = caught.value
    (shown,) = [e.value.replace("\\", "") for e in at.error]
    assert err.message in shown and f"character {err.position + 1}" in shown
    (code,) = [c.value for c in at.code]
    line, caret = code.split("\n")
    assert line == bad and caret == " " * err.position + "^"
    assert start_button(at).disabled  # (a browser cannot press it; AppTest refuses too)
    at.run()
    no_exceptions(at)
    assert JOB not in at.session_state
    with psycopg.connect(users.database_url) as conn:
        assert conn.execute("SELECT count(*) FROM backtest_runs").fetchone() == (0,)


def test_a_run_going_on_shows_its_progress_and_blocks_another(users: Users) -> None:
    # a job as the page keeps it, a quarter through its input (its thread never started)
    job = backtests.BacktestJob(
        backtests.RunRequest((users.folder / XRPETH,), ()),
        session_for(users.database_url, users.ana),
        sources.database(),
    )
    job.stats.bytes_total, job.stats.bytes_done, job.stats.trades_read = 1000, 250, 1234
    at = make_app()
    as_user(at, users.ana, "ana")
    at.session_state[JOB] = job
    at.run()
    at.switch_page("views/backtest.py").run()
    no_exceptions(at)
    (bar,) = at.get("progress")
    assert bar.proto.value == 25
    assert "25.0% of the input read, 1,234 trades" in bar.proto.text
    at.multiselect(key="bt_recordings").set_value([XRPETH])
    type_rule(at, RULE)
    assert start_button(at).disabled


# -- over the klines stored in Redis ---------------------------------------------------------------
STORED_RULE = "close > sma(20)"


def stored(redis_url: str, keys: KeySpace, symbol: str, interval: str) -> list[Kline]:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        members = client.zrange(keys.klines(symbol, interval), 0, -1)
        last = int(client.get(keys.last_closed(symbol, interval)))  # type: ignore[arg-type]
    finally:
        client.close()
    return [k for k in (kline_of_row(decode_member(m)) for m in members) if k.open_ms <= last]


def talib_fires(bars: list[Kline], since_ms: int) -> list[int]:
    """Open times of the klines at or after `since_ms` where close > SMA(20) of the closes,
    by TA-Lib over every stored kline."""
    closes = np.array([k.close / 1e8 for k in bars])
    sma = talib.SMA(closes, timeperiod=20)
    return [k.open_ms for k, c, m in zip(bars, closes, sma, strict=True)
            if k.open_ms >= since_ms and not math.isnan(m) and c > m]  # fmt: skip


def test_a_run_over_the_stored_klines_fires_where_talib_says(
    filled: Filled, stored_users: Users
) -> None:
    users = stored_users
    at = backtest_page(users.ana, "ana")
    at.radio(key="bt_data").set_value("Stored klines").run()
    no_exceptions(at)
    assert "XRPETH" in at.multiselect(key="bt_kl_symbols").options
    at.multiselect(key="bt_kl_symbols").set_value(["XRPETH"])
    at.selectbox(key="bt_span").set_value("last 24 hours")
    at.radio(key="bt_trigger").set_value("every_close")
    type_rule(at, STORED_RULE, INTERVAL, 0)
    job = run_to_the_end(at)
    run_id = job.finished.run_id

    # the span: the day before the newest closed 5m kline's close; the rule warmed up on the
    # klines stored before it (TA-Lib over all of them agrees from the span's first kline)
    bars = stored(filled.redis_url, filled.keys, "XRPETH", INTERVAL)
    end_ms = bars[-1].close_ms + 1
    since = end_ms - 24 * 3_600_000
    expected = talib_fires(bars, since)
    fired = [r.signal.fire.open_ms for r in job.finished.rows]
    assert expected and fired == expected
    assert fired[0] - since < 20 * 300_000  # it fired before 20 bars of the span had passed
    in_span = [k for k in bars if k.open_ms >= since]

    # the statistics: forward returns of those klines, computed here
    index = {k.open_ms: i for i, k in enumerate(bars)}

    def ret(open_ms: int, n: int) -> float | None:
        i = index[open_ms]
        return bars[i + n].close / bars[i].close - 1 if i + n < len(bars) else None

    rets = [v for t in fired if (v := ret(t, 15)) is not None]
    line = {"signals": len(fired), "ret15_mean": sum(rets) / len(rets),
            "ret15_hit_rate": sum(v > 0 for v in rets) / len(rets)}  # fmt: skip
    metrics = {m.label: m.value for m in at.metric}
    assert agrees(metrics["signals"], line["signals"], "signals")
    assert agrees(metrics["mean return after 15 bars, %"], line["ret15_mean"], "ret15_mean")
    assert agrees(metrics["hit rate after 15 bars (returns above 0), %"],
                  line["ret15_hit_rate"], "ret15_hit_rate")  # fmt: skip

    # stored like a recording run, and listed with what it covered
    with psycopg.connect(users.database_url) as conn:
        status, params, inputs, count = conn.execute(
            "SELECT status, params, inputs, (SELECT count(*) FROM backtest_signals "
            "WHERE run_id = r.id) FROM backtest_runs r WHERE id = %s", (run_id,),
        ).fetchone()  # type: ignore[misc]  # fmt: skip
    assert (status, inputs, count) == ("done", [], len(fired))
    assert params["source"] == "stored klines" and params["symbols_seen"] == ["XRPETH"]
    assert (params["first_open_ms"], params["last_close_ms"]) == (
        in_span[0].open_ms, in_span[-1].close_ms)  # fmt: skip
    listed = runs_line(at, run_id)
    assert (listed["rule"], listed["interval"], listed["symbols"], listed["source"]) == (
        STORED_RULE, INTERVAL, "XRPETH", "stored klines")  # fmt: skip
    assert listed["span (UTC)"] == f"{utc_minute(in_span[0].open_ms)} → {utc_minute(end_ms)}"

    # opened again in another session: its chart, from the klines stored in Redis
    again = backtest_page(users.ana, "ana")
    open_run(again, run_id)
    drawn, marked = signals_on_chart(again)
    assert drawn == [k.open_ms for k in in_span]
    assert marked == [t for t in fired if t >= drawn[0]]
    assert any("stored in Redis" in c.value for c in again.caption)


def test_a_stored_trader_is_listed_by_name_and_rule(filled: Filled, stored_users: Users) -> None:
    """A run of a stored trader: the list says the trader's name and its rule."""
    at = backtest_page(filled.ana, "ana")
    at.radio(key="bt_data").set_value("Stored klines").run()
    at.multiselect(key="bt_kl_symbols").set_value(["XRPETH"])
    at.radio(key="bt_source").set_value("My traders").run()
    mine = at.multiselect(key="bt_traders")
    (label,) = [o for o in mine.options if o.startswith(filled.ana_trader.name)]
    mine.set_value([label]).run()
    job = run_to_the_end(at)
    listed = runs_line(at, job.finished.run_id)
    trader = filled.ana_trader
    assert listed["rule"] == f"{trader.name}: {trader.expression}"
    assert listed["interval"] == trader.interval
    assert job.finished.rows and all(isinstance(r, SignalOutcome) for r in job.finished.rows)


def test_a_rule_reading_klines_that_are_not_stored_says_so(
    filled: Filled, stored_users: Users
) -> None:
    """The flow built 1m and 5m only: a rule reading 1h bars over the stored klines fails
    with what is missing (and the run is marked failed), instead of never being ready."""
    at = backtest_page(stored_users.ana, "ana")
    at.radio(key="bt_data").set_value("Stored klines").run()
    at.multiselect(key="bt_kl_symbols").set_value(["XRPETH"])
    type_rule(at, 'rsi(14, tf="1h") < 30', INTERVAL, 0)
    start_button(at).click().run()
    job = at.session_state[JOB]
    assert job.wait(120)
    at.run()
    no_exceptions(at)
    assert job.error is not None and "1h" in job.error and "tf=" in job.error
    (shown,) = [e.value for e in at.error]
    assert f"run {job.run_id}, marked failed" in shown
    with psycopg.connect(stored_users.database_url) as conn:
        row = conn.execute("SELECT status FROM backtest_runs WHERE id = %s", (job.run_id,))
        assert row.fetchone() == ("failed",)
