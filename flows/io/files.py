"""Recorded files as a trade source: Binance CSV dumps (read as columns), captures,
klineflow recordings and REST JSON (read as rows and handed on as columns).

The position is (file index, records of that file consumed, parts of that chunk taken): a
chunk of a row format may hold several symbols, handed on one batch per symbol, and reading
from a position inside a chunk reads that chunk again and skips the parts already taken.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from flows.domain.money import format_units
from flows.domain.trade_columns import TradeColumns
from flows.io.contracts import ContractEnv, Position, TradeSource
from flows.sources.chunks import Chunk, ReadOptions
from flows.sources.frame_columns import ColumnChunk
from flows.sources.readers import read_batches


def chunk_columns(chunk: Chunk) -> list[TradeColumns]:
    """A chunk as one batch of columns per symbol (its dead letters on the first)."""
    if isinstance(chunk, ColumnChunk):
        parts = [cols for cols in chunk.columns if len(cols)]
    else:
        parts = [TradeColumns.of(sym, trades) for sym, trades in chunk.trades.items() if trades]
    if chunk.dead or chunk.truncated or not parts:
        if not parts:
            parts.append(TradeColumns.empty(""))
        parts[0].dead = list(chunk.dead)
        parts[0].truncated = chunk.truncated
    for part in parts:
        part.records = chunk.records
        part.bytes_done = chunk.bytes_done
    return parts


class FileTrades(TradeSource):
    """The trades of `paths`, in that order."""

    def __init__(self, paths: list[Path], options: ReadOptions = ReadOptions()) -> None:
        self._paths = list(paths)
        self._options = options

    def read(self, after: Position | None = None) -> Iterator[tuple[TradeColumns, Position]]:
        start: tuple[int, int, int] = after if after is not None else (0, 0, 0)  # type: ignore[assignment]
        index, records, parts = start
        while index < len(self._paths):
            for batch in read_batches(self._paths[index], self._options, records):
                if isinstance(batch, TradeColumns):
                    records, parts = batch.records, 0
                    if len(batch) or batch.dead or batch.truncated:  # not lines skipped over
                        yield batch, (index, records, 0)
                    continue
                if not (batch.trade_count or batch.dead or batch.truncated):
                    records, parts = batch.records, 0  # lines passed over: nothing to give
                    continue
                pieces = chunk_columns(batch)
                for k, piece in enumerate(pieces):
                    if k < parts:
                        continue
                    done = k == len(pieces) - 1
                    position = (index, batch.records, 0) if done else (index, records, k + 1)
                    yield piece, position
                records, parts = batch.records, 0
            index, records, parts = index + 1, 0, 0

    @classmethod
    def for_contract(cls, env: ContractEnv) -> FileTrades:
        """The suite's trades written as an aggTrades dump (Binance's columns and form)."""
        symbol = env.trades[0].symbol if env.trades else "XRPETH"
        path = Path(env.scratch) / f"{symbol}-aggTrades-contract.csv"
        with path.open("w") as out:
            for cols in env.trades:
                for agg, (first, last, price, qty, ts, maker) in enumerate(cols.trades()):
                    out.write(f"{agg},{format_units(price)},{format_units(qty)},{first},{last},"
                              f"{ts},{maker},True\n")  # fmt: skip
        return cls([path], ReadOptions(column_rows=7))  # small batches: many positions


class ArchiveTrades(FileTrades):
    """The trade archive (`flows.sources.trade_archive`): a folder of Parquet files, or some."""

    def __init__(self, paths: list[Path], options: ReadOptions = ReadOptions()) -> None:
        from flows.sources.inputs import expand_inputs

        super().__init__(expand_inputs(paths), options)

    @classmethod
    def for_contract(cls, env: ContractEnv) -> ArchiveTrades:
        from flows.sources.trade_archive import ArchiveWriter

        root = Path(env.scratch) / "archive"
        writer = ArchiveWriter(root, "contract")
        for cols in env.trades:
            writer.write(cols)
        writer.close()
        return cls([root], ReadOptions(column_rows=7))
