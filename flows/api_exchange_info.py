"""``GET /api/v3/exchangeInfo`` for the symbols with stored klines, in Binance's shape.

What is known and what is chosen (Binance's own values are not stored here):

- Every symbol of the stored-symbols set is listed, ``status`` ``TRADING`` ("klines are
  served"), spot only: ``permissions`` ``[]`` and ``permissionSets`` ``[["SPOT"]]`` as
  Binance now writes them. No order can be placed here; ``orderTypes`` and the order flags
  are Binance's usual spot values, so clients that read them find them.
- Base and quote: the quote is the **longest** of `QUOTE_ASSETS` that ends the symbol and
  leaves a base; with none, the last three characters (logged as a warning once per
  symbol). Binance.US's USD quote is in the list, so ``BNBUSD`` (BUSD being longer) splits as
  ``BN``/``BUSD``: longest match errs where a base ends in a quote's first letters.
- Prices and quantities carry 8 decimals: ``tickSize``/``stepSize`` and the minima are
  ``0.00000001``, the maxima ``92233720368.54775807`` (the largest signed 64-bit integer in
  units of 1e-8, Binance's own storage). Every precision is 8.
- ``rateLimits`` lists what this server enforces: REQUEST_WEIGHT per minute.

Parameters: ``symbol`` or ``symbols`` (a JSON array) picks symbols (-1121 for one not
stored, -1128 when both or when combined with ``permissions``/``symbolStatus``);
``permissions`` (a word or a JSON array) keeps the symbols when it includes ``SPOT``;
``symbolStatus`` (``TRADING``, ``HALT``, ``BREAK``; else -1122) keeps them for ``TRADING``;
``showPermissionSets=false`` empties ``permissionSets``.

>>> split_symbol("BTCUSDT"), split_symbol("XRPETH"), split_symbol("BTCTUSD")
(('BTC', 'USDT'), ('XRP', 'ETH'), ('BTC', 'TUSD'))
>>> split_symbol("1000SATSFDUSD"), split_symbol("TRXXRP"), split_symbol("TUSDT")
(('1000SATS', 'FDUSD'), ('TRX', 'XRP'), ('T', 'USDT'))
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Mapping
from functools import lru_cache
from typing import Any, Final

import msgspec

from flows.binance.exchange_info import named_symbols, symbol_entry
from flows.binance.exchange_info import weight_limit as weight_limit_entry
from flows.binance.rest_params import ApiError

logger = logging.getLogger(__name__)

# Quote assets of Binance's spot markets (exchangeInfo, 2025), and USD for Binance.US.
QUOTE_ASSETS: Final = (
    "USDT", "USDC", "FDUSD", "TUSD", "BUSD", "USDP", "DAI", "USD1", "USD", "AEUR", "EURI",
    "BTC", "ETH", "BNB", "XRP", "TRX", "DOGE", "DOT", "SOL", "PAX", "UST", "VAI",
    "EUR", "GBP", "AUD", "TRY", "BRL", "JPY", "MXN", "ARS", "COP", "CZK", "PLN", "RON",
    "UAH", "ZAR", "NGN", "RUB", "IDRT", "BIDR", "BKRW", "BVND",
)  # fmt: skip
_BY_LENGTH: Final = sorted(QUOTE_ASSETS, key=len, reverse=True)
_TICK: Final = "0.00000001"
_MAX_AMOUNT: Final = "92233720368.54775807"  # (2**63 - 1) units of 1e-8
_STATUSES: Final = frozenset({"TRADING", "HALT", "BREAK"})
_PERMISSIONS_RE: Final = re.compile(
    r'[A-Z0-9_]{1,40}|\[("[A-Z0-9_]{1,40}"(,"[A-Z0-9_]{1,40}")*)?\]'
)


@lru_cache(maxsize=4096)
def split_symbol(symbol: str) -> tuple[str, str]:
    """(base, quote): the quote is the longest known quote asset ending the symbol."""
    for quote in _BY_LENGTH:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    logger.warning("no known quote asset ends symbol=%s; taking its last 3 characters", symbol)
    return symbol[:-3], symbol[-3:]


def symbol_info(symbol: str, permission_sets: bool = True) -> dict[str, Any]:
    base, quote = split_symbol(symbol)
    return symbol_entry(symbol, base, quote, (_TICK, _MAX_AMOUNT), (_TICK, _MAX_AMOUNT),
                        permission_sets)  # fmt: skip


def exchange_info(
    stored: Collection[str], params: Mapping[str, str], now_ms: int, weight_limit: int
) -> dict[str, Any]:
    """The body for the query `params` over the `stored` symbols (ApiError when invalid)."""
    show = params.get("showPermissionSets", "true")
    if show not in ("true", "false"):
        raise ApiError(-1130, "Data sent for parameter 'showPermissionSets' is not valid.")
    symbols = _selected(stored, params)
    return {
        "timezone": "UTC",
        "serverTime": now_ms,
        "rateLimits": [weight_limit_entry(weight_limit)],
        "exchangeFilters": [],
        "symbols": [symbol_info(s, show == "true") for s in symbols],
    }


def _selected(stored: Collection[str], params: Mapping[str, str]) -> list[str]:
    one, many = params.get("symbol"), params.get("symbols")
    permissions, status = params.get("permissions"), params.get("symbolStatus")
    if (one is not None or many is not None) and (permissions is not None or status is not None):
        raise ApiError(-1128, "Combination of optional parameters invalid.")
    named = named_symbols(one, many, lambda symbol: _known(stored, symbol))
    if named is not None:
        return named
    everything = sorted(stored)
    if status is not None:
        if status not in _STATUSES:
            raise ApiError(-1122, "Invalid symbolStatus.")
        if status != "TRADING":
            return []
    if permissions is not None:
        compact = permissions.replace(" ", "")
        if not _PERMISSIONS_RE.fullmatch(compact):
            raise ApiError(-1100, "Illegal characters found in parameter 'permissions'.")
        wanted = msgspec.json.decode(compact, type=list[str]) if compact[0] == "[" else [compact]
        if "SPOT" not in wanted:
            return []
    return everything


def _known(stored: Collection[str], symbol: str) -> str:
    if symbol not in stored:
        raise ApiError(-1121, "Invalid symbol.")
    return symbol
