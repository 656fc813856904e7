"""The kline step keyed by shard, not by symbol: one activation takes the trades of many
symbols.

At live rates a symbol gets about one trade per poll, so a step keyed by symbol costs Bytewax
one keyed activation per trade. Here each symbol belongs to one of a few shards per worker,
and a shard's state is the per-symbol kline logic of its symbols (`KlineLogic`, unchanged),
built as each symbol first comes. The shard of a symbol is always routed to the worker the
symbol itself would be routed to (`flows.cluster.worker_of`), so a cluster still partitions
by symbol and no trade crosses processes; the outputs are keyed by symbol again.

>>> names = shard_names(workers=2, per_worker=3)
>>> [[worker_of(n, 2) for n in row] for row in names]
[[0, 0, 0], [1, 1, 1]]
>>> worker_of(shard_of("BTCUSDT", names), 2) == worker_of("BTCUSDT", 2)
True
"""

from __future__ import annotations

import heapq
import itertools
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final

from bytewax.operators import StatefulBatchLogic

from flows.cluster import worker_of
from flows.dataflows.kline_step import KlineLogic, KlineStepConfig, KlineUpdate
from flows.domain.stats import RunStats
from flows.sources.items import SymbolBatch, Watermarks

SHARDS_PER_WORKER: Final = 8


@lru_cache(maxsize=16)
def shard_names(workers: int, per_worker: int = SHARDS_PER_WORKER) -> tuple[tuple[str, ...], ...]:
    """For each worker, `per_worker` shard keys that Bytewax routes to it."""
    rows: list[list[str]] = [[] for _ in range(workers)]
    for i in itertools.count():
        name = f"shard-{i}"
        row = rows[worker_of(name, workers)]
        if len(row) < per_worker:
            row.append(name)
        if all(len(r) == per_worker for r in rows):
            return tuple(tuple(r) for r in rows)
    raise AssertionError("unreachable")  # pragma: no cover


def shard_of(symbol: str, names: tuple[tuple[str, ...], ...]) -> str:
    """The shard key of a symbol: on the symbol's own worker, spread by a second hash."""
    row = names[worker_of(symbol, len(names))]
    return row[zlib.crc32(symbol.encode()) % len(row)]


class ShardLogic(StatefulBatchLogic[SymbolBatch | Watermarks, KlineUpdate, dict[str, Any]]):
    """The kline logic of every symbol of one shard; state: each symbol's builder state."""

    def __init__(
        self, config: KlineStepConfig, stats: RunStats, resume: dict[str, Any] | None
    ) -> None:
        self._config = config
        self._stats = stats
        # each symbol's state as last snapshotted (at first: as resumed), and the symbols whose
        # state trades changed since: a snapshot builds only theirs again
        self._states: dict[str, Any] = dict(resume or {})
        self._changed: set[str] = set()
        self._symbols: dict[str, KlineLogic] = {}
        # when each symbol with open klines waiting to be written wants its timer: a heap, so
        # the shard's own timer (asked for after every activation) costs nothing per symbol
        self._due: list[tuple[float, str]] = []
        self._scheduled: set[str] = set()

    def _logic(self, symbol: str) -> KlineLogic:
        logic = self._symbols.get(symbol)
        if logic is None:
            logic = KlineLogic(self._config, self._stats, self._states.get(symbol) or None)
            self._symbols[symbol] = logic
        return logic

    def on_batch(self, values: list[SymbolBatch | Watermarks]) -> tuple[list[KlineUpdate], bool]:
        by_symbol: dict[str, list[SymbolBatch]] = {}
        for value in values:
            if isinstance(value, Watermarks):  # the same as one empty batch per symbol
                for symbol in value.symbols:
                    by_symbol.setdefault(symbol, []).append(
                        SymbolBatch(symbol, [], value.watermark_ms)
                    )
            else:
                by_symbol.setdefault(value.symbol, []).append(value)
        out: list[KlineUpdate] = []
        self._changed.update(by_symbol)
        for symbol, batches in by_symbol.items():
            logic = self._logic(symbol)
            for update in logic.on_batch(batches)[0]:
                if update.carries():
                    out.append(update)
            self._schedule(symbol, logic)
        return out, StatefulBatchLogic.RETAIN

    def _schedule(self, symbol: str, logic: KlineLogic) -> None:
        if symbol in self._scheduled:
            return
        at = logic.notify_at()
        if at is not None:
            heapq.heappush(self._due, (at.timestamp(), symbol))
            self._scheduled.add(symbol)

    def notify_at(self) -> datetime | None:
        if not self._due:
            return None
        return datetime.fromtimestamp(self._due[0][0], tz=UTC)

    def on_notify(self) -> tuple[list[KlineUpdate], bool]:
        out: list[KlineUpdate] = []
        # (timers carry fractions of a millisecond, the clock whole ones: 1 ms early is due,
        # else Bytewax would wake the shard again and again until the next millisecond)
        now = self._config.clock.now_ms() / 1000.0 + 0.001
        woken = []
        while self._due and self._due[0][0] <= now:
            _, symbol = heapq.heappop(self._due)
            self._scheduled.discard(symbol)
            woken.append(symbol)
        for symbol in woken:
            logic = self._symbols[symbol]
            out.extend(logic.on_notify()[0])
            self._schedule(symbol, logic)  # still waiting (its throttle not over): again
        return out, StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[list[KlineUpdate], bool]:
        out: list[KlineUpdate] = []
        for logic in self._symbols.values():
            out.extend(logic.on_eof()[0])
        return out, StatefulBatchLogic.RETAIN

    def snapshot(self) -> dict[str, Any]:
        for symbol in self._changed:
            self._states[symbol] = self._symbols[symbol].snapshot()
        self._changed.clear()
        return dict(self._states)


def shard_router(workers: int) -> Callable[[tuple[str, Any]], list[tuple[str, Any]]]:
    """(symbol, value) -> [(its shard, value)], remembering each symbol's shard; a
    `Watermarks` -> one per shard, with the symbols of that shard."""
    names = shard_names(workers)
    known: dict[str, str] = {}
    split: dict[tuple[str, ...], list[tuple[str, tuple[str, ...]]]] = {}

    def shard(symbol: str) -> str:
        found = known.get(symbol)
        if found is None:
            found = known[symbol] = shard_of(symbol, names)
        return found

    def route(item: tuple[str, Any]) -> list[tuple[str, Any]]:
        value = item[1]
        if not isinstance(value, Watermarks):
            return [(shard(item[0]), value)]
        parts = split.get(value.symbols)
        if parts is None:  # a source marks the same symbols second after second
            grouped: dict[str, list[str]] = {}
            for symbol in value.symbols:
                grouped.setdefault(shard(symbol), []).append(symbol)
            if len(split) > 64:
                split.clear()
            parts = split[value.symbols] = [(k, tuple(v)) for k, v in grouped.items()]
        return [(key, Watermarks(symbols, value.watermark_ms)) for key, symbols in parts]

    return route


def by_symbol(item: tuple[str, KlineUpdate]) -> tuple[str, KlineUpdate]:
    """A shard's output keyed by its symbol again."""
    return item[1].symbol, item[1]


def shard_logic_builder(
    config: KlineStepConfig, stats: RunStats
) -> Callable[[dict[str, Any] | None], ShardLogic]:
    def build(resume: dict[str, Any] | None) -> ShardLogic:
        return ShardLogic(config, stats, resume)

    return build
