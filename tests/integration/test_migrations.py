"""Migrations against a real PostgreSQL: the runner (once, in order, forward-only, one at a time)
and the schema of sql/0001_init.sql (versions, idempotent signals, NOTIFY, roles and RLS).

The session's server is shared with other tests, so every database here is created for this
module (kf_mig_<random>) and dropped at its end. Roles are cluster-wide and outlive them;
the migration tolerates finding them already there.
"""

from __future__ import annotations

import secrets
import shutil
import threading
from pathlib import Path
from typing import LiteralString

import psycopg
import pytest
from psycopg import errors

from flows.storage.migrations import (
    MIGRATIONS_DIR,
    MigrationError,
    applied,
    apply_migrations,
    migration_files,
)
from tests.conftest import NewDatabase


@pytest.fixture(scope="module")
def db(new_database: NewDatabase) -> str:
    """A database with the project's migrations applied, shared by the schema tests."""
    url = new_database()
    apply_migrations(url)
    return url


# --- the runner -----------------------------------------------------------------------------


def test_applying_twice_applies_once(new_database: NewDatabase) -> None:
    url = new_database()
    names = [m.name for m in migration_files()]
    assert names[0] == "0001_init.sql"
    assert apply_migrations(url) == names
    assert apply_migrations(url) == []
    assert applied(url) == [(m.name, m.checksum) for m in migration_files()]


def test_applied_is_empty_before_any_migration(new_database: NewDatabase) -> None:
    assert applied(new_database()) == []


def test_changed_applied_file_is_refused(new_database: NewDatabase, tmp_path: Path) -> None:
    url = new_database()
    folder = tmp_path / "sql"
    folder.mkdir()
    shutil.copy(MIGRATIONS_DIR / "0001_init.sql", folder)
    assert apply_migrations(url, folder) == ["0001_init.sql"]
    before = applied(url)

    with (folder / "0001_init.sql").open("a") as f:
        f.write("\n-- an afterthought\n")
    (folder / "0002_later.sql").write_text("CREATE TABLE later (x int);\n")

    with pytest.raises(MigrationError) as caught:
        apply_migrations(url, folder)
    assert str(caught.value) == (
        "sql/0001_init.sql was changed after it was applied: "
        "migrations are forward-only, add a new file instead"
    )
    # nothing after the changed file ran
    assert applied(url) == before


def test_files_in_order_and_bad_names_ignored(tmp_path: Path) -> None:
    (tmp_path / "0002_insert.sql").write_text("INSERT INTO t VALUES (2);\n")
    (tmp_path / "0001_create.sql").write_text("CREATE TABLE t (x int);\n")
    (tmp_path / "0010_more.sql").write_text("INSERT INTO t VALUES (10);\n")
    for ignored in ["README.md", "001_short.sql", "0003_Upper.sql", "0004-dash.sql", "0005_x.txt"]:
        (tmp_path / ignored).write_text("this is not SQL;\n")
    assert [m.name for m in migration_files(tmp_path)] == [
        "0001_create.sql",
        "0002_insert.sql",
        "0010_more.sql",
    ]


def test_duplicate_number_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1;\n")
    (tmp_path / "0001_b.sql").write_text("SELECT 2;\n")
    with pytest.raises(MigrationError, match="share the number 0001"):
        migration_files(tmp_path)


def test_files_run_in_order_and_a_failing_file_is_not_recorded(
    new_database: NewDatabase, tmp_path: Path
) -> None:
    url = new_database()
    # 0002 only works after 0001; 0003 fails half-way and must leave no trace
    (tmp_path / "0002_insert.sql").write_text("INSERT INTO t VALUES (2), (3);\n")
    (tmp_path / "0001_create.sql").write_text("CREATE TABLE t (x int);\n")
    (tmp_path / "0003_broken.sql").write_text(
        "INSERT INTO t VALUES (4);\nSELECT no_such_column FROM t;\n"
    )
    with pytest.raises(errors.UndefinedColumn):
        apply_migrations(url, tmp_path)
    assert [name for name, _ in applied(url)] == ["0001_create.sql", "0002_insert.sql"]
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT x FROM t ORDER BY x").fetchall() == [(2,), (3,)]

    (tmp_path / "0003_broken.sql").write_text("INSERT INTO t VALUES (4);\n")
    assert apply_migrations(url, tmp_path) == ["0003_broken.sql"]


def test_concurrent_runs_take_turns(new_database: NewDatabase) -> None:
    url = new_database()
    results: list[list[str]] = []
    failures: list[BaseException] = []

    def run() -> None:
        try:
            results.append(apply_migrations(url))
        except BaseException as e:
            failures.append(e)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert failures == []
    assert sorted(results, key=len) == [[], [], [m.name for m in migration_files()]]


# --- the schema -----------------------------------------------------------------------------


def _user(conn: psycopg.Connection, name: str) -> int:
    row = conn.execute(
        "INSERT INTO users (name, password_hash) VALUES (%s, 'x') RETURNING id", (name,)
    ).fetchone()
    assert row is not None
    return int(row[0])


def _trader(conn: psycopg.Connection, owner_id: int, name: str = "rsi") -> int:
    row = conn.execute(
        "INSERT INTO traders (owner_id, name, expression, interval) "
        "VALUES (%s, %s, 'rsi(14) < 30', '1m') RETURNING id",
        (owner_id, name),
    ).fetchone()
    assert row is not None
    return int(row[0])


_INSERT_SIGNAL = (
    "INSERT INTO signals (id, trader_id, trader_version, symbol, interval, "
    'kline_open_ms, kline_close_ms, price, "values") '
    "VALUES (%s, %s, 1, 'BTCUSDT', '1m', %s, %s, 42000.5, '{\"rsi\": 28.1}') "
    "ON CONFLICT DO NOTHING"
)


def _signal(conn: psycopg.Connection, trader_id: int, open_ms: int = 1_700_000_040_000) -> str:
    signal_id = f"{trader_id}:BTCUSDT:1m:{open_ms}"
    conn.execute(_INSERT_SIGNAL, (signal_id, trader_id, open_ms, open_ms + 59_999))
    return signal_id


def _owner(db: str) -> psycopg.Connection:
    return psycopg.connect(db, autocommit=True)


def _fresh_name() -> str:
    return f"u_{secrets.token_hex(4)}"


def test_trader_versions_follow_expression_and_interval(db: str) -> None:
    with _owner(db) as conn:
        trader = _trader(conn, _user(conn, _fresh_name()))
        versions = "SELECT version, expression, interval FROM trader_versions WHERE trader_id = %s"
        assert conn.execute(versions + " ORDER BY version", (trader,)).fetchall() == [
            (1, "rsi(14) < 30", "1m")
        ]

        # no version for a change that leaves the rule alone, nor for a forged version number
        conn.execute("UPDATE traders SET description = 'd', version = 7 WHERE id = %s", (trader,))
        conn.execute("UPDATE traders SET expression = 'rsi(14) < 25' WHERE id = %s", (trader,))
        row = conn.execute("SELECT version FROM traders WHERE id = %s", (trader,)).fetchone()
        assert row == (2,)
        conn.execute("UPDATE traders SET interval = '1h' WHERE id = %s", (trader,))
        assert conn.execute(versions + " ORDER BY version", (trader,)).fetchall() == [
            (1, "rsi(14) < 30", "1m"),
            (2, "rsi(14) < 25", "1m"),
            (3, "rsi(14) < 25", "1h"),
        ]
        with pytest.raises(errors.CheckViolation):
            conn.execute("UPDATE traders SET interval = '2m' WHERE id = %s", (trader,))


def test_duplicate_signal_is_stored_once_and_notified_once(db: str) -> None:
    with _owner(db) as conn, _owner(db) as listener:
        trader = _trader(conn, _user(conn, _fresh_name()))
        listener.execute("LISTEN signals")
        first = _signal(conn, trader)
        second = _signal(conn, trader)  # same trader, symbol, interval and kline
        assert first == second
        count = conn.execute("SELECT count(*) FROM signals WHERE trader_id = %s", (trader,))
        assert count.fetchone() == (1,)

        heard = list(listener.notifies(timeout=1.0, stop_after=2))
        assert [(n.channel, n.payload) for n in heard] == [("signals", first)]


def test_same_kline_under_another_id_is_still_one_signal(db: str) -> None:
    with _owner(db) as conn:
        trader = _trader(conn, _user(conn, _fresh_name()))
        _signal(conn, trader)
        cur = conn.execute(
            _INSERT_SIGNAL, ("another-id", trader, 1_700_000_040_000, 1_700_000_099_999)
        )
        assert cur.rowcount == 0


def test_trader_changes_notify_traders(db: str) -> None:
    with _owner(db) as conn, _owner(db) as listener:
        listener.execute("LISTEN traders")
        owner = _user(conn, _fresh_name())
        trader = _trader(conn, owner)
        conn.execute("UPDATE traders SET enabled = false WHERE id = %s", (trader,))
        conn.execute("DELETE FROM traders WHERE id = %s", (trader,))
        heard = list(listener.notifies(timeout=1.0, stop_after=4))
        assert [(n.channel, n.payload) for n in heard] == [("traders", str(trader))] * 3


def test_flow_role_reads_traders_writes_signals_never_sees_users(db: str) -> None:
    with _owner(db) as conn:
        trader = _trader(conn, _user(conn, _fresh_name()))
        with pytest.raises(errors.InsufficientPrivilege), conn.transaction():
            conn.execute("SET LOCAL ROLE klineflow_flow")
            conn.execute("SELECT name FROM users")
        with conn.transaction():
            conn.execute("SET LOCAL ROLE klineflow_flow")
            # every trader, whoever owns it
            seen = conn.execute("SELECT id FROM traders").fetchall()
            assert (trader,) in seen
            signal_id = _signal(conn, trader)
            conn.execute(
                "UPDATE signals SET repeat_count = repeat_count + 1, last_repeat_at = now() "
                "WHERE id = %s",
                (signal_id,),
            )
        with pytest.raises(errors.InsufficientPrivilege), conn.transaction():
            conn.execute("SET LOCAL ROLE klineflow_flow")
            conn.execute("UPDATE traders SET enabled = false WHERE id = %s", (trader,))
        row = conn.execute("SELECT repeat_count FROM signals WHERE id = %s", (signal_id,))
        assert row.fetchone() == (2,)


def _as_dashboard(conn: psycopg.Connection, user_id: int | None) -> None:
    """Inside a transaction: act as the dashboard for a new session of `user_id` (None: for
    nobody). The session is opened as the owner; signing in is tested elsewhere."""
    if user_id is not None:
        row = conn.execute(
            "SELECT token FROM klineflow_open_session(%s, 'password')", (user_id,)
        ).fetchone()
        assert row is not None
        conn.execute("SELECT set_config('klineflow.session', %s, true)", (row[0],))
    conn.execute("SET LOCAL ROLE klineflow_dashboard")


def test_dashboard_role_sees_and_changes_only_its_users_rows(db: str) -> None:
    with _owner(db) as conn:
        alice, bob = _user(conn, _fresh_name()), _user(conn, _fresh_name())
        alice_trader, bob_trader = _trader(conn, alice), _trader(conn, bob)
        alice_signal, bob_signal = _signal(conn, alice_trader), _signal(conn, bob_trader)

        with conn.transaction():
            _as_dashboard(conn, alice)
            assert conn.execute("SELECT id FROM traders").fetchall() == [(alice_trader,)]
            assert conn.execute("SELECT id FROM signals").fetchall() == [(alice_signal,)]
            # another user's rows are invisible, so an update finds nothing
            cur = conn.execute(
                "UPDATE traders SET expression = 'true' WHERE id = %s", (bob_trader,)
            )
            assert cur.rowcount == 0
            cur = conn.execute("UPDATE signals SET status = 'seen' WHERE id = %s", (bob_signal,))
            assert cur.rowcount == 0
            # its own: yes, and the version history follows (trigger runs as the owner)
            cur = conn.execute(
                "UPDATE traders SET expression = 'rsi(14) < 20' WHERE id = %s", (alice_trader,)
            )
            assert cur.rowcount == 1
            cur = conn.execute("UPDATE signals SET status = 'seen' WHERE id = %s", (alice_signal,))
            assert cur.rowcount == 1
            _trader(conn, alice, "second")

        with conn.transaction():  # unset: shows nothing, even after a SET LOCAL has ended
            _as_dashboard(conn, None)
            assert conn.execute("SELECT id FROM traders").fetchall() == []
            assert conn.execute("SELECT id FROM signals").fetchall() == []

        forbidden: list[tuple[LiteralString, tuple[object, ...]]] = [
            ("SELECT password_hash FROM users", ()),
            ("SELECT name FROM users WHERE id = %s", (bob,)),  # not even names (sql/0006)
            ("UPDATE signals SET price = 1", ()),
            ("SELECT * FROM trader_versions", ()),
            # giving its trader away: the new row fails the policy's WITH CHECK
            ("UPDATE traders SET owner_id = %s WHERE id = %s", (bob, alice_trader)),
        ]
        for query, params in forbidden:
            with pytest.raises(errors.InsufficientPrivilege), conn.transaction():
                _as_dashboard(conn, alice)
                conn.execute(query, params)
        with pytest.raises(errors.InsufficientPrivilege), conn.transaction():
            _as_dashboard(conn, alice)
            _trader(conn, bob, "planted")  # a trader for somebody else

        # as the owner: bob's rows untouched, alice's changed
        rows = conn.execute(
            "SELECT id, expression, version FROM traders WHERE id IN (%s, %s) ORDER BY id",
            (alice_trader, bob_trader),
        ).fetchall()
        assert rows == [(alice_trader, "rsi(14) < 20", 2), (bob_trader, "rsi(14) < 30", 1)]
        statuses = conn.execute(
            "SELECT id, status FROM signals WHERE id IN (%s, %s) ORDER BY id",
            (alice_signal, bob_signal),
        ).fetchall()
        assert dict(statuses) == {alice_signal: "seen", bob_signal: "new"}
        count = conn.execute("SELECT count(*) FROM traders WHERE owner_id = %s", (alice,))
        assert count.fetchone() == (2,)


def test_migrate_command(new_database: NewDatabase) -> None:
    """`klineflow migrate` applies what is missing, then has nothing to do."""
    from typer.testing import CliRunner

    from flows.cli import app

    url = new_database()
    first = CliRunner().invoke(app, ["migrate", "--database-url", url])
    assert first.exit_code == 0 and "applied: 0001_init.sql" in first.output
    again = CliRunner().invoke(app, ["migrate", "--database-url", url])
    assert again.exit_code == 0 and "nothing" in again.output
