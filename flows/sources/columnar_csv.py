"""Binance aggTrades/trades CSV dumps read column-wise, exactly, with no Python step per row.

`read_columns` yields what `flows.sources.dumps.read_csv` yields, as numpy arrays instead of
trade tuples: the same trades in the same order, the same dead letters, the same cut report.
A reading thread cuts the dump into blocks of whole lines (`SafeLines` escapes the bytes a
parser could misread), and worker threads parse each block into int64 and bool arrays of
Binance's own form (plain digits, up to 8 decimals, `True`/`False`): with the native parser
(`flows.native`, C, one pass over the bytes) where it was built at install, else with
pyarrow's CSV reader into binary columns that `flows.sources.columnar_numbers` converts.
Every other row (a header, a sign, a space, a wrong column count, an invalid or implausible
trade) takes the per-row rules of `flows.sources.columnar_rows`, in line order on the
consuming thread, so no row is decided differently from the per-row reader.

Memory is bounded whatever the file size: a few blocks are in flight (_WORKERS being parsed,
_AHEAD waiting), plus the rare rows of another column count (a trades row in an aggTrades
file) that the per-row rules still take as trades.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Final, NamedTuple, Union

import numpy as np
import numpy.typing as npt

from flows.domain.deadletter import DeadLetter
from flows.domain.kline import Trade
from flows.domain.trade_checks import EXCHANGE_START_MS, MAX_FILLS, MAX_TRADE_ID, US_FROM
from flows.domain.trade_columns import TradeColumns
from flows.native import DumpLines, Int64s, dump_lines
from flows.sources.chunks import Chunk, ReadOptions, report_cut
from flows.sources.columnar_lines import SafeLines
from flows.sources.columnar_rows import row_outcome
from flows.sources.dumps import dump_target, open_dump

if TYPE_CHECKING:  # pyarrow is imported only where the native parser was not built
    from flows.sources.columnar_arrow import ArrowRows

# whole lines parsed at a time by one worker: at most _WORKERS + _AHEAD blocks are held, so a
# replay's memory does not grow with the file
_BLOCK: Final = 4 << 20
_WORKERS: Final = 2  # blocks parsed and converted at once (pyarrow and numpy let go of the GIL)
_AHEAD: Final = 2  # blocks waiting, parsed, for the reading thread
_AGG_COLUMNS: Final = 8  # a, price, qty, first_id, last_id, time, isBuyerMaker, isBestMatch
_TRADE_COLUMNS: Final = 7  # id, price, qty, quoteQty, time, isBuyerMaker, isBestMatch


def _empty(symbol: str, dead: list[DeadLetter], records: int, truncated: int) -> TradeColumns:
    return TradeColumns.empty(symbol, dead, records, truncated)


def read_columns(
    path: Path,
    options: ReadOptions = ReadOptions(),
    skip: int = 0,
    batch_rows: int | None = None,
) -> Iterator[TradeColumns]:
    """The trades of an aggTrades or trades dump in batches of at most `batch_rows` rows
    (default `options.column_rows`), exactly as `flows.sources.dumps.read_csv(path, options,
    skip)` reads them."""
    batch_rows = batch_rows or options.column_rows
    name = str(path)
    target = dump_target(path, options)
    if target is None:
        return
    if isinstance(target, DeadLetter):
        yield _empty("", [target], 0, 0)
        return
    symbol, ceiling = target
    csv = open_dump(path)
    if csv is None:  # a zip cut inside its first header
        chunk = Chunk()
        report_cut(chunk, path, 0, symbol)
        yield _empty(symbol, chunk.dead, skip, 1)
        return
    with csv.stream:
        lines = SafeLines(csv.stream)
        parse = _BatchParser(symbol, name, ceiling, skip, lines)
        if lines.head(1):  # pyarrow refuses a file with no bytes at all
            for batch in parse.batches(_columns(lines), batch_rows):
                batch.bytes_done = min(int(lines.bytes_read * csv.ratio), csv.size)
                yield batch
        chunk = Chunk()
        if lines.cut:
            report_cut(chunk, path, lines.lines, symbol)
        elif csv.member is not None:
            note = " (its zip directory is missing; the data before it is whole)"
            report_cut(chunk, path, lines.lines, symbol, note)
        last = parse.finish()
        last.dead.extend(chunk.dead)
        last.truncated = chunk.truncated
        last.bytes_done = csv.size
        yield last


def _columns(lines: SafeLines) -> int:
    """How many columns the dump has: 8 (aggTrades) or 7 (trades), by its first rows."""
    head = lines.head(1 << 16)
    counts = [row.count(b",") + 1 for row in head.split(b"\n")[:200] if row]
    return _TRADE_COLUMNS if counts.count(7) > counts.count(8) else _AGG_COLUMNS


class _Numbers(NamedTuple):
    time_ms: Int64s
    price: Int64s
    qty: Int64s
    first: Int64s
    last: Int64s
    maker: npt.NDArray[np.bool_]
    clean: npt.NDArray[np.bool_]


class _NativeRows:
    """Lines of a block as the native parser read them: every line is a row."""

    def __init__(self, block: bytes, lines: DumpLines, start: int, count: int) -> None:
        self.block, self.lines, self.start = block, lines, start
        self.num_rows = count

    def slice(self, start: int, count: int) -> _NativeRows:
        count = max(0, min(count, self.num_rows - start))
        return _NativeRows(self.block, self.lines, self.start + start, count)

    def row(self, i: int) -> bytes:
        return self.lines.line(self.block, self.start + i)


_Rows = Union["ArrowRows", _NativeRows]
_Parsed = Future[tuple[_Rows, list[tuple[int, str]], "_Numbers"]]


class _BatchParser:
    """Turns pyarrow batches (and the rows pyarrow refused) into `TradeColumns`."""

    def __init__(self, symbol: str, name: str, ceiling: int, skip: int, lines: SafeLines) -> None:
        self.symbol, self.name, self.ceiling, self.skip = symbol, name, ceiling, skip
        self.lines = lines
        self.next_line = 1  # the line the next pyarrow row may be on
        self.invalid: list[tuple[int, str]] = []

    def batches(self, columns: int, batch_rows: int) -> Iterator[TradeColumns]:
        """Batches of at most `batch_rows` rows.

        A reading thread cuts the file into blocks of whole lines, worker threads parse them
        and convert their numbers (pyarrow and numpy let go of the interpreter), and this
        thread numbers the rows and decides odd ones, in order, while the flow builds the
        klines of the batch before. At most _AHEAD blocks wait, so memory stays bounded."""
        pool = ThreadPoolExecutor(_WORKERS, thread_name_prefix="csv-block")
        parsed: queue.Queue[_Parsed | BaseException | None] = queue.Queue(maxsize=_AHEAD)
        stop = threading.Event()

        def read() -> None:
            first_line = 1
            try:
                for block, lines in self.lines.blocks(_BLOCK):
                    if stop.is_set():
                        return
                    parsed.put(pool.submit(self._block, block, lines, columns, first_line))
                    first_line += lines
            except BaseException as exc:  # handed to the consuming thread, raised there
                parsed.put(exc)
            finally:
                parsed.put(None)

        reader = threading.Thread(target=read, name="csv-read", daemon=True)
        reader.start()
        try:
            while (item := parsed.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield from self._slices(*item.result(), batch_rows)
        finally:
            stop.set()
            while reader.is_alive():  # let it finish a put it may be blocked in
                with contextlib.suppress(queue.Empty):
                    parsed.get(timeout=0.05)
            pool.shutdown(wait=True, cancel_futures=True)

    def _block(
        self, block: bytes, lines: int, columns: int, first_line: int
    ) -> tuple[_Rows, list[tuple[int, str]], _Numbers]:
        """A worker's part: parse, convert (no state of the reader is touched). The native
        parser, when built, reads every line as a row; pyarrow refuses rows of another
        column count, which are then numbered and decided apart."""
        if dump_lines is not None:
            read = dump_lines(block, lines, columns)
            numbers = self._checked(read.time, read.price, read.qty, read.first, read.last,
                                    read.maker, read.clean)  # fmt: skip
            return _NativeRows(block, read, 0, lines), [], numbers
        from flows.sources.columnar_arrow import ArrowRows, arrow_numbers, parse_block

        batch, refused = parse_block(block, columns, first_line)
        raw_time, price, qty, first, last, maker, parsed = arrow_numbers(batch)
        numbers = self._checked(raw_time, price, qty, first, last, maker, parsed)
        return ArrowRows(batch), refused, numbers

    def _slices(
        self,
        rows: _Rows,
        refused: list[tuple[int, str]],
        numbers: _Numbers,
        batch_rows: int,
    ) -> Iterator[TradeColumns]:
        self.invalid.extend(refused)
        for start in range(0, max(rows.num_rows, 1), batch_rows):
            end = start + batch_rows
            part = _Numbers(*(column[start:end] for column in numbers))  # type: ignore[arg-type]
            yield self._batch(rows.slice(start, batch_rows), part)

    def finish(self) -> TradeColumns:
        """The rows pyarrow refused after its last batch."""
        out = self._merge(self._refused(None), _empty(self.symbol, [], 0, 0), [])
        out.records = self.lines.lines
        return out

    def _line_numbers(self, rows: int) -> Int64s:
        """The file lines of the next `rows` pyarrow rows: the lines pyarrow did not refuse."""
        if not self.invalid:  # no refused row waits: the next lines, one per row
            numbers = np.arange(self.next_line, self.next_line + rows, dtype=np.int64)
            self.next_line += rows
            return numbers
        refused = np.array(sorted(n for n, _ in self.invalid if n >= self.next_line), np.int64)
        j = np.arange(rows, dtype=np.int64)
        before = refused - self.next_line - np.arange(len(refused), dtype=np.int64)
        numbers = self.next_line + j + np.searchsorted(before, j, side="right")
        if rows:
            self.next_line = int(numbers[-1]) + 1
        return numbers

    def _refused(self, up_to: int | None) -> list[tuple[int, bytes]]:
        """The refused rows up to line `up_to` (all when None), taken out of the list."""
        take = [(n, t) for n, t in self.invalid if up_to is None or n <= up_to]
        if take:
            self.invalid[:] = [(n, t) for n, t in self.invalid if up_to is not None and n > up_to]
        return [(n, self.lines.original(t.encode())) for n, t in sorted(take) if n > self.skip]

    def _checked(
        self,
        raw_time: Int64s,
        price: Int64s,
        qty: Int64s,
        first: Int64s,
        last: Int64s,
        maker: npt.NDArray[np.bool_],
        parsed: npt.NDArray[np.bool_],
    ) -> _Numbers:
        """The numbers of rows in the strict form (`parsed`), with which of them are clean
        trades: usable ids, a time from Binance's opening to the ceiling, amounts above 0."""
        time_ms = np.where(raw_time >= US_FROM, raw_time // 1000, raw_time)
        clean = (
            parsed
            & (first <= last) & (last <= MAX_TRADE_ID) & (last - first < MAX_FILLS)
            & (time_ms >= EXCHANGE_START_MS) & (time_ms <= self.ceiling)
            & (price > 0) & (qty > 0)
        )  # fmt: skip
        return _Numbers(time_ms, price, qty, first, last, maker, clean)

    def _batch(self, rows: _Rows, converted: _Numbers) -> TradeColumns:
        numbers = self._line_numbers(rows.num_rows)
        time_ms, price, qty, first, last, maker, clean = converted
        end = int(numbers[-1]) if len(numbers) else self.next_line - 1
        if len(numbers) and int(numbers[0]) > self.skip and bool(clean.all()):
            # the common batch: every row a clean trade past the resume point
            out = TradeColumns(self.symbol, time_ms, price, qty, first, last, maker)
            merged = self._merge(self._refused(end), out, [], numbers)
            merged.records = end
            return merged
        keep = clean & (numbers > self.skip)
        dead: list[tuple[int, DeadLetter]] = []
        for i in np.flatnonzero(~clean & (numbers > self.skip)).tolist():
            outcome = row_outcome(self.lines.original(rows.row(i)), int(numbers[i]), self.ceiling,
                                  self.name, self.symbol)  # fmt: skip
            if isinstance(outcome, DeadLetter):
                dead.append((int(numbers[i]), outcome))
            elif outcome is not None:
                first[i], last[i], price[i], qty[i], time_ms[i], maker[i] = outcome
                keep[i] = True
        out = TradeColumns(
            self.symbol, time_ms[keep], price[keep], qty[keep], first[keep], last[keep],
            maker[keep],
        )  # fmt: skip
        merged = self._merge(self._refused(end), out, dead, numbers[keep])
        merged.records = end
        return merged

    def _merge(
        self,
        refused: list[tuple[int, bytes]],
        out: TradeColumns,
        dead: list[tuple[int, DeadLetter]],
        numbers: Int64s | None = None,
    ) -> TradeColumns:
        """`out` with the outcomes of the refused rows put in line order."""
        extra: list[tuple[int, Trade]] = []
        for n, row in refused:
            outcome = row_outcome(row, n, self.ceiling, self.name, self.symbol)
            if isinstance(outcome, DeadLetter):
                dead.append((n, outcome))
            elif outcome is not None:
                extra.append((n, outcome))
        dead.sort(key=lambda d: d[0])
        out.dead = [d for _, d in dead]
        if not extra:
            return out
        at = np.array([n for n, _ in extra], np.int64)
        order = np.argsort(
            np.concatenate([numbers if numbers is not None else np.zeros(0, np.int64), at]),
            kind="stable",
        )

        def put(values: np.ndarray, k: int) -> np.ndarray:
            more = np.array([t[k] for _, t in extra], values.dtype)
            return np.concatenate([values, more])[order]

        return TradeColumns(
            out.symbol, put(out.time_ms, 4), put(out.price_units, 2), put(out.qty_units, 3),
            put(out.first_id, 0), put(out.last_id, 1), put(out.is_buyer_maker, 5), out.dead,
        )  # fmt: skip
