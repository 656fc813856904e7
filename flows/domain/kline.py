"""Trades and klines as plain values.

A trade is a plain tuple, the cheapest thing CPython builds and unpacks:
``(first_trade_id, last_trade_id, price_units, qty_units, time_ms, buyer_is_maker)``.
An aggTrade covers trade ids ``f..l``; a single trade has ``f == l``. Amounts are integer
1e-8 units (see `flows.domain.money`).
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec

from flows.domain.money import SCALE, format_units, parse_units

Trade = tuple[int, int, int, int, int, bool]


class Kline(NamedTuple):
    open_ms: int
    close_ms: int
    open: int
    high: int
    low: int
    close: int
    volume: int
    quote_volume: int
    trades: int
    taker_buy_volume: int
    taker_buy_quote_volume: int
    first_trade_id: int = -1
    last_trade_id: int = -1

    def to_rest(self) -> list[int | str]:
        """The 12-element array of Binance's REST /api/v3/klines."""
        return [
            self.open_ms,
            format_units(self.open),
            format_units(self.high),
            format_units(self.low),
            format_units(self.close),
            format_units(self.volume),
            self.close_ms,
            format_units(self.quote_volume),
            self.trades,
            format_units(self.taker_buy_volume),
            format_units(self.taker_buy_quote_volume),
            "0",
        ]

    def member(self) -> bytes:
        """The Redis sorted-set member: the REST array as compact JSON.

        >>> Kline(60000, 119999, 150, 150, 150, 150, 0, 0, 0, 0, 0).member()
        b'[60000,"0.00000150","0.00000150","0.00000150","0.00000150","0.00000000",119999,"0.00000000",0,"0.00000000","0.00000000","0"]'
        """
        s = SCALE
        if self.trades == 0 and self.volume == 0:  # a flat kline: one price, all zeros
            p, r = divmod(self.open, s)
            return _FLAT % (self.open_ms, p, r, p, r, p, r, p, r, self.close_ms)
        o, h, lo, c = self.open, self.high, self.low, self.close
        v, q, tb, tq = (
            self.volume,
            self.quote_volume,
            self.taker_buy_volume,
            self.taker_buy_quote_volume,
        )
        return _MEMBER % (
            self.open_ms, o // s, o % s, h // s, h % s, lo // s, lo % s, c // s, c % s,
            v // s, v % s, self.close_ms, q // s, q % s, self.trades, tb // s, tb % s,
            tq // s, tq % s,
        )  # fmt: skip


# one formatting per member (8 decimals each, as Binance prints amounts)
_A = b'"%d.%08d"'
_MEMBER = b"[%d," + b",".join([_A] * 5) + b",%d," + _A + b",%d," + _A + b"," + _A + b',"0"]'
_FLAT = (
    b"[%d,"
    + b",".join([_A] * 4)
    + b',"0.00000000",%d,"0.00000000",0,"0.00000000","0.00000000","0"]'
)


def decode_member(member: bytes) -> list[int | str]:
    """A stored member back to its 12-element array."""
    return msgspec.json.decode(member, type=list[int | str])


def kline_of_row(row: list[int | str]) -> Kline:
    """A REST /api/v3/klines array (or a stored member, decoded) back to a Kline."""
    p = parse_units
    return Kline(
        int(row[0]),
        int(row[6]),
        p(str(row[1])),
        p(str(row[2])),
        p(str(row[3])),
        p(str(row[4])),
        p(str(row[5])),
        p(str(row[7])),
        int(row[8]),
        p(str(row[9])),
        p(str(row[10])),
    )
