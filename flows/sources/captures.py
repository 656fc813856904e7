"""Read WebSocket frame files: captures and klineflow recordings, into chunks of trades.

A capture's line 1 is the URL, then ``<receive unix time>: <raw frame>``; lines recording REST
calls (``<url> -> <time>: <json>``) are skipped. A recording (`flows.sources.recording`) is
gzip JSON lines with a header. Frames are decoded as the live flow decodes them
(`flows.binance.frames`): a fast lax decode, and anything it cannot read exactly through the
exact decoder, which gives every error its reason. A trade is
refused as implausible past its line's receive time plus `ReadOptions.future_margin_ms`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import msgspec

from flows.binance.decode import LaxCombined, lax_trade
from flows.binance.frames import LAX_ERRORS, LAX_FRAME, FrameRefused, FrameTrade, exact_frame
from flows.domain import deadletter as dl
from flows.domain.deadletter import DeadLetter
from flows.domain.kline import Trade
from flows.sources import recording
from flows.sources.chunks import Chunk, ReadOptions, raw_text, report_cut
from flows.sources.compressed import Lines, ends_at_sync_flush, open_stream


class _RecordedLax(msgspec.Struct):
    r: int
    d: LaxCombined


_lax_recorded: Final = msgspec.json.Decoder(_RecordedLax, strict=False)


class LineRules:
    """How one line of a capture or recording is decided (`decide`): the fast lax decode, and
    anything it cannot read exactly through the exact decoder, which gives every error its
    reason. Shared by the line-by-line reader and the columnar one (for the lines its native
    parser leaves), so both decide every line alike."""

    def __init__(self, path: Path, options: ReadOptions, recorded: bool, reader: Lines) -> None:
        self.name = str(path)
        self.path = path
        self.recorded = recorded
        self.reader = reader
        self.margin = options.future_margin_ms
        self.now_ceiling = options.now_ceiling_ms()  # a capture line with an unreadable time
        self.torn_tail = False

    def decide(self, line: bytes, lineno: int, chunk: Chunk) -> tuple[str, Trade] | None:
        """The line's trade, or None (then `chunk` counts or keeps what it was)."""
        # Fast path: a combined trade frame whose amounts the lax decode gets exactly (the
        # live flow's is the same, flows.binance.frames.lax_frame_trade)
        frame: bytes | None = None
        try:
            if self.recorded:
                rec = _lax_recorded.decode(line)
                ceiling = rec.r + self.margin
                ev = rec.d.data
            else:
                head, frame = _captured_frame(line)
                if frame is None:
                    return None
                ceiling = _receive_ceiling(head, self.margin, self.now_ceiling)
                ev = LAX_FRAME.decode(frame).data
            tr = lax_trade(ev, ceiling)  # None as well for a trade that may be implausible
            if tr is not None:
                return ev.s, tr
        except LAX_ERRORS:
            pass
        # a last piece with no newline: a recording's torn end, or any file's cut
        if line.endswith(b"\0") and (self.recorded or self.reader.cut):
            chunk.torn += 1
            self.torn_tail = True
            return None
        if self.recorded:
            frame, recv_ms = _recorded_frame(line, chunk, self.name, lineno)
            ceiling = recv_ms + self.margin
        if frame is None:
            return None
        exact = exact_frame(frame, ceiling, f"{self.name}:{lineno}")
        if isinstance(exact, FrameRefused):
            chunk.dead.append(exact.letter)
            return None
        if not isinstance(exact, FrameTrade):
            chunk.ignored += 1  # depth, tickers, kline and serverShutdown frames
            return None
        return exact.symbol, exact.trade

    def finish(self, chunk: Chunk, lineno: int) -> None:
        """At the end of the file: a stream that stops at a sync flush with whole lines is a
        recording still being written, read up to its last flush: not a file cut short."""
        if self.reader.cut and (self.torn_tail or not ends_at_sync_flush(self.path)):
            report_cut(chunk, self.path, lineno - 1 if self.torn_tail else lineno, "")


def read_frames(path: Path, options: ReadOptions, skip: int, recorded: bool) -> Iterator[Chunk]:
    """The file's trades line by line (`flows.sources.frame_columns` reads the same as
    columns, with the native parser)."""
    raw_file, stream = open_stream(path)
    keep = options.symbols
    limit = options.chunk_records
    chunk = Chunk()
    trades = chunk.trades
    count = 0
    lineno = skip + 1  # line 1: the URL of a capture, the header of a recording
    reader = Lines(stream)
    rules = LineRules(path, options, recorded, reader)
    lines = iter(reader)
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
            got = rules.decide(line, lineno, chunk)
            if got is None:
                continue
            sym, tr = got
            if keep is not None and sym not in keep:
                chunk.filtered += 1
                continue
            lst = trades.get(sym)
            if lst is None:
                trades[sym] = lst = []
            lst.append(tr)
        chunk.records = max(lineno - 1, 0)
        chunk.bytes_done = raw_file.tell()
        rules.finish(chunk, lineno)
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
            DeadLetter(dl.MALFORMED, f"recording line: {e}", raw_text(line), f"{name}:{lineno}")
        )
        return None, 0
    if rec.d:
        return bytes(rec.d), rec.r
    if rec.x is not None:
        chunk.dead.append(DeadLetter(dl.MALFORMED, "frame is not JSON", rec.x, f"{name}:{lineno}"))
    return None, rec.r
