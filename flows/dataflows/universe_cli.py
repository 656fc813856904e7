"""Resolve the exchange addresses and the symbol universe for `up` and `record`."""

from __future__ import annotations

from dataclasses import dataclass

from flows.binance.rest import RestClient
from flows.binance.universe import select_universe

BINANCE_WS = "wss://stream.binance.com:9443"
BINANCE_REST = "https://api.binance.com"


@dataclass(frozen=True)
class Exchange:
    ws_url: str
    rest_url: str


def exchange_urls(exchange_url: str | None, ws_url: str | None, rest_url: str | None) -> Exchange:
    """Binance by default; `exchange_url` names one server for both (the simulator), given as
    http(s):// or ws(s)://; `ws_url` / `rest_url` override each side.

    >>> exchange_urls("http://127.0.0.1:9000", None, None)
    Exchange(ws_url='ws://127.0.0.1:9000', rest_url='http://127.0.0.1:9000')
    """
    ws, rest = BINANCE_WS, BINANCE_REST
    if exchange_url:
        base = exchange_url.rstrip("/")
        scheme, _, rest_of = base.partition("://")
        secure = scheme in ("https", "wss")
        ws = f"{'wss' if secure else 'ws'}://{rest_of}"
        rest = f"{'https' if secure else 'http'}://{rest_of}"
    return Exchange(ws_url or ws, rest_url or rest)


def resolve_symbols(
    rest: RestClient, symbols: list[str] | None, top: int | None, quote: str
) -> list[str]:
    """Validated symbols, or the top N by 24h quote volume (raises RestError, UniverseError)."""
    info = rest.exchange_info()
    tickers = rest.ticker_24hr() if top is not None else []
    return select_universe(info, tickers, top=top, quote=quote, symbols=symbols)
