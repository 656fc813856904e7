"""Backtests from the dashboard: the stored recordings, and a run in a background thread of
the Streamlit process (the user's stored runs: ``dashboard.data.backtest_runs``).

A run over recordings goes exactly as `klineflow backtest` goes, through the application's
service (``flows.app.backtests.run_and_record``: the live dataflow over the recordings, the
signals' outcomes, the run recorded). Its klines are built in a Redis of the run's own
(flows.backtest.scratch), not in the live one: the dashboard's Redis user may only read
there. A run over the stored klines (``run_stored_and_record``) reads the live Redis and
writes nothing there. The only other difference is the owner: the signed-in user is the
run's owner (a command-line run has none and is visible to every dashboard user). Runs are
written in `Database.user_tx` transactions of the signed-in user's session: row-level
security lets a user record runs only as her own (sql/0006).
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from flows.app import backtests as service
from flows.backtest.report import SignalOutcome, export
from flows.backtest.scratch import scratch_redis
from flows.domain.keys import KeySpace
from flows.domain.kline import Kline
from flows.domain.stats import RunStats
from flows.settings import load_settings
from flows.signals.book import Book, TraderRow, compile_trader

from .db import Database, Session

RECORDINGS_ENV = "KLINEFLOW_RECORDINGS_DIR"
RECORDING_SUFFIXES = (".jsonl.gz", ".csv", ".zip", ".txt", ".json", ".json.gz")


# -- recordings ---------------------------------------------------------------------------------
def recordings_dir() -> Path:
    """KLINEFLOW_RECORDINGS_DIR (a setting like the others), else `recordings` in the data
    directory (where `klineflow demo` records)."""
    return service.recordings_dir(load_settings())


def recordings(folder: Path | None = None) -> list[Path]:
    """The recordings a backtest can read, by name (sub-folders included): the order a run
    reads them in, whatever order they were picked in (hourly recordings are named by
    their hour)."""
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
class FromKlines:
    """A run over the klines stored in the live Redis instead of recordings."""

    redis_url: str
    namespace: str
    symbols: tuple[str, ...]  # empty: every stored symbol
    span_ms: int | None  # back from the newest closed kline; None: all that is stored


@dataclass(frozen=True)
class RunRequest:
    paths: tuple[Path, ...]
    traders: tuple[TraderRow, ...]
    symbols: frozenset[str] | None = None
    klines: FromKlines | None = None  # set: over the stored klines (`paths` unused)


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
        """The run through the application's one backtest service (flows.app.backtests);
        every failure is shown and the run marked failed."""
        try:
            book = Book(tuple(compile_trader(r) for r in self.request.traders), version=1)
            recorded = self._stored(book) if self.request.klines else self._replayed(book)
        except Exception as exc:  # shown on the page; a recorded run is marked failed
            self.error = _one_line(exc)
            return
        result = recorded.result
        trades = self.stats.trades_read or sum(
            k.trades for ks in result.klines.values() for k in ks
        )
        self.finished = Finished(recorded.run_id or 0, recorded.rows, recorded.span_ms,
                                 result.klines, len(result.failures), trades,
                                 recorded.seconds)  # fmt: skip

    def _replayed(self, book: Book) -> service.Recorded:
        """Over recordings, on a throwaway Redis of its own."""
        params = {
            "symbols": sorted(self.request.symbols) if self.request.symbols else None,
            "from": None,
            "to": None,
            "source_app": "dashboard",
        }
        with scratch_redis() as redis_url:
            return service.run_and_record(
                list(self.request.paths), book, redis_url, self._as_owner,
                symbols=self.request.symbols, params=params, owner_id=self.owner_id,
                stats=self.stats, on_run=self._started,
            )  # fmt: skip

    def _stored(self, book: Book) -> service.Recorded:
        """Over the klines stored in the live Redis (read only)."""
        spec = self.request.klines
        assert spec is not None
        return service.run_stored_and_record(
            spec.redis_url, KeySpace(spec.namespace), book, spec.symbols, self._as_owner,
            span_ms_asked=spec.span_ms, params={"source_app": "dashboard"},
            owner_id=self.owner_id, stats=self.stats, on_run=self._started,
        )  # fmt: skip

    def _started(self, run_id: int) -> None:
        self.run_id = run_id


def start_backtest(request: RunRequest, owner: Session, db: Database) -> BacktestJob:
    job = BacktestJob(request, owner, db)
    job.start()
    return job


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
