"""Binance's spot REST market-data endpoints over the simulated market (BINANCE.md A2).

``/api/v3/ping``, ``/time``, ``/exchangeInfo``, ``/ticker/24hr``, ``/aggTrades``, ``/klines``,
answered from the market's history with Binance's shapes, weights and error bodies
(HTTP 400 ``{"code":-11xx,"msg":...}``). Every answer carries ``X-MBX-USED-WEIGHT-1M``, the
weight used in the current wall-clock minute; past the limit (6000) the answer is HTTP 429
with ``Retry-After`` (seconds to the next minute) and code -1003, and so is each call an
injected ``rest429`` fault covers.

Where the simulator differs from Binance:

- Times (``serverTime``, windows, "now") are market time, the simulated exchange's clock.
- The history is bounded (`SimConfig.history_limit` aggTrades per symbol): older trades are
  gone, and a kline whose start is cut off is built from the trades that are left.
- There is no order book: ``bidPrice`` is the last price, ``askPrice`` the last price plus
  one tick, their quantities one lot step. Tick and lot steps are read off the trades seen.
- The 24 h ticker covers trades with time in ``(closeTime - 24 h, closeTime]`` where
  ``closeTime`` is market now; with no trade in it every price is the last price before
  (0 if none), volumes 0, ``firstId``/``lastId`` -1.
- Unknown query parameters are ignored; ``timeZone`` must be UTC.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flows.binance.exchange_info import named_symbols
from flows.binance.rest_params import SYMBOL_RE, ApiError, mandatory, optional_number
from flows.domain.clock import Clock
from flows.domain.intervals import INTERVALS, MINUTE_MS
from flows.simulator.answers import (
    agg_trade_json,
    exchange_info,
    kline_row,
    rest_klines,
    ticker_24hr,
)
from flows.simulator.hub import Hub
from flows.simulator.market import SimMarket

_MICROS_FROM: Final = 10**14
_UTC: Final = frozenset({"0", "+0", "-0", "00:00", "+00:00", "-00:00"})
_ENCODER: Final = msgspec.json.Encoder()
MAX_LIMIT: Final = 1000


class WeightMeter:
    """REQUEST_WEIGHT used in the current wall-clock minute."""

    def __init__(self, wall: Clock, limit: int) -> None:
        self._wall = wall
        self.limit = limit
        self._minute = -1
        self.used = 0

    def charge(self, weight: int) -> tuple[bool, int]:
        """Add a call's weight; (over the limit?, seconds to the next minute)."""
        now = self._wall.now_ms()
        minute = now // MINUTE_MS
        if minute != self._minute:
            self._minute, self.used = minute, 0
        self.used += weight
        retry = -(-((minute + 1) * MINUTE_MS - now) // 1000)
        return self.used > self.limit, max(1, retry)


# -- parameters ------------------------------------------------------------------------------


def _time(request: Request, name: str) -> int | None:
    value = optional_number(request, name)
    return value // 1000 if value is not None and value >= _MICROS_FROM else value


def _limit(request: Request, default: int = 500) -> int:
    limit = optional_number(request, "limit")
    if limit is None:
        return default
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(-1130, "Data sent for parameter 'limit' is not valid.")
    return limit


def _known(market: SimMarket, symbol: str) -> str:
    if symbol not in market:
        raise ApiError(-1121, "Invalid symbol.")
    return symbol


def _symbol(request: Request, market: SimMarket) -> str:
    symbol = mandatory(request, "symbol")
    if not SYMBOL_RE.fullmatch(symbol):
        raise ApiError(
            -1100,
            "Illegal characters found in parameter 'symbol'; legal range is '^[A-Z0-9-_.]{1,20}$'.",
        )
    return _known(market, symbol)


def _symbol_filter(request: Request, market: SimMarket) -> list[str] | None:
    """The symbols asked for by ``symbol`` or ``symbols``; None when neither is sent."""
    one, many = request.query_params.get("symbol"), request.query_params.get("symbols")
    return named_symbols(one, many, lambda symbol: _known(market, symbol))


def _ticker_weight(request: Request) -> int:
    if request.query_params.get("symbol") is not None:
        return 2
    many = request.query_params.get("symbols")
    if many is None:
        return 80
    n = many.count(",") + 1
    return 2 if n <= 20 else 40 if n <= 100 else 80


# -- routes ----------------------------------------------------------------------------------

Handler = Callable[[Request, bool], object]


def rest_routes(hub: Hub, wall: Clock) -> list[Route]:
    meter = WeightMeter(wall, hub.cfg.rest_weight_limit)
    market = hub.market

    def endpoint(
        weigh: Callable[[Request], int], handler: Handler
    ) -> Callable[[Request], Awaitable[Response]]:
        async def answer(request: Request) -> Response:
            injected = hub.take_rest429()
            if injected is not None:
                return _too_many(meter, injected[1], injected[0])
            over, retry = meter.charge(weigh(request))
            if over:
                return _too_many(meter, str(retry))
            headers = {"X-MBX-USED-WEIGHT-1M": str(meter.used)}
            micro = request.headers.get("X-MBX-TIME-UNIT", "").upper() == "MICROSECOND"
            try:
                body = handler(request, micro)
            except ApiError as e:
                body = {"code": e.code, "msg": e.msg}
                return Response(_ENCODER.encode(body), e.status, headers, "application/json")
            return Response(_ENCODER.encode(body), 200, headers, "application/json")

        return answer

    def ping(request: Request, micro: bool) -> object:
        return {}

    def server_time(request: Request, micro: bool) -> object:
        return {"serverTime": market.now_ms * (1000 if micro else 1)}

    def info(request: Request, micro: bool) -> object:
        body = exchange_info(
            market, hub.cfg.rest_weight_limit, _symbol_filter(request, market), market.now_ms
        )
        status = request.query_params.get("symbolStatus")
        if status is not None and status != "TRADING":
            body["symbols"] = []
        return body

    def ticker(request: Request, micro: bool) -> object:
        kind = request.query_params.get("type", "FULL")
        if kind not in ("FULL", "MINI"):
            raise ApiError(-1100, "Illegal characters found in parameter 'type'.")
        single = request.query_params.get("symbol") is not None
        symbols = _symbol_filter(request, market)
        mul, now = (1000 if micro else 1), market.now_ms
        items = [
            ticker_24hr(market, s, now, kind == "FULL", mul)
            for s in (market.symbols if symbols is None else symbols)
        ]
        return items[0] if single else items

    def agg_trades(request: Request, micro: bool) -> object:
        symbol = _symbol(request, market)
        from_id = optional_number(request, "fromId")
        start, end = _time(request, "startTime"), _time(request, "endTime")
        limit = _limit(request)
        if from_id is not None and (start is not None or end is not None):
            raise ApiError(-1128, "Combination of optional parameters invalid.")
        if start is not None and end is not None and start > end:
            return []
        rows = market.agg_trades(symbol, from_id, start, end, limit)
        return agg_trade_json(rows, 1000 if micro else 1)

    def klines(request: Request, micro: bool) -> object:
        symbol = _symbol(request, market)
        interval = mandatory(request, "interval")
        if interval not in INTERVALS:
            raise ApiError(-1120, "Invalid interval.")
        start, end = _time(request, "startTime"), _time(request, "endTime")
        limit = _limit(request)
        time_zone = request.query_params.get("timeZone")
        if time_zone is not None and time_zone not in _UTC:
            raise ApiError(-1130, "Data sent for parameter 'timeZone' is not valid.")
        ks = rest_klines(market, symbol, interval, start, end, limit, market.now_ms)
        return [kline_row(k, micro) for k in ks]

    def fixed(weight: int) -> Callable[[Request], int]:
        return lambda request: weight

    return [
        Route("/api/v3/ping", endpoint(fixed(1), ping), methods=["GET"]),
        Route("/api/v3/time", endpoint(fixed(1), server_time), methods=["GET"]),
        Route("/api/v3/exchangeInfo", endpoint(fixed(20), info), methods=["GET"]),
        Route("/api/v3/ticker/24hr", endpoint(_ticker_weight, ticker), methods=["GET"]),
        Route("/api/v3/aggTrades", endpoint(fixed(4), agg_trades), methods=["GET"]),
        Route("/api/v3/klines", endpoint(fixed(2), klines), methods=["GET"]),
    ]


def _too_many(meter: WeightMeter, retry_after: str, status: int = 429) -> Response:
    if status == 418:
        msg = f"Way too much request weight used; IP banned for {retry_after} s."
    else:
        msg = (
            f"Too much request weight used; current limit is {meter.limit} request weight "
            "per 1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API."
        )
    headers = {"Retry-After": retry_after, "X-MBX-USED-WEIGHT-1M": str(meter.used)}
    return Response(
        _ENCODER.encode({"code": -1003, "msg": msg}), status, headers, "application/json"
    )
