"""Row-level security, by SQL as the dashboard role: a user (named by her session's token)
reads and changes only her own traders and signals, whatever the query says; and the data
layer's pooled connections never keep a user's identity after a transaction."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from dashboard.data.db import Database, Session, SessionEnded
from dashboard.data.users import sign_out
from tests.dashboard.conftest import Filled, session_for


@contextmanager
def acting_as(url: str, user_id: int | None) -> Iterator[psycopg.Connection[Any]]:
    """One transaction as klineflow_dashboard with a new session of `user_id` (rolled back
    afterwards)."""
    token = session_for(url, user_id).token if user_id is not None else None
    with psycopg.connect(url) as conn:
        conn.execute("SET LOCAL ROLE klineflow_dashboard")
        if token is not None:
            conn.execute("SELECT set_config('klineflow.session', %s, true)", (token,))
        yield conn
        conn.rollback()


def count(url: str, sql: str, params: tuple[Any, ...] = ()) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql, params).fetchone()
        assert row is not None
        return int(row[0])


def test_a_user_reads_only_her_own_traders_and_signals(filled: Filled) -> None:
    url = filled.database_url
    for user, trader in ((filled.ana, filled.ana_trader), (filled.bob, filled.bob_trader)):
        with acting_as(url, user) as conn:
            assert [r[0] for r in conn.execute("SELECT id FROM traders")] == [trader.id]
            got = {r[0] for r in conn.execute("SELECT DISTINCT trader_id FROM signals")}
            assert got == {trader.id}
            n = conn.execute("SELECT count(*) FROM signals").fetchone()
            assert n is not None and n[0] == count(
                url, "SELECT count(*) FROM signals WHERE trader_id = %s", (trader.id,)
            )
            # asking for the other user's rows by id finds nothing
            other = filled.bob_trader if trader is filled.ana_trader else filled.ana_trader
            assert conn.execute("SELECT * FROM traders WHERE id = %s", (other.id,)).fetchall() == []
            assert (
                conn.execute("SELECT * FROM signals WHERE trader_id = %s", (other.id,)).fetchall()
                == []
            )
    # no user named: nothing at all
    with acting_as(url, None) as conn:
        assert conn.execute("SELECT count(*) FROM traders").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM signals").fetchone() == (0,)


def test_a_user_cannot_change_another_users_traders_or_signals(filled: Filled) -> None:
    url = filled.database_url
    bob_trader = filled.bob_trader.id
    bob_signals = count(url, "SELECT count(*) FROM signals WHERE trader_id = %s", (bob_trader,))
    with acting_as(url, filled.ana) as conn:
        cur = conn.execute("UPDATE traders SET expression = 'close > 0' WHERE id = %s",
                           (bob_trader,))  # fmt: skip
        assert cur.rowcount == 0
        cur = conn.execute("UPDATE signals SET status = 'dismissed' WHERE trader_id = %s",
                           (bob_trader,))  # fmt: skip
        assert cur.rowcount == 0
        # her own signals' status she may change
        cur = conn.execute("UPDATE signals SET status = 'seen' WHERE trader_id = %s",
                           (filled.ana_trader.id,))  # fmt: skip
        assert cur.rowcount > 0
    with acting_as(url, filled.ana) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(
            "INSERT INTO traders (owner_id, name, expression, interval) "
            "VALUES (%s, 'planted', 'close > open', '1m')",
            (filled.bob,),
        )
    with acting_as(url, filled.ana) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        # giving her own trader away is refused too (WITH CHECK)
        conn.execute("UPDATE traders SET owner_id = %s WHERE id = %s",
                     (filled.bob, filled.ana_trader.id))  # fmt: skip
    with acting_as(url, filled.ana) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(
            "INSERT INTO signals (id, trader_id, trader_version, symbol, interval, "
            "kline_open_ms, kline_close_ms, price) VALUES ('x', %s, 1, 'XRPETH', '5m', 0, 1, 1)",
            (bob_trader,),
        )
    for trader in (bob_trader, filled.ana_trader.id):  # traders are removed, never deleted
        with (
            acting_as(url, filled.ana) as conn,
            pytest.raises(psycopg.errors.InsufficientPrivilege),
        ):
            conn.execute("DELETE FROM traders WHERE id = %s", (trader,))
    with acting_as(url, filled.ana) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT password_hash FROM users")
    # nothing of bob's changed
    with psycopg.connect(url) as conn:
        assert conn.execute(
            "SELECT owner_id, expression FROM traders WHERE id = %s", (bob_trader,)
        ).fetchone() == (filled.bob, "rsi(14) < 40")
        assert conn.execute(
            "SELECT count(*), bool_and(status = 'new') FROM signals WHERE trader_id = %s",
            (bob_trader,),
        ).fetchone() == (bob_signals, True)
        assert conn.execute("SELECT count(*) FROM traders WHERE name = 'planted'").fetchone() == (
            0,
        )


def test_the_data_layer_acts_for_one_user_per_transaction_only(filled: Filled) -> None:
    url = filled.database_url
    ana, bob = session_for(url, filled.ana), session_for(url, filled.bob)
    db = Database(url, max_size=1)  # one connection: every call reuses it
    try:
        assert [t.id for t in db.traders(ana).value] == [filled.ana_trader.id]
        assert {s.trader_id for s in db.signals(bob).value} == {filled.bob_trader.id}
        with db.pool.connection() as conn:
            row = conn.execute(
                "SELECT current_user, session_user, "
                "coalesce(current_setting('klineflow.session', true), ''), "
                "klineflow_current_user_id()"
            ).fetchone()
        assert row is not None and row[0] == row[1] and row[2] == "" and row[3] is None
        # a write for ana cannot touch bob's trader
        from dashboard.data.db import WriteRefused

        with pytest.raises(WriteRefused):
            db.update_trader(ana, filled.bob_trader.id, enabled=False)
        # a session that ended, or a token that is not one, names nobody: refused outright
        assert db.session_live(ana)
        assert sign_out(url, ana) and not db.session_live(ana)
        with pytest.raises(SessionEnded):
            db.traders(ana)
        forged = Session(filled.bob, "bob", "0" * 64, bob.expires_at)
        with pytest.raises(SessionEnded):
            db.traders(forged)
        assert [t.id for t in db.traders(bob).value] == [filled.bob_trader.id]
    finally:
        db.close()


def test_the_current_user_is_looked_up_once_per_query(filled: Filled) -> None:
    """The policies call klineflow_current_user_id() through a scalar subquery: PostgreSQL
    evaluates it once per query (an InitPlan), not once per signal or trader row."""
    url = filled.database_url
    with psycopg.connect(url) as conn:
        total = conn.execute("SELECT count(*) FROM signals").fetchone()
    assert total is not None and total[0] > 10
    with acting_as(url, filled.ana) as conn:
        conn.execute("RESET ROLE")  # a superuser's setting, then the dashboard role again
        conn.execute("SET LOCAL track_functions = 'all'")
        conn.execute("SET LOCAL ROLE klineflow_dashboard")
        mine = conn.execute(
            "SELECT count(*) FROM signals s JOIN traders t ON t.id = s.trader_id"
        ).fetchone()
        assert mine is not None and 0 < mine[0] < total[0]
        calls = conn.execute(
            "SELECT calls FROM pg_stat_xact_user_functions "
            "WHERE funcname = 'klineflow_current_user_id'"
        ).fetchone()
        assert calls is not None and calls[0] <= 3, calls  # one per policy instance
