"""Recorded files as byte streams and lines, gzip and zip included, surviving a file cut short.

A compressed file cut short (a download stopped half way, a disk filled up, a crash) still
holds a readable prefix: everything its compressed data decodes to up to the cut. `Lines`
yields the whole lines of that prefix and says whether the stream was cut (`cut`), and
`open_zip_member` reads a zip's data from its local header when the central directory, kept
at the end of the file, is missing.
"""

from __future__ import annotations

import gzip
import io
import struct
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Final

GZIP_MAGIC: Final = b"\x1f\x8b"
ZIP_MAGIC: Final = b"PK\x03\x04"
# the empty stored block a zlib sync flush ends with: the end of a file still being written
SYNC_FLUSH_TAIL: Final = b"\x00\x00\xff\xff"
BLOCK: Final = 1 << 20
# what reading a compressed stream past its cut raises
CUT_ERRORS: Final = (EOFError, gzip.BadGzipFile, zlib.error, zipfile.BadZipFile)
_LOCAL_HEADER: Final = struct.Struct("<4sHHHHHIIIHH")
_DEFLATED: Final = 8
_STORED: Final = 0
_HAS_DATA_DESCRIPTOR: Final = 0x08


class UnreadableZip(ValueError):
    """A zip whose first member cannot be read from its local header."""


class Lines:
    """The lines of a byte stream without their newline, read in large blocks.

    After iteration `cut` tells whether the stream ended with an error (compressed data cut
    short) rather than at its end; the lines before the cut are all yielded. A last piece with
    no newline is yielded with a trailing b"\\0" when `mark_torn` (so a reader of recordings
    can tell a torn end from a whole line), as it is otherwise; after a cut it is always
    marked, since it was cut.
    """

    __slots__ = ("_mark_torn", "_stream", "cut")

    def __init__(self, stream: IO[bytes], mark_torn: bool = True) -> None:
        self._stream = stream
        self._mark_torn = mark_torn
        self.cut = False

    def __iter__(self) -> Iterator[bytes]:
        read1 = self._stream.read1  # type: ignore[attr-defined]
        rest = b""
        while True:
            try:
                # read1: the call that reaches a cut raises, so only that last piece is lost,
                # not a whole block of data decompressed before it
                block = read1(BLOCK)
            except CUT_ERRORS:
                self.cut = True
                break
            if not block:
                break
            lines = (rest + block).split(b"\n") if rest else block.split(b"\n")
            rest = lines.pop()
            yield from lines
        if rest:
            yield rest + b"\0" if self._mark_torn or self.cut else rest

    def blocks(self, size: int = 4 * BLOCK) -> Iterator[tuple[bytes, int]]:
        """The same lines in blocks: (whole lines, each ending with b"\\n", how many), of
        about `size` bytes each; then a last piece with no newline as the one line of its
        block, without a newline and marked as `__iter__` marks it."""
        read1 = self._stream.read1  # type: ignore[attr-defined]
        pieces: list[bytes] = []
        held = 0
        while True:
            try:
                block = read1(min(BLOCK, size))
            except CUT_ERRORS:
                self.cut = True
                break
            if not block:
                break
            pieces.append(block)
            held += len(block)
            if held < size:
                continue
            data = b"".join(pieces)
            end = data.rfind(b"\n")
            if end < 0:
                pieces, held = [data], len(data)
                continue
            whole = data[: end + 1]
            pieces = [data[end + 1 :]]
            held = len(pieces[0])
            yield whole, whole.count(b"\n")
        data = b"".join(pieces)
        end = data.rfind(b"\n")
        if end >= 0:
            yield data[: end + 1], data.count(b"\n", 0, end + 1)
        rest = data[end + 1 :]
        if rest:
            yield (rest + b"\0" if self._mark_torn or self.cut else rest), 1


def iter_lines(stream: IO[bytes]) -> Iterator[bytes]:
    """`Lines` of the stream, for callers that need no cut report."""
    return iter(Lines(stream))


def read_all_bytes(stream: IO[bytes]) -> tuple[bytes, bool]:
    """Everything the stream yields up to its end or its cut, and whether it was cut."""
    parts: list[bytes] = []
    read1 = stream.read1  # type: ignore[attr-defined]
    while True:
        try:
            block = read1(BLOCK)
        except CUT_ERRORS:
            return b"".join(parts), True
        if not block:
            return b"".join(parts), False
        parts.append(block)


def ends_at_sync_flush(path: Path) -> bool:
    """Whether the file ends where a zlib sync flush ends: a recording still being written,
    read up to its last flush, rather than a file cut at an arbitrary byte."""
    with path.open("rb") as f:
        f.seek(0, 2)
        if f.tell() < len(SYNC_FLUSH_TAIL):
            return False
        f.seek(-len(SYNC_FLUSH_TAIL), 2)
        return f.read() == SYNC_FLUSH_TAIL


class ZipMember(io.RawIOBase):
    """A zip's first member streamed from its local header (for a zip cut short).

    Reading raises EOFError when the file ends inside the member's data; `whole` is set once
    the member's compressed data reached its own end. Wrap it in `io.BufferedReader` to read
    lines.
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._file = path.open("rb")
        header = self._file.read(_LOCAL_HEADER.size)
        if len(header) < _LOCAL_HEADER.size:
            self._file.close()
            raise EOFError(f"{path} ends inside its first zip header")
        magic, _, flags, method, _, _, _, csize, usize, name_len, extra_len = _LOCAL_HEADER.unpack(
            header
        )
        if magic != ZIP_MAGIC or method not in (_DEFLATED, _STORED):
            self._file.close()
            raise UnreadableZip(f"{path}: not a zip member this reader can stream")
        if method == _STORED and flags & _HAS_DATA_DESCRIPTOR:
            self._file.close()
            raise UnreadableZip(f"{path}: a stored zip member of unknown size")
        self.name = self._file.read(name_len).decode("utf-8", "replace")
        self._file.read(extra_len)
        self.compress_size = csize
        self.file_size = usize
        self.whole = False
        self._inflate = zlib.decompressobj(-zlib.MAX_WBITS) if method == _DEFLATED else None
        self._stored_left = csize

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.read1(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def read1(self, size: int = BLOCK) -> bytes:
        if self._inflate is None:
            if self._stored_left == 0:
                self.whole = True
                return b""
            data = self._file.read(min(size, self._stored_left))
            if not data:
                raise EOFError("the zip ends inside its member's data")
            self._stored_left -= len(data)
            return data
        inflate = self._inflate
        while not inflate.eof:
            data = inflate.unconsumed_tail or self._file.read(BLOCK)
            if not data:
                raise EOFError("the zip ends inside its member's data")
            out = inflate.decompress(data, size)
            if out:
                return out
        self.whole = True
        return b""

    def close(self) -> None:
        self._file.close()
        super().close()


def open_stream(path: Path) -> tuple[IO[bytes], IO[bytes]]:
    """(the file, its decompressed stream): gzip when the file starts as gzip does (the file
    itself otherwise); the file's `tell()` says how far on disk a reader has got."""
    f = path.open("rb")
    gz = f.read(2) == GZIP_MAGIC
    f.seek(0)
    return f, gzip.GzipFile(fileobj=f, mode="rb") if gz else f  # type: ignore[return-value]


def open_text_stream(path: Path) -> IO[bytes]:
    return open_stream(path)[1]
