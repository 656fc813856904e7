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
from flows.sources.frame_columns import ColumnChunk
from flows.sources.items import SourceItem, SourceReport, SymbolBatch
from flows.sources.read_ahead import FileChunk, ReadAhead, replay_chunks
from flows.sources.readers import Chunk, ReadOptions


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
    if isinstance(chunk, ColumnChunk):  # a capture or recording read as columns
        items += [(c.symbol, SymbolBatch(c.symbol, [], columns=c)) for c in chunk.columns]
    stats.trades_read += chunk.trade_count
    stats.frames_ignored += chunk.ignored
    stats.trades_filtered += chunk.filtered
    stats.files_truncated += chunk.truncated
    return _with_report(items, chunk.dead, stats)


class _ReplayPartition(StatefulSourcePartition[SourceItem, Any]):
    def __init__(
        self,
        paths: list[Path],
        options: ReadOptions,
        stats: RunStats,
        resume: Any,
        ahead: ReadAhead[FileChunk] | None,
    ) -> None:
        self._paths = paths
        self._stats = stats
        position: tuple[int, int] = tuple(resume) if resume is not None else (0, 0)
        self._file_index, self._records = position
        if ahead is not None and position == (0, 0):
            self._chunks: Iterator[FileChunk] = ahead  # read from the start already
        else:
            if ahead is not None:
                ahead.close()
            self._chunks = replay_chunks(paths, options, *position)
        self._done_before = sum(p.stat().st_size for p in paths[: self._file_index])

    def next_batch(self) -> list[SourceItem]:
        for index, chunk in self._chunks:
            path = self._paths[index]
            if chunk is None:  # the file is done
                self._done_before += path.stat().st_size
                self._file_index, self._records = index + 1, 0
                self._stats.files_done += 1
                continue
            self._file_index, self._records = index, chunk.records
            self._stats.bytes_done = self._done_before + chunk.bytes_done
            if isinstance(chunk, TradeColumns):
                return column_items(chunk, self._stats)
            return chunk_items(chunk, self._stats)
        raise StopIteration

    def snapshot(self) -> Any:
        return (self._file_index, self._records)

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()


class ReplaySource(FixedPartitionedSource[SourceItem, Any]):
    """`ahead`: the files' chunks already being read (`flows.sources.read_ahead`), taken
    when the replay starts from the beginning."""

    def __init__(
        self,
        paths: list[Path],
        options: ReadOptions,
        stats: RunStats,
        ahead: ReadAhead[FileChunk] | None = None,
    ) -> None:
        self._paths = paths
        self._options = options
        self._stats = stats
        self._ahead = ahead
        stats.bytes_total = sum(p.stat().st_size for p in paths)

    def list_parts(self) -> list[str]:
        return ["replay"]

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _ReplayPartition:
        ahead, self._ahead = self._ahead, None  # one partition takes it
        return _ReplayPartition(self._paths, self._options, self._stats, resume_state, ahead)
