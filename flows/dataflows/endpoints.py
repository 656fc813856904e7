"""Endpoints of `flows.io` plugged into a kline flow: a trade source in, sinks out, each sink
given its own kind.

`build_kline_flow(..., sinks=[...])` hands every `KlineSink` the flow's klines (closed, and
open as they stand), every `ReportSink` its reports (dead letters, gaps that could not be
filled, quality notes) and every `SignalSink` its signals. Each sink is written before the
flow's own store commits the same batch: the Redis output (klines with their reports and the
resume state, in one transaction) and the PostgreSQL output (signals with the rules'
progress) call `deliver` first. So a sink receives every item at least once, also across a
`kill -9` at any instant: a batch not yet committed is delivered again after the restart,
which the sink contract makes harmless (the same records written again leave the store as
one write did). A sink that raises stops the flow before the store commits, as a store that
fails does; nothing is skipped.

`TradeSourceInput` runs any `TradeSource` as the flow's input: its batches go through the
kline step as a file's do, and its position is the Bytewax resume state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from flows.dataflows.kline_step import KlineUpdate
from flows.domain.stats import RunStats
from flows.io.contracts import KlineRecord, KlineSink, Position, Report, ReportSink, SignalSink
from flows.io.contracts import TradeSource as IoTradeSource
from flows.sources.items import SourceItem, SourceReport
from flows.sources.replay_source import column_items

if TYPE_CHECKING:
    from flows.signals.step import Outcome
    from flows.sinks.redis_sink import SinkItem

Endpoint = KlineSink | ReportSink | SignalSink


def kline_records(items: Sequence[SinkItem]) -> list[KlineRecord]:
    """The klines a batch of the kline step's output holds, closed and open."""
    out: list[KlineRecord] = []
    for item in items:
        if isinstance(item, SourceReport):
            continue
        symbol, update = item
        out += [KlineRecord(symbol, iv, k, True) for iv, k in update.closed]
        out += [KlineRecord(symbol, iv, k, False) for iv, k in update.opened]
    return out


def reports(items: Sequence[SinkItem]) -> list[Report]:
    """The reports a batch holds: the source's and the kline step's, in order."""
    out: list[Report] = []
    for item in items:
        if isinstance(item, SourceReport):
            out += item.dead
            out += item.gaps or []
            out += item.notes or []
            continue
        update: KlineUpdate = item[1]
        out += update.dead
        out += update.notes
    return out


def deliver(sink: Endpoint, items: Sequence[Any]) -> None:
    """Hand `sink` its kind of what a batch of a flow output holds: kline records and reports
    from the kline step's output, fires from the rules' outcomes."""
    if isinstance(sink, KlineSink):
        records = kline_records(items)
        if records:
            sink.write_batch(records)
    elif isinstance(sink, ReportSink):
        found = reports(items)
        if found:
            sink.write_batch(found)
    else:
        fires = _fires(items)
        if fires:
            sink.write_batch(fires)


def _fires(items: Sequence[tuple[str, Outcome]]) -> list[Any]:
    from flows.signals.engine import Fire

    return [x for _, outcome in items for x in outcome if isinstance(x, Fire)]


class _SourcePartition(StatefulSourcePartition[SourceItem, Position]):
    def __init__(self, source: IoTradeSource, stats: RunStats, resume: Position | None) -> None:
        self._source = source
        self._stats = stats
        self._position = resume
        self._batches = source.read(resume)

    def next_batch(self) -> list[SourceItem]:
        for cols, position in self._batches:
            self._position = position
            items = column_items(cols, self._stats)
            if items:
                return items
        raise StopIteration

    def snapshot(self) -> Position | None:
        return self._position

    def close(self) -> None:
        self._source.close()


class TradeSourceInput(FixedPartitionedSource[SourceItem, Position]):
    """Any `flows.io.TradeSource` as the flow's input (one partition, in its order)."""

    def __init__(self, source: IoTradeSource, stats: RunStats) -> None:
        self._source = source
        self._stats = stats

    def list_parts(self) -> list[str]:
        return ["trades"]

    def build_part(
        self, step_id: str, for_part: str, resume_state: Position | None
    ) -> _SourcePartition:
        return _SourcePartition(self._source, self._stats, resume_state)


def check_sinks(sinks: Sequence[object], with_rules: bool) -> None:
    """Each is a sink of one of the three kinds; signal sinks need the rules."""
    for sink in sinks:
        if not isinstance(sink, KlineSink | ReportSink | SignalSink):
            raise TypeError(f"{sink!r} is not a KlineSink, ReportSink or SignalSink")
        if isinstance(sink, SignalSink) and not with_rules:
            raise ValueError(f"{type(sink).__name__} takes signals: the flow has no traders")
