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

Every malformed, unknown or invalid record becomes a `DeadLetter` with its position.
"""

from __future__ import annotations

import gzip
import itertools
import re
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final

import msgspec

from flows.binance.decode import (
    AggTradeEvent,
    FrameError,
    InvalidTrade,
    LaxCombined,
    RestAggTrade,
    TradeEvent,
    agg_trade_to_trade,
    decode_frame,
    lax_trade,
    trade_event_to_trade,
    trade_time_ms,
)
from flows.domain import deadletter as dl
from flows.domain.deadletter import DeadLetter
from flows.domain.kline import Trade
from flows.domain.money import parse_units
from flows.sources import recording

DEFAULT_CHUNK_RECORDS: Final = 8192
_GZIP_MAGIC: Final = b"\x1f\x8b"
_ZIP_MAGIC: Final = b"PK\x03\x04"
_DUMP_NAME: Final = re.compile(r"^([A-Z0-9]+)-(aggTrades|trades)-", re.IGNORECASE)
# an upper-case token with at least one letter (so a date is never taken for a symbol)
_SYMBOL_TOKEN: Final = re.compile(r"(?:^|[-_])((?=[A-Z0-9]*[A-Z])[A-Z0-9]{5,30})(?=[-_.])")


class FormatError(ValueError):
    """A file this reader cannot read at all (as opposed to a bad record inside it)."""


@dataclass(slots=True)
class Chunk:
    trades: dict[str, list[Trade]] = field(default_factory=dict)
    dead: list[DeadLetter] = field(default_factory=list)
    ignored: int = 0  # well-formed records of streams klines do not use
    filtered: int = 0  # trades of symbols not asked for
    torn: int = 0  # a last line cut short (a recording being written, or cut by a crash)
    records: int = 0  # records consumed in this file so far (the resume position)
    bytes_done: int = 0  # bytes of the file on disk consumed so far (progress)

    @property
    def trade_count(self) -> int:
        return sum(len(v) for v in self.trades.values())


@dataclass(frozen=True, slots=True)
class ReadOptions:
    symbol: str | None = None  # for dumps whose name does not say
    symbols: frozenset[str] | None = None  # keep only these
    chunk_records: int = DEFAULT_CHUNK_RECORDS


def sniff_format(path: Path) -> str:
    """'capture', 'recording', 'csv' or 'rest_json'."""
    with path.open("rb") as f:
        magic = f.read(4)
    if magic == _ZIP_MAGIC:
        return "csv"
    with _open_text_stream(path) as stream:
        head = stream.read(512)
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


def _open_text_stream(path: Path) -> IO[bytes]:
    f = path.open("rb")
    if f.read(2) == _GZIP_MAGIC:
        f.seek(0)
        return gzip.GzipFile(fileobj=f, mode="rb")  # type: ignore[return-value]
    f.seek(0)
    return f


def read_file(
    path: Path, options: ReadOptions = ReadOptions(), skip_records: int = 0
) -> Iterator[Chunk]:
    """Chunks of the file's trades, resuming after `skip_records` records."""
    fmt = sniff_format(path)
    if fmt == "capture":
        return _read_frames(path, options, skip_records, recorded=False)
    if fmt == "recording":
        return _read_frames(path, options, skip_records, recorded=True)
    if fmt == "csv":
        return _read_csv(path, options, skip_records)
    return _read_rest_json(path, options, skip_records)


# -- WebSocket frames: captures and recordings ------------------------------------------


_BLOCK = 1 << 20


def iter_lines(stream: IO[bytes]) -> Iterator[bytes]:
    """Lines without their newline, read in large blocks (GzipFile.readline is slow).

    A last line with no newline is yielded with a trailing b"\0" so a caller can tell a torn
    end (a recording cut by a crash) from a whole line.
    """
    rest = b""
    while True:
        try:
            # read1: a stream cut short raises on the call that reaches the cut, so only
            # that last piece is lost, not a whole block of data decompressed before it
            block = stream.read1(_BLOCK)  # type: ignore[attr-defined]
        except (EOFError, gzip.BadGzipFile, zlib.error):
            break  # a gzip stream cut short: what was read so far stands
        if not block:
            break
        lines = (rest + block).split(b"\n") if rest else block.split(b"\n")
        rest = lines.pop()
        yield from lines
    if rest:
        yield rest + b"\0"


class _RecordedLax(msgspec.Struct):
    r: int
    d: LaxCombined


_lax_recorded: Final = msgspec.json.Decoder(_RecordedLax, strict=False)
_lax_frame: Final = msgspec.json.Decoder(LaxCombined, strict=False)
_LAX_ERRORS: Final = (msgspec.DecodeError, msgspec.ValidationError)


def _read_frames(path: Path, options: ReadOptions, skip: int, recorded: bool) -> Iterator[Chunk]:
    raw_file = path.open("rb")
    gz = raw_file.read(2) == _GZIP_MAGIC
    raw_file.seek(0)
    stream: IO[bytes] = gzip.GzipFile(fileobj=raw_file, mode="rb") if gz else raw_file  # type: ignore[assignment]
    name = str(path)
    keep = options.symbols
    limit = options.chunk_records
    decode_line = _lax_recorded.decode
    decode_frame_lax = _lax_frame.decode
    fast = lax_trade
    chunk = Chunk()
    trades = chunk.trades
    count = 0
    lineno = skip + 1  # line 1: the URL of a capture, the header of a recording
    lines = iter_lines(stream)
    try:
        for _ in itertools.islice(lines, skip + 1):
            pass
        for line in lines:
            lineno += 1
            if count >= limit:
                chunk.records = lineno - 2  # records before this line
                chunk.bytes_done = raw_file.tell()
                yield chunk
                chunk = Chunk()
                trades = chunk.trades
                count = 0
            count += 1
            # Fast path: a combined trade frame whose amounts the lax decode gets exactly.
            frame: bytes | None = None
            try:
                if recorded:
                    ev = decode_line(line).d.data
                else:
                    frame = _captured_frame(line)
                    if frame is None:
                        continue
                    ev = decode_frame_lax(frame).data
                sym = ev.s
                tr = fast(ev)
            except _LAX_ERRORS:
                tr = None
            if tr is None:
                if recorded:
                    if line.endswith(b"\0"):
                        chunk.torn += 1
                        continue
                    frame = _recorded_frame(line, chunk, name, lineno)
                if frame is None:
                    continue
                sym, tr = _exact_trade(frame, chunk, name, lineno)
                if tr is None:
                    continue
            if keep is not None and sym not in keep:
                chunk.filtered += 1
                continue
            lst = trades.get(sym)
            if lst is None:
                trades[sym] = lst = []
            lst.append(tr)
        chunk.records = max(lineno - 1, 0)
        chunk.bytes_done = raw_file.tell()
        yield chunk
    finally:
        stream.close()
        raw_file.close()


def _exact_trade(frame: bytes, chunk: Chunk, name: str, lineno: int) -> tuple[str, Trade | None]:
    """The exact (slow) path: every frame kind, every error with its reason."""
    try:
        ev = decode_frame(frame)
    except FrameError as e:
        chunk.dead.append(DeadLetter(e.reason, e.detail, _text(frame), f"{name}:{lineno}"))
        return "", None
    if isinstance(ev, AggTradeEvent | TradeEvent):
        try:
            tr = (
                agg_trade_to_trade(ev)
                if isinstance(ev, AggTradeEvent)
                else trade_event_to_trade(ev)
            )
        except InvalidTrade as e:
            chunk.dead.append(
                DeadLetter(dl.INVALID, str(e), _text(frame), f"{name}:{lineno}", ev.s)
            )
            return ev.s, None
        return ev.s, tr
    chunk.ignored += 1  # depth, tickers, kline and serverShutdown frames: unused here
    return "", None


def _captured_frame(line: bytes) -> bytes | None:
    head, sep, frame = line.partition(b": ")
    if not sep or b" -> " in head:
        return None  # a REST call recorded beside the stream, or a blank line
    frame = frame.rstrip(b"\r\n\0")  # \0 marks a last line with no newline
    return frame or None


def _recorded_frame(line: bytes, chunk: Chunk, name: str, lineno: int) -> bytes | None:
    try:
        rec = recording.decode_line(line)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        chunk.dead.append(
            DeadLetter(dl.MALFORMED, f"recording line: {e}", _text(line), f"{name}:{lineno}")
        )
        return None
    if rec.d:
        return bytes(rec.d)
    if rec.x is not None:
        chunk.dead.append(DeadLetter(dl.MALFORMED, "frame is not JSON", rec.x, f"{name}:{lineno}"))
    return None


def _text(raw: bytes | str) -> str:
    return raw if isinstance(raw, str) else raw.decode("utf-8", "replace")


# -- data.binance.vision CSV dumps ------------------------------------------------------


def dump_symbol(path: Path, given: str | None) -> str | None:
    if given:
        return given.upper()
    m = _DUMP_NAME.match(path.name) or _SYMBOL_TOKEN.search(path.name)
    return m.group(1).upper() if m else None


def _open_csv(path: Path) -> tuple[IO[bytes], int, float]:
    """The CSV byte stream, the on-disk size, and disk bytes per streamed byte."""
    size = path.stat().st_size
    with path.open("rb") as f:
        magic = f.read(4)
    if magic == _ZIP_MAGIC:
        zf = zipfile.ZipFile(path)
        members = [i for i in zf.infolist() if i.filename.lower().endswith(".csv")] or zf.infolist()
        if len(members) != 1:
            raise FormatError(f"{path}: expected one CSV inside the zip, found {len(members)}")
        info = members[0]
        ratio = info.compress_size / info.file_size if info.file_size else 1.0
        return zf.open(info), size, ratio
    if magic[:2] == _GZIP_MAGIC:
        return gzip.GzipFile(path, "rb"), size, 0.3  # type: ignore[return-value]  # a binary IO
    return path.open("rb"), size, 1.0


def _read_csv(path: Path, options: ReadOptions, skip: int) -> Iterator[Chunk]:
    name = str(path)
    symbol = dump_symbol(path, options.symbol)
    if symbol is None:
        yield Chunk(
            dead=[
                DeadLetter(
                    dl.NO_SYMBOL, f"cannot tell the symbol of {path.name}; pass --symbol", "", name
                )
            ]
        )
        return
    if options.symbols is not None and symbol not in options.symbols:
        return
    stream, disk_size, ratio = _open_csv(path)
    limit = options.chunk_records
    chunk = Chunk()
    out: list[Trade] = []
    chunk.trades[symbol] = out
    done = 0
    lineno = 0
    with stream:
        for lineno, line in enumerate(stream, 1):
            done += len(line)
            if lineno <= skip:
                continue
            cols = line.rstrip(b"\r\n").split(b",")
            try:
                if len(cols) == 8:  # aggTrades: a, price, qty, first, last, time, maker, best
                    f, last = int(cols[3]), int(cols[4])
                    p, q = parse_units(cols[1].decode()), parse_units(cols[2].decode())
                    t = int(cols[5])
                elif len(cols) == 7:  # trades: id, price, qty, quoteQty, time, maker, best
                    f = last = int(cols[0])
                    p, q = parse_units(cols[1].decode()), parse_units(cols[2].decode())
                    t = int(cols[4])
                else:
                    raise ValueError(
                        f"expected 7 (trades) or 8 (aggTrades) columns, got {len(cols)}"
                    )
                maker = cols[-2].strip().lower()
                if maker not in (b"true", b"false"):
                    raise ValueError(f"isBuyerMaker is {maker!r}, expected True or False")
            except ValueError as e:
                if lineno == 1 and not cols[0].strip().lstrip(b"-").isdigit():
                    continue  # a header row
                if not line.strip():
                    continue
                chunk.dead.append(
                    DeadLetter(
                        dl.MALFORMED, str(e), _text(line.rstrip()), f"{name}:{lineno}", symbol
                    )
                )
                continue
            if f < 0 or last < f or p == 0 or q == 0:
                chunk.dead.append(
                    DeadLetter(
                        dl.INVALID,
                        "Binance's invalid-trade marker or impossible ids",
                        _text(line.rstrip()),
                        f"{name}:{lineno}",
                        symbol,
                    )
                )
                continue
            out.append((f, last, p, q, trade_time_ms(t), maker == b"true"))
            if len(out) >= limit:
                chunk.records = lineno
                chunk.bytes_done = min(int(done * ratio), disk_size)
                yield chunk
                chunk = Chunk()
                out = []
                chunk.trades[symbol] = out
    chunk.records = lineno
    chunk.bytes_done = disk_size
    yield chunk


# -- REST JSON --------------------------------------------------------------------------


class _RestTrade(msgspec.Struct):
    id: int
    price: str
    qty: str
    time: int
    isBuyerMaker: bool  # noqa: N815 - Binance's field name


class _CcxtTrade(msgspec.Struct):
    info: msgspec.Raw
    symbol: str | None = None


def _read_rest_json(path: Path, options: ReadOptions, skip: int) -> Iterator[Chunk]:
    name = str(path)
    with _open_text_stream(path) as stream:
        data = stream.read()
    disk_size = path.stat().st_size
    try:
        elements = msgspec.json.decode(data, type=list[msgspec.Raw])
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise FormatError(f"{path}: expected a JSON list of trades: {e}") from e
    symbol = dump_symbol(path, options.symbol)
    if symbol is None and elements and b'"info":' not in bytes(elements[0])[:200]:
        # plain REST elements carry no symbol: one dead letter for the file, as for CSV dumps
        yield Chunk(
            dead=[
                DeadLetter(
                    dl.NO_SYMBOL, f"cannot tell the symbol of {path.name}; pass --symbol", "", name
                )
            ]
        )
        return
    chunk = Chunk()
    for index, raw in enumerate(elements, 1):
        if index <= skip:
            continue
        sym, trade, dead = _rest_element(bytes(raw), symbol, f"{name}:{index}")
        if dead is not None:
            chunk.dead.append(dead)
        elif trade is not None and sym is not None:
            if options.symbols is not None and sym not in options.symbols:
                chunk.filtered += 1
            else:
                chunk.trades.setdefault(sym, []).append(trade)
        if index % options.chunk_records == 0:
            chunk.records = index
            chunk.bytes_done = disk_size * index // max(len(elements), 1)
            yield chunk
            chunk = Chunk()
    chunk.records = len(elements)
    chunk.bytes_done = disk_size
    yield chunk


def _rest_element(
    raw: bytes, symbol: str | None, position: str
) -> tuple[str | None, Trade | None, DeadLetter | None]:
    body = raw
    if raw.startswith(b'{"info"') or b'"info":' in raw[:200]:
        try:
            wrapped = msgspec.json.decode(raw, type=_CcxtTrade)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            return None, None, DeadLetter(dl.MALFORMED, str(e), _text(raw), position)
        body = bytes(wrapped.info)
        if symbol is None and wrapped.symbol:
            symbol = wrapped.symbol.replace("/", "").upper()
    if symbol is None:
        return (
            None,
            None,
            DeadLetter(dl.NO_SYMBOL, "cannot tell the symbol; pass --symbol", _text(raw), position),
        )
    try:
        if b'"a":' in body:
            ev = msgspec.json.decode(body, type=RestAggTrade).event(symbol)
            return symbol, agg_trade_to_trade(ev), None
        tr = msgspec.json.decode(body, type=_RestTrade)
        return (
            symbol,
            trade_event_to_trade(
                TradeEvent(symbol, tr.id, tr.price, tr.qty, tr.time, tr.isBuyerMaker)
            ),
            None,
        )
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        return None, None, DeadLetter(dl.MALFORMED, str(e), _text(raw), position, symbol)
    except InvalidTrade as e:
        return None, None, DeadLetter(dl.INVALID, str(e), _text(raw), position, symbol)


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
        total.records = chunk.records
        total.bytes_done = chunk.bytes_done
    return total


__all__ = ["Chunk", "FormatError", "ReadOptions", "read_all", "read_file", "sniff_format"]
