"""Backtests through the live dataflow: the signals equal those a replay writes to PostgreSQL
(same ids, repeat counts, values), exports are byte-identical run to run, and both a
data.binance.vision dump and a WebSocket capture work as input."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from flows.backtest.report import export, outcomes, summary
from flows.backtest.run import file_sha256, run_backtest
from flows.dataflows.replay import ReplayJob, run_replay
from flows.domain.keys import KeySpace
from flows.signals.book import TraderRow, build_book
from flows.signals.store import TraderStore

XRPETH = "XRPETH-aggTrades-20191011-20191013.csv"
RULES = [
    ("up bars", "close > open", "1m", "every_close", 10),
    ("rsi dip", "rsi(14) < 35", "5m", "on_change", 6),
    ("mtf", 'close > ema(20, tf="5m") and volume > avg_volume(20)', "1m", "on_change", 3),
]


def test_a_backtest_gives_the_signals_the_flow_writes_to_postgresql(
    shared_data: Path, redis_url: str, keys: KeySpace, signals_db: str
) -> None:
    store = TraderStore(signals_db)
    rows = [
        store.add(TraderRow(0, name, expr, iv, trigger_mode=mode, cooldown_bars=cd))
        for name, expr, iv, mode, cd in RULES
    ]
    run_replay(
        ReplayJob(paths=[shared_data / XRPETH], redis_url=redis_url, intervals=("1m", "5m"),
                  keys=keys, database_url=signals_db)
    )  # fmt: skip
    with psycopg.connect(signals_db) as conn:
        written = {
            (sid, count, json.dumps(values, sort_keys=True))
            for sid, count, values in conn.execute(
                'SELECT id, repeat_count, "values" FROM signals'
            ).fetchall()
        }
    result = run_backtest([shared_data / XRPETH], build_book(rows), ("1m", "5m"), redis_url)
    got = {
        (s.fire.id, s.repeat_count, json.dumps(s.fire.values, sort_keys=True))
        for s in result.signals
    }
    assert len(got) > 100
    assert got == written


def test_a_backtest_run_twice_exports_the_same_bytes(
    shared_data: Path, redis_url: str, tmp_path: Path
) -> None:
    book = build_book([TraderRow(i + 1, n, e, iv, trigger_mode=m, cooldown_bars=c)
                       for i, (n, e, iv, m, c) in enumerate(RULES)])  # fmt: skip
    outs = []
    for run in range(2):
        result = run_backtest([shared_data / XRPETH], book, ("1m", "5m"), redis_url)
        rows = outcomes(result.signals, result.klines)
        for suffix in (".csv", ".parquet"):
            path = tmp_path / f"run{run}{suffix}"
            export(rows, path)
            outs.append(path.read_bytes())
        stats = summary(rows, 3 * 86_400_000)
        assert {line["trader_id"] for line in stats} == {1, 2, 3}
    assert outs[0] == outs[2] and outs[1] == outs[3]
    assert outs[0].count(b"\n") > 100


@pytest.mark.parametrize(
    ("name", "symbol"),
    [(XRPETH, "XRPETH"), ("ws-capture-2021-04-04-btc-eth-dot.txt", "BTCUSDT")],
)
def test_backtests_read_a_dump_and_a_capture(
    shared_data: Path, redis_url: str, name: str, symbol: str | None
) -> None:
    book = build_book([TraderRow(1, "any bar", "close >= open or close < open", "1m",
                                 trigger_mode="every_close", cooldown_bars=0)])  # fmt: skip
    path = shared_data / name
    if not path.exists():
        pytest.fail(f"missing recording {path}")
    result = run_backtest([path], book, ("1m",), redis_url)
    assert result.signals, "every closed kline should have fired"
    if symbol is not None:
        assert symbol in {s.fire.symbol for s in result.signals}
    # every closed 1m kline (not the last, closed only by the end of input) fired once
    for (sym, _), ks in result.klines.items():
        fired = sorted(s.fire.open_ms for s in result.signals if s.fire.symbol == sym)
        assert fired == [k.open_ms for k in ks[:-1]]


def test_the_backtest_command_stores_the_run_and_exports_it(
    shared_data: Path, redis_url: str, signals_db: str, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    out = tmp_path / "signals.csv"
    args = ["backtest", "--data", str(shared_data / XRPETH), "--expr", "close > open",
            "--interval", "5m", "--trigger", "every_close", "--out", str(out), "--no-progress",
            "--redis-url", redis_url, "--database-url", signals_db]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert lines[0].startswith("id,trader_id,trader_version,symbol,interval")
    with psycopg.connect(signals_db) as conn:
        run = conn.execute(
            "SELECT id, status, inputs, traders, trades FROM backtest_runs"
        ).fetchall()
        stored = conn.execute("SELECT count(*) FROM backtest_signals").fetchone()
    assert len(run) == 1
    run_id, status, inputs, traders, trades = run[0]
    assert status == "done" and trades == 12_477
    assert inputs[0]["sha256"] == file_sha256(shared_data / XRPETH)
    assert traders[0]["expression"] == "close > open"
    assert stored is not None and stored[0] == len(lines) - 1 > 300
    assert f"backtest run {run_id}" in result.output
