"""Captures and recordings read as columns: the native frame parser, then per-symbol arrays.

`read_frame_columns` yields what `flows.sources.captures.read_frames` yields, as columns: the
same trades of each symbol in the same order, the same dead letters in the same order, the
same counts, positions that resume exactly. The file is read in blocks of whole lines; the
native parser (`flows/native/frame_lines.c`) takes every line that is an aggTrade or trade
frame in the plain form Binance sends, and numpy checks what the line-by-line reader's fast
path checks (amounts, ids, the time against the line's receive time plus the margin). Every
other line, and every trade those checks leave, is decided by the same `LineRules` as the
line-by-line reader, in line order. The trades of a block are then grouped by symbol (a
stable sort: each symbol's trades keep their order).

Each `ColumnChunk` is one block: a chunk's `records` is the position after its last line.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from flows.binance.decode import LAX_LIMIT
from flows.domain.trade_checks import EXCHANGE_START_MS, MAX_FILLS, MAX_TRADE_ID, US_FROM
from flows.domain.trade_columns import TradeColumns
from flows.native import FrameLines, frame_lines, symbol_of
from flows.sources.captures import LineRules
from flows.sources.chunks import Chunk, ReadOptions
from flows.sources.compressed import Lines, open_stream

# decompressed bytes parsed at once: with 100 symbols, a few hundred trades per symbol, so the
# kline step gets batches, not single trades (the tests make it tiny to cut blocks anywhere)
BLOCK_BYTES = 4 << 20


@dataclass(slots=True)
class ColumnChunk(Chunk):
    """A block of a capture or recording as a `Chunk` whose trades are columns: one
    `TradeColumns` per symbol, in the order each symbol first appears (`trades` stays empty)."""

    columns: list[TradeColumns] = field(default_factory=list)

    @property
    def trade_count(self) -> int:
        return sum(len(c) for c in self.columns)


def read_frame_columns(
    path: Path, options: ReadOptions, skip: int, recorded: bool
) -> Iterator[ColumnChunk]:
    """The file's trades as columns, after its first `skip` records (see the module doc)."""
    parse = frame_lines
    if parse is None:
        raise RuntimeError("the native frame parser was not built")
    raw_file, stream = open_stream(path)
    reader = Lines(stream)
    rules = LineRules(path, options, recorded, reader)
    first_record = skip + 2  # line 1: the URL of a capture, the header of a recording
    lineno = 0  # lines read so far
    try:
        # (a last piece with no newline ends in b"\0": never clean, the line rules decide it)
        for block, count in reader.blocks(BLOCK_BYTES):
            if lineno + count < first_record:  # every line of it before the resume point
                lineno += count
                continue
            chunk = ColumnChunk()  # the lines decided one by one count and dead-letter here
            parsed = parse(block, count, 0 if recorded else 1)
            numbers = np.arange(lineno + 1, lineno + count + 1, dtype=np.int64)
            chunk.columns = _block_columns(parsed, block, numbers, first_record, rules, chunk,
                                           options)  # fmt: skip
            lineno += count
            chunk.records = max(lineno, first_record - 1) - 1
            chunk.bytes_done = raw_file.tell()
            yield chunk
        # a position past the file's end stays where it was (as the line reader keeps it)
        last = max(lineno, first_record - 1)
        end = ColumnChunk(records=last - 1, bytes_done=raw_file.tell())
        rules.finish(end, last)
        yield end
    finally:
        stream.close()
        raw_file.close()


def _fast(parsed: FrameLines, time_ms: npt.NDArray[np.int64], margin: int) -> npt.NDArray[np.bool_]:
    """The clean lines whose trade the line rules' fast path (`lax_trade`) takes as it is."""
    first, last = parsed.first, parsed.last
    return (
        parsed.clean
        & (parsed.time >= EXCHANGE_START_MS) & (time_ms >= EXCHANGE_START_MS)
        & (time_ms <= parsed.recv + margin)
        & (parsed.price > 0) & (parsed.price < LAX_LIMIT)
        & (parsed.qty > 0) & (parsed.qty < LAX_LIMIT)
        & (first >= 0) & (last <= MAX_TRADE_ID) & (last - first >= 0)
        & (last - first < MAX_FILLS)
    )  # fmt: skip


def _block_columns(
    parsed: FrameLines,
    block: bytes,
    numbers: npt.NDArray[np.int64],
    first_record: int,
    rules: LineRules,
    chunk: Chunk,
    options: ReadOptions,
) -> list[TradeColumns]:
    kept = numbers >= first_record
    t = parsed.time
    time_ms = np.where(t >= US_FROM, t // 1000, t)
    fast = _fast(parsed, time_ms, options.future_margin_ms) & kept
    price, qty, first, last = parsed.price, parsed.qty, parsed.first, parsed.last
    maker = parsed.maker
    # a symbol id per line: the packed symbols of fast lines, then those the rules give
    ids = np.full(len(numbers), -1, np.int64)
    names: list[str] = []
    index: dict[str, int] = {}
    at = np.flatnonzero(fast)
    if len(at):
        packed = np.ascontiguousarray(parsed.symbol[at])
        keys = packed.view(np.dtype((np.void, 16))).ravel()
        unique, first_at, inverse = np.unique(keys, return_index=True, return_inverse=True)
        del unique
        local = np.empty(len(first_at), np.int64)
        for k, i in enumerate(first_at.tolist()):
            name = symbol_of(packed[i])
            local[k] = index.setdefault(name, len(names))
            if local[k] == len(names):
                names.append(name)
        ids[at] = local[inverse.ravel()]
    taken = fast.copy()
    for i in np.flatnonzero(kept & ~fast).tolist():
        got = rules.decide(parsed.line(block, i), int(numbers[i]), chunk)
        if got is None:
            continue
        sym, (f, lst, p, q, tm, m) = got
        first[i], last[i], price[i], qty[i], time_ms[i], maker[i] = f, lst, p, q, tm, m
        ids[i] = index.setdefault(sym, len(names))
        if ids[i] == len(names):
            names.append(sym)
        taken[i] = True
    return _grouped(np.flatnonzero(taken), ids, names, options, chunk,
                    (time_ms, price, qty, first, last, maker))  # fmt: skip


def _grouped(
    rows: npt.NDArray[np.int64],
    ids: npt.NDArray[np.int64],
    names: list[str],
    options: ReadOptions,
    chunk: Chunk,
    values: tuple[npt.NDArray[Any], ...],
) -> list[TradeColumns]:
    """The taken rows' trades, one `TradeColumns` per symbol in the order symbols first
    appear, each symbol's in line order; symbols not asked for are counted, not kept."""
    if not len(rows):
        return []
    row_ids = ids[rows]
    order = np.argsort(row_ids, kind="stable")
    sorted_ids = row_ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    ends = np.r_[starts[1:], len(order)]
    time_ms, price, qty, first, last, maker = values
    out: list[tuple[int, TradeColumns]] = []
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        sym = names[int(sorted_ids[a])]
        pick = rows[order[a:b]]
        if options.symbols is not None and sym not in options.symbols:
            chunk.filtered += b - a
            continue
        cols = TradeColumns(sym, time_ms[pick], price[pick], qty[pick], first[pick],
                            last[pick], maker[pick].astype(np.bool_))  # fmt: skip
        out.append((int(pick[0]), cols))
    out.sort(key=lambda x: x[0])
    return [c for _, c in out]
