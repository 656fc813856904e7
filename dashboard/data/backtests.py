"""Backtests from the dashboard: the stored recordings, a run in a background thread of the
Streamlit process, and the user's stored runs (read under row-level security).

A run goes exactly as `klineflow backtest` goes: `start_run`, `run_backtest` (the live
dataflow over the recordings, into a scratch Redis namespace), the signals' outcomes, then
`finish_run`. Its klines are built in a Redis of the run's own (flows.backtest.scratch), not
in the live one: the dashboard's Redis user may only read there. The only other difference is
the owner: `start_run` records the signed-in user as the run's owner (a command-line run has
none and is visible to every dashboard user). Runs are written, and read, in
`Database.user_tx` transactions of the signed-in user's session: row-level security lets a
user record runs only as her own and read only her own and command-line ones (sql/0006).
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

from flows.app.backtests import run_and_record
from flows.backtest.report import HORIZONS, SignalOutcome, export, summary
from flows.backtest.run import Signal
from flows.backtest.scratch import scratch_redis
from flows.domain.kline import Kline
from flows.domain.stats import RunStats
from flows.settings import load_settings
from flows.signals.book import Book, TraderRow, compile_trader
from flows.signals.engine import Fire

from .db import Database, Session
from .stale import Fetched

RECORDINGS_ENV = "KLINEFLOW_RECORDINGS_DIR"
RECORDING_SUFFIXES = (".jsonl.gz", ".csv", ".zip", ".txt", ".json", ".json.gz")
RUNS_LISTED = 50

Stats = list[dict[str, float | int | str | None]]


# -- recordings ---------------------------------------------------------------------------------
def recordings_dir() -> Path:
    """KLINEFLOW_RECORDINGS_DIR (a setting like the others), else `recordings` in the data
    directory."""
    settings = load_settings()
    if settings.recordings_dir is not None:
        return settings.recordings_dir.expanduser()
    return settings.data_dir / "recordings"


def recordings(folder: Path | None = None) -> list[Path]:
    """The recordings a backtest can read, by name (sub-folders included)."""
    root = folder or recordings_dir()
    if not root.is_dir():
        return []
    found = [
        p
        for p in root.rglob("*")
        if p.is_file() and any(p.name.lower().endswith(s) for s in RECORDING_SUFFIXES)
    ]
    return sorted(found, key=lambda p: str(p.relative_to(root)))


# -- what a run reports -------------------------------------------------------------------------
def returns_of(rows: Sequence[SignalOutcome], horizon: int) -> list[float]:
    """The forward returns after `horizon` bars that exist (the data went far enough)."""
    return [v for r in rows if (v := r.returns.get(horizon)) is not None]


def export_csv(rows: Sequence[SignalOutcome]) -> bytes:
    """The run's export (flows.backtest.report.export) as CSV bytes."""
    with tempfile.TemporaryDirectory(prefix="klineflow-export-") as tmp:
        path = Path(tmp) / "signals.csv"
        export(rows, path)
        return path.read_bytes()


@dataclass(frozen=True)
class RunRequest:
    paths: tuple[Path, ...]
    traders: tuple[TraderRow, ...]
    symbols: frozenset[str] | None = None


@dataclass(frozen=True)
class Finished:
    run_id: int
    rows: list[SignalOutcome]
    span_ms: int
    klines: dict[tuple[str, str], list[Kline]]
    failures: int
    trades: int
    seconds: float


@dataclass
class BacktestJob:
    """One run in a thread of its own; the page polls `stats`, `done` and `error`."""

    request: RunRequest
    owner: Session
    db: Database
    stats: RunStats = field(default_factory=RunStats)
    run_id: int | None = None
    finished: Finished | None = None
    error: str | None = None
    started_s: float = field(default_factory=time.monotonic)
    _thread: threading.Thread | None = None

    @property
    def owner_id(self) -> int:
        return self.owner.user_id

    def _as_owner(self) -> contextlib.AbstractContextManager[psycopg.Connection[Any]]:
        return self.db.user_tx(self.owner)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="klineflow-backtest", daemon=True)
        self._thread.start()

    @property
    def done(self) -> bool:
        return self.finished is not None or self.error is not None

    def wait(self, timeout: float | None = None) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
        return self.done

    def progress(self) -> tuple[float, float | None]:
        """(fraction of the input bytes read, estimated seconds left or None)."""
        total = self.stats.bytes_total
        if total <= 0:
            return 0.0, None
        frac = min(self.stats.bytes_done / total, 1.0)
        elapsed = time.monotonic() - self.started_s
        eta = elapsed * (1.0 - frac) / frac if frac > 0 else None
        return frac, eta

    def _run(self) -> None:
        """The run through the application's one backtest service (flows.app.backtests),
        on a throwaway Redis of its own; every failure is shown and the run marked failed."""
        try:
            book = Book(tuple(compile_trader(r) for r in self.request.traders), version=1)
            params = {
                "symbols": sorted(self.request.symbols) if self.request.symbols else None,
                "from": None,
                "to": None,
                "source": "dashboard",
            }
            with scratch_redis() as redis_url:
                recorded = run_and_record(
                    list(self.request.paths), book, redis_url, self._as_owner,
                    symbols=self.request.symbols, params=params, owner_id=self.owner_id,
                    stats=self.stats, on_run=self._started,
                )  # fmt: skip
        except Exception as exc:  # shown on the page; a recorded run is marked failed
            self.error = _one_line(exc)
            return
        result = recorded.result
        self.finished = Finished(recorded.run_id or 0, recorded.rows, recorded.span_ms,
                                 result.klines, len(result.failures), self.stats.trades_read,
                                 recorded.seconds)  # fmt: skip

    def _started(self, run_id: int) -> None:
        self.run_id = run_id


def start_backtest(request: RunRequest, owner: Session, db: Database) -> BacktestJob:
    job = BacktestJob(request, owner, db)
    job.start()
    return job


# -- the user's stored runs (row-level security) -------------------------------------------------
@dataclass(frozen=True)
class RunRow:
    id: int
    owner_id: int | None
    status: str
    inputs: list[dict[str, Any]]
    traders: list[dict[str, Any]]
    params: dict[str, Any]
    trades: int | None
    klines: int | None
    seconds: float | None
    created_at: datetime
    finished_at: datetime | None
    signals: int

    @property
    def trader_names(self) -> dict[int, str]:
        return {int(t["id"]): str(t.get("name", "")) for t in self.traders}


def runs(db: Database, who: Session, limit: int = RUNS_LISTED) -> Fetched[list[RunRow]]:
    """The runs this user may see (her own, and command-line runs), newest first."""

    sql = (
        "SELECT r.id, r.owner_id, r.status, r.inputs, r.traders, r.params, r.trades, "
        "r.klines, r.seconds, r.created_at, r.finished_at, "
        "(SELECT count(*) FROM backtest_signals s WHERE s.run_id = r.id) AS signals "
        "FROM backtest_runs r ORDER BY r.id DESC LIMIT %s"
    )
    return db.user_rows(("backtest_runs", who.user_id, limit), who, sql, (limit,), _run_row)


def run_signals(db: Database, who: Session, run_id: int) -> Fetched[list[SignalOutcome]]:
    """A stored run's signals with the outcomes recorded for them."""

    sql = (
        "SELECT id, trader_id, trader_version, symbol, interval, kline_open_ms, "
        'kline_close_ms, price, "values", repeat_count, outcomes FROM backtest_signals '
        "WHERE run_id = %s ORDER BY trader_id, symbol, interval, kline_open_ms"
    )
    key = ("backtest_signals", who.user_id, run_id)
    return db.user_rows(key, who, sql, (run_id,), _outcome)


def stored_span_ms(run: RunRow, rows: Sequence[SignalOutcome]) -> int:
    """The span the run's statistics were computed over; for runs that did not record it
    (the command line), from its first signal's kline to its last one's close."""
    recorded = run.params.get("span_ms")
    if isinstance(recorded, int):
        return recorded
    if not rows:
        return 0
    first = min(r.signal.fire.open_ms for r in rows)
    last = max(r.signal.fire.close_ms for r in rows)
    return last - first


def stored_stats(run: RunRow, rows: Sequence[SignalOutcome]) -> Stats:
    return summary(rows, stored_span_ms(run, rows))


def _run_row(r: dict[str, Any]) -> RunRow:
    return RunRow(
        id=int(r["id"]),
        owner_id=None if r["owner_id"] is None else int(r["owner_id"]),
        status=str(r["status"]),
        inputs=list(r["inputs"] or []),
        traders=list(r["traders"] or []),
        params=dict(r["params"] or {}),
        trades=r["trades"],
        klines=r["klines"],
        seconds=r["seconds"],
        created_at=r["created_at"],
        finished_at=r["finished_at"],
        signals=int(r["signals"]),
    )


def _number(v: Any) -> float | None:
    return None if v is None else float(v)


def _outcome(r: dict[str, Any]) -> SignalOutcome:
    price: Decimal = r["price"]
    fire = Fire(
        id=str(r["id"]),
        trader_id=int(r["trader_id"]),
        trader_version=int(r["trader_version"]),
        symbol=str(r["symbol"]),
        interval=str(r["interval"]),
        open_ms=int(r["kline_open_ms"]),
        close_ms=int(r["kline_close_ms"]),
        window_start_ms=int(r["kline_open_ms"]),
        price=str(price),
        values=dict(r["values"] or {}),
        closed_at_ms=0,
    )
    stored: dict[str, Any] = dict(r["outcomes"] or {})
    return SignalOutcome(
        Signal(fire, int(r["repeat_count"])),
        {n: _number(stored.get(f"ret{n}")) for n in HORIZONS},
        {n: _number(stored.get(f"mfe{n}")) for n in HORIZONS},
        {n: _number(stored.get(f"mae{n}")) for n in HORIZONS},
    )


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
