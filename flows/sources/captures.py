"""Read WebSocket frame files: captures and klineflow recordings, into chunks of trades.

A capture's line 1 is the URL, then ``<receive unix time>: <raw frame>``; lines recording REST
calls (``<url> -> <time>: <json>``) are skipped. A recording (`flows.sources.recording`) is
gzip JSON lines with a header. Frames are decoded as the live flow decodes them
(`flows.binance.frames`): a fast lax decode, and anything it cannot read exactly through the
exact decoder, which gives every error its reason. A trade is
refused as implausible past its line's receive time plus `ReadOptions.future_margin_ms`.
"""

from __future__ import annotations

import gzip
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Final

import msgspec

from flows.binance.decode import LaxCombined, lax_trade
from flows.binance.frames import LAX_ERRORS, LAX_FRAME, FrameRefused, FrameTrade, exact_frame
from flows.domain import deadletter as dl
from flows.domain.deadletter import DeadLetter
from flows.sources import recording
from flows.sources.chunks import Chunk, ReadOptions, raw_text, report_cut
from flows.sources.compressed import GZIP_MAGIC, Lines, ends_at_sync_flush


class _RecordedLax(msgspec.Struct):
    r: int
    d: LaxCombined


_lax_recorded: Final = msgspec.json.Decoder(_RecordedLax, strict=False)


def read_frames(path: Path, options: ReadOptions, skip: int, recorded: bool) -> Iterator[Chunk]:
    raw_file = path.open("rb")
    gz = raw_file.read(2) == GZIP_MAGIC
    raw_file.seek(0)
    stream: IO[bytes] = gzip.GzipFile(fileobj=raw_file, mode="rb") if gz else raw_file  # type: ignore[assignment]
    name = str(path)
    keep = options.symbols
    limit = options.chunk_records
    margin = options.future_margin_ms
    now_ceiling = options.now_ceiling_ms()  # a capture line whose receive time is unreadable
    decode_line = _lax_recorded.decode
    decode_frame_lax = LAX_FRAME.decode
    fast = lax_trade
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
            # Fast path: a combined trade frame whose amounts the lax decode gets exactly
            # (inline here: a replay takes millions of lines; the live flow's is the same,
            # flows.binance.frames.lax_frame_trade)
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
            except LAX_ERRORS:
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
                exact = exact_frame(frame, ceiling, f"{name}:{lineno}")
                if isinstance(exact, FrameRefused):
                    chunk.dead.append(exact.letter)
                    continue
                if not isinstance(exact, FrameTrade):
                    chunk.ignored += 1  # depth, tickers, kline and serverShutdown frames
                    continue
                sym, tr = exact.symbol, exact.trade
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
            report_cut(chunk, path, lineno - 1 if torn_tail else lineno, "")
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
