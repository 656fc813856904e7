"""PostgreSQL side of traders and signals: reading traders, writing signals, watching changes.

* ``SignalWriter`` records a batch of fires and rule failures in ONE transaction (a pipeline
  of ``klineflow_record_signal`` calls: new row, repeat or duplicate is decided there),
  together with the evaluation progress (``rule_progress``) of the klines they were decided
  on. If the server is away the batch is kept and retried with the next one (signals are
  idempotent, so a retry after an unclear commit is harmless) and the flow runs on; past
  ``max_pending`` waiting items the writer waits for the server instead (the flow pauses,
  its buffers bounded), and nothing is ever dropped. A crash loses only what the progress
  in PostgreSQL does not cover, and a restart decides those klines again.
* ``BookWatcher`` keeps a ``BookHolder`` current: it LISTENs on channel ``traders`` and
  rebuilds the book at each notification (and every ``poll_s`` as a safety net), reconnecting
  after a lost connection.
* ``TraderStore`` is the command line's CRUD on traders (as the migrating owner); removing a
  trader keeps its signals (``flows.signals.trader_rows.remove_trader``).

The writer and the watcher work for the flow: their connections act as ``klineflow_flow``
(``SET ROLE`` as they connect, flows.storage.pg_roles), so they have that role's rights and no
more, whatever login the URL names. ``TraderStore`` uses the login as it is: adding and
editing traders is the owner's (or a dashboard user's, through the dashboard).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import dict_row

from flows.domain.clock import SYSTEM_CLOCK, Clock
from flows.signals.book import Book, BookHolder, TraderRow, build_book
from flows.signals.engine import Fire, Progress, RuleFailure
from flows.signals.trader_rows import (
    INSERT_TRADER,
    TRADER_COLUMNS,
    WRITABLE_TRADER_FIELDS,
    ensure_user,
    load_traders,
    remove_trader,
    row_of,
    trader_params,
)
from flows.storage.migrations import MigrationError
from flows.storage.pg_roles import FLOW_ROLE, connect_as, ensure_schema

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------- writing signals

_RECORD = "SELECT klineflow_record_signal(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s)"
_PROGRESS = (
    "INSERT INTO rule_progress (symbol, interval, evaluated_open_ms) VALUES (%s, %s, %s) "
    "ON CONFLICT (symbol, interval) DO UPDATE SET evaluated_open_ms = "
    "EXCLUDED.evaluated_open_ms, updated_at = now() "
    "WHERE rule_progress.evaluated_open_ms < EXCLUDED.evaluated_open_ms"
)
_FAILURE = (
    "INSERT INTO trader_errors (trader_id, trader_version, symbol, error, kline_open_ms) "
    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
)


@dataclass
class WriterCounters:
    new: int = 0
    repeats: int = 0
    duplicates: int = 0
    failures_recorded: int = 0
    batches: int = 0
    retries: int = 0
    waits: int = 0  # times the writer held the flow until PostgreSQL answered
    latencies_ms: list[float] = field(default_factory=list)  # recent close -> commit


class SignalWriter:
    def __init__(
        self,
        url: str,
        clock: Clock = SYSTEM_CLOCK,
        record_latency: bool = True,
        max_pending: int = 100_000,
    ) -> None:
        self._url = url
        self._clock = clock
        self._record_latency = record_latency
        self._max_pending = max_pending
        self._conn: psycopg.Connection[Any] | None = None
        self._pending: list[Fire | RuleFailure | Progress] = []
        self.counters = WriterCounters()
        self.waiting = False  # the server is away and the writer holds the flow

    def _connect(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = connect_as(self._url, FLOW_ROLE, autocommit=False)
        return self._conn

    def write(self, items: Iterable[Fire | RuleFailure | Progress]) -> bool:
        """Record ``items`` (and any left from failed attempts); False if the server is away."""
        self._pending.extend(items)
        if not self._pending:
            return True
        batch = self._pending
        try:
            results = self._write(batch)
        except psycopg.Error as exc:
            self.counters.retries += 1
            log.warning("signals not written yet (%d waiting): %s", len(batch), exc)
            self._close()
            return False
        self._pending = []
        c = self.counters
        c.batches += 1
        for outcome in results:
            if outcome == "new":
                c.new += 1
            elif outcome == "repeat":
                c.repeats += 1
            elif outcome == "duplicate":
                c.duplicates += 1
        return True

    def write_or_wait(
        self, items: Iterable[Fire | RuleFailure | Progress], stop: threading.Event | None = None
    ) -> None:
        """`write`, and while more than `max_pending` items wait, try again with backoff until
        the server takes them (nothing is dropped; the flow pauses meanwhile)."""
        if self.write(items) or len(self._pending) <= self._max_pending:
            return
        self.counters.waits += 1
        self.waiting = True
        log.error("PostgreSQL away with %d signal items waiting: the flow waits for it",
                  len(self._pending))  # fmt: skip
        delay = 0.2
        pause = stop or threading.Event()
        try:
            while not self.write(()):
                if pause.wait(delay):
                    return
                delay = min(delay * 2, 5.0)
        finally:
            self.waiting = False

    def _write(self, batch: Sequence[Fire | RuleFailure | Progress]) -> list[str]:
        conn = self._connect()
        now = self._clock.now_ms()
        failures = [f for f in batch if isinstance(f, RuleFailure)]
        fires = [f for f in batch if isinstance(f, Fire)]
        progress: dict[tuple[str, str], int] = {}
        for p in batch:
            if isinstance(p, Progress) and p.open_ms > progress.get((p.symbol, p.interval), -1):
                progress[(p.symbol, p.interval)] = p.open_ms
        outcomes: list[str] = []
        with conn.transaction(), conn.cursor() as cur:
            if failures:
                cur.executemany(
                    _FAILURE,
                    [(f.trader_id, f.trader_version, f.symbol, f.error[:2000], f.open_ms)
                     for f in failures],
                )  # fmt: skip
            if fires:
                cur.executemany(_RECORD, [self._params(f, now) for f in fires], returning=True)
                while True:
                    row = cur.fetchone()
                    outcomes.append(str(row[0]) if row else "duplicate")
                    if not cur.nextset():
                        break
            if progress:
                cur.executemany(_PROGRESS, [(s, i, t) for (s, i), t in progress.items()])
        self.counters.failures_recorded += len(failures)
        if self._record_latency and fires:
            recent = self.counters.latencies_ms
            exact = self._clock.now_exact_ms()  # a commit can take under a millisecond
            recent.extend(exact - f.closed_at_ms for f in fires if f.closed_at_ms >= 0)
            del recent[: max(0, len(recent) - 10_000)]
        return outcomes

    def _params(self, f: Fire, now_ms: int) -> tuple[Any, ...]:
        timely = self._record_latency and f.closed_at_ms >= 0  # (not a catch-up)
        latency = float(now_ms - (f.close_ms + 1)) if timely else None
        return (
            f.id,
            f.trader_id,
            f.trader_version,
            f.symbol,
            f.interval,
            f.open_ms,
            f.close_ms,
            f.window_start_ms,
            f.price,
            json.dumps(f.values, allow_nan=False, sort_keys=True),
            latency,
        )

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
        self._conn = None

    def close(self) -> None:
        self._close()


# ------------------------------------------------------------------------- watching traders


class BookWatcher(threading.Thread):
    """Keeps ``holder.book`` equal to the enabled traders in PostgreSQL."""

    def __init__(
        self,
        url: str,
        holder: BookHolder,
        intervals: Sequence[str] | None = None,
        poll_s: float = 30.0,
        progress: bool = False,
    ) -> None:
        super().__init__(name="klineflow-traders", daemon=True)
        self.progress = progress  # also read the rules' progress (live flows)
        self._url = url
        self.holder = holder
        self._intervals = list(intervals) if intervals is not None else None
        self._poll_s = poll_s
        self._stop = threading.Event()
        self.reloads = 0
        self.connected = threading.Event()

    def load(self, conn: psycopg.Connection[Any]) -> Book:
        rows = load_traders(conn)
        if self.holder.progress is None and self.progress:
            # where the rules continue: read once, before any engine can start
            found = conn.execute(
                "SELECT symbol, interval, evaluated_open_ms FROM rule_progress"
            ).fetchall()
            self.holder.progress = {(str(s), str(i)): int(t) for s, i, t in found}
        conn.commit()
        book = build_book(rows, self._intervals, self.holder.book)
        if book is not self.holder.book:
            self.reloads += 1
            log.info("traders loaded: %d active, %d left out", len(book.traders),
                     len(book.errors))  # fmt: skip
            if book.errors:  # left out: the owner sees why (symbol '*': on every symbol)
                with conn.transaction():
                    conn.cursor().executemany(
                        _FAILURE, [(e.trader_id, e.version, "*", e.message[:500], 0)
                                   for e in book.errors],
                    )  # fmt: skip
        self.holder.set(book)
        return book

    def load_once(self) -> Book:
        with connect_as(self._url, FLOW_ROLE) as conn:
            return self.load(conn)

    def run(self) -> None:
        backoff = 0.5
        migrated = False
        while not self._stop.is_set():
            try:
                if not migrated:  # the flow may have started while PostgreSQL was away
                    try:
                        ensure_schema(self._url)
                    except MigrationError as exc:  # a login that may not migrate: say it
                        log.error("traders not loaded: %s", exc)
                        self._stop.wait(30.0)
                        continue
                    migrated = True
                with connect_as(self._url, FLOW_ROLE, autocommit=True) as conn:
                    conn.execute("LISTEN traders")
                    self.load(conn)
                    self.connected.set()
                    backoff = 0.5
                    while not self._stop.is_set():
                        # wait for a change (or poll_s, the safety net), drain what arrived
                        # with it, then reload once
                        for _ in conn.notifies(timeout=self._poll_s, stop_after=1):
                            pass
                        for _ in conn.notifies(timeout=0.05):
                            pass
                        self.load(conn)
            except psycopg.Error as exc:
                self.connected.clear()
                log.warning("traders watch lost (%s); retrying in %.1fs", exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def stop(self) -> None:
        self._stop.set()


# ------------------------------------------------------------------------- the command line


@dataclass(frozen=True)
class SignalCounts:
    total: int
    last_24h: int
    fires: int  # counting cooldown repeats


class TraderError(ValueError):
    """A trader command could not be carried out (unknown trader, bad field value)."""


class TraderStore:
    def __init__(self, url: str) -> None:
        self._url = url

    def _conn(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self._url, connect_timeout=5)

    def add(self, row: TraderRow, owner: str = "local") -> TraderRow:
        with self._conn() as conn:
            owner_id = ensure_user(conn, owner)
            try:
                with conn.cursor(row_factory=dict_row) as cur:
                    cur.execute(INSERT_TRADER, trader_params(owner_id, row))
                    new = cur.fetchone()
            except psycopg.errors.UniqueViolation:
                raise TraderError(f"{owner} already has a trader named {row.name!r}") from None
            except psycopg.errors.CheckViolation as exc:
                raise TraderError(f"rejected by the database: {exc.diag.message_primary}") from None
            assert new is not None
            return row_of(new)

    def _get(self, conn: psycopg.Connection[Any], trader_id: int) -> TraderRow:
        with conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                f"SELECT {TRADER_COLUMNS} FROM traders WHERE id = %s AND deleted_at IS NULL",
                (trader_id,),
            )
            record = cur.fetchone()
        if record is None:
            raise TraderError(f"no trader with id {trader_id}")
        return row_of(record)

    def get(self, trader_id: int) -> TraderRow:
        with self._conn() as conn:
            return self._get(conn, trader_id)

    def find(self, ref: str) -> TraderRow:
        """A trader by id or by (unique) name."""
        with self._conn() as conn:
            if ref.isdigit():
                return self._get(conn, int(ref))
            ids = conn.execute(
                "SELECT id FROM traders WHERE name = %s AND deleted_at IS NULL", (ref,)
            ).fetchall()
            if not ids:
                raise TraderError(f"no trader named {ref!r}")
            if len(ids) > 1:
                raise TraderError(f"several traders are named {ref!r}; use the id")
            return self._get(conn, int(ids[0][0]))

    def all(self) -> list[TraderRow]:
        with self._conn() as conn:
            return load_traders(conn, enabled_only=False)

    def update(self, trader_id: int, **changes: Any) -> TraderRow:
        unknown = set(changes) - WRITABLE_TRADER_FIELDS
        if unknown:
            raise TraderError(f"cannot change {', '.join(sorted(unknown))}")
        if not changes:
            return self.get(trader_id)
        sets = ", ".join(f"{name} = %s" for name in changes)
        values = [list(v) if isinstance(v, tuple) else v for v in changes.values()]
        with self._conn() as conn:
            try:
                done = conn.execute(
                    f"UPDATE traders SET {sets} WHERE id = %s AND deleted_at IS NULL RETURNING id",
                    (*values, trader_id),
                ).fetchone()
            except psycopg.errors.UniqueViolation:
                raise TraderError(
                    f"the owner of trader {trader_id} already has a trader named "
                    f"{changes.get('name')!r}"
                ) from None
            except psycopg.errors.CheckViolation as exc:
                raise TraderError(f"rejected by the database: {exc.diag.message_primary}") from None
            if done is None:
                raise TraderError(f"no trader with id {trader_id}")
            return self._get(conn, trader_id)

    def remove(self, trader_id: int) -> TraderRow:
        """Remove a trader for good; its signals stay (``remove_trader``)."""
        with self._conn() as conn:
            removed = remove_trader(conn, trader_id)
        if removed is None:
            raise TraderError(f"no trader with id {trader_id}")
        return removed

    def signals(self, trader_id: int, limit: int = 20) -> list[dict[str, Any]]:
        with self._conn() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                'SELECT id, symbol, interval, kline_open_ms, price, repeat_count, "values", '
                "latency_ms, created_at FROM signals WHERE trader_id = %s "
                "ORDER BY kline_open_ms DESC LIMIT %s",
                (trader_id, limit),
            )
            return list(cur.fetchall())

    def signal_counts(self) -> dict[int, SignalCounts]:
        """Per trader: signals recorded, those of the last 24 hours, and fires counting
        cooldown repeats."""
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT trader_id, count(*), count(*) FILTER (WHERE created_at > now() - "
                "interval '24 hours'), coalesce(sum(repeat_count), 0) FROM signals "
                "GROUP BY trader_id"
            ).fetchall()
        return {int(t): SignalCounts(int(a), int(d), int(f)) for t, a, d, f in rows}

    def errors(self, trader_id: int) -> list[dict[str, Any]]:
        with self._conn() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                "SELECT trader_version, symbol, error, kline_open_ms, created_at "
                "FROM trader_errors WHERE trader_id = %s ORDER BY created_at DESC",
                (trader_id,),
            )
            return list(cur.fetchall())
