"""Bounds a real Binance trade stays within, checked at the door of every source.

A value outside them cannot come from the exchange: it is a corrupted file, a hand edit or a
bug upstream. Let through, one such trade does lasting damage (a time in 2286 moves every
kline of its symbol into that year and flat-fills the gap; an id of 10**15 makes every later
trade look like a duplicate; a 400-digit price poisons every roll-up), so it is refused and
dead-lettered as `implausible` instead.

>>> ceiling_ms = 1_570_755_611_620  # 2019-10-11 01:00:11 UTC
>>> implausible((1, 1, 141_342, 2_300_000_000, 1_570_752_011_620, True), ceiling_ms)
>>> print(implausible((1, 1, 141_342, 2_300_000_000, 9_999_999_999_999, True), ceiling_ms))
trade time 9999999999999 (2286-11-20 17:46:39 UTC) is after 1570755611620 (2019-10-11 ...
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Final

from flows.domain.kline import Trade
from flows.domain.money import format_units, parse_units

# Binance opened in July 2017; no trade of it is older than this (2017-07-01 00:00 UTC).
EXCHANGE_START_MS: Final = 1_498_867_200_000
# a trade time this large (past year 5138 in ms) is in microseconds (timeUnit=MICROSECOND)
US_FROM: Final = 100_000_000_000_000

# Binance keeps prices and quantities as int64 counts of 1e-8 (92,233,720,368.54775807):
# nothing larger can be sent by it.
MAX_UNITS: Final = 2**63 - 1
MAX_AMOUNT_TEXT: Final = format_units(MAX_UNITS)
_MAX_AMOUNT: Final = Decimal(MAX_AMOUNT_TEXT)

# Trade ids count every trade of a symbol since its listing; the busiest symbols are near
# 5 * 10**9 after eight years. 10**12 leaves two hundred times that room and still stops the
# absurd ids (10**15, 2**63) that would make every later real trade look like a duplicate.
MAX_TRADE_ID: Final = 10**12

# One aggTrade groups the fills of one taker order at one price. Even the largest sweeps of a
# book are thousands of fills; a million is far beyond any, yet small enough that a forged
# `l` cannot make one kline count billions of trades.
MAX_FILLS: Final = 10**6

# How far past its reference time (receive time, the end of a dump's day, now) a trade's time
# may lie by default: clocks of capture machines drift, the exchange's clock may run ahead.
DEFAULT_FUTURE_MARGIN_MS: Final = 3_600_000
# How far a symbol's trade ids may jump from one trade to the next: ids are consecutive on
# Binance (an aggTrade's first id follows the previous one's last), so a jump means trades
# missing in between; more than JUMP_BASE ids plus JUMP_PER_MS for each millisecond between the
# two trades (100,000 trades a second, several times any market's busiest) cannot be real.
JUMP_BASE: Final = 100_000
JUMP_PER_MS: Final = 100


def implausible_jump(first_id: int, previous_last_id: int, elapsed_ms: int) -> str | None:
    """Why a trade whose first id is `first_id`, after one whose last id was
    `previous_last_id` and `elapsed_ms` earlier, cannot be real; None when it can."""
    jump = first_id - previous_last_id
    limit = JUMP_BASE + JUMP_PER_MS * max(elapsed_ms, 0)
    if jump <= limit:
        return None
    return (
        f"trade id {first_id} jumps {jump:,} ids past the previous trade's {previous_last_id} "
        f"within {max(elapsed_ms, 0):,} ms (at most {limit:,})"
    )


def implausible(trade: Trade, ceiling_ms: int) -> str | None:
    """Why `trade` cannot be a real Binance trade, or None when it can.

    `ceiling_ms` is the latest time the trade may have: the receive time (or the exchange
    clock) plus a margin, or the end of the period a file covers plus a margin. A few
    comparisons when the trade is fine; the message is built only for a refused one.
    """
    first, last, price, qty, time_ms, _ = trade
    if (
        EXCHANGE_START_MS <= time_ms <= ceiling_ms
        and 0 <= first <= last <= MAX_TRADE_ID
        and last - first < MAX_FILLS
        and price <= MAX_UNITS
        and qty <= MAX_UNITS
    ):
        return None
    return _why(trade, ceiling_ms)


def _why(trade: Trade, ceiling_ms: int) -> str:
    first, last, price, qty, time_ms, _ = trade
    if time_ms < EXCHANGE_START_MS:
        return (
            f"trade time {time_ms} ({_utc(time_ms)}) is before {EXCHANGE_START_MS} "
            f"({_utc(EXCHANGE_START_MS)}), when Binance opened"
        )
    if time_ms > ceiling_ms:
        return (
            f"trade time {time_ms} ({_utc(time_ms)}) is after {ceiling_ms} ({_utc(ceiling_ms)}), "
            "the latest time it can have"
        )
    for name, value in (("first", first), ("last", last)):
        if value > MAX_TRADE_ID:
            return f"{name} trade id {value} is above {MAX_TRADE_ID}, far beyond any Binance id"
    if first < 0 or last < first:
        return f"trade ids {first}..{last} are not an ascending range of ids"
    if last - first >= MAX_FILLS:
        return (
            f"trade ids {first}..{last} make {last - first + 1} fills in one aggTrade, "
            f"more than {MAX_FILLS}"
        )
    for name, units in (("price", price), ("quantity", qty)):
        if units > MAX_UNITS:
            return f"{name} of {len(str(units))} digits is above {MAX_AMOUNT_TEXT}"
    return f"trade {trade} is outside the bounds"


def _utc(ms: int) -> str:
    try:
        return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return "out of the calendar"


class ImplausibleAmount(ValueError):
    """An amount written correctly but larger than Binance can hold."""


def parse_amount(text: str) -> int:
    """A trade's price or quantity in 1e-8 units, refusing what Binance cannot send.

    As `flows.domain.money.parse_units` (ValueError for anything that is not a plain
    non-negative decimal of at most 8 decimals), plus ImplausibleAmount above MAX_UNITS:

    >>> parse_amount("0.00141342")
    141342
    >>> parse_amount("1e400")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    flows.domain.trade_checks.ImplausibleAmount: amount '1e400' is above 92233720368.54775807...
    """
    dot = text.find(".")
    # Binance's own form with at most 10 integer digits is below 10**18 units: no bound check.
    if 0 < dot <= 10 and len(text) - dot == 9:  # 8 decimals after the dot
        digits = text[:dot] + text[dot + 1 :]
        if digits.isascii() and digits.isdigit():
            return int(digits)
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        value = None  # parse_units says what is wrong with it
    # compared before scaling: an exponent like 1e999999999 is never turned into an integer
    if value is not None and value.is_finite() and value > _MAX_AMOUNT:
        shown = text if len(text) <= 40 else f"{text[:37]}..."
        raise ImplausibleAmount(
            f"amount {shown!r} is above {MAX_AMOUNT_TEXT}, the largest Binance holds"
        )
    return parse_units(text)


__all__ = [
    "DEFAULT_FUTURE_MARGIN_MS",
    "EXCHANGE_START_MS",
    "MAX_FILLS",
    "MAX_TRADE_ID",
    "MAX_UNITS",
    "ImplausibleAmount",
    "implausible",
    "parse_amount",
]
