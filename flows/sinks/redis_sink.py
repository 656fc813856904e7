"""A Bytewax sink writing kline updates and dead letters to Redis, one pipeline per batch.

Delivery is at-least-once (restarts and overlapping replays re-deliver); every write is
keyed by (symbol, interval, open time), so a re-delivered kline replaces itself.

While Redis is away (restarting, loading its data, refusing writes) the sink waits and tries
again, with backoff up to 5 s, for as long as it takes: the flow pauses meanwhile (its
buffers are bounded) instead of ending, and `RunStats.waiting_for` says so.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import redis
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from flows.dataflows.endpoints import Endpoint, deliver
from flows.dataflows.kline_step import KlineUpdate
from flows.domain.clock import SYSTEM_CLOCK
from flows.domain.kline import Kline
from flows.domain.stats import RunStats
from flows.sources.items import SourceReport
from flows.storage.redis_klines import KlineWriter

SinkItem = tuple[str, KlineUpdate] | SourceReport
# live flows with rules: (symbol, its closed klines) -> the (interval, open time) pairs whose
# rules begin with these klines (flows.signals.step.RulesStart), claimed with the klines
RulesStart = Callable[[str, list[tuple[str, Kline]]], list[tuple[str, int]]]
log = logging.getLogger(__name__)

# answers of a Redis that will take the write later (loading, out of memory, a replica...)
_LATER = ("LOADING", "OOM", "MISCONF", "READONLY", "TRYAGAIN", "MASTERDOWN", "NOREPLICAS")


def store_away(exc: BaseException) -> bool:
    """Whether a Redis error means "not now" (wait and try again) rather than a refusal."""
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError | redis.BusyLoadingError):
        return True
    return isinstance(exc, redis.ResponseError) and str(exc).split(" ", 1)[0] in _LATER


def flush_patiently(
    flush: Callable[[], None], stats: RunStats, stop: threading.Event | None = None
) -> None:
    """`flush()` until Redis takes it (see the module docstring)."""
    delay = 0.1
    tries = 0
    pause = stop or threading.Event()
    while True:
        try:
            flush()
        except redis.RedisError as exc:
            if not store_away(exc):
                raise
            tries += 1
            if tries == 1:
                stats.store_waits["redis"] += 1
                stats.waiting_for.add("redis")
            if tries == 1 or tries % 20 == 0:
                log.warning("Redis away (%s): the flow waits for it (attempt %d)", exc, tries)
            if pause.wait(delay):
                raise
            delay = min(delay * 2, 5.0)
            continue
        if tries:
            stats.waiting_for.discard("redis")
            log.warning("Redis answers again after %d attempts; the flow goes on", tries)
        return


class _RedisPartition(StatelessSinkPartition[SinkItem]):
    """Fills a writer with a batch and sends it. With two writers (`overlap`), a batch is
    sent on a thread of its own while the flow goes on to the next one; batches are still
    sent one after the other, in order, and `close` waits for the last."""

    def __init__(
        self,
        writers: list[KlineWriter],
        stats: RunStats,
        stop: threading.Event | None = None,
        rules_start: RulesStart | None = None,
    ) -> None:
        self._writers = writers
        self._rules_start = rules_start
        self._turn = 0
        self._stats = stats
        self._stop = stop
        self._sender = ThreadPoolExecutor(1, "redis-sink") if len(writers) > 1 else None
        self._sent: list[Future[None] | None] = [None] * len(writers)
        self.added: Sequence[Endpoint] = ()

    def write_batch(self, items: list[SinkItem]) -> None:
        for sink in self.added:  # before Redis commits the batch: at least once, see deliver
            deliver(sink, items)
        turn = self._turn
        self._turn = (turn + 1) % len(self._writers)
        before = self._sent[turn]
        if before is not None:
            before.result()  # this writer's last batch is in Redis (or its error raised here)
        w = self._writers[turn]
        newest: list[int] = []  # per symbol written: its newest trade now in Redis
        for item in items:
            if isinstance(item, SourceReport):
                for letter in item.dead:
                    w.dead_letter(letter)
                for gap in item.gaps or ():
                    w.gap(gap)
                for note in item.notes or ():
                    w.note(note)
                continue
            symbol, update = item
            if update.newest_trade_ms > 0:
                newest.append(update.newest_trade_ms)
            w.add_many(symbol, update.closed, closed=True)
            if self._rules_start is not None and update.closed:
                for interval, open_ms in self._rules_start(symbol, update.closed):
                    w.claim_rules_start(symbol, interval, open_ms)
            w.add_many(symbol, update.opened, closed=False)
            for letter in update.dead:
                w.dead_letter(letter)
            for ours, theirs in update.mismatches:
                w.mismatch(symbol, ours, theirs)
            for note in update.notes:
                w.note(note)
            if update.state is not None:
                w.save_state(symbol, update.state)
        if self._sender is None:
            self._send(w, newest)
        else:
            self._sent[turn] = self._sender.submit(self._send, w, newest)

    def _send(self, w: KlineWriter, newest: list[int]) -> None:
        flush_patiently(w.flush, self._stats, self._stop)
        self._stats.store_repairs = sum(x.repairs for x in self._writers)
        if newest:  # one lag sample per symbol written, so "recent" spans seconds, not minutes
            now = SYSTEM_CLOCK.now_ms()
            self._stats.lag_ms.extend([now - t for t in newest])

    def close(self) -> None:
        if self._sender is not None:
            for sent in self._sent:
                if sent is not None:
                    sent.result()
            self._sender.shutdown()


class RedisKlineSink(DynamicSink[SinkItem]):
    """`overlap`: send each batch while the flow computes the next (replays: Redis works on
    its own core meanwhile). Live flows send before going on, so a batch is in Redis before
    the flow takes more input. `rules_start`: see `RulesStart`."""

    def __init__(
        self,
        make_writer: Callable[[], KlineWriter],
        stats: RunStats,
        stop: threading.Event | None = None,
        overlap: bool = False,
        rules_start: RulesStart | None = None,
    ) -> None:
        self._make_writer = make_writer
        self.rules_start = rules_start
        self._stats = stats
        self._stop = stop
        self._overlap = overlap
        self.added: Sequence[Endpoint] = ()  # `flows.io` kline/report sinks written first

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _RedisPartition:
        writers = [self._make_writer() for _ in range(2 if self._overlap else 1)]
        part = _RedisPartition(writers, self._stats, self._stop, self.rules_start)
        part.added = self.added
        return part


def writer_factory(url: str, **kwargs: object) -> Callable[[], KlineWriter]:
    def make() -> KlineWriter:
        return KlineWriter(redis.Redis.from_url(url, socket_timeout=30), **kwargs)  # type: ignore[arg-type]

    return make
