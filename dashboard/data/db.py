"""PostgreSQL for the dashboard: one connection pool per process, every user's query in a
transaction that first becomes the dashboard role and names the user's session:

    SET LOCAL ROLE klineflow_dashboard
    SELECT set_config('klineflow.session', '<token>', true)

Both end with the transaction, so a pooled connection never carries one user's identity
into another's request, and row-level security (not a Python filter) decides what a user
reads and writes: klineflow_current_user_id() is the user of the live session whose token
the transaction set (sql/0006), so only a token handed out by signing in names a user. The
token is a bound parameter, never part of the statement's text (pg_stat_activity shows $1).

Every connection runs with the dashboard's statement and idle-in-transaction timeouts.
Reads answer a `Fetched`: when PostgreSQL is unreachable, the last good answer for the same
user and question, marked stale.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

import psycopg
import psycopg_pool
from psycopg.rows import dict_row

from flows.signals.book import TraderRow
from flows.signals.trader_rows import (
    INSERT_TRADER,
    TRADER_COLUMNS,
    WRITABLE_TRADER_FIELDS,
    load_traders,
    remove_trader,
    row_of,
    trader_params,
)
from flows.storage.pg_roles import DASHBOARD_TIMEOUTS, timeout_options

from .stale import Fetched, LastGood

T = TypeVar("T")

DB_ERRORS: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    psycopg_pool.PoolTimeout,
    psycopg_pool.PoolClosed,
)
SIGNAL_COLUMNS = (
    "s.id, s.trader_id, t.name AS trader, s.trader_version, s.symbol, s.interval, "
    's.kline_open_ms, s.kline_close_ms, s.price, s."values", s.repeat_count, s.status, '
    "s.latency_ms, s.created_at"
)
WRITABLE = WRITABLE_TRADER_FIELDS
STATUSES = ("new", "seen", "dismissed")  # signals.status (sql/0001)


class WriteRefused(ValueError):
    """A change the database refused (a duplicate name, a failed check, not the user's)."""


class SessionEnded(PermissionError):
    """The session's token names no live session (expired, signed out, password changed)."""


@dataclass(frozen=True)
class Session:
    """A signed-in user: what `users.sign_in` (or single sign-on) gave. The token is the
    only proof of the identity: keep it in the browser session's state, nowhere else."""

    user_id: int
    name: str
    token: str = field(repr=False)
    expires_at: datetime


@dataclass(frozen=True)
class SignalRow:
    id: str
    trader_id: int
    trader: str
    trader_version: int
    symbol: str
    interval: str
    kline_open_ms: int
    kline_close_ms: int
    price: Decimal
    values: dict[str, Any]
    repeat_count: int
    status: str
    latency_ms: float | None
    created_at: datetime


@dataclass(frozen=True)
class SignalFilter:
    trader_ids: tuple[int, ...] = ()
    symbols: tuple[str, ...] = ()
    intervals: tuple[str, ...] = ()
    since: datetime | None = None  # recorded at or after
    statuses: tuple[str, ...] = ()  # of STATUSES; () is every one
    limit: int = 500


@dataclass(frozen=True)
class RuleErrorRow:
    trader_id: int
    trader: str
    trader_version: int
    symbol: str
    error: str
    kline_open_ms: int
    created_at: datetime


@dataclass(frozen=True)
class DbStatus:
    reachable: bool
    server_version: str


class Database:
    def __init__(self, url: str, max_size: int = 8, last_good: LastGood | None = None) -> None:
        self.url = url
        self.pool = psycopg_pool.ConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            open=False,
            check=psycopg_pool.ConnectionPool.check_connection,
            kwargs={"connect_timeout": 3, "options": timeout_options(DASHBOARD_TIMEOUTS)},
            timeout=3,
            reconnect_timeout=30,
            name="klineflow-dashboard",
        )
        self.pool.open(wait=False)
        self.last_good = last_good or LastGood("PostgreSQL")
        self.last_good.server_changed()
        self._lock = threading.Lock()

    def close(self) -> None:
        self.pool.close()

    # -- transactions -------------------------------------------------------------------------
    @contextlib.contextmanager
    def user_tx(self, who: Session) -> Iterator[psycopg.Connection[Any]]:
        """A transaction acting for one signed-in user under row-level security; raises
        SessionEnded when the session is not live (then nothing would be visible)."""
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("SET LOCAL ROLE klineflow_dashboard")
            conn.execute("SELECT set_config('klineflow.session', %s, true)", (who.token,))
            row = conn.execute("SELECT klineflow_current_user_id()").fetchone()
            if row is None or row[0] != who.user_id:
                raise SessionEnded(f"the session of {who.name!r} has ended: sign in again")
            yield conn

    def session_live(self, who: Session) -> bool:
        """Whether the session still names its user; True while PostgreSQL is away (an
        outage signs nobody out)."""
        try:
            with self.user_tx(who):
                return True
        except SessionEnded:
            return False
        except DB_ERRORS:
            return True

    @contextlib.contextmanager
    def public_tx(self) -> Iterator[psycopg.Connection[Any]]:
        """A transaction as the dashboard role with no user: row-level security shows no
        trader or signal (for questions about the server itself)."""
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("SET LOCAL ROLE klineflow_dashboard")
            yield conn

    # -- reads --------------------------------------------------------------------------------
    def user_rows(
        self,
        key: tuple[Any, ...],
        who: Session,
        sql: str,
        params: Sequence[Any],
        row: Callable[[dict[str, Any]], T],
    ) -> Fetched[list[T]]:
        """Rows of one query as this user sees them (RLS), each made by `row`; the last good
        answer (kept under `key`) while PostgreSQL is away."""

        def read() -> list[T]:
            with self.user_tx(who) as conn, conn.cursor(row_factory=dict_row) as cur:
                cur.execute(sql, params)
                return [row(r) for r in cur.fetchall()]

        return self.last_good.fetch(key, read, [], DB_ERRORS)

    def signals(self, who: Session, flt: SignalFilter = SignalFilter()) -> Fetched[list[SignalRow]]:
        where = ["true"]
        params: list[Any] = []
        if flt.trader_ids:
            where.append("s.trader_id = ANY(%s)")
            params.append(list(flt.trader_ids))
        if flt.symbols:
            where.append("s.symbol = ANY(%s)")
            params.append(list(flt.symbols))
        if flt.intervals:
            where.append("s.interval = ANY(%s)")
            params.append(list(flt.intervals))
        if flt.statuses:
            where.append("s.status = ANY(%s)")
            params.append(list(flt.statuses))
        if flt.since is not None:
            where.append("s.created_at >= %s")
            params.append(flt.since)
        sql = (
            f"SELECT {SIGNAL_COLUMNS} FROM signals s JOIN traders t ON t.id = s.trader_id "
            f"WHERE {' AND '.join(where)} ORDER BY s.created_at DESC, s.id DESC LIMIT %s"
        )
        return self.user_rows(("signals", who.user_id, flt), who, sql, (*params, flt.limit),
                              _signal)  # fmt: skip

    def signal(self, who: Session, signal_id: str) -> Fetched[SignalRow | None]:
        def read() -> SignalRow | None:
            with self.user_tx(who) as conn, conn.cursor(row_factory=dict_row) as cur:
                cur.execute(
                    f"SELECT {SIGNAL_COLUMNS} FROM signals s "
                    "JOIN traders t ON t.id = s.trader_id WHERE s.id = %s",
                    (signal_id,),
                )
                row = cur.fetchone()
                return _signal(row) if row else None

        return self.last_good.fetch(("signal", who.user_id, signal_id), read, None, DB_ERRORS)

    def signals_on(
        self, who: Session, symbol: str, interval: str, start_ms: int, end_ms: int
    ) -> Fetched[list[SignalRow]]:
        """The user's signals on one chart: klines opened in [start_ms, end_ms]."""

        sql = (
            f"SELECT {SIGNAL_COLUMNS} FROM signals s JOIN traders t ON t.id = s.trader_id "
            "WHERE s.symbol = %s AND s.interval = %s "
            "AND s.kline_open_ms BETWEEN %s AND %s ORDER BY s.kline_open_ms"
        )
        key = ("signals_on", who.user_id, symbol, interval, start_ms, end_ms)
        return self.user_rows(key, who, sql, (symbol, interval, start_ms, end_ms), _signal)

    def traders(self, who: Session) -> Fetched[list[TraderRow]]:
        def read() -> list[TraderRow]:
            with self.user_tx(who) as conn:
                return load_traders(conn, enabled_only=False)

        return self.last_good.fetch(("traders", who.user_id), read, [], DB_ERRORS)

    def signal_traders(self, who: Session) -> Fetched[dict[str, int]]:
        """Every trader the user's signals may come from, removed ones too (their signals
        stay): label -> id, a removed trader labelled "<name> (removed, #<id>)"."""

        def read() -> dict[str, int]:
            with self.user_tx(who) as conn:
                rows = conn.execute(
                    "SELECT id, name, deleted_at IS NOT NULL FROM traders ORDER BY id"
                ).fetchall()
            return {(f"{name} (removed, #{tid})" if gone else name): int(tid)
                    for tid, name, gone in rows}  # fmt: skip

        return self.last_good.fetch(("signal traders", who.user_id), read, {}, DB_ERRORS)

    def rule_errors(self, who: Session) -> Fetched[list[RuleErrorRow]]:
        sql = (
            "SELECT e.trader_id, t.name AS trader, e.trader_version, e.symbol, e.error, "
            "e.kline_open_ms, e.created_at FROM trader_errors e "
            "JOIN traders t ON t.id = e.trader_id WHERE t.deleted_at IS NULL "
            "ORDER BY e.created_at DESC LIMIT 200"
        )
        return self.user_rows(("rule_errors", who.user_id), who, sql, (),
                              lambda r: RuleErrorRow(**r))  # fmt: skip

    def status(self) -> Fetched[DbStatus]:
        def read() -> DbStatus:
            with self.public_tx() as conn:
                version = conn.execute("SHOW server_version").fetchone()
            assert version is not None
            return DbStatus(True, str(version[0]))

        return self.last_good.fetch(("status",), read, DbStatus(False, ""), DB_ERRORS)

    # -- writes (never from a stale copy: errors propagate) ------------------------------------
    def add_trader(self, who: Session, row: TraderRow) -> TraderRow:
        with _refusals(), self.user_tx(who) as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(INSERT_TRADER, trader_params(who.user_id, row))
            saved = cur.fetchone()
        assert saved is not None
        return row_of(saved)

    def update_trader(self, who: Session, trader_id: int, **changes: Any) -> TraderRow:
        unknown = set(changes) - WRITABLE
        if unknown:
            raise WriteRefused(f"cannot change {', '.join(sorted(unknown))}")
        sets = ", ".join(f"{name} = %s" for name in changes) or "name = name"
        values = [list(v) if isinstance(v, tuple) else v for v in changes.values()]
        with _refusals(), self.user_tx(who) as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                f"UPDATE traders SET {sets} WHERE id = %s AND deleted_at IS NULL "
                f"RETURNING {TRADER_COLUMNS}",
                (*values, trader_id),
            )
            saved = cur.fetchone()
        if saved is None:
            raise WriteRefused(f"you have no trader with id {trader_id}")
        return row_of(saved)

    def remove_trader(self, who: Session, trader_id: int) -> TraderRow:
        """Remove one of the user's traders for good, as `klineflow traders remove` does
        (flows.signals.trader_rows): the flow stops evaluating it, its signals stay."""
        with _refusals(), self.user_tx(who) as conn:
            removed = remove_trader(conn, trader_id)
        if removed is None:
            raise WriteRefused(f"you have no trader with id {trader_id}")
        return removed

    def set_status(self, who: Session, signal_ids: Sequence[str], status: str) -> int:
        """Mark the user's signals 'new', 'seen' or 'dismissed'; how many changed (others'
        signals are not visible under row-level security, so they count nothing)."""
        if status not in STATUSES:
            raise WriteRefused(f"status {status!r} is not one of {', '.join(STATUSES)}")
        with _refusals(), self.user_tx(who) as conn:
            cur = conn.execute(
                "UPDATE signals SET status = %s WHERE id = ANY(%s)", (status, list(signal_ids))
            )
            return cur.rowcount


@contextlib.contextmanager
def _refusals() -> Iterator[None]:
    try:
        yield
    except psycopg.errors.UniqueViolation:
        raise WriteRefused("you already have a trader with that name") from None
    except psycopg.errors.CheckViolation as exc:
        raise WriteRefused(f"rejected by the database: {exc.diag.message_primary}") from None
    except psycopg.errors.InsufficientPrivilege as exc:
        raise WriteRefused(f"not allowed: {exc.diag.message_primary}") from None


def _signal(r: dict[str, Any]) -> SignalRow:
    return SignalRow(
        id=r["id"],
        trader_id=int(r["trader_id"]),
        trader=r["trader"],
        trader_version=int(r["trader_version"]),
        symbol=r["symbol"],
        interval=r["interval"],
        kline_open_ms=int(r["kline_open_ms"]),
        kline_close_ms=int(r["kline_close_ms"]),
        price=r["price"],
        values=dict(r["values"] or {}),
        repeat_count=int(r["repeat_count"]),
        status=r["status"],
        latency_ms=r["latency_ms"],
        created_at=r["created_at"],
    )
