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
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Final, Generic, TypeVar

import numpy as np
import numpy.typing as npt

LIBRARY: Final = "libklineflow.so.1"

Int64s = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]


_BOOL: Final = {"dtype": np.bool_}


@dataclass(frozen=True, kw_only=True)
class DumpLines:
    """Every line of a dump block: its numbers (0 where not clean), whether it is in
    Binance's strict form, and where it ends in the block (its newline not included).
    (The fields' order is the C function's buffers' order.)"""

    first: Int64s
    last: Int64s
    price: Int64s
    qty: Int64s
    time: Int64s
    maker: Bools = field(metadata=_BOOL)
    clean: Bools = field(metadata=_BOOL)
    line_end: Int64s

    def line(self, block: bytes, i: int) -> bytes:
        """The bytes of line i of `block`."""
        start = int(self.line_end[i - 1]) + 1 if i else 0
        return block[start : int(self.line_end[i])]


@dataclass(frozen=True, kw_only=True)
class FrameLines(DumpLines):
    """Every line of a block of recorded frames: the trade of a clean line as a dump line's
    (0 elsewhere), and its receive time in ms and its symbol packed in two words
    (`symbol_of` reads it)."""

    recv: Int64s
    symbol: npt.NDArray[np.uint64] = field(metadata={"dtype": np.uint64, "width": 2})


def symbol_of(packed: npt.NDArray[np.uint64]) -> str:
    """The symbol of one packed row (two words of its bytes, zero-padded)."""
    return packed.astype("<u8").tobytes().rstrip(b"\0").decode("ascii")


L = TypeVar("L", bound=DumpLines)


class _Parser(Generic[L]):
    """One of the library's parsers: ``fn(block, length, mode, lines, *buffers)`` writes one
    buffer per field of `out`, in the fields' order, and returns how many lines it read."""

    def __init__(self, library: ctypes.CDLL, name: str, out: type[L]) -> None:
        self._fields = fields(out)
        self._out = out
        fn = getattr(library, name)
        fn.restype = ctypes.c_int64
        fn.argtypes = [ctypes.c_char_p, ctypes.c_int64, ctypes.c_int32, ctypes.c_int64,
                       *[ctypes.c_void_p] * len(self._fields)]  # fmt: skip
        self._fn = fn

    def __call__(self, block: bytes, lines: int, mode: int) -> L:
        """The `lines` lines of `block` (whole lines; the last may lack its newline).
        `mode`: the dump's field count (8 aggTrades, 7 trades), or 1 for capture lines and 0
        for recording lines."""
        arrays = {
            f.name: np.empty((lines, f.metadata["width"]) if "width" in f.metadata else lines,
                             f.metadata.get("dtype", np.int64))
            for f in self._fields
        }  # fmt: skip
        got = self._fn(block, len(block), mode, lines, *(a.ctypes.data for a in arrays.values()))
        if got != lines:
            raise ValueError(f"the block holds {got} lines, not {lines}")
        return self._out(**arrays)


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


def _parsers() -> tuple[_Parser[DumpLines] | None, _Parser[FrameLines] | None]:
    library = _library()
    if library is None:
        return None, None
    try:
        return (_Parser(library, "kf_dump_lines", DumpLines),
                _Parser(library, "kf_frame_lines", FrameLines))  # fmt: skip
    except AttributeError:  # an older build without one of them
        return None, None


dump_lines, frame_lines = _parsers()
