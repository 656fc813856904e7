"""A Bytewax sink writing kline updates and dead letters to Redis, one pipeline per batch.

Delivery is at-least-once (recovery and overlapping replays re-deliver); every write is
keyed by (symbol, interval, open time), so a re-delivered kline replaces itself.
"""

from __future__ import annotations

from collections.abc import Callable

import redis
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from flows.dataflows.kline_step import KlineUpdate
from flows.domain.clock import SYSTEM_CLOCK
from flows.domain.stats import RunStats
from flows.sources.items import SourceReport
from flows.storage.redis_klines import KlineWriter

SinkItem = tuple[str, KlineUpdate] | SourceReport


class _RedisPartition(StatelessSinkPartition[SinkItem]):
    def __init__(self, writer: KlineWriter, stats: RunStats) -> None:
        self._writer = writer
        self._stats = stats

    def write_batch(self, items: list[SinkItem]) -> None:
        w = self._writer
        newest = -1
        for item in items:
            if isinstance(item, SourceReport):
                for letter in item.dead:
                    w.dead_letter(letter)
                for gap in item.gaps or ():
                    w.gap(gap)
                continue
            symbol, update = item
            newest = max(newest, update.newest_trade_ms)
            w.add_many(symbol, update.closed, closed=True)
            w.add_many(symbol, update.opened, closed=False)
            for letter in update.dead:
                w.dead_letter(letter)
            for ours, theirs in update.mismatches:
                w.mismatch(symbol, ours, theirs)
            if update.state is not None:
                w.save_state(symbol, update.state)
        w.flush()
        if newest > 0:
            self._stats.lag_ms.append(SYSTEM_CLOCK.now_ms() - newest)


class RedisKlineSink(DynamicSink[SinkItem]):
    def __init__(self, make_writer: Callable[[], KlineWriter], stats: RunStats) -> None:
        self._make_writer = make_writer
        self._stats = stats

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _RedisPartition:
        return _RedisPartition(self._make_writer(), self._stats)


def writer_factory(url: str, **kwargs: object) -> Callable[[], KlineWriter]:
    def make() -> KlineWriter:
        return KlineWriter(redis.Redis.from_url(url, socket_timeout=30), **kwargs)  # type: ignore[arg-type]

    return make
