"""Endpoints of `flows.io` plugged into a kline flow: a trade source in, sinks out, one output
per kind.

`build_kline_flow(..., sinks=[...])` gives every `KlineSink` its own output of the flow's
klines (closed, and open as they stand), every `ReportSink` its own output of the reports
(dead letters, gaps that could not be filled, quality notes) and every `SignalSink` its own
output of the signals. The flow's own stores stay what a restart resumes from: Redis holds
the klines with their reports and the resume state in one transaction, PostgreSQL the
signals with the rules' progress (see "What survives what"). A sink given here receives each
item at least once: a restart may deliver a batch again, which the sink contract makes
harmless (a write of the same records leaves the store as one write did).

`TradeSourceInput` runs any `TradeSource` as the flow's input: its batches go through the
kline step as a file's do, and its position is the Bytewax resume state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition

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


class _Writes(StatelessSinkPartition[Any]):
    def __init__(self, sink: Endpoint) -> None:
        self._sink = sink

    def write_batch(self, items: list[Any]) -> None:
        if isinstance(self._sink, KlineSink):
            records = kline_records(items)
            if records:
                self._sink.write_batch(records)
        elif isinstance(self._sink, ReportSink):
            found = reports(items)
            if found:
                self._sink.write_batch(found)
        else:
            fires = _fires(items)
            if fires:
                self._sink.write_batch(fires)


def _fires(items: Sequence[tuple[str, Outcome]]) -> list[Any]:
    from flows.signals.engine import Fire

    return [x for _, outcome in items for x in outcome if isinstance(x, Fire)]


class EndpointOutput(DynamicSink[Any]):
    """A `flows.io` sink as a Bytewax output (every worker writes to the same instance)."""

    def __init__(self, sink: Endpoint) -> None:
        self.sink = sink

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Writes:
        return _Writes(self.sink)


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
