"""What a holder of the dashboard's PostgreSQL login can do (sql/0006): act for no user whose
password (or session token) it does not have, become no role that reads or changes accounts,
and run no statement past its timeout. Every attack here runs with the dashboard's own login,
made by `ensure_login` for component dashboard, as an attacker who took it would."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from argon2 import PasswordHasher
from psycopg import sql
from psycopg.conninfo import make_conninfo

from dashboard.data.db import Database, Session
from dashboard.data.users import add_user, sign_in, sign_out, sso_sign_in, verify
from flows.backtest.store import finish_run, start_run
from flows.signals.book import Book, TraderRow
from flows.signals.store import TraderStore
from flows.storage.migrations import apply_migrations, migration_files
from flows.storage.pg_roles import ensure_login
from tests.conftest import NewDatabase

Denied = psycopg.errors.InsufficientPrivilege
ANA_PW, BOB_PW = "ana's long password", "bob's long password"
BOB_SECRET = "bob's private notes"
ROLES = (None, "klineflow_dashboard", "klineflow_dashboard_app")  # None: the login itself


@dataclass(frozen=True)
class World:
    owner: str  # the owner's URL
    board: str  # the dashboard's login
    login: str  # its role name
    ana: int
    bob: int
    ana_trader: int
    bob_trader: int


def _login(owner: str, made: list[str], **kw: Any) -> tuple[str, str]:
    name, password = f"kf_board_{secrets.token_hex(4)}", secrets.token_urlsafe(18)
    ensure_login(owner, name, password, "dashboard", **kw)
    made.append(name)
    return make_conninfo(owner, user=name, password=password), name


@pytest.fixture
def world(signals_db: str) -> Iterator[World]:
    made: list[str] = []
    ana = add_user(signals_db, "ana", ANA_PW)
    bob = add_user(signals_db, "bob", BOB_PW)
    store = TraderStore(signals_db)
    ana_trader = store.add(TraderRow(0, "ana's", "close > open", "1m"), owner="ana")
    bob_trader = store.add(
        TraderRow(0, "bob's", "close < open", "1m", description=BOB_SECRET), owner="bob"
    )
    with psycopg.connect(signals_db) as conn:
        conn.execute(
            "INSERT INTO signals (id, trader_id, trader_version, symbol, interval, "
            "kline_open_ms, kline_close_ms, price) VALUES ('b1', %s, 1, 'XUSDT', '1m', 0, 1, 1)",
            (bob_trader.id,),
        )
    board, login = _login(signals_db, made)
    yield World(signals_db, board, login, ana, bob, ana_trader.id, bob_trader.id)
    with psycopg.connect(signals_db, autocommit=True) as conn:
        for name in made:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def _session(w: World, name: str, password: str) -> Session:
    got = sign_in(w.board, name, password)
    assert got is not None
    return got


def _visible(conn: psycopg.Connection[Any]) -> tuple[list[Any], int]:
    traders = conn.execute("SELECT name, description FROM traders ORDER BY id").fetchall()
    signals = conn.execute("SELECT count(*) FROM signals").fetchone()
    assert signals is not None
    return traders, int(signals[0])


def _refused(url: str, statement: str, role: str | None = None) -> bool:
    with psycopg.connect(url) as conn:
        if role is not None:
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
        try:
            conn.execute(statement)
        except Denied:
            return True
    return False


# --- naming a user ------------------------------------------------------------------------------


def test_setting_another_users_id_or_a_made_up_token_shows_nothing(world: World) -> None:
    ana = _session(world, "ana", ANA_PW)
    with psycopg.connect(world.board) as conn:
        conn.execute("SET LOCAL ROLE klineflow_dashboard")
        conn.execute("SELECT set_config('klineflow.session', %s, true)", (ana.token,))
        assert _visible(conn) == ([("ana's", "")], 0)
        # the old way of naming a user means nothing now
        conn.execute("SELECT set_config('klineflow.user_id', %s, true)", (str(world.bob),))
        assert _visible(conn) == ([("ana's", "")], 0)
        for forged in ("", str(world.bob), "0" * 64, secrets.token_hex(32), ana.token + "x",
                       ana.token.upper(), "' OR true --"):  # fmt: skip
            conn.execute("SELECT set_config('klineflow.session', %s, true)", (forged,))
            assert _visible(conn) == ([], 0), forged
            assert conn.execute("SELECT klineflow_current_user_id()").fetchone() == (None,)
        # RESET ROLE: the login's own rights are the union of its roles, under the same policies
        conn.execute("RESET ROLE")
        conn.execute("SELECT set_config('klineflow.session', %s, true)", (secrets.token_hex(32),))
        assert _visible(conn) == ([], 0)
        conn.execute("SELECT set_config('klineflow.user_id', %s, true)", (str(world.bob),))
        assert _visible(conn) == ([], 0)


def test_a_temporary_table_cannot_stand_in_for_the_sessions(world: World) -> None:
    token = secrets.token_hex(32)
    with psycopg.connect(world.board) as conn:
        conn.execute(
            "CREATE TEMP TABLE sessions (token_sha256 bytea, user_id bigint, via text, "
            "created_at timestamptz, expires_at timestamptz)"
        )
        conn.execute(
            "INSERT INTO sessions VALUES (sha256(convert_to(%s, 'UTF8')), %s, 'password', "
            "now(), now() + interval '1 day')",
            (token, world.bob),
        )
        conn.execute("SELECT set_config('klineflow.session', %s, true)", (token,))
        assert conn.execute("SELECT klineflow_current_user_id()").fetchone() == (None,)
        assert _visible(conn) == ([], 0)


def test_a_temporary_table_cannot_swallow_a_traders_version(world: World) -> None:
    """traders_record_version (0001, SECURITY DEFINER) once found a caller's temporary
    trader_versions first: a trader without its version, whose signals the flow could then
    never write."""
    ana = _session(world, "ana", ANA_PW)
    db = Database(world.board, max_size=1)
    try:
        with db.user_tx(ana) as conn:
            conn.execute(
                "CREATE TEMP TABLE trader_versions (trader_id bigint, version integer, "
                "expression text, interval text, created_at timestamptz DEFAULT now())"
            )
            row = conn.execute(
                "INSERT INTO traders (owner_id, name, expression, interval) "
                "VALUES (%s, 'shadowed', 'close > 1', '1m') RETURNING id",
                (world.ana,),
            ).fetchone()
            assert conn.execute("SELECT count(*) FROM pg_temp.trader_versions").fetchone() == (0,)
    finally:
        db.close()
    assert row is not None
    with psycopg.connect(world.owner) as conn:
        assert conn.execute(
            "SELECT version FROM trader_versions WHERE trader_id = %s", (row[0],)
        ).fetchall() == [(1,)]


def test_the_session_token_never_shows_in_pg_stat_activity(world: World) -> None:
    ana = _session(world, "ana", ANA_PW)
    db = Database(world.board, max_size=1)
    try:
        with db.user_tx(ana) as conn, psycopg.connect(world.board) as spy:
            # the statement the session is last seen running is the one naming the token
            conn.execute("SELECT set_config('klineflow.session', %s, true)", (ana.token,))
            seen = spy.execute(
                "SELECT coalesce(string_agg(query, ' '), '') FROM pg_stat_activity "
                "WHERE usename = current_user"
            ).fetchone()
        assert seen is not None and "set_config" in seen[0] and ana.token not in seen[0]
    finally:
        db.close()


# --- accounts -------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_no_role_of_the_login_reads_or_changes_accounts_or_sessions(
    world: World, role: str | None
) -> None:
    _session(world, "ana", ANA_PW)  # a session exists to be read, if it could be
    for statement in (
        "SELECT password_hash FROM users",
        "SELECT id, name FROM users",
        "UPDATE users SET password_hash = NULL",
        f"UPDATE users SET password_hash = 'x' WHERE id = {world.ana}",
        "INSERT INTO users (name, password_hash) VALUES ('mallory', 'x')",
        "DELETE FROM users",
        "SELECT * FROM sessions",
        "UPDATE sessions SET expires_at = now() + interval '1 year'",
        f"INSERT INTO sessions VALUES ('\\x00', {world.bob}, 'password', now(), now())",
        "DELETE FROM sessions",
        "SELECT * FROM sign_in_failures",
        "DELETE FROM sign_in_failures",
        "SELECT * FROM sign_in_attempts",
        "SELECT * FROM auth_settings",
        "UPDATE auth_settings SET sso_enabled = true",
        f"SELECT * FROM klineflow_open_session({world.bob}, 'password')",
        "SELECT klineflow_usable_hash('x')",
        "SET ROLE klineflow_flow",
        "CREATE ROLE mallory LOGIN",
        "CREATE FUNCTION public.mallory() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "CREATE TABLE public.mallory (x int)",
        "GRANT klineflow_flow TO CURRENT_USER",
        "ALTER TABLE users DISABLE ROW LEVEL SECURITY",
    ):
        assert _refused(world.board, statement, role), (role, statement)
    with psycopg.connect(world.owner) as conn:
        owner = conn.execute("SELECT current_user").fetchone()
        assert owner is not None
        assert conn.execute(
            "SELECT count(*) FROM users WHERE password_hash IS NULL"
        ).fetchone() == (
            1,  # 'local' (made by 0002) only
        )
    assert _refused(world.board, f"SET ROLE {owner[0]}", role)
    # and by the catalog's account, for every role the login may become
    with psycopg.connect(world.board) as conn:
        rights = conn.execute(
            "SELECT r.rolname, has_column_privilege(r.rolname, 'users', 'password_hash', "
            "'SELECT,UPDATE,INSERT'), has_table_privilege(r.rolname, 'users', "
            "'SELECT,INSERT,UPDATE,DELETE,TRUNCATE'), has_table_privilege(r.rolname, "
            "'sessions', 'SELECT,INSERT,UPDATE,DELETE,TRUNCATE') FROM pg_roles r "
            "WHERE pg_has_role(current_user, r.oid, 'MEMBER')"
        ).fetchall()
    assert {r[0] for r in rights} == {world.login, "klineflow_dashboard",
                                      "klineflow_dashboard_app"}  # fmt: skip
    assert [r for r in rights if any(r[1:])] == []


def test_an_account_cannot_be_taken_over_through_the_sign_in_functions(world: World) -> None:
    with psycopg.connect(world.board, autocommit=True) as conn:
        params = conn.execute("SELECT params FROM klineflow_auth_params('bob')").fetchone()
        assert params is not None and params[0].count("$") == 4  # no digest handed out
        # a rehash rides only on a successful attempt
        weak = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$" + "A" * 43
        for name in ("bob", "bob' --", "x'; UPDATE users SET password_hash = NULL; --"):
            ticket = conn.execute(
                "SELECT klineflow_sign_in_attempt(%s, %s, %s)", (name, weak, weak)
            ).fetchone()
            assert ticket is not None
            outcome = conn.execute(
                "SELECT outcome, token FROM klineflow_sign_in_result(%s)", (ticket[0],)
            ).fetchone()
            assert outcome == ("refused", None)
        # a made-up ticket, a spent one, a made-up session for a password change, SSO while off
        assert conn.execute("SELECT * FROM klineflow_sign_in_result(%s)",
                            (secrets.token_hex(32),)).fetchall() == []  # fmt: skip
        assert conn.execute("SELECT * FROM klineflow_sign_in_result(%s)",
                            (ticket[0],)).fetchall() == []  # fmt: skip
        assert conn.execute(
            "SELECT klineflow_change_password(%s, %s, %s)", (secrets.token_hex(32), weak, weak)
        ).fetchone() == (False,)
        with pytest.raises(Denied, match="single sign-on is switched off"):
            conn.execute("SELECT * FROM klineflow_sso_sign_in('bob')")
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            conn.execute("SELECT klineflow_sign_in_attempt(%s, 'x')", ("b" * 10_000,))
    # ana's own session cannot change bob's password
    ana = _session(world, "ana", ANA_PW)
    with psycopg.connect(world.board, autocommit=True) as conn:
        assert conn.execute(
            "SELECT klineflow_change_password(%s, %s, %s)", (ana.token, weak, weak)
        ).fetchone() == (False,)
    assert sign_in(world.board, "bob", BOB_PW) is not None  # bob's password is bob's still
    with psycopg.connect(world.owner) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (3,)


def test_the_outcome_of_an_attempt_needs_its_failure_committed(world: World) -> None:
    """Asking in the attempt's own transaction is refused, so a caller cannot learn a guess's
    outcome and roll its failure count back."""
    with psycopg.connect(world.board) as conn:
        ticket = conn.execute("SELECT klineflow_sign_in_attempt('bob', 'a guess')").fetchone()
        assert ticket is not None
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
            conn.execute("SELECT * FROM klineflow_sign_in_result(%s)", (ticket[0],))
        conn.rollback()
        # rolled back: the attempt is gone with its failure, and so is its outcome
        assert conn.execute("SELECT * FROM klineflow_sign_in_result(%s)",
                            (ticket[0],)).fetchall() == []  # fmt: skip


# --- timeouts -------------------------------------------------------------------------------------


def test_the_login_runs_with_timeouts_and_a_long_statement_is_cancelled(world: World) -> None:
    with psycopg.connect(world.board) as conn:
        assert conn.execute("SHOW statement_timeout").fetchone() == ("10s",)
        assert conn.execute("SHOW idle_in_transaction_session_timeout").fetchone() == ("1min",)
    made: list[str] = []
    try:
        quick, _ = _login(world.owner, made, statement_timeout_ms=500)
        with psycopg.connect(quick) as conn, pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(20)")
        # the pool sets them on its connections too, whatever the login's defaults
        db = Database(world.owner, max_size=1)
        try:
            with db.pool.connection() as conn:
                assert conn.execute("SHOW statement_timeout").fetchone() == ("10s",)
        finally:
            db.close()
    finally:
        with psycopg.connect(world.owner, autocommit=True) as conn:
            for name in made:
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


# --- backtest runs --------------------------------------------------------------------------------


def test_a_backtest_run_is_its_owners(world: World) -> None:
    ana, bob = _session(world, "ana", ANA_PW), _session(world, "bob", BOB_PW)
    db = Database(world.board, max_size=2)

    def as_(who: Session) -> Callable[[], Any]:
        return lambda: db.user_tx(who)

    try:
        run = start_run(as_(ana), {}, Book((), 1), {"source": "dashboard"}, owner_id=world.ana)
        finish_run(as_(ana), run, [], trades=1, klines=1, seconds=0.1)
        cli = start_run(world.owner, {}, Book((), 1), {})  # no owner: every user's to read
        for who, want in ((ana, [run, cli]), (bob, [cli])):
            with db.user_tx(who) as conn:
                got = [r[0] for r in conn.execute("SELECT id FROM backtest_runs ORDER BY id")]
                assert sorted(got) == sorted(want)
        with db.user_tx(bob) as conn:
            assert (
                conn.execute(
                    "UPDATE backtest_runs SET status = 'failed' WHERE id = %s", (run,)
                ).rowcount
                == 0
            )
        with pytest.raises(Denied):  # a run in somebody else's name
            start_run(as_(bob), {}, Book((), 1), {}, owner_id=world.ana)
        with pytest.raises(Denied), db.user_tx(bob) as conn:  # into somebody else's run
            conn.execute(
                "INSERT INTO backtest_signals (run_id, id, trader_id, trader_version, "
                "symbol, interval, kline_open_ms, kline_close_ms, price) "
                "VALUES (%s, 'x', 0, 1, 'X', '1m', 0, 1, 1)",
                (run,),
            )
    finally:
        db.close()
    # the login itself, without a session (RESET ROLE, SET ROLE): the command-line run only
    for role in ROLES:
        with psycopg.connect(world.board) as conn:
            if role is not None:
                conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
            if role == "klineflow_dashboard_app":
                with pytest.raises(Denied):
                    conn.execute("SELECT id FROM backtest_runs")
                continue
            assert [r[0] for r in conn.execute("SELECT id FROM backtest_runs")] == [cli]
    sign_out(world.board, ana)


# --- an existing deployment -----------------------------------------------------------------------


def test_an_upgrade_from_0005_keeps_passwords_and_logins(
    new_database: NewDatabase, tmp_path: Path
) -> None:
    url = new_database()
    for migration in migration_files():
        if migration.name < "0006":
            (tmp_path / migration.name).write_text(migration.sql)
    assert apply_migrations(url, tmp_path)[-1] == "0005_rule_progress.sql"
    with psycopg.connect(url) as conn:  # accounts as 0005's `klineflow users add` made them
        row = conn.execute(
            "INSERT INTO users (name, password_hash) VALUES ('ana', %s), ('oidc:dana', NULL) "
            "RETURNING id",
            (PasswordHasher().hash(ANA_PW),),
        ).fetchall()
    ana, dana = (int(r[0]) for r in row)
    made: list[str] = []
    try:
        board, login = _login(url, made)
        with psycopg.connect(url, autocommit=True) as conn:  # as a login from before 0006
            conn.execute(sql.SQL("ALTER ROLE {} RESET ALL").format(sql.Identifier(login)))
        with psycopg.connect(board) as conn:  # the hole this closes
            assert conn.execute("SELECT count(*) FROM users WHERE password_hash IS NOT NULL"
                                ).fetchone() == (1,)  # fmt: skip
            assert conn.execute("SHOW statement_timeout").fetchone() == ("0",)
        assert "0006_dashboard_sessions.sql" in apply_migrations(url)  # `klineflow migrate`
        assert verify(board, "ana", ANA_PW) == ana  # the same password, the same login
        assert verify(board, "ana", BOB_PW) is None
        assert _refused(board, "SELECT password_hash FROM users")
        with psycopg.connect(board) as conn:
            assert conn.execute("SHOW statement_timeout").fetchone() == ("10s",)
        # single sign-on was in use (an oidc: account exists): it stays on
        assert sso_sign_in(board, "dana").user_id == dana
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            for name in made:
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def test_a_temporary_table_cannot_lift_the_trader_quota(world: World) -> None:
    """traders_enforce_quota (0008, SECURITY DEFINER) read a caller's temporary
    klineflow_limits first until 0009 pinned every definer function's search path."""
    with psycopg.connect(world.owner) as conn:
        conn.execute("UPDATE klineflow_limits SET value = 1 WHERE name = 'max_enabled_traders'")
        definers = conn.execute(
            "SELECT p.proname, p.proconfig FROM pg_proc p WHERE p.prosecdef "
            "AND p.pronamespace = current_schema()::regnamespace"
        ).fetchall()
    assert {"traders_enforce_quota", "klineflow_current_user_id"} <= {d[0] for d in definers}
    assert all(any(c.endswith(", pg_temp") for c in d[1]) for d in definers), definers
    ana = _session(world, "ana", ANA_PW)
    db = Database(world.board, max_size=1)
    try:
        with pytest.raises(psycopg.errors.CheckViolation), db.user_tx(ana) as conn:
            conn.execute("CREATE TEMP TABLE klineflow_limits (name text, value bigint)")
            conn.execute("CREATE TEMP TABLE traders (owner_id bigint, enabled boolean, id bigint)")
            conn.execute(
                "INSERT INTO public.traders (owner_id, name, expression, interval) "
                "VALUES (%s, 'one too many', 'close > 1', '1m')",
                (world.ana,),
            )
    finally:
        db.close()
