"""Exact decimal money as integers scaled by 1e8.

Binance prints every spot price and quantity with 8 decimals, so an integer count of
1e-8 units holds every value exactly and sums without rounding.

>>> parse_units("0.00141342")
141342
>>> format_units(parse_units("23.5"))
'23.50000000'
>>> quote_units(parse_units("0.005773"), parse_units("0.228"))  # 0.001316244 truncated
131624
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

SCALE = 100_000_000
DECIMALS = 8


def parse_units(text: str) -> int:
    """Parse a non-negative decimal string into 1e-8 units, exactly.

    Raises ValueError for anything that is not a plain non-negative decimal, or that
    carries a non-zero digit past the 8th decimal.
    """
    dot = text.find(".")
    # Fast path: Binance's own form, exactly 8 decimals ("0.00141342").
    if dot > 0 and len(text) - dot == 9:
        digits = text[:dot] + text[dot + 1 :]
        # int() alone would accept spaces, signs and "_" separators: check for plain digits
        if digits.isascii() and digits.isdigit():
            return int(digits)
    return _parse_units_slow(text)


def _parse_units_slow(text: str) -> int:
    try:
        value = Decimal(text.strip())
    except InvalidOperation as e:
        raise ValueError(f"expected a decimal number, got {text!r}") from e
    if not value.is_finite() or value < 0:
        raise ValueError(f"expected a finite non-negative decimal, got {text!r}")
    try:
        scaled = value * SCALE
    except ArithmeticError as e:  # an exponent past the context's range ("1e1000000")
        raise ValueError(f"{text!r} is out of range") from e
    units = int(scaled)
    if units != scaled:
        raise ValueError(f"{text!r} has more than {DECIMALS} decimals")
    return units


def format_units(units: int) -> str:
    """Print units the way Binance prints amounts: always 8 decimals."""
    if units < 0:
        raise ValueError(f"amounts are never negative, got {units}")
    text = str(units)
    if len(text) < 9:
        text = text.rjust(9, "0")
    return f"{text[:-8]}.{text[-8:]}"


ZERO_TEXT = format_units(0)


def quote_units(price_units: int, qty_units: int) -> int:
    """price * qty truncated to 8 decimals, as Binance computes a trade's quote amount."""
    return (price_units * qty_units) // SCALE
