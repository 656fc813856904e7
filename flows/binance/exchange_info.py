"""Binance's spot ``exchangeInfo`` shapes, shared by the klines API (``flows.api_exchange_info``)
and the exchange simulator (``flows.simulator``): one symbol's entry, the rate limit, and the
``symbol``/``symbols`` parameters with Binance's error codes."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

import msgspec

from flows.binance.rest_params import SYMBOL_RE, ApiError

PRECISION: Final = 8
ORDER_TYPES: Final = ("LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT")
STP_MODES: Final = ("EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH")
SYMBOLS_RE: Final = re.compile(r'\[("[A-Z0-9\-_.]{1,20}"(,"[A-Z0-9\-_.]{1,20}")*)?\]')


def symbol_entry(
    symbol: str,
    base: str,
    quote: str,
    prices: tuple[str, str],
    quantities: tuple[str, str],
    permission_sets: bool = True,
) -> dict[str, Any]:
    """A spot symbol as Binance lists it; `prices` and `quantities` are (step, maximum), the
    step being the minimum too."""
    tick, max_price = prices
    step, max_qty = quantities
    return {
        "symbol": symbol,
        "status": "TRADING",
        "baseAsset": base,
        "baseAssetPrecision": PRECISION,
        "quoteAsset": quote,
        "quotePrecision": PRECISION,
        "quoteAssetPrecision": PRECISION,
        "baseCommissionPrecision": PRECISION,
        "quoteCommissionPrecision": PRECISION,
        "orderTypes": list(ORDER_TYPES),
        "icebergAllowed": True,
        "ocoAllowed": True,
        "otoAllowed": True,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True,
        "cancelReplaceAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": tick,
                "maxPrice": max_price,
                "tickSize": tick,
            },
            {"filterType": "LOT_SIZE", "minQty": step, "maxQty": max_qty, "stepSize": step},
        ],
        "permissions": [],
        "permissionSets": [["SPOT"]] if permission_sets else [],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": list(STP_MODES),
    }


def weight_limit(limit: int) -> dict[str, Any]:
    """The REQUEST_WEIGHT rate limit per minute, as ``rateLimits`` lists it."""
    return {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
            "limit": limit}  # fmt: skip


def named_symbols(
    one: str | None, many: str | None, known: Callable[[str], str]
) -> list[str] | None:
    """The symbols a ``symbol`` or ``symbols`` parameter names (each checked by `known`,
    which raises -1121 for one it does not hold); None when neither is given."""
    if one is not None and many is not None:
        raise ApiError(-1128, "Combination of optional parameters invalid.")
    if one is not None:
        if not SYMBOL_RE.fullmatch(one):
            raise ApiError(
                -1100,
                "Illegal characters found in parameter 'symbol'; "
                "legal range is '^[A-Z0-9-_.]{1,20}$'.",
            )
        return [known(one)]
    if many is None:
        return None
    compact = many.replace(" ", "")
    if not SYMBOLS_RE.fullmatch(compact):
        raise ApiError(
            -1100,
            "Illegal characters found in parameter 'symbols'; legal range is "
            '\'^\\[("[A-Z0-9-_.]{1,20}"(,"[A-Z0-9-_.]{1,20}"){0,}){0,1}\\]$\'.',
        )
    names = msgspec.json.decode(compact, type=list[str])
    return [known(s) for s in dict.fromkeys(names)]
