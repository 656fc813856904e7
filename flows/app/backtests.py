"""Run a backtest and keep its record: the one way the command line and the dashboard do it.

A stored run is recorded as started before the files are read and ends `done` or `failed` on
every path: an exception anywhere (a file missing, Redis away, a bug), and input that gave no
trade at all, end it `failed`, so no run stays `running` for ever. Input that gave nothing is
a failure a person can act on (``NothingUsable``, with the hint that applies).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flows.app.errors import NothingUsable
from flows.backtest.report import SignalOutcome, outcomes, span_ms
from flows.backtest.run import BacktestResult, needed_intervals, run_backtest
from flows.backtest.store import Target, finish_run, start_run
from flows.domain.stats import RunStats
from flows.domain.trade_checks import DEFAULT_FUTURE_MARGIN_MS
from flows.signals.book import Book


@dataclass(frozen=True)
class Recorded:
    run_id: int | None  # None: not stored
    result: BacktestResult
    rows: list[SignalOutcome]
    span_ms: int
    seconds: float


def nothing_read(stats: RunStats, what: str = "the input") -> NothingUsable | None:
    """Why a run over files gave no trade, with what to do; None when it read trades."""
    if stats.trades_read:
        return None
    dead = stats.dead_letters
    if stats.bytes_total == 0:
        return NothingUsable(f"no trades read: {what} is empty",
                             "give a file with trades in it")  # fmt: skip
    if dead["no_symbol"]:
        return NothingUsable(
            f"no trades read: the symbol of {dead['no_symbol']} file(s) cannot be told from "
            "their names",
            "pass --symbol SYMBOL (e.g. --symbol BTCUSDT)",
        )
    if dead["malformed"] or dead["unknown"] or dead["implausible"] or dead["invalid"]:
        refused = sum(dead[r] for r in ("malformed", "unknown", "implausible", "invalid"))
        return NothingUsable(
            f"no trades read: {refused:,} record(s) of {what} were not trades klineflow can use",
            "see the dead letters (`klineflow status`) and the README's input formats",
        )
    if stats.trades_filtered:
        return NothingUsable(f"no trades read: all {stats.trades_filtered:,} trades were of "
                             "other symbols", "check --symbols")  # fmt: skip
    return NothingUsable(
        f"no trades read: {what} is empty or holds no trades",
        "give captures, recordings, aggTrades/trades dumps or REST JSON",
    )


def run_and_record(
    paths: Sequence[Path],
    book: Book,
    redis_url: str,
    store: Target | None,
    *,
    symbols: frozenset[str] | None = None,
    start_ms: int | None = None,
    end_ms: int | None = None,
    params: dict[str, Any] | None = None,
    owner_id: int | None = None,
    stats: RunStats | None = None,
    future_margin_ms: int = DEFAULT_FUTURE_MARGIN_MS,
    on_run: Callable[[int], None] | None = None,
) -> Recorded:
    """Replay `paths` with `book`'s traders (see ``flows.backtest.run``); with `store`, the
    run is recorded there and always finished. `store` is a URL or a connection factory (the
    dashboard's: a transaction acting for the signed-in user); `on_run` hears the run's id as
    soon as it is recorded (a page showing the run while it goes)."""
    stats = stats if stats is not None else RunStats()
    intervals = needed_intervals(book)
    run_id = None
    if store is not None:
        run_id = start_run(store, {}, book, {**(params or {}), "intervals": list(intervals)},
                           owner_id=owner_id)  # fmt: skip
        if on_run is not None:
            on_run(run_id)
    started = time.monotonic()
    try:
        result = run_backtest(list(paths), book, tuple(intervals), redis_url, symbols, start_ms,
                              end_ms, stats=stats, future_margin_ms=future_margin_ms)  # fmt: skip
        empty = nothing_read(stats)
        if empty is not None:
            raise empty
        rows = outcomes(result.signals, result.klines)
        span = span_ms(result.klines)
        seconds = time.monotonic() - started
        if store is not None and run_id is not None:
            closed = sum(stats.klines_closed.values())
            finish_run(store, run_id, rows, stats.trades_read, closed, seconds,
                       inputs=result.input_hashes, span_ms=span)  # fmt: skip
    except BaseException:
        if store is not None and run_id is not None:
            with contextlib.suppress(Exception):  # the store may be what failed
                finish_run(store, run_id, [], stats.trades_read, 0, time.monotonic() - started,
                           failed=True)  # fmt: skip
        raise
    return Recorded(run_id, result, rows, span, seconds)
