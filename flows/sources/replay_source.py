"""A Bytewax source replaying recorded files, in order, as batches grouped by symbol.

One partition reads every file in the order given, so the trades of a symbol arrive in the
order they were recorded; its resume state is (file index, records consumed). Each batch
holds one `(symbol, SymbolBatch)` item per symbol of a chunk, plus a `SourceReport` with the
chunk's dead letters when it has any. CSV dumps come as columns (`TradeColumns`, one symbol
per batch), the other formats as trade tuples.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from flows.domain.deadletter import DeadLetter
from flows.domain.stats import RunStats
from flows.domain.trade_columns import TradeColumns
from flows.sources.items import SourceItem, SourceReport, SymbolBatch
from flows.sources.readers import Chunk, ReadOptions, read_batches


def column_items(cols: TradeColumns, stats: RunStats) -> list[SourceItem]:
    """A batch of columns as dataflow items, counting what it holds."""
    items: list[SourceItem] = []
    if len(cols):
        items.append((cols.symbol, SymbolBatch(cols.symbol, [], columns=cols)))
    stats.trades_read += len(cols)
    stats.files_truncated += cols.truncated
    return _with_report(items, cols.dead, stats)


def _with_report(
    items: list[SourceItem], dead: list[DeadLetter], stats: RunStats
) -> list[SourceItem]:
    """`items`, and a report of the dead letters (counted) when there are any."""
    if dead:
        for letter in dead:
            stats.add_dead(letter.reason)
        items.append(SourceReport(dead))
    return items


def chunk_items(chunk: Chunk, stats: RunStats) -> list[SourceItem]:
    """A chunk as dataflow items, counting what it holds."""
    items: list[SourceItem] = [
        (sym, SymbolBatch(sym, trades)) for sym, trades in chunk.trades.items() if trades
    ]
    stats.trades_read += chunk.trade_count
    stats.frames_ignored += chunk.ignored
    stats.trades_filtered += chunk.filtered
    stats.files_truncated += chunk.truncated
    return _with_report(items, chunk.dead, stats)


class _ReplayPartition(StatefulSourcePartition[SourceItem, Any]):
    def __init__(
        self, paths: list[Path], options: ReadOptions, stats: RunStats, resume: Any
    ) -> None:
        self._paths = paths
        self._options = options
        self._stats = stats
        position: tuple[int, int] = tuple(resume) if resume is not None else (0, 0)
        self._file_index, self._records = position
        self._chunks: Iterator[Chunk | TradeColumns] | None = None
        self._done_before = sum(p.stat().st_size for p in paths[: self._file_index])

    def next_batch(self) -> list[SourceItem]:
        while self._file_index < len(self._paths):
            path = self._paths[self._file_index]
            if self._chunks is None:
                self._chunks = read_batches(path, self._options, skip_records=self._records)
            chunk = next(self._chunks, None)
            if chunk is None:
                self._done_before += path.stat().st_size
                self._file_index += 1
                self._records = 0
                self._chunks = None
                self._stats.files_done += 1
                continue
            self._records = chunk.records
            self._stats.bytes_done = self._done_before + chunk.bytes_done
            if isinstance(chunk, TradeColumns):
                return column_items(chunk, self._stats)
            return chunk_items(chunk, self._stats)
        raise StopIteration

    def snapshot(self) -> Any:
        return (self._file_index, self._records)


class ReplaySource(FixedPartitionedSource[SourceItem, Any]):
    def __init__(self, paths: list[Path], options: ReadOptions, stats: RunStats) -> None:
        self._paths = paths
        self._options = options
        self._stats = stats
        stats.bytes_total = sum(p.stat().st_size for p in paths)

    def list_parts(self) -> list[str]:
        return ["replay"]

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _ReplayPartition:
        return _ReplayPartition(self._paths, self._options, self._stats, resume_state)
