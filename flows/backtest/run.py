"""Run traders over recorded trades with the live dataflow, in event time.

No separate backtest engine: the replay job builds klines exactly as live does (into a scratch
Redis namespace, removed afterwards unless kept), the same rules step evaluates the traders,
and only the sink differs: fires are collected in memory instead of being written to
PostgreSQL. ``group_repeats`` then applies the cooldown exactly as
``klineflow_record_signal`` does in PostgreSQL (a fire within a trader's cooldown after a
signal of the same trader and symbol bumps that signal's repeat count), so a backtest's
signals are the rows the live flow would have written.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import redis
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from flows.backtest import SCRATCH_PREFIX
from flows.dataflows.replay import ReplayJob, run_replay
from flows.domain.keys import KeySpace
from flows.domain.kline import Kline, decode_member, kline_of_row
from flows.domain.stats import RunStats
from flows.domain.trade_checks import DEFAULT_FUTURE_MARGIN_MS
from flows.signals.book import Book, BookHolder
from flows.signals.engine import Fire, Progress, RuleFailure
from flows.signals.step import Outcome, RulesConfig, RulesStage, redis_seeder
from flows.sources.inputs import expand_inputs
from flows.sources.readers import ReadOptions
from flows.storage.redis_klines import RetentionPolicy

KEEP_ALL = RetentionPolicy(default=10_000_000, by_interval={})


@dataclass
class Signal:
    """One signal row as the live flow would have written it."""

    fire: Fire
    repeat_count: int = 1
    last_repeat_open_ms: int | None = None


class _Collect(StatelessSinkPartition[tuple[str, Outcome]]):
    def __init__(self, into: list[Fire | RuleFailure], lock: threading.Lock) -> None:
        self._into, self._lock = into, lock

    def write_batch(self, items: list[tuple[str, Outcome]]) -> None:
        with self._lock:
            for _, outcome in items:
                self._into.extend(x for x in outcome if not isinstance(x, Progress))


class CollectSink(DynamicSink[tuple[str, Outcome]]):
    """Keeps every fire and rule failure of a run in memory."""

    def __init__(self) -> None:
        self.items: list[Fire | RuleFailure] = []
        self._lock = threading.Lock()
        self.writers: list[object] = []  # the summary's interface of SignalSink

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Collect:
        return _Collect(self.items, self._lock)


def needed_intervals(book: Book) -> tuple[str, ...]:
    """Every interval the traders read: their own and those their rules ask for."""
    return tuple(
        sorted({iv for t in book.traders for iv in (*t.program.requirements, t.row.interval)})
    )


def group_repeats(fires: Sequence[Fire]) -> list[Signal]:
    """The cooldown, as PostgreSQL applies it, over fires in any order."""
    ordered = sorted(fires, key=lambda f: (f.trader_id, f.symbol, f.interval, f.open_ms))
    out: list[Signal] = []
    anchor: Signal | None = None
    for f in ordered:
        same = anchor is not None and (anchor.fire.trader_id, anchor.fire.symbol,
                                       anchor.fire.interval) == (f.trader_id, f.symbol,
                                                                 f.interval)  # fmt: skip
        if anchor is not None and same and anchor.fire.open_ms == f.open_ms:
            continue  # the same kline twice
        if anchor is not None and same and f.window_start_ms <= anchor.fire.open_ms:
            anchor.repeat_count += 1
            anchor.last_repeat_open_ms = f.open_ms
            continue
        anchor = Signal(f)
        out.append(anchor)
    return out


@dataclass
class BacktestResult:
    signals: list[Signal]
    failures: list[RuleFailure]
    stats: RunStats
    namespace: str
    # the closed klines of each (symbol, interval) that has signals, for their outcomes
    klines: dict[tuple[str, str], list[Kline]] = field(default_factory=dict)


def input_hashes(paths: Sequence[Path]) -> Future[dict[str, str]]:
    """The SHA-256 of each input, for a run's record, computed on a thread of its own while
    the run goes (hashlib lets go of the interpreter over large blocks). Only a recorded run
    asks: a backtest that is not kept does not read its inputs twice."""
    hasher = ThreadPoolExecutor(1, thread_name_prefix="input-hash")
    hashing = hasher.submit(lambda: {str(p): file_sha256(p) for p in expand_inputs(list(paths))})
    hasher.shutdown(wait=False)
    return hashing


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(4 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_backtest(
    paths: Sequence[Path],
    book: Book,
    intervals: tuple[str, ...],
    redis_url: str,
    symbols: frozenset[str] | None = None,
    start_ms: int | None = None,
    end_ms: int | None = None,
    keep_klines: bool = False,
    namespace: str | None = None,
    stats: RunStats | None = None,
    future_margin_ms: int = DEFAULT_FUTURE_MARGIN_MS,
) -> BacktestResult:
    """Replay ``paths`` through the dataflow with ``book``'s traders; signals whose kline
    opens in [start_ms, end_ms) are kept (indicators still warm up on the bars before)."""
    paths = expand_inputs(list(paths))  # a folder of the trade archive: its files
    keys = KeySpace(namespace or f"{SCRATCH_PREFIX}{uuid.uuid4().hex[:12]}")
    sink = CollectSink()
    stage = RulesStage(RulesConfig(BookHolder(book), redis_seeder(redis_url, keys)), sink)  # type: ignore[arg-type]
    job = ReplayJob(
        paths=list(paths),
        redis_url=redis_url,
        intervals=intervals,
        keys=keys,
        read=ReadOptions(symbols=symbols, future_margin_ms=future_margin_ms),
        retention=KEEP_ALL,
        fresh=True,
        stage=stage,
    )
    klines: dict[tuple[str, str], list[Kline]] = {}
    try:
        stats = run_replay(job, stats)
        fires = [f for f in sink.items if isinstance(f, Fire)]
        fires = [
            f
            for f in fires
            if (start_ms is None or f.open_ms >= start_ms)
            and (end_ms is None or f.open_ms < end_ms)
        ]
        for symbol, interval in sorted({(f.symbol, f.interval) for f in fires}):
            klines[(symbol, interval)] = _stored(redis_url, keys, symbol, interval)
    finally:
        if not keep_klines:
            drop_namespace(redis_url, keys)
    failures = [f for f in sink.items if isinstance(f, RuleFailure)]
    return BacktestResult(group_repeats(fires), failures, stats, keys.namespace, klines)


def _stored(redis_url: str, keys: KeySpace, symbol: str, interval: str) -> list[Kline]:
    client = redis.Redis.from_url(redis_url)
    try:
        members: list[bytes] = client.zrange(keys.klines(symbol, interval), 0, -1)  # type: ignore[assignment]
    finally:
        client.close()
    return [kline_of_row(decode_member(m)) for m in members]


def drop_namespace(redis_url: str, keys: KeySpace) -> None:
    """Every key of a scratch run's namespace deleted (in slices of 1,000)."""
    from flows.services import connect_redis

    client = connect_redis(redis_url)
    try:
        names = list(client.scan_iter(match=f"{keys.namespace}:*", count=1000))
        for i in range(0, len(names), 1000):
            client.delete(*names[i : i + 1000])
    finally:
        client.close()
