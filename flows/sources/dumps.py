"""Read data.binance.vision ``aggTrades`` and ``trades`` CSV dumps into chunks of trades.

Dumps have 8 (aggTrades) or 7 (trades) columns, zipped, gzipped or plain, with or without a
header row; times in ms or µs (told apart by size). The symbol comes from the standard file
name (``XRPETH-aggTrades-2019-10-11.zip``) or the caller, and the latest plausible trade time
from the day or month that name gives. A zip without its central directory (cut short) is
read from its local header up to the cut.
"""

from __future__ import annotations

import calendar
import gzip
import io
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Final

from flows.binance.decode import trade_time_ms
from flows.domain import deadletter as dl
from flows.domain.deadletter import DeadLetter
from flows.domain.kline import Trade
from flows.domain.trade_checks import (
    EXCHANGE_START_MS,
    MAX_FILLS,
    MAX_TRADE_ID,
    ImplausibleAmount,
    implausible,
    parse_amount,
)
from flows.sources.chunks import Chunk, FormatError, ReadOptions, raw_text, report_cut
from flows.sources.compressed import (
    BLOCK,
    CUT_ERRORS,
    GZIP_MAGIC,
    ZIP_MAGIC,
    UnreadableZip,
    ZipMember,
)

_DUMP_NAME: Final = re.compile(r"^([A-Z0-9]+)-(aggTrades|trades)-", re.IGNORECASE)
# a dump's period in its standard name: ...-2019-10-11.zip (a day) or ...-2019-10.zip (a month)
_DUMP_PERIOD: Final = re.compile(
    r"^[A-Z0-9]+-(?:aggTrades|trades)-(\d{4})-(\d{2})(?:-(\d{2}))?\.", re.IGNORECASE
)
_DAY_MS: Final = 86_400_000
# an upper-case token with at least one letter (so a date is never taken for a symbol)
_SYMBOL_TOKEN: Final = re.compile(r"(?:^|[-_])((?=[A-Z0-9]*[A-Z])[A-Z0-9]{5,30})(?=[-_.])")


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
        if magic == ZIP_MAGIC:
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
        elif magic[:2] == GZIP_MAGIC:
            self.stream = gzip.GzipFile(path, "rb")  # type: ignore[assignment]  # a binary IO
            self.ratio = 0.3
        else:
            self.stream = path.open("rb")


def dump_target(path: Path, options: ReadOptions) -> tuple[str, int] | DeadLetter | None:
    """A dump's symbol and the latest trade time it may hold; a dead letter when its symbol
    cannot be told; None when the options leave the symbol out."""
    symbol = dump_symbol(path, options.symbol)
    if symbol is None:
        detail = f"cannot tell the symbol of {path.name}; pass --symbol"
        return DeadLetter(dl.NO_SYMBOL, detail, "", str(path))
    if options.symbols is not None and symbol not in options.symbols:
        return None
    ceiling = dump_ceiling_ms(path, options.future_margin_ms)
    return symbol, options.now_ceiling_ms() if ceiling is None else ceiling


def open_dump(path: Path) -> _CsvStream | None:
    """The dump's text stream; None for a zip cut inside its first header (the caller
    reports the cut); FormatError for a zip that cannot be read at all."""
    try:
        return _CsvStream(path)
    except UnreadableZip as e:
        raise FormatError(str(e)) from e
    except EOFError:
        return None


def read_csv(path: Path, options: ReadOptions, skip: int) -> Iterator[Chunk]:
    name = str(path)
    target = dump_target(path, options)
    if target is None:
        return
    if isinstance(target, DeadLetter):
        yield Chunk(dead=[target])
        return
    symbol, ceiling = target
    csv = open_dump(path)
    if csv is None:
        chunk = Chunk(records=skip, bytes_done=path.stat().st_size)
        report_cut(chunk, path, 0, symbol)
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
        report_cut(chunk, path, lineno, symbol)
    elif csv.member is not None:
        note = " (its zip directory is missing; the data before it is whole)"
        report_cut(chunk, path, lineno, symbol, note)
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
    return DeadLetter(reason, detail, raw_text(line.rstrip()), f"{name}:{lineno}", symbol)
