"""The rules step of the dataflow (keyed by symbol) and its PostgreSQL sink.

Wiring (see ``flows.dataflows.klines_flow``): the kline step's closed klines -> ``rules``
(one ``SymbolEngine`` per symbol, snapshotted with the rest of the flow's state) -> fires and
rule failures -> ``SignalSink`` (one ``SignalWriter`` per worker, one transaction per batch).

Klines closed only because a replay reached the end of its input are not evaluated: they are
provisional (the next replay continues them), and a rule must only see finished bars.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import redis
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from flows.domain.clock import SYSTEM_CLOCK, Clock
from flows.domain.keys import KeySpace
from flows.domain.kline import Kline, kline_of_row
from flows.rules.helpers import DEFAULT_REGISTRY
from flows.signals.book import BookHolder
from flows.signals.engine import EngineCounters, Fire, RuleFailure, Seeder, SymbolEngine
from flows.signals.store import SignalWriter

Closed = tuple[str, list[tuple[str, Kline]]]  # (symbol, [(interval, kline), ...])
Outcome = list[Fire | RuleFailure]
_member_rows = msgspec.json.Decoder(list[int | str])


@dataclass
class RulesConfig:
    holder: BookHolder
    seeder: Seeder | None = None
    clock: Clock = SYSTEM_CLOCK
    counters: EngineCounters = field(default_factory=EngineCounters)


class RulesLogic(StatefulBatchLogic[Closed, Outcome, SymbolEngine]):
    def __init__(self, config: RulesConfig, resume: SymbolEngine | None) -> None:
        self._config = config
        self._engine = resume

    def on_batch(self, values: list[Closed]) -> tuple[list[Outcome], bool]:
        cfg = self._config
        book = cfg.holder.book
        if not book.traders and self._engine is None:
            return [], StatefulBatchLogic.DISCARD  # nothing to evaluate: keep no state
        closed = [item for _, batch in values for item in batch]
        engine = self._engine
        if engine is None:
            engine = self._engine = SymbolEngine(values[0][0])
        started = time.perf_counter()
        fires, failures = engine.process(
            closed, book, cfg.seeder, cfg.clock.now_ms(), cfg.counters, DEFAULT_REGISTRY.factories
        )
        cfg.counters.evaluation_seconds += time.perf_counter() - started
        out: Outcome = [*failures, *fires]
        return ([out] if out else []), StatefulBatchLogic.RETAIN

    def snapshot(self) -> SymbolEngine:
        assert self._engine is not None
        return self._engine


def rules_builder(config: RulesConfig) -> Callable[[SymbolEngine | None], RulesLogic]:
    def build(resume: SymbolEngine | None) -> RulesLogic:
        return RulesLogic(config, resume)

    return build


def redis_seeder(url: str, keys: KeySpace = KeySpace()) -> Seeder:
    """Closed klines from the flow's own Redis (one client per process, made on first use)."""
    client: list[redis.Redis] = []

    def seed(symbol: str, interval: str, end_ms: int, count: int) -> list[Kline]:
        if count <= 0:
            return []
        if not client:
            client.append(redis.Redis.from_url(url, socket_timeout=30))
        members: list[bytes] = client[0].zrevrangebyscore(
            keys.klines(symbol, interval), end_ms - 1, "-inf", start=0, num=count + 2
        )  # type: ignore[assignment]
        klines = [kline_of_row(_member_rows.decode(m)) for m in reversed(members)]
        closed = [k for k in klines if k.close_ms < end_ms]
        return closed[-count:]

    return seed


class _SignalPartition(StatelessSinkPartition[tuple[str, Outcome]]):
    def __init__(self, writer: SignalWriter) -> None:
        self._writer = writer

    def write_batch(self, items: list[tuple[str, Outcome]]) -> None:
        self._writer.write(x for _, outcome in items for x in outcome)

    def close(self) -> None:
        if self._writer.pending:
            self._writer.write(())
        self._writer.close()


class SignalSink(DynamicSink[tuple[str, Outcome]]):
    def __init__(self, make_writer: Callable[[], SignalWriter]) -> None:
        self._make_writer = make_writer
        self.writers: list[SignalWriter] = []  # for the job's summary and tests

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _SignalPartition:
        writer = self._make_writer()
        self.writers.append(writer)
        return _SignalPartition(writer)


@dataclass
class RulesStage:
    """Evaluate traders on the closed klines and write signals to PostgreSQL."""

    config: RulesConfig
    sink: SignalSink


def closed_of(item: tuple[str, Any]) -> tuple[str, Closed] | None:
    """The kline step's output -> (symbol, (symbol, closed klines to evaluate)), or None."""
    symbol, update = item
    if not update.closed or update.state is not None:  # nothing closed / end-of-replay flush
        return None
    return symbol, (symbol, update.closed)
