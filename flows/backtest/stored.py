"""Run traders over klines that are already built (the ones stored in Redis) instead of
recorded trades.

The rules engine is the one the live flow runs (``flows.signals.shard_engine.ShardEngine``):
the symbols are taken ``SYMBOLS_AT_ONCE`` at a time, and the closed klines of every interval
their traders read are handed to it at once (it evaluates them close by close, across the
symbols), each symbol warmed up by the `seeder` from the klines closed before its first one
(as the live flow seeds them after a start), and the fires are grouped by the cooldown as
PostgreSQL groups them (``flows.backtest.run.group_repeats``). The result has the shape of a
recording run's, so outcomes, statistics and storage are the same for both.

Pure: the klines come from `read`, a function of the caller's (Redis in
``flows.app.backtests``).

>>> from flows.backtest.run import needed_intervals
>>> from flows.signals.book import Book, TraderRow, compile_trader
>>> from flows.domain.kline import Kline
>>> bars = [Kline(i * 60_000, i * 60_000 + 59_999, 10, 12, 9, 10 + (i % 2), 1, 1, 1, 0, 0)
...         for i in range(6)]
>>> row = TraderRow(1, "up bars", "close > open", "1m", cooldown_bars=0)
>>> book = Book((compile_trader(row),), version=1)
>>> result = run_over_klines(book, ["XRPETH"], lambda s, iv: bars, None)
>>> [s.fire.open_ms // 60_000 for s in result.signals]
[1, 3, 5]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from flows.backtest.run import BacktestResult, group_repeats
from flows.domain.kline import Kline
from flows.domain.stats import RunStats
from flows.signals.book import Book
from flows.signals.engine import EngineCounters, Fire, RuleFailure, Seeder
from flows.signals.shard_engine import ShardEngine

# (symbol, interval) -> its closed klines in the span, oldest first
KlineReader = Callable[[str, str], Sequence[Kline]]
SYMBOLS_AT_ONCE = 128  # symbols in memory and in one engine at once (progress: per group)


def main_intervals(book: Book) -> tuple[str, ...]:
    """The intervals the traders are evaluated on (their own; not the `tf=` ones)."""
    return tuple(sorted({t.row.interval for t in book.traders}))


def run_over_klines(
    book: Book,
    symbols: Sequence[str],
    read: KlineReader,
    seeder: Seeder | None,
    stats: RunStats | None = None,
) -> BacktestResult:
    """Evaluate `book`'s traders over each symbol's klines; `stats` counts the symbols done
    (`files_done`, with `bytes_total` the number of symbols: a progress bar's input) and the
    klines read per interval (`klines_closed`). The result keeps the klines of the traders'
    own intervals, every symbol's (for outcomes, the span and charts)."""
    stats = stats if stats is not None else RunStats()
    stats.bytes_total = len(symbols)
    fires: list[Fire] = []
    failures: list[RuleFailure] = []
    klines: dict[tuple[str, str], list[Kline]] = {}
    counters = EngineCounters()
    for first in range(0, len(symbols), SYMBOLS_AT_ONCE):
        group = symbols[first : first + SYMBOLS_AT_ONCE]
        closed: list[tuple[str, str, Kline]] = []
        for symbol in group:
            traders = book.for_symbol(symbol)
            if not traders:
                continue
            mains = {t.row.interval for t in traders}
            wanted = {iv for t in traders for iv in (*t.program.requirements, t.row.interval)}
            for interval in sorted(wanted):
                got = list(read(symbol, interval))
                stats.klines_closed[interval] += len(got)
                closed.extend((symbol, interval, k) for k in got)
                if interval in mains and got:
                    klines[(symbol, interval)] = got
        if closed:
            fired, failed = ShardEngine().process(closed, book, seeder, 0, counters)
            fires.extend(fired)
            failures.extend(failed)
        stats.files_done += len(group)
        stats.bytes_done = stats.files_done
    stats.rules = {"evaluations": counters.evaluations, "fires": counters.fires,
                   "not_ready": counters.not_ready}  # fmt: skip
    return BacktestResult(group_repeats(fires), failures, stats, "", klines)
