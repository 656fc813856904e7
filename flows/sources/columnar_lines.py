"""A dump's CSV bytes made safe for pyarrow's CSV parser, with every line kept in its place.

The per-row reader (`flows.sources.dumps.read_csv`) splits lines on b"\\n" only, keeps empty
lines in its numbering, accepts any bytes, and loses the piece of a line a compressed file was
cut inside. pyarrow also ends a line at a bare b"\\r", skips nothing we can number, refuses
invalid UTF-8 in rows it reports, and fails on a row longer than its block. `SafeLines` streams
the bytes so that each of the reader's lines is exactly one pyarrow row:

- only whole lines are passed on; when the stream is cut (`CUT_ERRORS`) the piece after the
  last newline is dropped, as the per-row reader drops it, and `cut` is set;
- bytes pyarrow would misread are escaped with a NUL prefix (NUL itself, a bare CR, a
  non-ASCII byte, an empty line), and a line longer than `LONG_LINE` is replaced by a token
  naming its original kept aside. `original` undoes all of it for one row.

None of this happens to a clean Binance dump except a scan per block (`isascii`, `in`).

>>> import io
>>> s = SafeLines(io.BufferedReader(io.BytesIO(b"1,2\\n\\n3\\r4\\xff,5\\n")))
>>> list(s.blocks(1 << 20))
[(b'1,2\\n\\x00e\\n3\\x00r4\\x00xff,5\\n', 3)]
>>> s.original(b"3\\x00r4\\x00xff,5"), s.original(b"\\x00e"), s.lines
(b'3\\r4\\xff,5', b'', 3)
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import IO, Final

import numpy as np

from flows.sources.compressed import BLOCK, CUT_ERRORS

# a line longer than this, spanning reads, is kept aside whole: a row pyarrow meets is then at
# most one read (BLOCK) plus this long, below the block size the columnar reader gives pyarrow
LONG_LINE: Final = 1 << 16
_NL: Final = ord("\n")
_ESCAPE: Final = re.compile(rb"[\x00\x80-\xff]|\r(?!\n)")
_EMPTY_LINE: Final = re.compile(rb"(?<=\n)(?=\r?\n)")
_UNESCAPE: Final = re.compile(rb"\x00(?:(0)|(r)|(e)|x([0-9a-f]{2})|L([0-9]+)\x00)")


def _escape_byte(m: re.Match[bytes]) -> bytes:
    b = m.group()
    if b == b"\x00":
        return b"\x000"
    if b == b"\r":
        return b"\x00r"
    return b"\x00x%02x" % b[0]


class SafeLines:
    """The whole lines of `stream`, escaped for pyarrow (see the module docstring)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._tail = b""  # the start of a line whose end has not been read yet
        self._tail_aside: int | None = None  # set when that line is too long and kept aside
        # whole lines only, escaped, waiting to be read: pieces joined once, when handed on
        self._out: list[bytes] = []
        self._out_size = 0  # bytes in _out
        self._out_lines = 0  # lines in _out
        self._ended = False
        self._aside: list[bytes] = []
        self.cut = False  # the stream ended with an error: it was cut short
        self.lines = 0  # lines passed on so far (as the per-row reader numbers them)
        self.bytes_read = 0  # bytes taken from the stream so far (progress)

    def blocks(self, size: int) -> Iterator[tuple[bytes, int]]:
        """The rest as blocks of whole lines of about `size` bytes or more (the last one may
        be smaller and lack its newline), each with how many lines it holds."""
        while True:
            while self._out_size < size and not self._ended:
                self._fill(size - self._out_size)
            if not self._out:
                return
            block, lines = self._taken(), self._out_lines
            self._out, self._out_size, self._out_lines = [], 0, 0
            yield block, lines

    def head(self, size: int) -> bytes:
        """At least `size` bytes of what `blocks` will hand on (fewer at the end), not taken."""
        while self._out_size < size and not self._ended:
            self._fill(size - self._out_size)
        return self._taken()[:size]

    def _taken(self) -> bytes:
        """What waits in _out, as one piece (kept there as one)."""
        if len(self._out) != 1:
            self._out = [b"".join(self._out)]
        return self._out[0]

    def _queue(self, piece: bytes) -> None:
        self._out.append(piece)
        self._out_size += len(piece)

    def _fill(self, wanted: int = BLOCK) -> None:
        try:
            # one read of what is wanted where the stream can (a file), at least BLOCK
            block = self._stream.read1(max(wanted, BLOCK))  # type: ignore[attr-defined]
        except CUT_ERRORS:
            self.cut = True  # the piece of a line before the cut is lost, as it is per row
            self._ended = True
            return
        self.bytes_read += len(block)
        if not block:
            self._ended = True
            if self._tail_aside is not None:
                self._pass_token(last=True)
            elif self._tail:
                self._pass(self._tail, last=True)
            return
        end = block.rfind(b"\n")
        if end < 0:
            self._extend_tail(block)
            return
        if self._tail_aside is not None:
            nl = block.index(b"\n")
            self._aside[self._tail_aside] += block[:nl]
            self._pass_token(last=False)
            whole = block[nl + 1 : end + 1]
        else:
            # one copy at most (a slice of all of `block` is `block` itself)
            whole = (
                b"".join((self._tail, memoryview(block)[: end + 1]))
                if self._tail
                else block[: end + 1]
            )
        self._tail = b""
        if whole:
            self._pass(whole, last=False)
        self._extend_tail(block[end + 1 :])

    def _extend_tail(self, piece: bytes) -> None:
        if self._tail_aside is not None:
            self._aside[self._tail_aside] += piece
            return
        self._tail += piece
        if len(self._tail) > LONG_LINE:
            self._aside.append(self._tail)
            self._tail_aside = len(self._aside) - 1
            self._tail = b""

    def _pass_token(self, last: bool) -> None:
        assert self._tail_aside is not None
        self._queue(b"\x00L%d\x00" % self._tail_aside + (b"" if last else b"\n"))
        self.lines += 1
        self._out_lines += 1
        self._tail_aside = None

    def _pass(self, whole: bytes, last: bool) -> None:
        """Escape whole lines (the last one without a newline when `last`) and queue them;
        `whole` starts a line."""
        # line ends by numpy: one pass finds them all, counts them and shows empty lines
        ends = np.flatnonzero(np.frombuffer(whole, np.uint8) == _NL)
        count = len(ends) + (1 if last else 0)
        self.lines += count
        self._out_lines += count
        carriage = b"\r" in whole
        if (
            not whole.isascii()
            or b"\x00" in whole
            or (carriage and whole.count(b"\r") != whole.count(b"\r\n"))
        ):
            whole = _ESCAPE.sub(_escape_byte, whole)
        # an empty line (the per-row reader skips it) must not become a row of empty fields
        if whole.startswith((b"\n", b"\r\n")):
            whole = b"\x00e" + whole
        if (len(ends) > 1 and bool((np.diff(ends) == 1).any())) or (
            carriage and b"\n\r\n" in whole
        ):
            whole = _EMPTY_LINE.sub(b"\x00e", whole)
        self._queue(whole)

    def original(self, row: bytes) -> bytes:
        """The original bytes of a row as pyarrow saw it (fields joined by commas)."""
        if b"\x00" not in row:
            return row
        return _UNESCAPE.sub(self._unescape, row)

    def _unescape(self, m: re.Match[bytes]) -> bytes:
        if m.group(1):
            return b"\x00"
        if m.group(2):
            return b"\r"
        if m.group(3):
            return b""
        if m.group(4):
            return bytes([int(m.group(4), 16)])
        return self._aside[int(m.group(5))]
