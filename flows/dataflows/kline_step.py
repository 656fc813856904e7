"""The Bytewax stateful step around the pure kline builder, keyed by symbol."""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bytewax.operators import StatefulBatchLogic

from flows.domain import deadletter as dl
from flows.domain.clock import SYSTEM_CLOCK, Clock
from flows.domain.deadletter import DeadLetter
from flows.domain.kline import Kline, Trade
from flows.domain.stats import RunStats
from flows.klines.builder import DEFAULT_MAX_FILL, SymbolKlines
from flows.klines.columnar import ColumnarKlines
from flows.sources.items import QualityNote, SymbolBatch

_OPEN_WRITE_SLOTS = 8  # live open-kline writes: slots per throttle period (see _period_end)

log = logging.getLogger(__name__)


@dataclass(slots=True)
class KlineUpdate:
    """What one activation of the kline step produced for one symbol."""

    symbol: str
    closed: list[tuple[str, Kline]] = field(default_factory=list)
    opened: list[tuple[str, Kline]] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    state: dict[str, Any] | None = None  # the builder state to keep (end of a replay)
    mismatches: list[tuple[Kline, Kline]] = field(default_factory=list)  # (ours, Binance's)
    newest_trade_ms: int = -1  # time of the newest trade taken in this activation
    # closed klines of an interval opening before this time were closed before: amendments
    amended: dict[str, int] | None = None
    notes: list[QualityNote] = field(default_factory=list)

    def carries(self) -> bool:
        """Whether it has anything for the sink or the rules (a watermark that closed
        nothing, with nothing to write, gives an update that carries nothing)."""
        return bool(
            self.closed or self.opened or self.dead or self.state is not None
            or self.mismatches or self.notes or self.newest_trade_ms >= 0
        )  # fmt: skip

    def is_amendment(self, interval: str, open_ms: int) -> bool:
        amended = self.amended
        return amended is not None and open_ms < amended.get(interval, -1)


@dataclass(frozen=True)
class KlineStepConfig:
    intervals: tuple[str, ...]
    open_throttle_ms: int = 1000
    max_fill: int = DEFAULT_MAX_FILL
    close_at_eof: bool = True  # replay: the last klines close at end of input
    initial_states: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    clock: Clock = SYSTEM_CLOCK
    timer_writes: bool = True  # write waiting open klines on a timer (off: replays)
    reconcile: bool = False  # compare closed 1m klines with Binance's @kline_1m
    owns: Callable[[str], bool] | None = None  # cluster: whether this process ingests a symbol
    workers: int = 1  # Bytewax workers of the whole flow (cluster: one per process)


class KlineLogic(StatefulBatchLogic[SymbolBatch, KlineUpdate, dict[str, Any]]):
    def __init__(
        self, config: KlineStepConfig, stats: RunStats, resume: dict[str, Any] | None
    ) -> None:
        self._config = config
        self._stats = stats
        self._resume = resume
        self._sk: SymbolKlines | None = None
        self._symbol = ""
        self._next_open_write = 0.0
        self._dirty = False  # trades changed the open klines since they were last written
        self._unwritten_ms = -1  # the newest trade taken and not yet in a written kline
        self._phase = 0.0  # (set with the symbol: see _builder)
        self._references: dict[int, Kline] = {}  # Binance's closed 1m klines not compared yet
        self._ours: dict[int, Kline] = {}  # our recent closed 1m klines
        self._foreign = False  # the symbol's trades came from another process of the cluster

    def _builder(self, symbol: str) -> SymbolKlines:
        self._symbol = symbol
        # where in each throttle period this symbol's open klines are written: one of a few
        # slots, so a second's writes come in a few small transactions, not one large burst
        self._phase = zlib.crc32(symbol.encode()) % _OPEN_WRITE_SLOTS / _OPEN_WRITE_SLOTS
        cfg = self._config
        state = self._resume if self._resume is not None else cfg.initial_states.get(symbol)
        if state is not None and tuple(state.get("intervals", ())) == cfg.intervals:
            self._sk = SymbolKlines.restore(state, cfg.max_fill)
        else:
            self._sk = SymbolKlines(cfg.intervals, cfg.max_fill)
        self._foreign = cfg.owns is not None and not cfg.owns(symbol)
        if self._foreign:
            log.warning(
                "symbol=%s is ingested by another process of the cluster: its trades cross "
                "processes (Bytewax routes keys differently than expected)",
                symbol,
            )
        return self._sk

    def on_batch(self, values: list[SymbolBatch]) -> tuple[list[KlineUpdate], bool]:
        sk = self._sk
        if sk is None:
            sk = self._builder(values[0].symbol)
        update = KlineUpdate(self._symbol)
        dups = 0
        stats_refused = 0
        took = False  # trades or a reset: the open klines changed
        for batch in values:
            if batch.reset is not None:  # the source resumed the symbol from the stores
                sk = self._sk = SymbolKlines.restore(batch.reset, self._config.max_fill)
                took = True
            applied_ms = sk.last_ms
            if batch.trades:
                took = True
                late, d = sk.process(batch.trades, update.closed)
                dups += d
                stats_refused += self._took(update, late, sk.refused, sk.amended_before)
            if batch.columns is not None and len(batch.columns):
                took = True
                cols = batch.columns
                res = ColumnarKlines(sk.intervals, sk.max_fill, sk).process(
                    cols.time_ms, cols.price_units, cols.qty_units, cols.first_id,
                    cols.last_id, cols.is_buyer_maker,
                )  # fmt: skip
                for name, klines in res.closed.items():
                    update.closed.extend([(name, k) for k in klines])
                dups += res.duplicates
                stats_refused += self._took(update, res.late, res.refused, res.amended_before)
            if sk.last_ms > applied_ms:  # (not a trade only dead-lettered or a duplicate)
                self._unwritten_ms = max(self._unwritten_ms, sk.last_ms)
            if batch.references:
                self._references.update((k.open_ms, k) for k in batch.references)
            if batch.watermark_ms >= 0:
                sk.advance(batch.watermark_ms, update.closed)  # the grace timer of live flows
        stats = self._stats
        stats.duplicates += dups
        if self._foreign:
            stats.foreign_batches += len(values)
        if stats_refused:
            stats.add_dead(dl.IMPLAUSIBLE, stats_refused)
        if len(update.dead) > stats_refused:
            stats.add_dead(dl.LATE, len(update.dead) - stats_refused)
        for interval, _ in update.closed:
            stats.klines_closed[interval] += 1
        if update.amended is not None:
            self._note_amendments(update)
        if took or update.closed:  # (a watermark closing nothing leaves them as written)
            self._changed()
        if self._references or self._config.reconcile:
            self._reconcile(update)
        if not self._config.timer_writes:  # (live: on the timer only, see below)
            self._write_open_if_due(update)
        return [update], StatefulBatchLogic.RETAIN

    def _took(
        self,
        update: KlineUpdate,
        late: list[Trade],
        refused: list[tuple[Trade, str]],
        amended_before: dict[str, int] | None,
    ) -> int:
        """What the builder did not take, as dead letters; the count of refused trades."""
        symbol = self._symbol
        update.dead.extend(DeadLetter(dl.IMPLAUSIBLE, why, repr(t), "", symbol)
                           for t, why in refused)  # fmt: skip
        if amended_before is not None:
            self._amended(update, amended_before)
        update.dead.extend(
            DeadLetter(dl.LATE, "trade for a kline already closed", repr(t), "", symbol)
            for t in late
        )
        return len(refused)

    def _amended(self, update: KlineUpdate, before: dict[str, int]) -> None:
        """Trades came for klines a watermark had closed: they are closed again (amended)."""
        merged = dict(update.amended or {})
        for name, open_ms in before.items():
            merged[name] = max(merged.get(name, -1), open_ms)
        update.amended = merged

    def _note_amendments(self, update: KlineUpdate) -> None:
        spans: dict[str, list[int]] = {}
        for interval, k in update.closed:
            if update.is_amendment(interval, k.open_ms):
                span = spans.setdefault(interval, [k.open_ms, k.open_ms, 0])
                span[0], span[1] = min(span[0], k.open_ms), max(span[1], k.open_ms)
                span[2] += 1
        for interval, (first, last, count) in spans.items():
            self._stats.klines_amended += count
            update.notes.append(
                QualityNote(
                    self._symbol,
                    "amended",
                    f"{count} kline(s) opening {first}..{last} closed again: a trade came "
                    "after a watermark had closed them",
                    interval,
                    first,
                )
            )
        log.warning("klines amended symbol=%s %s", self._symbol,
                    {i: s[2] for i, s in spans.items()})  # fmt: skip

    def _reconcile(self, update: KlineUpdate) -> None:
        """Compare our closed 1m klines with Binance's (whichever comes second decides)."""
        for interval, k in update.closed:
            if interval == "1m":
                self._ours[k.open_ms] = k
        for open_ms in sorted(set(self._references) & set(self._ours)):
            theirs = self._references.pop(open_ms)
            ours = self._ours[open_ms]
            if ours[:11] == theirs[:11]:  # every field but the trade ids REST klines lack
                self._stats.reconciled += 1
            else:
                self._stats.reconcile_mismatches += 1
                update.mismatches.append((ours, theirs))
                log.warning("kline mismatch symbol=%s open_ms=%d ours=%s binance=%s",
                            self._symbol, open_ms, ours.to_rest(), theirs.to_rest())  # fmt: skip
        for table in (self._ours, self._references):
            while len(table) > 10:  # keep the last few minutes
                del table[min(table)]

    def _period_end(self, now: float) -> float:
        """The end of the throttle period holding `now`: periods aligned on the clock, shifted
        by the symbol's slot (a fraction of the period)."""
        period = self._config.open_throttle_ms / 1000.0
        if period <= 0:
            return now
        shift = self._phase * period
        return ((now - shift) // period + 1) * period + shift

    def _changed(self) -> None:
        """The open klines changed. Live, they are due at the end of the current throttle
        period (or later, if the last write was less than a period ago)."""
        if not self._dirty and self._config.timer_writes:
            now = self._config.clock.monotonic_s()
            self._next_open_write = max(self._next_open_write, self._period_end(now))
        self._dirty = True

    def _write_open_if_due(self, update: KlineUpdate) -> None:
        """The open klines, at most once per throttle period. Live (`timer_writes`), only
        the notification below writes them, at the end of the period: periods aligned on the
        clock and shifted by one of 8 slots a symbol hashes to (the hash that also picks its
        shard, so each shard of a worker writes once a second, each at its own instant), so
        the symbols a second changed are written in 8 small transactions a second, not each at
        the moment its next trade comes nor all in one burst; no change waits longer than the
        throttle, as with Binance's own kline stream (an update a second or two). Replays
        write them as batches pass. `newest_trade_ms` of the update: the newest trade applied
        and now in Redis (the lag metric: an earlier trade of the period waited longer, at
        most the throttle more)."""
        now = self._config.clock.monotonic_s()
        # (a timer is set in whole milliseconds of the wall clock: up to 1 ms early here)
        if self._dirty and self._sk is not None and now + 0.001 >= self._next_open_write:
            update.opened = self._sk.open_klines()
            update.newest_trade_ms = max(update.newest_trade_ms, self._unwritten_ms)
            self._unwritten_ms = -1
            self._stats.open_kline_writes += len(update.opened)
            self._next_open_write = self._period_end(now)
            self._dirty = False

    def notify_at(self) -> datetime | None:
        if not self._dirty or not self._config.timer_writes:
            return None  # nothing waits: no timer (a timer left in the past would spin)
        wait_ms = max(0.0, (self._next_open_write - self._config.clock.monotonic_s()) * 1000.0)
        return datetime.fromtimestamp((self._config.clock.now_ms() + wait_ms) / 1000.0, tz=UTC)

    def on_notify(self) -> tuple[list[KlineUpdate], bool]:
        update = KlineUpdate(self._symbol)
        self._write_open_if_due(update)
        if not update.opened:
            return [], StatefulBatchLogic.RETAIN
        return [update], StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[list[KlineUpdate], bool]:
        sk = self._sk
        if sk is not None and not self._config.close_at_eof and self._dirty:
            # a live flow stopping: the open klines its last period changed, written now
            self._next_open_write = 0.0
            update = KlineUpdate(self._symbol)
            self._write_open_if_due(update)
            return [update], StatefulBatchLogic.RETAIN
        if sk is None or not self._config.close_at_eof:
            return [], StatefulBatchLogic.RETAIN
        final = sk.open_klines()
        for interval, _ in final:
            self._stats.klines_closed[interval] += 1
        return [
            KlineUpdate(self._symbol, closed=final, state=sk.snapshot())
        ], StatefulBatchLogic.RETAIN

    def snapshot(self) -> dict[str, Any]:
        if self._sk is None:
            return self._resume or {}
        return self._sk.snapshot()


def kline_logic_builder(
    config: KlineStepConfig, stats: RunStats
) -> Callable[[dict[str, Any] | None], KlineLogic]:
    def build(resume: dict[str, Any] | None) -> KlineLogic:
        return KlineLogic(config, stats, resume or None)

    return build
