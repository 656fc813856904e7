"""PostgreSQL roles per component: the flow's connections act as klineflow_flow whatever the
login, and `klineflow access pg-login` makes logins that can do their component's work and
nothing of the other's; on a server that checks passwords, only the right one opens."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from typer.testing import CliRunner

from dashboard.data.db import Database, WriteRefused
from dashboard.data.users import add_user, sign_in, verify
from flows.backtest.store import finish_run, start_run
from flows.cli import app
from flows.services import EmbeddedPostgres
from flows.signals.book import Book, BookHolder, TraderRow
from flows.signals.engine import Fire
from flows.signals.store import BookWatcher, SignalWriter, TraderStore
from flows.storage.pg_roles import (
    COMPONENT_ROLES,
    FLOW_ROLE,
    LoginError,
    connect_as,
    ensure_login,
    ensure_schema,
)

Denied = psycopg.errors.InsufficientPrivilege
RULE = "close > open"


def _trader(db: str) -> TraderRow:
    return TraderStore(db).add(TraderRow(0, "rises", RULE, "1m", trigger_mode="every_close",
                                         cooldown_bars=0))  # fmt: skip


def _fire(trader: TraderRow, open_ms: int = 1_700_000_040_000) -> Fire:
    return Fire(f"{trader.id}:X:{open_ms}", trader.id, trader.version, "XUSDT", "1m", open_ms,
                open_ms + 59_999, open_ms, "1.5", {"x": 1.0}, open_ms + 60_000)  # fmt: skip


def _denied(db: str, statement: str, role: str | None = None) -> bool:
    conn = connect_as(db, role) if role else psycopg.connect(db)
    try:
        with conn:
            conn.execute(statement)
    except Denied:
        return True
    return False


def _signals(db: str) -> int:
    with psycopg.connect(db) as conn:
        row = conn.execute("SELECT count(*) FROM signals").fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def logins(signals_db: str) -> Iterator[Callable[[str], tuple[str, str]]]:
    """Make logins with `klineflow access pg-login` (the owner's URL); (its URL, password).
    Roles belong to the whole server: dropped afterwards."""
    made: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="kfpw-"))

    def make(component: str) -> tuple[str, str]:
        name, password = f"kf_{component}_{secrets.token_hex(4)}", secrets.token_urlsafe(18)
        (folder / name).write_text(password + "\n")
        result = CliRunner().invoke(app, ["access", "pg-login", name, "--component", component,
                                          "--password-file", str(folder / name),
                                          "--database-url", signals_db])  # fmt: skip
        assert result.exit_code == 0, result.output
        made.append(name)
        return make_conninfo(signals_db, user=name, password=password), password

    yield make
    shutil.rmtree(folder)
    with psycopg.connect(signals_db, autocommit=True) as conn:
        for name in made:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def test_the_flows_connections_act_as_the_flow_role_even_for_a_superuser(signals_db: str) -> None:
    trader = _trader(signals_db)
    with connect_as(signals_db, FLOW_ROLE) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (FLOW_ROLE,)
    assert _denied(signals_db, "SELECT password_hash FROM users", FLOW_ROLE)
    assert _denied(signals_db, "SELECT id FROM users", FLOW_ROLE)
    assert _denied(signals_db, "INSERT INTO traders (owner_id, name, expression, interval) "
                               "VALUES (1, 'x', 'close > 1', '1m')", FLOW_ROLE)  # fmt: skip
    assert _denied(signals_db, "UPDATE traders SET enabled = false", FLOW_ROLE)
    assert not _denied(signals_db, "SELECT password_hash FROM users")  # the login itself may
    # the signal writer has the role's rights, not the (superuser) login's: take one away...
    with psycopg.connect(signals_db, autocommit=True) as owner:
        owner.execute("REVOKE INSERT ON signals FROM klineflow_flow")
        writer = SignalWriter(signals_db)
        assert writer.write([_fire(trader)]) is False and writer.pending == 1
        owner.execute("GRANT INSERT ON signals TO klineflow_flow")
    assert writer.write([]) is True and writer.counters.new == 1  # ...and give it back
    writer.close()
    assert _signals(signals_db) == 1
    # the trader watcher likewise
    watcher = BookWatcher(signals_db, BookHolder())
    with psycopg.connect(signals_db, autocommit=True) as owner:
        owner.execute("REVOKE SELECT ON traders FROM klineflow_flow")
        with pytest.raises(Denied):
            watcher.load_once()
        owner.execute("GRANT SELECT ON traders TO klineflow_flow")
    assert [t.row.id for t in watcher.load_once().traders] == [trader.id]


def test_a_flow_login_does_the_flows_work_and_nothing_else(
    signals_db: str, logins: Callable[[str], tuple[str, str]]
) -> None:
    trader = _trader(signals_db)
    add_user(signals_db, "ana", "ana's password")
    flow, _ = logins("flow")
    assert ensure_schema(flow) == []  # current: checked, not migrated
    writer = SignalWriter(flow)
    assert writer.write([_fire(trader)]) and writer.counters.new == 1
    writer.close()
    book = BookWatcher(flow, BookHolder()).load_once()
    assert [t.row.id for t in book.traders] == [trader.id]
    run = start_run(flow, {}, Book((), 1), {"from": None})  # backtests from the command line
    finish_run(flow, run, [], trades=1, klines=1, seconds=0.1)
    assert TraderStore(flow).find("rises").id == trader.id  # reads, as `backtest --trader` does
    # never the dashboard's work
    with pytest.raises(Denied):
        verify(flow, "ana", "ana's password")
    db = Database(flow)
    try:
        with pytest.raises(WriteRefused):  # SET LOCAL ROLE klineflow_dashboard is refused
            db.add_trader(1, TraderRow(0, "mine", RULE, "1m"))
    finally:
        db.close()
    assert _denied(flow, "SET ROLE klineflow_dashboard")
    assert _denied(flow, "INSERT INTO traders (owner_id, name, expression, interval) "
                         "VALUES (1, 'x', 'close > 1', '1m')")  # fmt: skip
    assert _denied(flow, "CREATE TABLE mine (x int)")
    assert _signals(signals_db) == 1


def test_a_dashboard_login_does_the_dashboards_work_and_nothing_else(
    signals_db: str, logins: Callable[[str], tuple[str, str]]
) -> None:
    trader = _trader(signals_db)
    ana = add_user(signals_db, "ana", "ana's password")
    board, _ = logins("dashboard")
    assert ensure_schema(board) == []
    assert verify(board, "ana", "ana's password") == ana  # checked by PostgreSQL, not here
    assert verify(board, "ana", "wrong") is None
    session = sign_in(board, "ana", "ana's password")
    assert session is not None and session.user_id == ana
    db = Database(board)
    try:
        mine = db.add_trader(session, TraderRow(0, "mine", RULE, "5m"))
        assert [t.name for t in db.traders(session).value] == ["mine"]  # row-level security
        with pytest.raises(WriteRefused):
            db.update_trader(session, trader.id, enabled=False)  # the local user's, not ana's
        # a backtest started from the dashboard: recorded as ana's, in her session
        run = start_run(lambda: db.user_tx(session), {}, Book((), 1), {"source": "dashboard"},
                        owner_id=ana)  # fmt: skip
        finish_run(lambda: db.user_tx(session), run, [], trades=1, klines=1, seconds=0.1)
    finally:
        db.close()
    # accounts are the owner's: `klineflow users` with the dashboard's login says so
    added = CliRunner().invoke(app, ["users", "add", "bo", "--password", "bo's password",
                                     "--database-url", board])  # fmt: skip
    assert added.exit_code == 2 and "owner's database URL" in added.output, added.output
    assert verify(board, "bo", "bo's password") is None
    listed = CliRunner().invoke(app, ["users", "list", "--database-url", board])
    assert listed.exit_code == 2 and "owner's database URL" in listed.output, listed.output
    with psycopg.connect(signals_db) as conn:
        assert conn.execute("SELECT owner_id, status FROM backtest_runs").fetchall() == [
            (ana, "done")
        ]
    # never the flow's work
    with pytest.raises(Denied):
        connect_as(board, FLOW_ROLE)
    writer = SignalWriter(board)
    assert writer.write([_fire(mine)]) is False  # refused, kept for a retry that cannot work
    writer.close()
    assert _denied(board, "INSERT INTO signals (id, trader_id, trader_version, symbol, interval, "
                          "kline_open_ms, kline_close_ms, price) "
                          f"VALUES ('x', {mine.id}, 1, 'X', '5m', 0, 1, 1)")  # fmt: skip
    assert _denied(board, "SELECT password_hash FROM users", "klineflow_dashboard")
    assert _signals(signals_db) == 0


def test_a_login_changes_component_and_password_and_the_api_has_none(
    signals_db: str, logins: Callable[[str], tuple[str, str]], tmp_path: Path
) -> None:
    url, password = logins("flow")
    name = str(psycopg.conninfo.conninfo_to_dict(url)["user"])
    assert ensure_login(signals_db, name, password + "-new", "dashboard") is False

    def groups() -> set[str]:
        with psycopg.connect(signals_db) as conn:
            rows = conn.execute(
                "SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
                "JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = %s", (name,)
            ).fetchall()  # fmt: skip
        return {str(r[0]) for r in rows}

    assert groups() == set(COMPONENT_ROLES["dashboard"])
    (tmp_path / "pw").write_text("p" * 20)
    api = CliRunner().invoke(app, ["access", "pg-login", "kf_api_x", "--component", "api",
                                   "--password-file", str(tmp_path / "pw"),
                                   "--database-url", signals_db])  # fmt: skip
    assert api.exit_code == 2 and "uses no PostgreSQL" in api.output
    for bad_name, bad_password in (("klineflow_flow", "p" * 20), ("Bad Name", "p" * 20),
                                   ("kf_short", "short")):  # fmt: skip
        with pytest.raises(LoginError):
            ensure_login(signals_db, bad_name, bad_password, "flow")
    with psycopg.connect(signals_db) as conn:
        superuser = conn.execute("SELECT current_user").fetchone()
    assert superuser is not None
    with pytest.raises(LoginError):
        ensure_login(signals_db, str(superuser[0]), "p" * 20, "flow")


@pytest.fixture(scope="module")
def checked_server() -> Iterator[str]:
    """A PostgreSQL of its own that checks passwords (SCRAM) for every login but `postgres`
    (the embedded servers trust local connections); its URL as `postgres`."""
    folder = Path(tempfile.mkdtemp(prefix="kfpg-"))
    server = EmbeddedPostgres(folder / "pg")
    url = server.start()
    try:
        (folder / "pg" / "pg_hba.conf").write_text(
            "local all postgres trust\nlocal all all scram-sha-256\n"
        )
        with psycopg.connect(url) as conn:
            conn.execute("SELECT pg_reload_conf()")
        yield url
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def test_only_the_right_password_opens_a_login(checked_server: str, tmp_path: Path) -> None:
    owner = checked_server
    assert CliRunner().invoke(app, ["migrate", "--database-url", owner]).exit_code == 0
    (tmp_path / "pw").write_text("correct horse battery\n")
    made = CliRunner().invoke(app, ["access", "pg-login", "flow", "--component", "flow",
                                    "--password-file", str(tmp_path / "pw"),
                                    "--database-url", owner])  # fmt: skip
    assert made.exit_code == 0, made.output
    login = make_conninfo(owner, user="flow", password="correct horse battery")
    with psycopg.connect(login) as conn:
        assert conn.execute("SELECT session_user").fetchone() == ("flow",)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(make_conninfo(owner, user="flow", password="wrong horse battery"))
    with psycopg.connect(owner) as conn:  # hashed before it was sent: a SCRAM verifier
        stored = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = 'flow'")
        row = stored.fetchone()
    assert row is not None and str(row[0]).startswith("SCRAM-SHA-256$")
    # the settings' way: the URL names the user, the password comes apart
    from flows.settings import Settings

    settings = Settings(database_url=make_conninfo(owner, user="flow"),
                        database_password="correct horse battery")  # fmt: skip
    url = settings.database_url_value()
    assert url is not None
    assert BookWatcher(url, BookHolder()).load_once().traders == ()  # connected, as the flow
    with connect_as(url, FLOW_ROLE) as conn:
        assert conn.execute("SELECT current_user, session_user").fetchone() == (FLOW_ROLE, "flow")
