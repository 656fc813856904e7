"""Stored klines as the command line reads them: one reader of the Redis format
(``flows.storage.kline_store``), with a symbol nobody stored told apart from an empty range."""

from __future__ import annotations

from flows.app.database import redis_url
from flows.app.errors import NothingUsable
from flows.app.traders import check_interval
from flows.domain.keys import KeySpace
from flows.settings import Settings


def read_klines(
    settings: Settings,
    symbol: str,
    interval: str,
    start: int | None = None,
    end: int | None = None,
    limit: int = 500,
) -> list[list[object]]:
    """Binance's REST arrays of `symbol`'s `interval` klines in [start, end] (open times),
    at most `limit`; NothingUsable when the symbol has no klines stored at all."""
    from flows.services import connect_redis
    from flows.storage.kline_store import KlineStore

    check_interval(interval)
    store = KlineStore(connect_redis(redis_url(settings)), KeySpace(settings.namespace), ttl_s=0)
    wanted = symbol.strip().upper()
    rows: list[list[object]] = store.get_klines(wanted, interval, start, end, limit)
    if not rows and not store.has_symbol(wanted):
        where = f" in namespace {settings.namespace!r}" if settings.namespace else ""
        raise NothingUsable(f"no klines stored for symbol {wanted!r}{where}",
                            "replay a file or run the live flow first")  # fmt: skip
    return rows
