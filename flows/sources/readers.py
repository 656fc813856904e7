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

Every malformed, unknown or invalid record becomes a `DeadLetter` with its position, and so
does every trade that cannot be real (`flows.domain.trade_checks.implausible`: a time before
Binance opened or after the latest time it can have, ids or amounts beyond Binance's bounds).
That latest time is the line's receive time for captures and recordings, the end of the day
or month a dump's standard name gives, otherwise the clock's now; each plus
`ReadOptions.future_margin_ms`.

A compressed file cut short is read up to the cut and reported once: `Chunk.truncated` and a
`truncated` dead letter saying after which line.
"""

from __future__ import annotations

import calendar
import gzip
import io
import itertools
import re
import zipfile
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
from flows.domain.clock import SYSTEM_CLOCK, Clock
from flows.domain.deadletter import DeadLetter
from flows.domain.kline import Trade
from flows.domain.trade_checks import (
    DEFAULT_FUTURE_MARGIN_MS,
    EXCHANGE_START_MS,
    MAX_FILLS,
    MAX_TRADE_ID,
    ImplausibleAmount,
    implausible,
    parse_amount,
)
from flows.sources import recording
from flows.sources.compressed import (
    BLOCK,
    CUT_ERRORS,
    GZIP_MAGIC,
    ZIP_MAGIC,
    Lines,
    UnreadableZip,
    ZipMember,
    ends_at_sync_flush,
    iter_lines,
    read_all_bytes,
)

DEFAULT_CHUNK_RECORDS: Final = 8192
_GZIP_MAGIC: Final = GZIP_MAGIC
_ZIP_MAGIC: Final = ZIP_MAGIC
_DUMP_NAME: Final = re.compile(r"^([A-Z0-9]+)-(aggTrades|trades)-", re.IGNORECASE)
# a dump's period in its standard name: ...-2019-10-11.zip (a day) or ...-2019-10.zip (a month)
_DUMP_PERIOD: Final = re.compile(
    r"^[A-Z0-9]+-(?:aggTrades|trades)-(\d{4})-(\d{2})(?:-(\d{2}))?\.", re.IGNORECASE
)
_DAY_MS: Final = 86_400_000
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
    truncated: int = 0  # 1 in the last chunk of a compressed file cut short
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
    # how far past its reference time (receive time, end of a dump's period, now) a trade's
    # time may lie before it is refused as implausible
    future_margin_ms: int = DEFAULT_FUTURE_MARGIN_MS
    clock: Clock = SYSTEM_CLOCK  # "now", for files that carry no time of their own

    def now_ceiling_ms(self) -> int:
        """The latest trade time a file without a reference time may hold."""
        return self.clock.now_ms() + self.future_margin_ms


def sniff_format(path: Path) -> str:
    """'capture', 'recording', 'csv' or 'rest_json'."""
    with path.open("rb") as f:
        magic = f.read(4)
    if magic == _ZIP_MAGIC:
        return "csv"
    with _open_text_stream(path) as stream:
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
    margin = options.future_margin_ms
    now_ceiling = options.now_ceiling_ms()  # a capture line whose receive time is unreadable
    decode_line = _lax_recorded.decode
    decode_frame_lax = _lax_frame.decode
    fast = lax_trade
    check = implausible
    chunk = Chunk()
    trades = chunk.trades
    count = 0
    lineno = skip + 1  # line 1: the URL of a capture, the header of a recording
    reader = Lines(stream)
    lines = iter(reader)
    torn_tail = False
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
                    rec = decode_line(line)
                    ceiling = rec.r + margin
                    ev = rec.d.data
                else:
                    head, frame = _captured_frame(line)
                    if frame is None:
                        continue
                    ceiling = _receive_ceiling(head, margin, now_ceiling)
                    ev = decode_frame_lax(frame).data
                sym = ev.s
                tr = fast(ev, ceiling)  # None as well for a trade that may be implausible
            except _LAX_ERRORS:
                tr = None
            if tr is None:
                # a last piece with no newline: a recording's torn end, or any file's cut
                if line.endswith(b"\0") and (recorded or reader.cut):
                    chunk.torn += 1
                    torn_tail = True
                    continue
                if recorded:
                    frame, recv_ms = _recorded_frame(line, chunk, name, lineno)
                    ceiling = recv_ms + margin
                if frame is None:
                    continue
                sym, tr = _exact_trade(frame, chunk, name, lineno)
                if tr is None:
                    continue
                why = check(tr, ceiling)
                if why is not None:
                    chunk.dead.append(
                        DeadLetter(dl.IMPLAUSIBLE, why, _text(frame), f"{name}:{lineno}", sym)
                    )
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
        # a stream that stops at a sync flush with whole lines is a recording still being
        # written, read up to its last flush: not a file cut short
        if reader.cut and (torn_tail or not ends_at_sync_flush(path)):
            _report_cut(chunk, path, lineno - 1 if torn_tail else lineno, "")
        yield chunk
    finally:
        stream.close()
        raw_file.close()


def _receive_ceiling(head: bytes, margin: int, fallback: int) -> int:
    """The receive time of a capture line (``1617566591.326123``, seconds) plus the margin."""
    try:
        return int(float(head) * 1000) + margin
    except (ValueError, OverflowError):  # not a number, or inf
        return fallback


def _report_cut(chunk: Chunk, path: Path, whole_lines: int, symbol: str, note: str = "") -> None:
    """Mark the chunk as the end of a file cut short, with a dead letter saying where."""
    chunk.truncated += 1
    detail = f"{path} is truncated after line {whole_lines}{note}"
    chunk.dead.append(DeadLetter(dl.TRUNCATED, detail, "", f"{path}:{whole_lines}", symbol))


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
            chunk.dead.append(DeadLetter(e.reason, str(e), _text(frame), f"{name}:{lineno}", ev.s))
            return ev.s, None
        return ev.s, tr
    chunk.ignored += 1  # depth, tickers, kline and serverShutdown frames: unused here
    return "", None


def _captured_frame(line: bytes) -> tuple[bytes, bytes | None]:
    """The receive time and the frame of a capture line (None: not a stream frame)."""
    head, sep, frame = line.partition(b": ")
    if not sep or b" -> " in head:
        return head, None  # a REST call recorded beside the stream, or a blank line
    frame = frame.rstrip(b"\r\n\0")  # \0 marks a last line with no newline
    return head, frame or None


def _recorded_frame(line: bytes, chunk: Chunk, name: str, lineno: int) -> tuple[bytes | None, int]:
    """The frame of a recording line and its receive time (ms)."""
    try:
        rec = recording.decode_line(line)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        chunk.dead.append(
            DeadLetter(dl.MALFORMED, f"recording line: {e}", _text(line), f"{name}:{lineno}")
        )
        return None, 0
    if rec.d:
        return bytes(rec.d), rec.r
    if rec.x is not None:
        chunk.dead.append(DeadLetter(dl.MALFORMED, "frame is not JSON", rec.x, f"{name}:{lineno}"))
    return None, rec.r


def _text(raw: bytes | str) -> str:
    return raw if isinstance(raw, str) else raw.decode("utf-8", "replace")


# -- data.binance.vision CSV dumps ------------------------------------------------------


def dump_symbol(path: Path, given: str | None) -> str | None:
    if given:
        return given.upper()
    m = _DUMP_NAME.match(path.name) or _SYMBOL_TOKEN.search(path.name)
    return m.group(1).upper() if m else None


def dump_ceiling_ms(path: Path, margin_ms: int) -> int | None:
    """The end of the day or month a dump's standard name gives, plus the margin.

    >>> dump_ceiling_ms(Path("XRPETH-aggTrades-2019-10-11.zip"), 0)  # 2019-10-12 00:00 UTC
    1570838400000
    >>> dump_ceiling_ms(Path("XRPETH-aggTrades-2019-12.zip"), 0)  # 2020-01-01 00:00 UTC
    1577836800000
    >>> dump_ceiling_ms(Path("XRPETH-aggTrades-20191011-20191013.csv"), 0) is None
    True
    """
    m = _DUMP_PERIOD.match(path.name)
    if m is None:
        return None
    year, month = int(m.group(1)), int(m.group(2))
    if not 1 <= month <= 12:
        return None
    if m.group(3) is None:  # a month: up to the first of the next one
        days = calendar.monthrange(year, month)[1]
        return (calendar.timegm((year, month, 1, 0, 0, 0)) * 1000) + days * _DAY_MS + margin_ms
    day = int(m.group(3))
    if not 1 <= day <= calendar.monthrange(year, month)[1]:
        return None
    return calendar.timegm((year, month, day, 0, 0, 0)) * 1000 + _DAY_MS + margin_ms


class _CsvStream:
    """The CSV bytes of a dump, with what progress and cut reports need."""

    def __init__(self, path: Path) -> None:
        self.size = path.stat().st_size
        self.ratio = 1.0  # disk bytes per streamed byte
        self.member: ZipMember | None = None  # set when a zip is read from its local header
        with path.open("rb") as f:
            magic = f.read(4)
        self.stream: IO[bytes]
        if magic == _ZIP_MAGIC:
            try:
                zf = zipfile.ZipFile(path)
            except zipfile.BadZipFile:
                # no central directory (it is at the end of the file): a zip cut short
                self.member = ZipMember(path)
                self.stream = io.BufferedReader(self.member, BLOCK)
                m = self.member
                self.ratio = m.compress_size / m.file_size if m.compress_size else 0.3
                return
            infos = zf.infolist()
            members = [i for i in infos if i.filename.lower().endswith(".csv")] or infos
            if len(members) != 1:
                raise FormatError(f"{path}: expected one CSV inside the zip, found {len(members)}")
            info = members[0]
            self.ratio = info.compress_size / info.file_size if info.file_size else 1.0
            self.stream = zf.open(info)
        elif magic[:2] == _GZIP_MAGIC:
            self.stream = gzip.GzipFile(path, "rb")  # type: ignore[assignment]  # a binary IO
            self.ratio = 0.3
        else:
            self.stream = path.open("rb")


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
    ceiling = dump_ceiling_ms(path, options.future_margin_ms)
    if ceiling is None:
        ceiling = options.now_ceiling_ms()
    try:
        csv = _CsvStream(path)
    except (EOFError, UnreadableZip) as e:  # a zip cut inside its first header
        if isinstance(e, UnreadableZip):
            raise FormatError(str(e)) from e
        chunk = Chunk(records=skip, bytes_done=path.stat().st_size)
        _report_cut(chunk, path, 0, symbol)
        yield chunk
        return
    limit = options.chunk_records
    chunk = Chunk()
    out: list[Trade] = []
    chunk.trades[symbol] = out
    done = 0
    lineno = 0
    cut = False
    with csv.stream:
        try:
            # lines are read in C; a stream cut short raises on the read that reaches the
            # cut, after every whole line before it (a piece of a line there is lost)
            for lineno, line in enumerate(csv.stream, 1):
                done += len(line)
                if lineno <= skip:
                    continue
                cols = line.rstrip(b"\r\n").split(b",")
                try:
                    if len(cols) == 8:  # aggTrades: a, price, qty, first, last, time, maker, best
                        f, last = int(cols[3]), int(cols[4])
                        p, q = parse_amount(cols[1].decode()), parse_amount(cols[2].decode())
                        t = trade_time_ms(int(cols[5]))
                    elif len(cols) == 7:  # trades: id, price, qty, quoteQty, time, maker, best
                        f = last = int(cols[0])
                        p, q = parse_amount(cols[1].decode()), parse_amount(cols[2].decode())
                        t = trade_time_ms(int(cols[4]))
                    else:
                        raise ValueError(
                            f"expected 7 (trades) or 8 (aggTrades) columns, got {len(cols)}"
                        )
                    maker = cols[-2].strip().lower()
                    if maker not in (b"true", b"false"):
                        raise ValueError(f"isBuyerMaker is {maker!r}, expected True or False")
                except ImplausibleAmount as e:
                    chunk.dead.append(_csv_dead(dl.IMPLAUSIBLE, str(e), line, name, lineno, symbol))
                    continue
                except ValueError as e:
                    if lineno == 1 and not cols[0].strip().lstrip(b"-").isdigit():
                        continue  # a header row
                    if not line.strip():
                        continue
                    chunk.dead.append(_csv_dead(dl.MALFORMED, str(e), line, name, lineno, symbol))
                    continue
                tr = (f, last, p, q, t, maker == b"true")
                # one test for the usual row: usable (not Binance's invalid marker) and
                # plausible (amounts are bounded by parse_amount); the rest is told apart below
                if not (
                    0 <= f <= last <= MAX_TRADE_ID
                    and last - f < MAX_FILLS
                    and EXCHANGE_START_MS <= t <= ceiling
                    and p
                    and q
                ):
                    dead = _unusable_row(tr, ceiling, line, name, lineno, symbol)
                    if dead is not None:
                        chunk.dead.append(dead)
                        continue
                out.append(tr)
                if len(out) >= limit:
                    chunk.records = lineno
                    chunk.bytes_done = min(int(done * csv.ratio), csv.size)
                    yield chunk
                    chunk = Chunk()
                    out = []
                    chunk.trades[symbol] = out
        except CUT_ERRORS:
            cut = True
    chunk.records = lineno
    chunk.bytes_done = csv.size
    if cut:
        _report_cut(chunk, path, lineno, symbol)
    elif csv.member is not None:
        note = " (its zip directory is missing; the data before it is whole)"
        _report_cut(chunk, path, lineno, symbol, note)
    yield chunk


def _unusable_row(
    tr: Trade, ceiling: int, line: bytes, name: str, lineno: int, symbol: str
) -> DeadLetter | None:
    """Why a CSV row is Binance's invalid marker or implausible (None: it is neither)."""
    f, last, p, q = tr[:4]
    # ids out of order or zero amounts are `invalid`; ids beyond any real one `implausible`,
    # as the decoders have it
    if (f < 0 or last < f or p == 0 or q == 0) and max(f, last) <= MAX_TRADE_ID:
        detail = "Binance's invalid-trade marker or impossible ids"
        return _csv_dead(dl.INVALID, detail, line, name, lineno, symbol)
    why = implausible(tr, ceiling)
    return None if why is None else _csv_dead(dl.IMPLAUSIBLE, why, line, name, lineno, symbol)


def _csv_dead(
    reason: str, detail: str, line: bytes, name: str, lineno: int, symbol: str
) -> DeadLetter:
    return DeadLetter(reason, detail, _text(line.rstrip()), f"{name}:{lineno}", symbol)


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
        data, cut = read_all_bytes(stream)
    disk_size = path.stat().st_size
    try:
        elements = msgspec.json.decode(data, type=list[msgspec.Raw])
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        if not cut:
            raise FormatError(f"{path}: expected a JSON list of trades: {e}") from e
        elements = _whole_elements(data)
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
    ceiling = options.now_ceiling_ms()
    chunk = Chunk()
    for index, raw in enumerate(elements, 1):
        if index <= skip:
            continue
        position = f"{name}:{index}"
        body = bytes(raw)
        sym, trade, dead = _rest_element(body, symbol, position)
        if dead is not None:
            chunk.dead.append(dead)
        elif trade is not None and sym is not None:
            if options.symbols is not None and sym not in options.symbols:
                chunk.filtered += 1
            elif (why := implausible(trade, ceiling)) is not None:
                chunk.dead.append(DeadLetter(dl.IMPLAUSIBLE, why, _text(body), position, sym))
            else:
                chunk.trades.setdefault(sym, []).append(trade)
        if index % options.chunk_records == 0:
            chunk.records = index
            chunk.bytes_done = disk_size * index // max(len(elements), 1)
            yield chunk
            chunk = Chunk()
    chunk.records = len(elements)
    chunk.bytes_done = disk_size
    if cut:
        chunk.truncated += 1
        detail = f"{path} is truncated after element {len(elements)}"
        chunk.dead.append(
            DeadLetter(dl.TRUNCATED, detail, "", f"{name}:{len(elements)}", symbol or "")
        )
    yield chunk


_MAX_CLOSE_TRIES: Final = 64


def _whole_elements(data: bytes) -> list[msgspec.Raw]:
    """The whole elements at the start of a JSON list cut short.

    Closes the list after each of the last `}` in turn until it decodes; an element is an
    object (a ccxt one nests a few more), so a few tries reach the end of the last whole one.
    """
    end = len(data)
    for _ in range(_MAX_CLOSE_TRIES):
        end = data.rfind(b"}", 0, end)
        if end < 0:
            break
        try:
            return msgspec.json.decode(data[: end + 1] + b"]", type=list[msgspec.Raw])
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
    return []


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
        return None, None, DeadLetter(e.reason, str(e), _text(raw), position, symbol)


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
    "read_file",
    "sniff_format",
]
