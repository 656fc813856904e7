"""A columnar trade archive: decoded trades as Parquet, one folder per symbol and UTC day.

    <root>/symbol=XRPETH/date=2019-10-11/<source name>.parquet

Each file holds the trades one input file (a recording, a capture, a dump) gave for that
symbol and day, in the order read: int64 columns `time_ms`, `price_units`, `qty_units`
(1e-8 units), `first_id`, `last_id` and a bool `is_buyer_maker`, so replay and backtest read
them as `TradeColumns` at once, with nothing to parse. The raw input stays the ground truth:
its dead letters are not archived (a replay of the raw file reports them), and archiving the
same input again writes the same files again (written aside and renamed, so a crash never
leaves half a file).

`klineflow archive INPUT... --out ROOT` archives files; `klineflow record --archive ROOT`
archives each hourly recording as it closes. `replay` and `backtest` take a file of the
archive or the whole folder (its files in symbol, day and name order).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from flows.domain.trade_columns import TradeColumns
from flows.sources.chunks import Chunk, ReadOptions
from flows.sources.columnar_numbers import bools, int64s

DAY_MS: Final = 86_400_000
MAGIC: Final = b"PAR1"
SCHEMA: Final = pa.schema(
    [
        ("time_ms", pa.int64()),
        ("price_units", pa.int64()),
        ("qty_units", pa.int64()),
        ("first_id", pa.int64()),
        ("last_id", pa.int64()),
        ("is_buyer_maker", pa.bool_()),
    ],
    metadata={b"klineflow": b"trade archive 1"},
)
_SYMBOL_DIR: Final = re.compile(r"^symbol=([A-Z0-9_.-]{1,40})$")


def _day_name(day: int) -> str:
    return datetime.fromtimestamp(day * DAY_MS / 1000, tz=UTC).strftime("%Y-%m-%d")


def _table(cols: TradeColumns, rows: np.ndarray | slice) -> pa.Table:
    return pa.table(
        [cols.time_ms[rows], cols.price_units[rows], cols.qty_units[rows], cols.first_id[rows],
         cols.last_id[rows], cols.is_buyer_maker[rows]],
        schema=SCHEMA,
    )  # fmt: skip


class ArchiveWriter:
    """Writes the trades of one input file into the archive (see the module docstring)."""

    def __init__(self, root: Path, source_name: str) -> None:
        self._root = root
        self._name = source_name
        self._open: dict[tuple[str, int], tuple[pq.ParquetWriter, Path, Path]] = {}
        self.trades = 0

    def write(self, cols: TradeColumns) -> None:
        if not len(cols):
            return
        days = cols.time_ms // DAY_MS
        for day in np.unique(days).tolist():
            rows = np.flatnonzero(days == day) if days[0] != days[-1] else slice(None)
            self._writer(cols.symbol, int(day)).write_table(_table(cols, rows))
        self.trades += len(cols)

    def _writer(self, symbol: str, day: int) -> pq.ParquetWriter:
        entry = self._open.get((symbol, day))
        if entry is None:
            folder = self._root / f"symbol={symbol}" / f"date={_day_name(day)}"
            folder.mkdir(parents=True, exist_ok=True)
            final = folder / f"{self._name}.parquet"
            aside = folder / f".{self._name}.parquet.part"
            entry = (pq.ParquetWriter(aside, SCHEMA, compression="zstd"), aside, final)
            self._open[(symbol, day)] = entry
        return entry[0]

    def close(self) -> list[Path]:
        """Finish every file and put it in place; the files written."""
        done = []
        for writer, aside, final in self._open.values():
            writer.close()
            os.replace(aside, final)
            done.append(final)
        self._open.clear()
        return sorted(done)


_FORMAT_SUFFIXES: Final = (".gz", ".zip", ".jsonl", ".json", ".csv", ".txt")


def archive_name(name: str) -> str:
    """The name an input file's archive files take: its name without the suffixes of its
    format, so that a later recording of the same hour keeps its own
    (``klineflow-20261205-16.1.jsonl.gz`` -> ``klineflow-20261205-16.1``, beside
    ``klineflow-20261205-16``) and is not archived over the first.

    >>> archive_name("XRPETH-aggTrades-2019-10-11.zip")
    'XRPETH-aggTrades-2019-10-11'
    >>> archive_name("klineflow-20261205-16.1.jsonl.gz")
    'klineflow-20261205-16.1'
    """
    stem = name
    while True:
        for suffix in _FORMAT_SUFFIXES:
            if stem.endswith(suffix) and len(stem) > len(suffix):
                stem = stem[: -len(suffix)]
                break
        else:
            return stem


def archive_file(path: Path, root: Path, options: ReadOptions = ReadOptions()) -> list[Path]:
    """Archive the trades of one input file; the Parquet files written."""
    from flows.io.files import FileTrades

    writer = ArchiveWriter(root, archive_name(path.name))
    try:
        for cols, _ in FileTrades([path], options).read():
            writer.write(cols)
    finally:
        written = writer.close()
    return written


def archive_symbol(path: Path) -> str | None:
    """The symbol of an archive file, from its folder (``symbol=XRPETH``)."""
    m = _SYMBOL_DIR.match(path.parent.parent.name)
    return m.group(1) if m else None


def read_parquet(
    path: Path, options: ReadOptions = ReadOptions(), skip: int = 0
) -> Iterator[TradeColumns]:
    """The trades of an archive file as columns, after `skip` rows; `records` counts rows."""
    symbol = archive_symbol(path) or options.symbol or ""
    if options.symbols is not None and symbol not in options.symbols:
        return
    parquet = pq.ParquetFile(path)
    done = 0
    size = path.stat().st_size
    total = max(parquet.metadata.num_rows, 1)
    for read in parquet.iter_batches(batch_size=options.column_rows):
        start = done
        done += read.num_rows
        if done <= skip:
            continue
        batch = read.slice(skip - start) if start < skip else read
        c = [int64s(col) for col in batch.columns[:5]]
        yield TradeColumns(symbol, c[0], c[1], c[2], c[3], c[4], bools(batch.columns[5]),
                           records=done, bytes_done=size * done // total)  # fmt: skip


def read_parquet_chunks(path: Path, options: ReadOptions, skip: int) -> Iterator[Chunk]:
    """`read_parquet` as chunks of trade tuples (for readers of rows)."""
    for cols in read_parquet(path, options, skip):
        chunk = Chunk(records=cols.records, bytes_done=cols.bytes_done)
        chunk.trades[cols.symbol] = cols.trades()
        yield chunk
