"""The bodies of the REST answers, computed from the market's history (see `rest`)."""

from __future__ import annotations

from typing import Any

from flows.binance.exchange_info import symbol_entry, weight_limit
from flows.domain.intervals import DAY_MS, INTERVALS
from flows.domain.kline import Kline
from flows.domain.money import SCALE, format_units
from flows.klines.builder import build_klines, flat_kline
from flows.simulator.market import AggRow, SimMarket, split_fills, split_symbol


def _signed(units: int) -> str:
    return "-" + format_units(-units) if units < 0 else format_units(units)


def _percent(change: int, base: int) -> str:
    """change / base x 100 with 3 decimals, rounded half away from zero."""
    if base == 0:
        return "0.000"
    thousandths = (abs(change) * 100_000 * 2 + base) // (2 * base)
    text = f"{thousandths // 1000}.{thousandths % 1000:03d}"
    return "-" + text if change < 0 and thousandths else text


def exchange_info(
    market: SimMarket, limit: int, symbol_list: list[str] | None, now: int
) -> dict[str, Any]:
    infos = []
    for symbol in market.symbols if symbol_list is None else symbol_list:
        base, quote = split_symbol(symbol)
        tick, step = (format_units(u) for u in market.steps(symbol))
        infos.append(symbol_entry(symbol, base, quote, (tick, "1000000.00000000"),
                                  (step, "9000000.00000000")))  # fmt: skip
    return {
        "timezone": "UTC",
        "serverTime": now,
        "rateLimits": [
            weight_limit(limit),
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
            {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
            {
                "rateLimitType": "RAW_REQUESTS",
                "interval": "MINUTE",
                "intervalNum": 5,
                "limit": 61000,
            },
        ],
        "exchangeFilters": [],
        "symbols": infos,
    }


def ticker_24hr(market: SimMarket, symbol: str, now: int, full: bool, mul: int) -> dict[str, Any]:
    open_time = now - DAY_MS
    rows = market.trades(symbol, open_time + 1, now)
    before = market.last_trade_before(symbol, open_time + 1)
    prev = before[2] if before is not None else 0
    volume = quote = 0
    if rows:
        first, last = rows[0][1], rows[-1][1]
        open_p, last_p = first[2], last[2]
        high = max(t[2] for _, t in rows)
        low = min(t[2] for _, t in rows)
        for _, t in rows:
            volume += t[3]
            quote += t[2] * t[3] // SCALE  # truncated per aggTrade, as the kline builder does
        last_qty = split_fills(last)[-1][1]
        first_id, last_id = first[0], last[1]
        count = sum(t[1] - t[0] + 1 for _, t in rows)
    else:
        open_p = last_p = high = low = prev
        last_qty, first_id, last_id, count = 0, -1, -1, 0
    body: dict[str, Any] = {"symbol": symbol}
    if full:
        tick, step = market.steps(symbol)
        body |= {
            "priceChange": _signed(last_p - open_p),
            "priceChangePercent": _percent(last_p - open_p, open_p),
            "weightedAvgPrice": format_units(quote * SCALE // volume if volume else 0),
            "prevClosePrice": format_units(prev),
            "lastPrice": format_units(last_p),
            "lastQty": format_units(last_qty),
            "bidPrice": format_units(last_p),
            "bidQty": format_units(step),
            "askPrice": format_units(last_p + tick),
            "askQty": format_units(step),
        }
    else:
        body["lastPrice"] = format_units(last_p)
    body |= {
        "openPrice": format_units(open_p),
        "highPrice": format_units(high),
        "lowPrice": format_units(low),
        "volume": format_units(volume),
        "quoteVolume": format_units(quote),
        "openTime": open_time * mul,
        "closeTime": now * mul,
        "firstId": first_id,
        "lastId": last_id,
        "count": count,
    }
    return body


def agg_trade_json(rows: list[AggRow], mul: int) -> list[dict[str, Any]]:
    return [
        {"a": a, "p": format_units(t[2]), "q": format_units(t[3]), "f": t[0], "l": t[1],
         "T": t[4] * mul, "m": t[5], "M": True}
        for a, t in rows
    ]  # fmt: skip


def rest_klines(
    market: SimMarket,
    symbol: str,
    interval: str,
    start: int | None,
    end: int | None,
    limit: int,
    now: int,
) -> list[Kline]:
    """What ``GET /api/v3/klines`` answers: klines keyed by open time, the last maybe open."""
    iv = INTERVALS[interval]
    first = market.first_trade_ms(symbol)
    if first is None or (start is not None and end is not None and start > end):
        return []
    lo_bound, hi = iv.open_time(first), iv.open_time(now)
    if end is not None:
        hi = min(hi, iv.open_time(end))
    opens: list[int] = []
    if start is not None:
        o = iv.open_time(start)
        o = max(lo_bound, o if o >= start else iv.next_open(o))
        while o <= hi and len(opens) < limit:
            opens.append(o)
            o = iv.next_open(o)
    else:
        o = hi
        while o >= lo_bound and len(opens) < limit:
            opens.append(o)
            o = iv.open_time(o - 1)
        opens.reverse()
    if not opens:
        return []
    rows = market.trades(symbol, opens[0], iv.close_time(opens[-1]))
    before = market.last_trade_before(symbol, opens[0])
    prev_close = before[2] if before is not None else None
    built: dict[int, Kline] = {}
    if rows:
        built = {k.open_ms: k for k in build_klines([t for _, t in rows], (interval,))[interval]}
    out: list[Kline] = []
    for o in opens:
        k = built.get(o)
        if k is None:
            if prev_close is None:
                continue
            k = flat_kline(iv, o, prev_close)
        prev_close = k.close
        out.append(k)
    return out


def kline_row(k: Kline, micro: bool) -> list[int | str]:
    row = k.to_rest()
    if micro:
        row[0], row[6] = k.open_ms * 1000, k.close_ms * 1000 + 999
    return row
