"""Exact integers and 1e-8 decimal units from pyarrow binary columns, with numpy, no loop per row.

Only a strict form is taken, checked by one regular expression over the column (Arrow's, in
C++): plain digits, no sign or spaces, at most 18 digits (10 integer digits and up to 8
decimals for amounts), so every result fits int64 exactly (below 10**18). Those values are
converted by Arrow's exact decimal cast (an amount becomes a decimal128 with 8 decimals,
whose unscaled integer is the value in 1e-8 units); anything else is marked not ok and left
to the caller's exact per-row parser: a value is never guessed.

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
_INT: Final = rf"^[0-9]{{1,{MAX_INT_DIGITS}}}$"
_AMOUNT: Final = rf"^[0-9]{{1,{MAX_WHOLE_DIGITS}}}(\.[0-9]{{0,{DECIMALS}}})?$"
_AMOUNT_TYPE: Final = pa.decimal128(MAX_WHOLE_DIGITS + DECIMALS, DECIMALS)


def int64s(array: pa.Array) -> Int64s:
    """An int64 Arrow array without nulls as numpy, sharing its memory (read-only).

    (`Array.to_numpy(zero_copy_only=False)` would do, but it imports pandas, 0.2 s.)"""
    if array.null_count:
        raise ValueError("an array with nulls has no int64 view")
    out: Int64s = np.frombuffer(array.buffers()[1], np.int64, len(array), array.offset * 8)
    return out


def bools(array: pa.Array) -> Bools:
    """A boolean Arrow array as a numpy bool array (a null is False)."""
    if array.null_count:
        array = pc.fill_null(array, False)
    bits = np.frombuffer(array.buffers()[1], np.uint8)
    unpacked = np.unpackbits(bits, bitorder="little")[array.offset : array.offset + len(array)]
    out: Bools = unpacked.astype(np.bool_)
    return out


def _strict(column: pa.Array, pattern: str) -> tuple[pa.Array, pa.Array]:
    """(text, ok): the column as text (its bytes as they are; a value that is not valid
    UTF-8 cannot match the ASCII pattern), and whether each value matches; values that do
    not are replaced by "0" so that a cast of the whole column cannot fail."""
    text = column.view(pa.string()) if pa.types.is_binary(column.type) else column
    ok = pc.fill_null(pc.match_substring_regex(text, pattern), False)
    return pc.if_else(ok, text, pa.scalar("0", pa.string())), ok


_DOT: Final = ord(".")
# after a cast succeeds, these bytes are the only ways a value can be other than plain digits
# (and one dot): Arrow also takes a sign, a hex prefix (integers) and exponents (decimals)
_NOT_INT: Final = (b"-", b"+", b"x", b"X")
_NOT_AMOUNT: Final = (b"-", b"+", b"e", b"E")


def _binary(column: pa.Array) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.uint8]]:
    """A binary column's value offsets (one more than its values) and bytes, as numpy views."""
    _, offsets_buf, data_buf = column.buffers()
    offsets = np.frombuffer(offsets_buf, np.int32, len(column) + 1, column.offset * 4)
    data = np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    return offsets, data


def _castable(
    column: pa.Array, longest: int, refused: tuple[bytes, ...], not_first: int = -1
) -> bool:
    """Whether the values of a binary column are 1..`longest` bytes, none holding a byte of
    `refused` nor starting with the byte `not_first` (a few memory searches over the
    column's bytes, no pass per value)."""
    if column.null_count or not pa.types.is_binary(column.type) or len(column) == 0:
        return False
    offsets, data = _binary(column)
    sizes = np.diff(offsets)
    if int(sizes.min()) < 1 or int(sizes.max()) > longest:
        return False
    if not_first >= 0 and bool((data[offsets[:-1]] == not_first).any()):
        return False
    body = data[int(offsets[0]) : int(offsets[-1])].tobytes()
    return not any(b in body for b in refused)


def fast_ints(column: pa.Array) -> Int64s | None:
    """`plain_ints` of a column whose every value is plain digits (the common case), by one
    cast and no regular expression; None when some value may not be (then `plain_ints`)."""
    if not _castable(column, MAX_INT_DIGITS, _NOT_INT):
        return None
    try:
        ints = pc.cast(column.view(pa.string()), pa.int64())
    except pa.ArrowInvalid:
        return None
    return int64s(ints).copy()  # the caller writes into it


def fast_units(column: pa.Array) -> Int64s | None:
    """`decimal_units` of a column whose every value is digits with at most one dot, at most
    10 integer digits and 8 decimals (Arrow's cast refuses more dots, more digits or more
    decimals, and then this is None and `decimal_units` decides each value)."""
    # ".5": Arrow takes it, the strict form does not
    if not _castable(column, MAX_WHOLE_DIGITS + 1 + DECIMALS, _NOT_AMOUNT, not_first=_DOT):
        return None
    try:
        amounts = pc.cast(column.view(pa.string()), _AMOUNT_TYPE)
    except pa.ArrowInvalid:
        return None
    return _unscaled(amounts)


def _unscaled(amounts: pa.Array) -> Int64s:
    # a decimal128 is its unscaled integer in 16 little-endian bytes: below 10**18 it is
    # the low 8 (the high 8 are zero)
    words = np.frombuffer(amounts.buffers()[1], dtype=np.int64, count=2 * len(amounts),
                          offset=amounts.offset * 16)  # fmt: skip
    out: Int64s = words[0::2].copy()
    return out


def plain_ints(column: pa.Array) -> tuple[Int64s, Bools]:
    """Values of a column of plain non-negative decimal integers (1 to 18 digits); 0 and
    ok=False for anything else."""
    fast = fast_ints(column)
    if fast is not None:
        return fast, np.ones(len(fast), np.bool_)
    text, ok = _strict(column, _INT)
    values = int64s(pc.cast(text, pa.int64()))
    # copies: the caller writes into them (rows its per-row rules decide)
    return values.copy(), bools(ok)


def decimal_units(column: pa.Array) -> tuple[Int64s, Bools]:
    """Amounts in 1e-8 units, exactly: up to 10 integer digits, an optional dot, up to 8
    decimals (fewer are padded with zeros, as Decimal scales them). 0 and ok=False for
    anything else, which the per-row parser then decides."""
    fast = fast_units(column)
    if fast is not None:
        return fast, np.ones(len(fast), np.bool_)
    text, ok = _strict(column, _AMOUNT)
    amounts = pc.cast(text, _AMOUNT_TYPE)
    return _unscaled(amounts), bools(ok)


def exact_flags(column: pa.Array) -> tuple[Bools, Bools]:
    """(value, ok) for a column of b"True"/b"False" exactly, Binance's spelling; anything else
    is not ok (the per-row reader accepts other spellings, and decides them). Compared in
    numpy on the column's bytes (an Arrow scalar to compare with would import pandas)."""
    n = len(column)
    true, false = np.zeros(n, np.bool_), np.zeros(n, np.bool_)
    if n in (0, column.null_count):
        return true, false
    offsets, data = _binary(column)
    sizes = np.diff(offsets)
    valid = bools(column.is_valid()) if column.null_count else np.ones(n, np.bool_)
    starts = offsets[:-1]
    for word, into in ((b"True", true), (b"False", false)):
        rows = np.flatnonzero((sizes == len(word)) & valid)
        if len(rows):
            at = starts[rows]
            same = data[at] == word[0]
            for k in range(1, len(word)):  # one byte of the word at a time, over all rows
                same &= data[at + k] == word[k]
            into[rows] = same
    return true, true | false
