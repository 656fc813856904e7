"""Klines made up for pages that need many symbols (the recordings hold a few): a day of 1m
klines per symbol, written through the flow's own Redis writer, with seeded random prices
and volumes, so every symbol has its own 24h figures."""

from __future__ import annotations

import random

import redis

from flows.domain.keys import KeySpace
from flows.domain.kline import Kline
from flows.storage.redis_klines import KlineWriter

MINUTE_MS = 60_000


def day_of_klines(rng: random.Random, newest_open_ms: int, count: int = 1440) -> list[Kline]:
    """`count` consecutive 1m klines ending with the one opening at newest_open_ms (a random
    walk of prices, random volumes), oldest first; amounts in 1e-8 units."""
    price = rng.randint(1_000_000, 5_000_000_000)
    scale = rng.choice([1, 10, 100, 1000])  # the symbols' volumes differ by orders
    out = []
    for i in range(count):
        open_ms = newest_open_ms - (count - 1 - i) * MINUTE_MS
        close = max(1, price + rng.randint(-price // 100, price // 100))
        high, low = max(price, close), min(price, close)
        volume = rng.randint(1, 1000) * scale * 100_000_000
        quote = volume * close // 100_000_000
        out.append(Kline(open_ms, open_ms + MINUTE_MS - 1, price, high, low, close, volume, quote,
                         rng.randint(1, 50), volume // 2, quote // 2))  # fmt: skip
        price = close
    return out


def write_symbols(
    redis_url: str, keys: KeySpace, symbols: list[str], newest_open_ms: int, seed: int = 7
) -> dict[str, list[Kline]]:
    """A day of 1m klines of each symbol (the newest one still forming); what was written."""
    rng = random.Random(seed)
    client = redis.Redis.from_url(redis_url)
    writer = KlineWriter(client, keys=keys)
    written = {}
    for symbol in symbols:
        klines = day_of_klines(rng, newest_open_ms)
        writer.add_many(symbol, [("1m", k) for k in klines[:-1]], closed=True)
        writer.add(symbol, "1m", klines[-1], closed=False)
        written[symbol] = klines
    writer.flush()
    client.close()
    return written
