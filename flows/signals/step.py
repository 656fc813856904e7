"""The rules step of the dataflow (keyed by symbol) and its PostgreSQL sink.

Wiring (see ``flows.dataflows.klines_flow``): the kline step's closed klines -> ``rules``
(keyed by shard, one per worker: a ``ShardEngine`` evaluates every symbol of the shard at
once, snapshotted with the rest of the flow's state) -> fires and rule failures ->
``SignalSink`` (one ``SignalWriter`` per worker, one transaction per batch).

Klines closed only because a replay reached the end of its input are not evaluated: they are
provisional (the next replay continues them), and a rule must only see finished bars.

Live, the step keeps no state across restarts. With each batch of signals it hands on, per
(symbol, interval), the newest kline it evaluated (`Progress`), which the writer commits in
the same transaction as the signals. When the engine first sees a symbol (in a new
process), every kline stored in Redis after that recorded point and before the first kline
it is given is evaluated first (a *catch-up*): decisions
whose signals had not reached PostgreSQL when the flow stopped are made again; signals are
idempotent, so a kline decided twice records one signal. Amended klines (a trade came after
a watermark closed them) rewind the frames and are decided again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import redis
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from flows.dataflows.endpoints import Endpoint, deliver
from flows.dataflows.shards import shard_names, shard_of
from flows.domain.clock import SYSTEM_CLOCK, Clock
from flows.domain.intervals import INTERVALS
from flows.domain.keys import KeySpace
from flows.domain.kline import Kline, kline_of_row
from flows.rules.helpers import DEFAULT_REGISTRY
from flows.signals.book import Book, BookHolder
from flows.signals.engine import (
    DEFAULT_BUDGET_S,
    EngineCounters,
    Fire,
    Progress,
    RuleFailure,
    Seeder,
)
from flows.signals.shard_engine import ShardEngine
from flows.signals.store import SignalWriter

log = logging.getLogger(__name__)

# (symbol, [(interval, kline), ...], amended: klines of an interval opening before this time
# were closed before and are closed again)
Closed = tuple[str, list[tuple[str, Kline]], dict[str, int] | None]
Outcome = list[Fire | RuleFailure | Progress]
_CATCH_UP_MAX_BARS = 5000  # per interval: more than any retention keeps
_member_rows = msgspec.json.Decoder(list[int | str])


class RulesSince:
    """Where the live rules began deciding each (symbol, interval), in a Redis hash written
    once per pair (HSETNX). A symbol whose first decisions never reached PostgreSQL (it was
    away, then the flow crashed) has no progress there; its catch-up starts here instead."""

    def __init__(self, url: str, keys: KeySpace) -> None:
        self._url = url
        self._key = keys.rules_since
        self._client: redis.Redis | None = None

    def _redis(self) -> redis.Redis:
        if self._client is None:
            self._client = redis.Redis.from_url(self._url, socket_timeout=30)
        return self._client

    def get(self, symbol: str, intervals: list[str]) -> dict[str, int]:
        fields = [f"{symbol} {i}" for i in intervals]
        values = wait_for_redis(
            f"reading {self._key}", lambda: self._redis().hmget(self._key, fields)
        )
        return {i: int(v) for i, v in zip(intervals, values, strict=True) if v is not None}

    def claim(self, symbol: str, interval: str, open_ms: int) -> None:
        field = f"{symbol} {interval}"
        wait_for_redis(
            f"writing {self._key}", lambda: self._redis().hsetnx(self._key, field, open_ms)
        )


class RulesStart:
    """For the kline sink of a live flow: the first kline of each (symbol, interval) a
    trader decides on that this process closes, to claim as the rules' start in `RulesSince`
    in the very transaction that stores it. The rules step claims too, when its engine
    starts, but it runs beside the Redis output, not before it: a kill between the two would
    leave a stored kline no restart decides (the restart resumes after it, and with neither
    progress nor a start recorded its rules would begin at the next kline). The writer keeps
    the claims it made and sends each pair's first one only (`KlineWriter.claim_rules_start`)."""

    def __init__(self, holder: BookHolder) -> None:
        self._holder = holder

    def __call__(self, symbol: str, closed: list[tuple[str, Kline]]) -> list[tuple[str, int]]:
        traders = self._holder.book.for_symbol(symbol)
        if not traders:
            return []
        mains = {t.row.interval for t in traders}
        first: dict[str, int] = {}
        for name, k in closed:
            if name in mains:
                first[name] = min(first.get(name, k.open_ms), k.open_ms)
        return sorted(first.items())


@dataclass
class RulesConfig:
    holder: BookHolder
    seeder: Seeder | None = None
    clock: Clock = SYSTEM_CLOCK
    counters: EngineCounters = field(default_factory=EngineCounters)
    progress: bool = False  # live: record progress, catch up from it when an engine starts
    since: RulesSince | None = None  # live: where the rules began, per (symbol, interval)
    budget_s: float = DEFAULT_BUDGET_S  # one trader's evaluation on one kline


class RulesLogic(StatefulBatchLogic[Closed, Outcome, ShardEngine]):
    """The rules of every symbol of one shard (``flows.signals.shard_engine``)."""

    def __init__(self, config: RulesConfig, resume: ShardEngine | None) -> None:
        self._config = config
        # a snapshot of another form (the per-symbol state of older versions) is not
        # resumed: the rules re-derive everything from the stored klines
        self._engine = resume if isinstance(resume, ShardEngine) else None

    def on_batch(self, values: list[Closed]) -> tuple[list[Outcome], bool]:
        cfg = self._config
        book = cfg.holder.book
        if not book.traders and self._engine is None:
            return [], StatefulBatchLogic.DISCARD  # nothing to evaluate: keep no state
        per_symbol: dict[str, tuple[list[tuple[str, Kline]], dict[str, int]]] = {}
        for symbol, batch, before in values:
            closed, amended = per_symbol.setdefault(symbol, ([], {}))
            closed.extend(batch)
            for name, open_ms in (before or {}).items():
                amended[name] = max(amended.get(name, -1), open_ms)
        engine = self._engine
        if engine is None:
            engine = self._engine = ShardEngine()
        started = time.perf_counter()
        items: list[tuple[str, str, Kline]] = []
        caught_up: dict[str, int] = {}  # symbol -> end of the first kline it was given
        for symbol, (closed, amended) in per_symbol.items():
            first_end = min(k.close_ms + 1 for _, k in closed)
            if symbol not in engine.seen:
                if cfg.progress:
                    catch_up = self._catch_up(symbol, book, first_end)
                    if catch_up:
                        caught_up[symbol] = first_end
                        items.extend((symbol, name, k) for name, k in catch_up)
            elif amended:
                firsts: dict[str, int] = {}
                for name, k in closed:
                    if k.open_ms < amended.get(name, -1):
                        firsts[name] = min(firsts.get(name, k.open_ms), k.open_ms)
                engine.rewind(symbol, firsts)
                cfg.counters.amended += len(firsts)
            items.extend((symbol, name, k) for name, k in closed)
        fires, failures = engine.process(
            items, book, cfg.seeder, cfg.clock.now_exact_ms(), cfg.counters,
            DEFAULT_REGISTRY.factories, cfg.budget_s,
        )  # fmt: skip
        if caught_up:
            fires = [f._replace(closed_at_ms=-1) if f.close_ms < caught_up.get(f.symbol, -1)
                     else f for f in fires]  # fmt: skip
        cfg.counters.evaluation_seconds += time.perf_counter() - started
        out: Outcome = [*failures, *fires]
        if cfg.progress:
            for symbol, (closed, _) in per_symbol.items():
                out.extend(_progress(symbol, closed, engine.main_intervals(book, symbol)))
        return ([out] if out else []), StatefulBatchLogic.RETAIN

    def _catch_up(self, symbol: str, book: Book, first_end: int) -> list[tuple[str, Kline]]:
        """Stored klines after the recorded progress and before `first_end` (see the module
        docstring), every interval the symbol's traders read, oldest first."""
        cfg = self._config
        progress = cfg.holder.progress or {}
        traders = book.for_symbol(symbol)
        mains = {t.row.interval for t in traders}
        starts = [
            INTERVALS[i].next_open(progress[(symbol, i)]) for i in mains if (symbol, i) in progress
        ]
        unrecorded = sorted(i for i in mains if (symbol, i) not in progress)
        if unrecorded and cfg.since is not None:
            began = cfg.since.get(symbol, unrecorded)
            starts.extend(began.values())  # decided before, never recorded: from the start
            for name in unrecorded:
                if name not in began:  # the rules begin here for this pair
                    cfg.since.claim(symbol, name, INTERVALS[name].open_time(first_end - 1))
        if not starts or cfg.seeder is None:
            return []
        since = min(starts)
        needed = mains | {i for t in traders for i in t.program.requirements}
        if all(INTERVALS[i].next_open(INTERVALS[i].open_time(since)) >= first_end
               for i in needed):  # fmt: skip
            return []  # no kline of theirs ends after `since` and before `first_end`
        out: list[tuple[str, Kline]] = []
        for name in sorted(needed):
            interval = INTERVALS[name]
            count = min(
                interval.count_between(interval.open_time(since), first_end) + 1,
                _CATCH_UP_MAX_BARS,
            )
            for k in cfg.seeder(symbol, name, first_end, count):
                if since < k.close_ms + 1 < first_end:
                    out.append((name, k))
        if out:
            cfg.counters.caught_up += sum(1 for name, _ in out if name in mains)
            log.info("symbol=%s: deciding again %d stored klines after the progress recorded",
                     symbol, len(out))  # fmt: skip
        return out

    def snapshot(self) -> ShardEngine:
        assert self._engine is not None
        return self._engine


def rules_builder(config: RulesConfig) -> Callable[[ShardEngine | None], RulesLogic]:
    def build(resume: ShardEngine | None) -> RulesLogic:
        return RulesLogic(config, resume)

    return build


def wait_for_redis(what: str, call: Callable[[], Any], stop: threading.Event | None = None) -> Any:
    """`call()` until Redis answers: a server away (restarting, loading its data) is waited
    for with backoff up to 5 s, never worked around (rules seeded from a partial series
    would decide wrongly)."""
    delay = 0.1
    tries = 0
    pause = stop or threading.Event()
    while True:
        try:
            return call()
        except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError) as exc:
            tries += 1
            if tries == 1 or tries % 20 == 0:
                log.warning("Redis away while %s (%s); waiting", what, exc)
            if pause.wait(delay):
                raise
            delay = min(delay * 2, 5.0)


def redis_seeder(url: str, keys: KeySpace = KeySpace(), wait: bool = False) -> Seeder:
    """Closed klines from the flow's own Redis (one client per process, made on first use).
    `wait`: a live flow waits for a Redis that is away (see `wait_for_redis`); a one-off
    command fails at once instead."""
    client: list[redis.Redis] = []

    def seed(symbol: str, interval: str, end_ms: int, count: int) -> list[Kline]:
        if count <= 0:
            return []
        if not client:
            client.append(redis.Redis.from_url(url, socket_timeout=30))
        key = keys.klines(symbol, interval)

        def read() -> Any:
            return client[0].zrevrangebyscore(key, end_ms - 1, "-inf", start=0, num=count + 2)

        members: list[bytes] = wait_for_redis(f"reading {key}", read) if wait else read()
        klines = [kline_of_row(_member_rows.decode(m)) for m in reversed(members)]
        closed = [k for k in klines if k.close_ms < end_ms]
        return closed[-count:]

    return seed


class _SignalPartition(StatelessSinkPartition[tuple[str, Outcome]]):
    def __init__(self, writer: SignalWriter, added: Sequence[Endpoint] = ()) -> None:
        self._writer = writer
        self._added = added

    def write_batch(self, items: list[tuple[str, Outcome]]) -> None:
        for sink in self._added:  # before PostgreSQL commits them: at least once
            deliver(sink, items)
        self._writer.write_or_wait(x for _, outcome in items for x in outcome)

    def close(self) -> None:
        if self._writer.pending:
            self._writer.write(())
        self._writer.close()


class SignalSink(DynamicSink[tuple[str, Outcome]]):
    def __init__(self, make_writer: Callable[[], SignalWriter]) -> None:
        self._make_writer = make_writer
        self.writers: list[SignalWriter] = []  # for the job's summary and tests
        self.added: Sequence[Endpoint] = ()  # `flows.io` signal sinks written first

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _SignalPartition:
        writer = self._make_writer()
        self.writers.append(writer)
        return _SignalPartition(writer, self.added)


@dataclass
class RulesStage:
    """Evaluate traders on the closed klines and write signals to PostgreSQL."""

    config: RulesConfig
    sink: SignalSink


def closed_router(workers: int) -> Callable[[tuple[str, Any]], tuple[str, Closed] | None]:
    """The kline step's output -> (the symbol's rules shard, (symbol, closed klines,
    amended)), or None. One rules shard per worker, on the symbol's own worker: every
    symbol a worker closes is evaluated in one array step per close."""
    names = shard_names(workers, per_worker=1)

    def closed_of(item: tuple[str, Any]) -> tuple[str, Closed] | None:
        symbol, update = item
        if not update.closed or update.state is not None:  # nothing closed / replay's end
            return None
        return shard_of(symbol, names), (symbol, update.closed, update.amended)

    return closed_of


def _progress(symbol: str, closed: list[tuple[str, Kline]], mains: set[str]) -> list[Progress]:
    newest: dict[str, int] = {}
    for name, k in closed:
        if name in mains and k.open_ms > newest.get(name, -1):
            newest[name] = k.open_ms
    return [Progress(symbol, name, open_ms) for name, open_ms in newest.items()]
