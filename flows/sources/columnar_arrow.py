"""The columnar dump reader's parser where the native one was not built: pyarrow's CSV reader
into binary columns, converted by `flows.sources.columnar_numbers` (see columnar_csv)."""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.csv as pacsv

from flows.sources.columnar_numbers import Int64s, decimal_units, exact_flags, plain_ints

AGG_COLUMNS: Final = 8  # a, price, qty, first_id, last_id, time, isBuyerMaker, isBestMatch


def parse_block(
    block: bytes, columns: int, first_line: int
) -> tuple[pa.RecordBatch, list[tuple[int, str]]]:
    """One block of whole lines as binary columns, and the rows pyarrow refused (numbered
    as lines of the file: the block's first line is `first_line`)."""
    names = [f"c{i}" for i in range(columns)]
    refused: list[tuple[int, str]] = []

    def keep_invalid(row: pacsv.InvalidRow) -> str:
        refused.append((first_line - 1 + int(row.number), row.text))
        return "skip"

    table = pacsv.read_csv(
        pa.py_buffer(block),
        read_options=pacsv.ReadOptions(column_names=names, use_threads=False,
                                       block_size=len(block) + 1),
        parse_options=pacsv.ParseOptions(
            delimiter=",", quote_char=False, escape_char=False, newlines_in_values=False,
            ignore_empty_lines=False, invalid_row_handler=keep_invalid,
        ),
        convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys(names, pa.binary()), check_utf8=False,
            strings_can_be_null=False, quoted_strings_can_be_null=False,
        ),
    )  # fmt: skip
    batches = table.combine_chunks().to_batches()
    if not batches:
        empty = [pa.array([], pa.binary()) for _ in names]
        return pa.RecordBatch.from_arrays(empty, names=names), refused
    return batches[0], refused


class ArrowRows:
    """Rows of a block as pyarrow parsed them (binary columns)."""

    def __init__(self, batch: pa.RecordBatch) -> None:
        self.batch = batch
        self.num_rows: int = batch.num_rows

    def slice(self, start: int, count: int) -> ArrowRows:
        return ArrowRows(self.batch.slice(start, count))

    def row(self, i: int) -> bytes:
        """Row i's text as pyarrow saw it (escaped: see SafeLines.original)."""
        return b",".join(c[i].as_py() for c in self.batch.columns)


def arrow_numbers(
    batch: pa.RecordBatch,
) -> tuple[Int64s, Int64s, Int64s, Int64s, Int64s, npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """(time, price, qty, first, last, maker, parsed) of a batch's binary columns: `parsed`
    says which rows are in Binance's strict form (the others' numbers are 0)."""
    cols = batch.columns
    agg = len(cols) == AGG_COLUMNS
    price, price_ok = decimal_units(cols[1])
    qty, qty_ok = decimal_units(cols[2])
    first, first_ok = plain_ints(cols[3] if agg else cols[0])
    last, last_ok = plain_ints(cols[4]) if agg else (first, first_ok)
    raw_time, time_ok = plain_ints(cols[5] if agg else cols[4])
    maker, maker_ok = exact_flags(cols[6] if agg else cols[5])
    parsed = price_ok & qty_ok & first_ok & last_ok & time_ok & maker_ok
    return raw_time, price, qty, first, last, maker, parsed
