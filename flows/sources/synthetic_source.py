"""A Bytewax source that plays the synthetic market: first `history_ms` of past market as
fast as it goes, then paced to the wall clock (what the demo runs)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from flows.domain.clock import Clock
from flows.domain.stats import RunStats
from flows.sources.items import SourceItem, SymbolBatch
from flows.sources.synthetic import SyntheticMarket

_CATCH_UP_STEP_MS = 120_000  # event time per batch while building history
_LIVE_POLL_MS = 250


class _SyntheticPartition(StatefulSourcePartition[SourceItem, Any]):
    def __init__(
        self, market: SyntheticMarket, clock: Clock, stats: RunStats, stop_at_ms: int | None
    ) -> None:
        self._market = market
        self._clock = clock
        self._stats = stats
        self._stop_at_ms = stop_at_ms
        self._awake: datetime | None = None

    def next_batch(self) -> list[SourceItem]:
        now = self._clock.now_ms()
        if self._stop_at_ms is not None and now >= self._stop_at_ms:
            raise StopIteration
        behind = now - self._market.now_ms
        if behind > _CATCH_UP_STEP_MS:
            target = self._market.now_ms + _CATCH_UP_STEP_MS
            self._awake = None
        else:
            target = now
            self._awake = datetime.fromtimestamp((now + _LIVE_POLL_MS) / 1000, tz=UTC)
        trades = self._market.advance_to(target)
        self._stats.trades_read += sum(len(v) for v in trades.values())
        return [(sym, SymbolBatch(sym, batch)) for sym, batch in trades.items()]

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> Any:
        return None  # the market is regenerated from its seed; nothing to resume


class SyntheticSource(FixedPartitionedSource[SourceItem, Any]):
    def __init__(
        self, market: SyntheticMarket, clock: Clock, stats: RunStats, duration_s: float | None
    ) -> None:
        self._market = market
        self._clock = clock
        self._stats = stats
        self._stop_at_ms = (
            clock.now_ms() + int(duration_s * 1000) if duration_s is not None else None
        )

    def list_parts(self) -> list[str]:
        return ["synthetic"]

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _SyntheticPartition:
        return _SyntheticPartition(self._market, self._clock, self._stats, self._stop_at_ms)


__all__ = ["SyntheticSource", "timedelta"]
