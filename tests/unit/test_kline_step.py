"""The kline step's throttled open-kline writes, driven by a manual clock."""

from __future__ import annotations

import zlib

from flows.dataflows.kline_step import KlineLogic, KlineStepConfig
from flows.domain.clock import ManualClock
from flows.domain.stats import RunStats
from flows.sources.items import SymbolBatch

T0 = 1_704_067_200_000


def _trade(i: int, ms: int) -> tuple[int, int, int, int, int, bool]:
    return (i, i, 100_00000000 + i, 1_00000000, T0 + ms, False)


def _due_ms(logic: KlineLogic) -> int | None:
    due = logic.notify_at()
    return None if due is None else round(due.timestamp() * 1000)


def test_live_open_klines_are_written_by_the_timer_at_the_end_of_each_second() -> None:
    """Live, a batch writes no open kline: every change waits for the end of its second (a
    second aligned on the clock, shifted by the symbol's slot: one of 8 per second, the same
    instants in every shard), so one notification writes all of a slot that changed."""
    slot = zlib.crc32(b"BTCUSDT") % 8 * 125  # BTCUSDT's shift, in ms
    clock = ManualClock(T0 + slot + 250)
    logic = KlineLogic(
        KlineStepConfig(("1m",), open_throttle_ms=1000, clock=clock), RunStats(), None
    )
    (first,), _ = logic.on_batch([SymbolBatch("BTCUSDT", [_trade(1, 100)])])
    assert first.opened == [] and not first.carries()  # nothing for the sink yet
    assert _due_ms(logic) == T0 + slot + 1000
    clock.advance(748)
    assert logic.on_notify()[0] == []  # not yet due (1 ms early is: timers are whole ms)
    clock.advance(2)
    (written,), _ = logic.on_notify()
    assert [k.trades for _, k in written.opened] == [1]
    assert written.newest_trade_ms == T0 + 100  # the lag metric: this trade is in Redis now
    assert logic.notify_at() is None  # nothing waits: no timer left behind
    clock.advance(10)
    logic.on_batch([SymbolBatch("BTCUSDT", [_trade(2, 1_005)])])
    logic.on_batch([SymbolBatch("BTCUSDT", [_trade(3, 1_500)])])
    assert _due_ms(logic) == T0 + slot + 2000  # both changes, once
    clock.advance(990)
    (written,), _ = logic.on_notify()
    assert [k.trades for _, k in written.opened] == [3]
    assert written.newest_trade_ms == T0 + 1_500
    # a quiet symbol's next change waits for the end of its second too, not less
    clock.advance(5_300)
    logic.on_batch([SymbolBatch("BTCUSDT", [_trade(4, 7_200)])])
    assert _due_ms(logic) == T0 + slot + 8000


def test_replays_write_open_klines_only_as_batches_pass() -> None:
    clock = ManualClock(T0)
    cfg = KlineStepConfig(("1m",), open_throttle_ms=1000, clock=clock, timer_writes=False)
    logic = KlineLogic(cfg, RunStats(), None)
    logic.on_batch([SymbolBatch("BTCUSDT", [_trade(1, 100)])])
    clock.advance(10)
    logic.on_batch([SymbolBatch("BTCUSDT", [_trade(2, 110)])])
    assert logic.notify_at() is None


def test_reconciliation_counts_equal_and_records_different_klines() -> None:
    from flows.domain.kline import Kline

    clock = ManualClock(T0)
    stats = RunStats()
    logic = KlineLogic(KlineStepConfig(("1m",), clock=clock, reconcile=True), stats, None)
    logic.on_batch([SymbolBatch("BTCUSDT", [_trade(1, 100), _trade(2, 200)])])
    (update,), _ = logic.on_batch([SymbolBatch("BTCUSDT", [_trade(3, 60_100)])])  # closes minute 0
    ((_, ours),) = update.closed
    right = Kline(*ours[:11])  # Binance's kline carries the same values (ids aside)
    (same,), _ = logic.on_batch([SymbolBatch("BTCUSDT", [], -1, (right,))])
    assert stats.reconciled == 1 and same.mismatches == []
    logic.on_batch([SymbolBatch("BTCUSDT", [_trade(4, 120_100)])])  # closes minute 1
    ours_1 = logic._ours[T0 + 60_000]
    wrong = ours_1._replace(volume=ours_1.volume + 1, first_trade_id=-1, last_trade_id=-1)
    (diff,), _ = logic.on_batch([SymbolBatch("BTCUSDT", [], -1, (wrong,))])
    assert stats.reconcile_mismatches == 1 and diff.mismatches == [(ours_1, wrong)]
