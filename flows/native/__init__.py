"""klineflow's pieces in C: parsers of Binance trade dump lines (`dump_lines.c`) and of
recorded stream frames (`frame_lines.c`), each taking the plain form in one pass over the
bytes and leaving every other line to the per-line readers.

They are compiled when the package is installed (`hatch_build.py`, with the C compiler the
install already needs for TA-Lib) into `LIBRARY` beside this file, and loaded through ctypes,
which lets go of the interpreter during each call, so several blocks parse at once. Where
it was not built (no compiler at install), `dump_lines` and `frame_lines` are None: the
columnar reader parses dumps with pyarrow instead (the same results, about three times the
CPU), recordings and captures are read line by line.

`KLINEFLOW_NATIVE=0` in the environment turns it off (the tests run both ways).
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

LIBRARY: Final = "libklineflow.so.1"

Int64s = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class DumpLines:
    """Every line of a block: its numbers (0 where not clean), whether it is in Binance's
    strict form, and where it ends in the block (its newline not included)."""

    first: Int64s
    last: Int64s
    price: Int64s
    qty: Int64s
    time: Int64s
    maker: Bools
    clean: Bools
    line_end: Int64s

    def line(self, block: bytes, i: int) -> bytes:
        """The bytes of line i of `block`."""
        start = int(self.line_end[i - 1]) + 1 if i else 0
        return block[start : int(self.line_end[i])]


class _Parser:
    def __init__(self, library: ctypes.CDLL) -> None:
        fn = library.kf_dump_lines
        fn.restype = ctypes.c_int64
        fn.argtypes = [ctypes.c_char_p, ctypes.c_int64, ctypes.c_int32, ctypes.c_int64,
                       *[ctypes.c_void_p] * 8]  # fmt: skip
        self._fn = fn

    def __call__(self, block: bytes, fields: int, lines: int) -> DumpLines:
        """The `lines` lines of `block` (whole lines; the last may lack its newline), as a
        dump of `fields` fields (8: aggTrades, 7: trades) reads them."""

        def ints() -> Int64s:
            return np.empty(lines, np.int64)

        out = DumpLines(
            first=ints(), last=ints(), price=ints(), qty=ints(), time=ints(),
            maker=np.empty(lines, np.bool_),
            clean=np.empty(lines, np.bool_),
            line_end=ints(),
        )  # fmt: skip
        buffers = (out.first, out.last, out.price, out.qty, out.time, out.maker, out.clean,
                   out.line_end)  # fmt: skip
        got = self._fn(block, len(block), fields, lines, *(b.ctypes.data for b in buffers))
        if got != lines:
            raise ValueError(f"the block holds {got} lines, not {lines}")
        return out


@dataclass(frozen=True)
class FrameLines:
    """Every line of a block of recorded frames: the trade of a clean line (0 elsewhere), its
    receive time in ms, its symbol packed in two words (`symbol_of` reads it), whether the
    line is in the plain form, and where it ends in the block."""

    recv: Int64s
    symbol: npt.NDArray[np.uint64]  # (lines, 2)
    first: Int64s
    last: Int64s
    price: Int64s
    qty: Int64s
    time: Int64s
    maker: Bools
    clean: Bools
    line_end: Int64s

    def line(self, block: bytes, i: int) -> bytes:
        start = int(self.line_end[i - 1]) + 1 if i else 0
        return block[start : int(self.line_end[i])]


def symbol_of(packed: npt.NDArray[np.uint64]) -> str:
    """The symbol of one packed row (two words of its bytes, zero-padded)."""
    return packed.astype("<u8").tobytes().rstrip(b"\0").decode("ascii")


class _FrameParser:
    def __init__(self, library: ctypes.CDLL) -> None:
        fn = library.kf_frame_lines
        fn.restype = ctypes.c_int64
        fn.argtypes = [ctypes.c_char_p, ctypes.c_int64, ctypes.c_int32, ctypes.c_int64,
                       *[ctypes.c_void_p] * 10]  # fmt: skip
        self._fn = fn

    def __call__(self, block: bytes, lines: int, capture: bool) -> FrameLines:
        """The `lines` lines of `block` (recording lines, or capture lines when `capture`)."""

        def ints() -> Int64s:
            return np.empty(lines, np.int64)

        out = FrameLines(
            recv=ints(), symbol=np.empty((lines, 2), np.uint64), first=ints(), last=ints(),
            price=ints(), qty=ints(), time=ints(), maker=np.empty(lines, np.bool_),
            clean=np.empty(lines, np.bool_), line_end=ints(),
        )  # fmt: skip
        buffers = (out.recv, out.symbol, out.first, out.last, out.price, out.qty, out.time,
                   out.maker, out.clean, out.line_end)  # fmt: skip
        got = self._fn(block, len(block), int(capture), lines, *(b.ctypes.data for b in buffers))
        if got != lines:
            raise ValueError(f"the block holds {got} lines, not {lines}")
        return out


def _library() -> ctypes.CDLL | None:
    if os.environ.get("KLINEFLOW_NATIVE", "1") == "0":
        return None
    path = Path(__file__).with_name(LIBRARY)
    if not path.is_file():
        return None
    try:
        return ctypes.CDLL(str(path))  # ctypes.CDLL: the GIL is let go per call
    except OSError:  # built for another machine, or damaged
        return None


def _parsers() -> tuple[_Parser | None, _FrameParser | None]:
    library = _library()
    if library is None:
        return None, None
    try:
        return _Parser(library), _FrameParser(library)
    except AttributeError:  # an older build without one of them
        return None, None


dump_lines, frame_lines = _parsers()
