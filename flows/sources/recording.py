"""The klineflow recording format (gzip JSON lines), written by the recorder and read by replay.

Line 1 is a header; every later line is one frame as received, with its receive time::

    {"format":"klineflow-recording","version":1,"created_ms":1617566590378,"source":"wss://..."}
    {"r":1617566591326,"d":{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade",...}}}
    {"r":1617566591400,"x":"not json {"}

A frame that is valid JSON is embedded as it is (`d`); anything else is kept as text (`x`),
so a recording loses nothing. Each line is flushed whole; a reader tolerates a torn last line.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Final

import msgspec

FORMAT_NAME: Final = "klineflow-recording"
FORMAT_VERSION: Final = 1


class Header(msgspec.Struct):
    format: str
    version: int
    created_ms: int = 0
    source: str = ""


def _no_frame() -> msgspec.Raw:
    return msgspec.Raw(b"")


class FrameLine(msgspec.Struct):
    r: int
    d: msgspec.Raw = msgspec.field(default_factory=_no_frame)  # empty when the frame is `x`
    x: str | None = None


_line_decoder: Final = msgspec.json.Decoder(FrameLine)
_header_decoder: Final = msgspec.json.Decoder(Header)
_encoder: Final = msgspec.json.Encoder()


def decode_line(line: bytes) -> FrameLine:
    return _line_decoder.decode(line)


def read_header(line: bytes) -> Header | None:
    try:
        header = _header_decoder.decode(line)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return header if header.format == FORMAT_NAME else None


class RecordingWriter:
    """Append frames to a recording; every line is written whole."""

    def __init__(self, path: Path, created_ms: int, source: str = "") -> None:
        # closed by close() / __exit__: the writer outlives any one with-block
        self._file = gzip.GzipFile(path, "wb", compresslevel=5)
        header = Header(FORMAT_NAME, FORMAT_VERSION, created_ms, source)
        self._file.write(_encoder.encode(header) + b"\n")

    def write(self, recv_ms: int, frame: bytes) -> None:
        try:
            msgspec.json.decode(frame)
        except msgspec.DecodeError:
            line = b'{"r":%d,"x":%s}' % (recv_ms, _encoder.encode(frame.decode("utf-8", "replace")))
        else:
            line = b'{"r":%d,"d":%s}' % (recv_ms, frame)
        self._file.write(line + b"\n")

    def write_many(self, frames: list[tuple[int, bytes]]) -> None:
        """Frames known to be valid JSON (the synthetic market, benchmarks)."""
        self._file.write(b"".join(b'{"r":%d,"d":%s}\n' % (r, f) for r, f in frames))

    def flush(self) -> None:
        """Make every line written so far readable now, while the file stays open.

        A zlib sync flush ends the compressed data on a byte boundary, so a reader that stops
        at the missing gzip trailer still gets every whole line (costs a few bytes each time).
        """
        self._file.flush(zlib.Z_SYNC_FLUSH)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
