"""Backtest page: a run over the real XRPETH trades started from the page gives the
statistics a direct backtest gives, is stored as the user's and listed for her only; a bad
rule starts nothing."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from streamlit.testing.v1 import AppTest

from dashboard.data import backtests, sources
from dashboard.data.users import add_user
from dashboard.views.backtest import JOB
from flows.backtest.report import outcomes, summary
from flows.backtest.run import run_backtest
from flows.rules.errors import RuleError
from flows.signals.book import Book, TraderRow, compile_trader
from tests.dashboard.conftest import (
    BOB_PASSWORD,
    PASSWORD,
    XRPETH,
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


def backtest_page(user_id: int | None = None, name: str = "") -> AppTest:
    return open_page("views/backtest.py", user_id, name)


def type_rule(at: AppTest, rule: str) -> None:
    at.multiselect(key="bt_recordings").set_value([XRPETH])
    at.selectbox(key="bt_interval").set_value(INTERVAL)
    at.number_input(key="bt_cooldown").set_value(COOLDOWN)
    at.text_area(key="bt_rule").input(rule).run()
    no_exceptions(at)


def start_button(at: AppTest) -> Any:
    return next(b for b in at.button if b.label == "Start backtest")


def stats_tables(at: AppTest) -> list[list[dict[str, Any]]]:
    """The statistics tables on the page, in order (the session's run, then an opened one)."""
    return [d.value.to_dict("records") for d in at.dataframe if "ret15_mean" in d.value.columns]


def same_stats(shown: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert len(shown) == len(expected) > 0
    for got, want in zip(shown, expected, strict=True):
        for column, value in want.items():
            if value is None:
                assert got[column] is None or math.isnan(got[column]), column
            else:
                assert got[column] == value, column


def direct_stats(path: Path, redis_url: str) -> tuple[list[dict[str, Any]], list[Any]]:
    row = TraderRow(0, "typed rule", RULE, INTERVAL, trigger_mode="on_change",
                    cooldown_bars=COOLDOWN)  # fmt: skip
    book = Book((compile_trader(row),), version=1)
    needed = sorted({iv for t in book.traders for iv in (*t.program.requirements, t.row.interval)})
    result = run_backtest([path], book, tuple(needed), redis_url)
    rows = outcomes(result.signals, result.klines)
    span = max(ks[-1].close_ms - ks[0].open_ms for ks in result.klines.values() if ks)
    return summary(rows, span), rows


def test_signed_out_sees_an_invitation(users: Users) -> None:
    at = backtest_page()
    assert [i.value for i in at.info] == ["Sign in to run backtests"]


def test_a_run_from_the_page_is_the_backtest_and_is_stored_as_the_users(
    users: Users, redis_url: str
) -> None:
    at = backtest_page(users.ana, "ana")
    assert at.multiselect(key="bt_recordings").options == [XRPETH]
    type_rule(at, RULE)
    assert not at.error
    start_button(at).click().run()
    no_exceptions(at)
    job = at.session_state[JOB]
    polls = 0
    saw_progress = False
    while not job.done and polls < POLLS:
        job.wait(0.5)
        at.run()
        no_exceptions(at)
        saw_progress = saw_progress or bool(at.get("progress"))
        polls += 1
    assert job.done, "the run did not finish"
    assert job.error is None, job.error
    at.run()
    no_exceptions(at)
    if polls > 1:  # it was still going after the first rerun: the bar was drawn
        assert saw_progress
    run_id = job.finished.run_id

    # the statistics are summary(outcomes(...)) of the same backtest run directly
    expected, direct_rows = direct_stats(users.folder / XRPETH, redis_url)
    (shown,) = stats_tables(at)
    same_stats(shown, expected)
    assert {r["trader"] for r in shown} == {"typed rule"}

    # the histogram of the 15-bar returns, and the signals on the chart
    specs = [chart_spec(c) for c in charts(at)]
    (hist,) = [
        c for c, s in zip(charts(at), specs, strict=True) if s.get("name") == "returns histogram"
    ]
    data = chart_datasets(hist)
    counted = sum(t.num_rows for t in data.values())
    assert counted == len([r for r in direct_rows if r.returns[15] is not None])
    (candles,) = [
        c
        for c, s in zip(charts(at), specs, strict=True)
        if any(n.startswith("signals") for n in view_names(s))
    ]
    tables = chart_datasets(candles)
    (drawn,) = [t.to_pydict() for t in tables.values() if "open" in t.column_names]
    (marked,) = [t.to_pydict() for t in tables.values() if "label" in t.column_names]
    first = drawn["t"][0]
    fired = {r.signal.fire.open_ms for r in direct_rows if r.signal.fire.open_ms >= first}
    assert fired and set(marked["t"]) == fired

    # stored as ana's, with its signals and their outcomes
    with psycopg.connect(users.database_url) as conn:
        owner, status, params = conn.execute(
            "SELECT owner_id, status, params FROM backtest_runs WHERE id = %s", (run_id,)
        ).fetchone()  # type: ignore[misc]
        stored = conn.execute(
            "SELECT count(*) FROM backtest_signals WHERE run_id = %s", (run_id,)
        ).fetchone()
    assert (owner, status) == (users.ana, "done")
    assert stored == (len(direct_rows),)
    assert params["intervals"] == [INTERVAL]

    # listed for ana, and opened again: the same statistics from the stored outcomes
    runs_table = next(d.value for d in at.dataframe if "owner" in d.value.columns)
    line = runs_table[runs_table["run"] == run_id].to_dict("records")
    assert line and line[0]["owner"] == "you" and line[0]["recordings"] == XRPETH
    pick = at.selectbox(key="bt_open")
    label = next(o for o in pick.options if o.startswith(f"run {run_id} "))
    pick.set_value(label).run()
    no_exceptions(at)
    this, opened = stats_tables(at)
    same_stats(this, expected)
    same_stats(opened, expected)
    assert len(at.get("download_button")) == 2
    db = sources.database()
    ana, bob = (
        session_for(users.database_url, users.ana),
        session_for(users.database_url, users.bob),
    )
    assert backtests.export_csv(backtests.run_signals(db, ana, run_id).value) == (
        backtests.export_csv(direct_rows)
    )

    # bob sees neither the run in his list nor its signals
    assert run_id not in [r.id for r in backtests.runs(db, bob).value]
    assert backtests.run_signals(db, bob, run_id).value == []
    other = backtest_page(users.bob, "bob")
    assert not any("owner" in d.value.columns for d in other.dataframe)
    assert "No runs yet." in [c.value for c in other.caption]


def test_a_bad_rule_shows_a_caret_and_starts_nothing(users: Users) -> None:
    at = backtest_page(users.ana, "ana")
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
    type_rule(at, RULE)
    assert start_button(at).disabled
