"""Trades and klines as plain values.

A trade is a plain tuple, the cheapest thing CPython builds and unpacks:
``(first_trade_id, last_trade_id, price_units, qty_units, time_ms, buyer_is_maker)``.
An aggTrade covers trade ids ``f..l``; a single trade has ``f == l``. Amounts are integer
1e-8 units (see `flows.domain.money`).
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec

from flows.domain.money import format_units

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
        """The Redis sorted-set member: the REST array as compact JSON."""
        return _ENCODER.encode(self.to_rest())


_ENCODER = msgspec.json.Encoder()
