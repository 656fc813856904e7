"""Backtest runs in PostgreSQL (sql/0003_backtests.sql): one transaction per run.

`url` is a PostgreSQL URL, or a function giving a connection context of the caller's own
(the dashboard's: a transaction acting for the signed-in user, under row-level security)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import psycopg

from flows.backtest.report import HORIZONS, SignalOutcome
from flows.signals.book import Book

Target = str | Callable[[], AbstractContextManager[psycopg.Connection[Any]]]


def _connection(url: Target) -> AbstractContextManager[psycopg.Connection[Any]]:
    return psycopg.connect(url) if isinstance(url, str) else url()


def package_version() -> str:
    try:
        return version("klineflow")
    except PackageNotFoundError:
        return "unknown"


def _files(inputs: Mapping[str, str]) -> str:
    return json.dumps([{"path": p, "sha256": h} for p, h in sorted(inputs.items())])


def start_run(
    url: Target,
    inputs: Mapping[str, str],
    book: Book,
    params: dict[str, Any],
    owner_id: int | None = None,
) -> int:
    """Record a run as started; `owner_id` None: a command-line run, seen by every user."""
    traders = [
        {"id": t.row.id, "version": t.row.version, "name": t.row.name,
         "expression": t.row.expression, "interval": t.row.interval,
         "trigger_mode": t.row.trigger_mode, "cooldown_bars": t.row.cooldown_bars}
        for t in book.traders
    ]  # fmt: skip
    with _connection(url) as conn:
        row = conn.execute(
            "INSERT INTO backtest_runs (inputs, traders, params, package_version, owner_id) "
            "VALUES (%s, %s, %s, %s, %s) RETURNING id",
            (_files(inputs), json.dumps(traders), json.dumps(params), package_version(),
             owner_id),
        ).fetchone()  # fmt: skip
    assert row is not None
    return int(row[0])


def finish_run(
    url: Target, run_id: int, rows: Sequence[SignalOutcome], trades: int, klines: int,
    seconds: float, failed: bool = False, inputs: Mapping[str, str] | None = None,
    span_ms: int | None = None, more: Mapping[str, Any] | None = None,
) -> None:  # fmt: skip
    """Store the signals and the figures; `inputs` (path -> SHA-256, known once the files were
    read), `span_ms` (what signals per day are counted over) and `more` (what the run covered:
    source, symbols, first and last kline) go into the run too."""
    params = []
    for r in rows:
        f = r.signal.fire
        outcome = {}
        for n in HORIZONS:
            outcome[f"ret{n}"], outcome[f"mfe{n}"] = r.returns[n], r.mfe[n]
            outcome[f"mae{n}"] = r.mae[n]
        params.append(
            (run_id, f.id, f.trader_id, f.trader_version, f.symbol, f.interval, f.open_ms,
             f.close_ms, f.price, json.dumps(f.values, sort_keys=True, allow_nan=False),
             r.signal.repeat_count, json.dumps(outcome))
        )  # fmt: skip
    with _connection(url) as conn, conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO backtest_signals (run_id, id, trader_id, trader_version, symbol, "
            'interval, kline_open_ms, kline_close_ms, price, "values", repeat_count, outcomes) '
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            params,
        )
        cur.execute(
            "UPDATE backtest_runs SET status = %s, trades = %s, klines = %s, seconds = %s, "
            "finished_at = now(), inputs = coalesce(%s::jsonb, inputs), "
            "params = CASE WHEN %s::bigint IS NULL THEN params "
            "ELSE params || jsonb_build_object('span_ms', %s::bigint) END || %s::jsonb "
            "WHERE id = %s",
            ("failed" if failed else "done", trades, klines, seconds,
             _files(inputs) if inputs is not None else None, span_ms, span_ms,
             json.dumps(dict(more or {})), run_id),
        )  # fmt: skip
