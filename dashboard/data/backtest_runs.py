"""The user's stored backtest runs (read under row-level security), what each covered, and
the klines to draw a reopened run's signals on.

A run's parameters say what it covered (``flows.app.backtests.RunFacts``): its source, the
symbols it had klines of, its first kline's open and last kline's close. The klines of a
reopened run come from where the run read them: the stored klines from Redis (while Redis
still keeps them), a recording run's built again from its recordings by the same replay
(``flows.app.backtests.rebuilt_series``, on a throwaway Redis: the dashboard's may only be
read), as long as the files are there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from flows.app.backtests import RECORDINGS, STORED_KLINES, rebuilt_series, stored_series
from flows.backtest.report import HORIZONS, SignalOutcome, summary
from flows.backtest.run import Signal, file_sha256
from flows.backtest.scratch import scratch_redis
from flows.domain.keys import KeySpace
from flows.domain.kline import Kline
from flows.signals.engine import Fire

from .db import Database, Session
from .stale import Fetched

RUNS_LISTED = 50

Stats = list[dict[str, float | int | str | None]]


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

    @property
    def source(self) -> str:
        """`stored klines` or `recordings` (runs from before sources were recorded: by their
        inputs)."""
        found = self.params.get("source")
        if isinstance(found, str):
            return found
        return RECORDINGS if self.inputs else STORED_KLINES

    @property
    def rules(self) -> list[tuple[str, str]]:
        """(name, rule) of each trader; a typed rule (id 0) has no name of its own."""
        return [
            ("" if int(t.get("id", 0)) == 0 else str(t.get("name", "")),
             str(t.get("expression", "")))
            for t in self.traders
        ]  # fmt: skip

    @property
    def intervals(self) -> list[str]:
        return sorted({str(t.get("interval", "")) for t in self.traders})

    @property
    def symbols(self) -> list[str]:
        """The symbols the run had klines of, else those it asked for (empty: all)."""
        for key in ("symbols_seen", "symbols"):
            found = self.params.get(key)
            if isinstance(found, list) and found:
                return [str(s) for s in found]
        return []

    @property
    def span(self) -> tuple[int, int] | None:
        """(first kline's open, last kline's close) in ms, when the run recorded them."""
        first, last = self.params.get("first_open_ms"), self.params.get("last_close_ms")
        if isinstance(first, int) and isinstance(last, int):
            return first, last
        return None

    @property
    def recordings(self) -> list[Path]:
        return [Path(str(i.get("path", ""))) for i in self.inputs]


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


# -- the klines of a reopened run's chart --------------------------------------------------------
@dataclass(frozen=True)
class ChartKlines:
    klines: list[Kline]
    note: str = ""  # what the reader should know (where they came from, why there are none)


def run_klines(
    run: RunRow, symbol: str, interval: str, redis_url: str, namespace: str
) -> ChartKlines:
    """The klines of `symbol` `interval` over the run's span, from where the run read them.
    Raises flows.app.errors.AppError (Redis unreachable) and the replay's errors."""
    span = run.span
    if run.source == STORED_KLINES:
        keys = KeySpace(str(run.params.get("namespace", namespace)))
        start, end = span if span is not None else (0, 2**62)
        got = stored_series(redis_url, keys, symbol, interval, start, end + 1)
        if not got:
            return ChartKlines([], "Redis no longer keeps the klines of this run's span.")
        return ChartKlines(got, "Klines as stored in Redis now.")
    paths = run.recordings
    missing = [p.name for p in paths if not p.is_file()]
    if not paths or missing:
        return ChartKlines([], f"The recordings are gone ({', '.join(missing) or 'none'}): "
                           "the chart cannot be drawn again.")  # fmt: skip
    changed = [p.name for p, i in zip(paths, run.inputs, strict=True)
               if i.get("sha256") and file_sha256(p) != i["sha256"]]  # fmt: skip
    with scratch_redis() as url:
        got = rebuilt_series(paths, symbol, interval, url)
    if span is not None:
        got = [k for k in got if span[0] <= k.open_ms and k.close_ms <= span[1]]
    note = "Klines built again from the run's recordings."
    if changed:
        note += f" {', '.join(changed)} changed since the run (still being recorded then)."
    return ChartKlines(got, note)


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
