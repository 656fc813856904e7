"""Read recorded market data into chunks of trades grouped by symbol (pure, no engine).

Formats, told apart by content (and the file name where content cannot tell):

1. WebSocket captures: line 1 is the URL, then ``<receive unix time>: <raw frame>``; lines
   recording REST calls (``<url> -> <time>: <json>``) are skipped.
2. klineflow recordings (`flows.sources.recording`), gzip JSON lines with a header.
3. data.binance.vision ``aggTrades`` (8 columns) and ``trades`` (7 columns) CSV dumps, zipped
   or not, with or without a header row; times in ms or µs (told apart by size). The symbol
   comes from the standard file name (``XRPETH-aggTrades-2019-10-11.zip``) or the caller.
4. REST ``/api/v3/aggTrades`` (or ``historicalTrades``) JSON: a plain list, or a list of ccxt
   trades whose ``info`` is the raw element; optionally gzipped.
5. The trade archive's Parquet files (`flows.sources.trade_archive`), trades already decoded.

Every malformed, unknown or invalid record becomes a `DeadLetter` with its position, and so
does every trade that cannot be real (`flows.domain.trade_checks.implausible`: a time before
Binance opened or after the latest time it can have, ids or amounts beyond Binance's bounds).
That latest time is the line's receive time for captures and recordings, the end of the day
or month a dump's standard name gives, otherwise the clock's now; each plus
`ReadOptions.future_margin_ms`.

A compressed file cut short is read up to the cut and reported once: `Chunk.truncated` and a
`truncated` dead letter saying after which line.

This module tells the formats apart and hands each file to its reader: `flows.sources.captures`
(captures and recordings), `flows.sources.dumps` (CSV dumps), `flows.sources.rest_json` (REST
JSON); what they share (`Chunk`, `ReadOptions`, `FormatError`) is in `flows.sources.chunks`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

from flows.sources import recording
from flows.sources.captures import read_frames
from flows.sources.chunks import Chunk, FormatError, ReadOptions
from flows.sources.compressed import CUT_ERRORS, ZIP_MAGIC, iter_lines, open_text_stream
from flows.sources.dumps import dump_ceiling_ms, read_csv
from flows.sources.rest_json import read_rest_json


def frame_columns_available() -> bool:
    """Whether captures and recordings are read as columns (the native parser was built)."""
    from flows.native import frame_lines

    return frame_lines is not None


PARQUET_MAGIC = b"PAR1"

if TYPE_CHECKING:
    from flows.domain.trade_columns import TradeColumns


def sniff_format(path: Path) -> str:
    """'capture', 'recording', 'csv', 'parquet' (the trade archive) or 'rest_json'."""
    with path.open("rb") as f:
        magic = f.read(4)
    if magic == ZIP_MAGIC:
        return "csv"
    if magic == PARQUET_MAGIC:
        return "parquet"
    with open_text_stream(path) as stream:
        head = _head(stream, 512)
    stripped = head.lstrip()
    if stripped.startswith(b"{") and recording.read_header(head.split(b"\n", 1)[0]) is not None:
        return "recording"
    if stripped.startswith(b"["):
        return "rest_json"
    if stripped.startswith((b"wss://", b"ws://")):
        return "capture"
    if path.name.lower().endswith((".csv", ".csv.gz")) or b"," in head.split(b"\n", 1)[0]:
        return "csv"
    raise FormatError(
        f"{path}: not a capture, a klineflow recording, a Binance CSV dump or REST JSON "
        f"(starts with {head[:40]!r})"
    )


def _head(stream: IO[bytes], size: int) -> bytes:
    """Up to `size` first bytes of the stream, fewer if it is cut short before."""
    head = b""
    while len(head) < size:
        try:
            block = stream.read1(size - len(head))  # type: ignore[attr-defined]
        except CUT_ERRORS:
            break
        if not block:
            break
        head += block
    return head


def read_file(
    path: Path, options: ReadOptions = ReadOptions(), skip_records: int = 0, fmt: str = ""
) -> Iterator[Chunk]:
    """Chunks of the file's trades, resuming after `skip_records` records (`fmt`: the file's
    format when the caller has sniffed it already)."""
    fmt = fmt or sniff_format(path)
    if fmt == "capture":
        return read_frames(path, options, skip_records, recorded=False)
    if fmt == "recording":
        return read_frames(path, options, skip_records, recorded=True)
    if fmt == "csv":
        return read_csv(path, options, skip_records)
    if fmt == "parquet":
        from flows.sources.trade_archive import read_parquet_chunks

        return read_parquet_chunks(path, options, skip_records)
    return read_rest_json(path, options, skip_records)


def read_batches(
    path: Path, options: ReadOptions = ReadOptions(), skip_records: int = 0
) -> Iterator[Chunk | TradeColumns]:
    """`read_file`, but CSV dumps (`flows.sources.columnar_csv`), the trade archive
    (`flows.sources.trade_archive`) and, where the native parser was built, captures and
    recordings (`flows.sources.frame_columns`) as columns: the same trades, dead letters and
    positions, read without a Python step per row."""
    fmt = sniff_format(path)
    if fmt == "parquet":
        from flows.sources.trade_archive import read_parquet

        return read_parquet(path, options, skip_records)
    if fmt in ("capture", "recording") and frame_columns_available():
        from flows.sources.frame_columns import read_frame_columns

        return read_frame_columns(path, options, skip_records, recorded=fmt == "recording")
    if fmt != "csv":
        return read_file(path, options, skip_records, fmt)
    from flows.sources.columnar_csv import read_columns  # pyarrow: only when a dump comes

    return read_columns(path, options, skip_records)


def read_all(path: Path, options: ReadOptions = ReadOptions()) -> Chunk:
    """The whole file as one chunk (tests, small files)."""
    total = Chunk()
    for chunk in read_file(path, options):
        for sym, trades in chunk.trades.items():
            total.trades.setdefault(sym, []).extend(trades)
        total.dead.extend(chunk.dead)
        total.ignored += chunk.ignored
        total.filtered += chunk.filtered
        total.torn += chunk.torn
        total.truncated += chunk.truncated
        total.records = chunk.records
        total.bytes_done = chunk.bytes_done
    return total


__all__ = [
    "Chunk",
    "FormatError",
    "ReadOptions",
    "dump_ceiling_ms",
    "iter_lines",
    "read_all",
    "read_batches",
    "read_file",
    "sniff_format",
]
