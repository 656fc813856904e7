"""Exact integers and 1e-8 decimal units from pyarrow binary columns, with numpy, no loop per row.

Each value's bytes are gathered right-aligned into a small matrix (one row per value), checked
to be digits (and at most one dot), and summed against powers of ten in int64. Only a strict
form is taken: plain digits, no sign or spaces, at most 18 digits (10 integer digits and 8
decimals for amounts), so every result fits int64 exactly (below 10**18). Anything else is
marked not ok and left to the caller's exact per-row parser; a value is never guessed.

>>> import pyarrow as pa
>>> texts = [b"0.00141342", b"23.5", b"5.", b"7", b"1.000000001", b"-1"]
>>> units, ok = decimal_units(pa.array(texts))
>>> units.tolist(), ok.tolist()
([141342, 2350000000, 500000000, 700000000, 0, 0], [True, True, True, True, False, False])
>>> values, ok = plain_ints(pa.array([b"1570752011620", b"+5", b"", b"0015"]))
>>> values.tolist(), ok.tolist()
([1570752011620, 0, 0, 15], [True, False, False, True])
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

Int64s = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

MAX_INT_DIGITS: Final = 18  # 10**18 - 1 < 2**63 - 1
MAX_WHOLE_DIGITS: Final = 10  # an amount's integer part: 10 + 8 decimals = 18 digits
DECIMALS: Final = 8
_POW10: Final = np.array([10**k for k in range(19)], dtype=np.int64)
_ZERO, _NINE, _DOT = 48, 57, 46


def _right_aligned(column: pa.Array, width: int) -> tuple[npt.NDArray[np.uint8], Int64s, Bools]:
    """(bytes, lengths, present): each value's last `width` bytes, right-aligned, with 0 where
    a value is shorter (present False there)."""
    n = len(column)
    buffers = column.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int32, count=n + 1, offset=column.offset * 4)
    ends = offsets[1:].astype(np.int64)
    lengths = ends - offsets[:-1]
    data = buffers[2]
    if data is None or data.size == 0 or width == 0:
        return np.zeros((n, width), np.uint8), lengths, np.zeros((n, width), np.bool_)
    raw = np.frombuffer(data, dtype=np.uint8)
    back = np.arange(width - 1, -1, -1, dtype=np.int64)  # column j reads byte end-1-back[j]
    present = back[None, :] < lengths[:, None]
    where = np.clip(ends[:, None] - 1 - back[None, :], 0, raw.size - 1)
    grabbed = raw[where]
    grabbed[~present] = 0
    return grabbed, lengths, present


def _width(lengths_hint: pa.Array, cap: int) -> int:
    longest = pc.max(pc.binary_length(lengths_hint)).as_py()
    return min(int(longest or 0), cap)


def plain_ints(column: pa.Array) -> tuple[Int64s, Bools]:
    """Values of a column of plain non-negative decimal integers (1 to 18 digits); 0 and
    ok=False for anything else."""
    width = _width(column, MAX_INT_DIGITS)
    grabbed, lengths, present = _right_aligned(column, width)
    digits = grabbed.astype(np.int64) - _ZERO
    is_digit = (digits >= 0) & (digits <= 9)
    ok = (lengths >= 1) & (lengths <= MAX_INT_DIGITS) & np.all(is_digit | ~present, axis=1)
    digits[~(present & is_digit)] = 0
    values = digits @ _POW10[width - 1 :: -1] if width else np.zeros(len(lengths), np.int64)
    values[~ok] = 0
    return values.astype(np.int64, copy=False), ok


def decimal_units(column: pa.Array) -> tuple[Int64s, Bools]:
    """Amounts in 1e-8 units, exactly: up to 10 integer digits, an optional dot, up to 8
    decimals (fewer are padded with zeros, as Decimal scales them). 0 and ok=False for
    anything else, which the per-row parser then decides."""
    cap = MAX_WHOLE_DIGITS + 1 + DECIMALS
    width = _width(column, cap)
    grabbed, lengths, present = _right_aligned(column, width)
    n = len(lengths)
    if width == 0:
        return np.zeros(n, np.int64), np.zeros(n, np.bool_)
    digits = grabbed.astype(np.int64) - _ZERO
    is_digit = (digits >= 0) & (digits <= 9) & present
    is_dot = (grabbed == _DOT) & present
    dots = is_dot.sum(axis=1)
    # decimals = the number of bytes right of the dot (column j lies width-1-j from the end)
    from_end = np.arange(width - 1, -1, -1, dtype=np.int64)
    decimals = np.where(dots == 1, np.max(np.where(is_dot, from_end, -1), axis=1), 0)
    whole_digits = lengths - decimals - (dots == 1)
    ok = (
        (lengths <= cap)
        & (dots <= 1)
        & np.all(is_digit | is_dot | ~present, axis=1)
        & (whole_digits >= 1)
        & (whole_digits <= MAX_WHOLE_DIGITS)
        & (decimals <= DECIMALS)
    )
    # the digits read as one integer (the dot skipped), then scaled up to 8 decimals
    places = from_end[None, :] - ((dots == 1)[:, None] & (from_end[None, :] > decimals[:, None]))
    digits[~is_digit] = 0
    places = np.clip(places, 0, MAX_INT_DIGITS)
    number = (digits * _POW10[places]).sum(axis=1)
    units = number * _POW10[np.clip(DECIMALS - decimals, 0, DECIMALS)]
    units[~ok] = 0
    return units, ok


def exact_flags(column: pa.Array) -> tuple[Bools, Bools]:
    """(value, ok) for a column of b"True"/b"False" exactly, Binance's spelling; anything else
    is not ok (the per-row reader accepts other spellings, and decides them)."""
    true = pc.equal(column, pa.scalar(b"True", pa.binary())).to_numpy(zero_copy_only=False)
    false = pc.equal(column, pa.scalar(b"False", pa.binary())).to_numpy(zero_copy_only=False)
    return true.astype(np.bool_), (true | false).astype(np.bool_)
