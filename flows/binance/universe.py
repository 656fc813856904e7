"""Which symbols to follow, and how to spread their streams over connections (pure, no I/O).

`select_universe` works on what ``GET /api/v3/exchangeInfo`` and ``GET /api/v3/ticker/24hr``
return. Either the caller names the symbols (they are checked against the exchange), or the
top N markets of one quote asset are picked by 24h quote volume, leaving out:

- symbols whose status is not ``TRADING`` (``BREAK`` markets send no data at all);
- **stablecoin bases** (`DEFAULT_STABLECOINS`): a USDC/USDT market is a peg, not a market
  worth klines. Fiat currencies (EUR, GBP, AUD, TRY, BRL...) are *not* stablecoins and are
  kept; so is PAXG, a gold token whose price moves;
- **leveraged tokens** (BTCUP, ETHDOWN, XRPBULL, BNBBEAR...). Binance named them
  ``<base><UP|DOWN|BULL|BEAR>``. A name ending in one of those suffixes is only taken for a
  leveraged token when what precedes the suffix is itself a base asset listed on the exchange
  (in any status, against any quote): BTCUP goes (BTC is listed), JUP stays ("J" is not a
  base asset). BTC's own first leveraged tokens were called plain BULL and BEAR; those two
  names are in `LEGACY_LEVERAGED_BASES`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, Final

# USD-pegged stablecoins that have been base assets on Binance spot (some delisted since).
DEFAULT_STABLECOINS: Final = frozenset(
    {
        "USDC",  # Circle
        "BUSD",  # Binance USD (Paxos), wound down 2023-2024
        "TUSD",  # TrueUSD
        "FDUSD",  # First Digital USD
        "USDP",  # Pax Dollar (the renamed PAX)
        "PAX",  # Paxos Standard, before the rename
        "DAI",  # MakerDAO
        "UST",  # TerraUSD (collapsed 2022)
        "USDD",  # Tron
        "SUSD",  # Synthetix sUSD
        "USDS",  # Stably USD (2019 listing)
        "USDSB",  # Stably USD, BEP2
        "PYUSD",  # PayPal USD
        "USDE",  # Ethena USDe
        "USD1",  # World Liberty Financial
    }
)
LEVERAGED_SUFFIXES: Final = ("UP", "DOWN", "BULL", "BEAR")
LEGACY_LEVERAGED_BASES: Final = frozenset({"BULL", "BEAR"})
MAX_STREAMS_PER_CONNECTION: Final = 1024  # Binance's limit (BINANCE.md, A1)
DEFAULT_STREAMS_PER_CONNECTION: Final = 200


class UniverseError(ValueError):
    """Symbols asked for that the exchange does not list, or does not trade now."""

    def __init__(self, message: str, unknown: Sequence[str], not_trading: Sequence[str]) -> None:
        super().__init__(message)
        self.unknown = list(unknown)
        self.not_trading = list(not_trading)


def select_universe(
    exchange_info: Mapping[str, Any],
    tickers: Sequence[Mapping[str, Any]],
    *,
    top: int | None,
    quote: str = "USDT",
    symbols: Sequence[str] | None = None,
    exclude_bases: Iterable[str] = DEFAULT_STABLECOINS,
    exclude_leveraged: bool = True,
) -> list[str]:
    """The symbols to follow, upper case.

    With `symbols`: exactly those (duplicates dropped, order kept), after checking each one is
    listed and ``TRADING``; `top`, `quote` and the exclusions do not apply to names asked for.
    Otherwise the ``TRADING`` symbols quoted in `quote`, minus excluded bases and leveraged
    tokens, by 24h ``quoteVolume`` descending (ties by symbol; a symbol missing from
    `tickers` counts as volume 0), the first `top` of them (all of them when `top` is None).
    """
    listed: dict[str, Mapping[str, Any]] = {
        str(s["symbol"]).upper(): s for s in exchange_info.get("symbols", ())
    }
    if symbols is not None:
        return _check_symbols(listed, symbols)
    if top is not None and top < 1:
        raise ValueError(f"top must be at least 1, got {top}")
    quote = quote.upper()
    excluded = frozenset(b.upper() for b in exclude_bases)
    bases = frozenset(str(s.get("baseAsset", "")).upper() for s in listed.values())
    candidates = [
        name
        for name, s in listed.items()
        if s.get("status") == "TRADING"
        and str(s.get("quoteAsset", "")).upper() == quote
        and str(s.get("baseAsset", "")).upper() not in excluded
        and not (exclude_leveraged and is_leveraged_token(str(s.get("baseAsset", "")), bases))
    ]
    volume = _quote_volumes(tickers)
    zero = Decimal(0)
    candidates.sort(key=lambda name: (-volume.get(name, zero), name))
    return candidates if top is None else candidates[:top]


def is_leveraged_token(base: str, listed_bases: Iterable[str]) -> bool:
    """True for a leveraged-token base: `<listed base><UP|DOWN|BULL|BEAR>`, or BULL/BEAR."""
    base = base.upper()
    if base in LEGACY_LEVERAGED_BASES:
        return True
    known = listed_bases if isinstance(listed_bases, frozenset | set) else set(listed_bases)
    for suffix in LEVERAGED_SUFFIXES:
        if base.endswith(suffix) and len(base) > len(suffix):
            underlying = base[: -len(suffix)]
            if underlying in known:
                return True
    return False


def _check_symbols(listed: Mapping[str, Mapping[str, Any]], symbols: Sequence[str]) -> list[str]:
    wanted = list(dict.fromkeys(s.strip().upper() for s in symbols if s.strip()))
    if not wanted:
        raise ValueError("no symbols given")
    unknown = [s for s in wanted if s not in listed]
    not_trading = [s for s in wanted if s in listed and listed[s].get("status") != "TRADING"]
    if not unknown and not not_trading:
        return wanted
    trading = sorted(n for n, s in listed.items() if s.get("status") == "TRADING")
    parts: list[str] = []
    if unknown:
        described = []
        for name in unknown:
            close = difflib.get_close_matches(name, trading, n=3, cutoff=0.6)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            described.append(f"{name}{hint}")
        parts.append("not listed on the exchange: " + "; ".join(described))
    if not_trading:
        parts.append(
            "not trading now: "
            + ", ".join(f"{name} (status {listed[name].get('status')})" for name in not_trading)
        )
    raise UniverseError("; ".join(parts), unknown, not_trading)


def _quote_volumes(tickers: Sequence[Mapping[str, Any]]) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for t in tickers:
        try:
            out[str(t["symbol"]).upper()] = Decimal(str(t.get("quoteVolume", "0")))
        except (KeyError, InvalidOperation):
            continue  # a malformed ticker ranks as volume 0
    return out


def stream_names(symbols: Iterable[str], kind: str = "aggTrade") -> list[str]:
    """Combined-stream names, symbol in lower case: ``btcusdt@aggTrade``."""
    if not kind or "@" in kind or "/" in kind:
        raise ValueError(f"bad stream kind {kind!r}")
    return [f"{s.strip().lower()}@{kind}" for s in symbols]


def partition_streams(
    streams: Sequence[str],
    per_connection: int = DEFAULT_STREAMS_PER_CONNECTION,
    max_per_connection: int = MAX_STREAMS_PER_CONNECTION,
) -> list[list[str]]:
    """Streams in groups of at most `per_connection`, one group per connection.

    Duplicates are dropped (order kept). Binance allows at most 1024 streams per connection,
    so `max_per_connection` may not exceed it, nor `per_connection` exceed that.
    """
    if not 1 <= max_per_connection <= MAX_STREAMS_PER_CONNECTION:
        raise ValueError(
            f"max_per_connection must be 1..{MAX_STREAMS_PER_CONNECTION} (Binance's limit), "
            f"got {max_per_connection}"
        )
    if not 1 <= per_connection <= max_per_connection:
        raise ValueError(f"per_connection must be 1..{max_per_connection}, got {per_connection}")
    unique = list(dict.fromkeys(streams))
    bad = [s for s in unique if not s or "/" in s or "@" not in s]
    if bad:
        raise ValueError(f"not stream names: {bad[:5]}")
    return [unique[i : i + per_connection] for i in range(0, len(unique), per_connection)]
