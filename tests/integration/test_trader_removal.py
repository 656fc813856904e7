"""Removing a trader (sql/0011): `klineflow traders remove` and the dashboard's data layer
share one statement; the trader's signals stay (with its name), the running flow's book
drops it at once (LISTEN traders), the removed row can never be switched on or changed, and
its name is free again. Real PostgreSQL, the real watcher, engine and signal writer."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest
import typer
from typer.testing import CliRunner

from dashboard.data.db import Database, WriteRefused
from dashboard.data.users import add_user
from flows.cli.traders import traders_app
from flows.domain.kline import Kline
from flows.signals.book import Book, BookHolder, TraderRow
from flows.signals.engine import EngineCounters, Fire, SymbolEngine
from flows.signals.store import BookWatcher, SignalWriter, TraderStore
from tests.dashboard.conftest import session_for

runner = CliRunner()
app = typer.Typer()
app.add_typer(traders_app, name="traders")
U = 100_000_000
T0 = 1_700_000_000_000 // 3_600_000 * 3_600_000


def cli(db: str, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["traders", *args, "--database-url", db])
    return result.exit_code, result.output


def a_fire(trader: TraderRow, n: int) -> Fire:
    open_ms = T0 + n * 60_000
    return Fire(f"{trader.id}-XRPETH-1m-{open_ms}", trader.id, trader.version, "XRPETH", "1m",
                open_ms, open_ms + 59_999, open_ms, "0.00141500", {"close": 0.001415},
                -1)  # fmt: skip


def signals_of(db: str, trader_id: int) -> list[str]:
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT id FROM signals WHERE trader_id = %s ORDER BY id", (trader_id,)
        ).fetchall()
    return [str(r[0]) for r in rows]


def test_remove_on_the_command_line_keeps_the_signals_and_frees_the_name(signals_db: str) -> None:
    store = TraderStore(signals_db)
    gone = store.add(TraderRow(0, "dips", "close < open", "1m"), owner="ana")
    stays = store.add(TraderRow(0, "rises", "close > open", "1m"), owner="ana")
    writer = SignalWriter(signals_db, record_latency=False)
    assert writer.write([a_fire(gone, 1), a_fire(gone, 2), a_fire(stays, 3)])
    writer.close()
    before = signals_of(signals_db, gone.id)
    assert len(before) == 2

    code, out = cli(signals_db, "remove", "dips")
    assert code == 0, out
    assert out.strip() == f"trader {gone.id} 'dips' removed; its 2 signals stay"
    assert signals_of(signals_db, gone.id) == before  # kept, still naming the trader
    assert [t.name for t in store.all()] == ["rises"]
    # gone from every command, as an unknown trader
    code, out = cli(signals_db, "show", "dips")
    assert code == 1 and "no trader named 'dips'" in out
    code, out = cli(signals_db, "remove", str(gone.id))
    assert code == 1 and f"no trader with id {gone.id}" in out
    # the row stays, off and final: neither SQL nor the store switches it back on
    with psycopg.connect(signals_db) as conn:
        row = conn.execute(
            "SELECT name, enabled, deleted_at IS NOT NULL FROM traders WHERE id = %s", (gone.id,)
        ).fetchone()
        assert row == ("dips", False, True)
        with pytest.raises(psycopg.errors.CheckViolation, match="was removed"):
            conn.execute("UPDATE traders SET enabled = true WHERE id = %s", (gone.id,))
    # the name is free for a new trader of the same owner
    code, out = cli(signals_db, "add", "dips", "close < open", "--interval", "1m", "--owner", "ana")
    assert code == 0, out
    assert sorted(t.name for t in store.all()) == ["dips", "rises"]
    assert signals_of(signals_db, gone.id) == before


def klines(count: int) -> list[tuple[str, Kline]]:
    """Alternating up and down 1m klines: "close > open" holds at every other one."""
    out = []
    for i in range(count):
        lo, hi = 100 * U, 101 * U
        o, c = (lo, hi) if i % 2 == 0 else (hi, lo)
        t = T0 + i * 60_000
        out.append(("1m", Kline(t, t + 59_999, o, hi, lo, c, U, 100 * U, 3, 0, 0)))
    return out


def test_the_running_flow_stops_evaluating_a_removed_trader(signals_db: str) -> None:
    holder = BookHolder()
    watcher = BookWatcher(signals_db, holder, intervals=("1m",), poll_s=60.0)
    watcher.start()

    def wait_for(predicate: Callable[[Book], bool]) -> None:
        for _ in range(200):  # bounded: up to 20 s, woken by each new book
            holder.changed.clear()
            if predicate(holder.book):
                return
            holder.changed.wait(0.1)
        raise AssertionError(f"the book did not follow: {holder.book}")

    try:
        assert watcher.connected.wait(10)
        store = TraderStore(signals_db)
        removed = store.add(TraderRow(0, "ups", "close > open", "1m", trigger_mode="every_close"))
        kept = store.add(TraderRow(0, "downs", "close < open", "1m", trigger_mode="every_close"))
        wait_for(lambda b: {t.id for t in b.traders} == {removed.id, kept.id})
        engine = SymbolEngine("XRPETH")
        bars = klines(6)
        fires, _ = engine.process(bars[:2], holder.book, None, 0, EngineCounters())
        assert {f.trader_id for f in fires} == {removed.id, kept.id}

        store.remove(removed.id)  # no poll: the NOTIFY of the UPDATE reloads the book
        wait_for(lambda b: {t.id for t in b.traders} == {kept.id})
        fires, _ = engine.process(bars[2:], holder.book, None, 0, EngineCounters())
        assert fires and {f.trader_id for f in fires} == {kept.id}
        assert not holder.book.errors
    finally:
        watcher.stop()
        watcher.join(10)


def test_the_dashboard_removes_only_its_users_traders(signals_db: str) -> None:
    ana = add_user(signals_db, "ana", "ana's long password")
    bob = add_user(signals_db, "bob", "bob's long password")
    store = TraderStore(signals_db)
    mine = store.add(TraderRow(0, "mine", "close > open", "1m"), owner="ana")
    theirs = store.add(TraderRow(0, "theirs", "close > open", "1m"), owner="bob")
    writer = SignalWriter(signals_db, record_latency=False)
    assert writer.write([a_fire(mine, 1), a_fire(theirs, 1)])
    writer.close()
    db = Database(signals_db)
    try:
        as_ana = session_for(signals_db, ana)
        with pytest.raises(WriteRefused, match=f"no trader with id {theirs.id}"):
            db.remove_trader(as_ana, theirs.id)
        assert db.remove_trader(as_ana, mine.id).id == mine.id
        assert [t.id for t in db.traders(as_ana).value] == []
        # her signal stays hers, with the trader's name
        (kept,) = db.signals(as_ana).value
        assert (kept.trader_id, kept.trader) == (mine.id, "mine")
        with pytest.raises(WriteRefused, match="no trader with id"):
            db.remove_trader(as_ana, mine.id)  # removed already
        with pytest.raises(WriteRefused, match="no trader with id"):
            db.update_trader(as_ana, mine.id, enabled=True)
        as_bob = session_for(signals_db, bob)
        assert [t.id for t in db.traders(as_bob).value] == [theirs.id]
    finally:
        db.close()
