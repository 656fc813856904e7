"""Read klines back from Redis: the one read API used by the CLI, the HTTP endpoint and the
dashboard.

Window rules follow Binance's /api/v3/klines: with neither bound, the newest `limit`
klines; with only `start_ms`, the oldest from there on; with only `end_ms`, the newest up to
it; with both, the oldest from `start_ms` not past `end_ms`. Results are oldest first.

Identical requests are served from a small LRU cache for `ttl_s` seconds (the open kline
changes, so entries are short-lived), and concurrent identical requests share one Redis
call (in-flight de-duplication).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import Future
from typing import Any

import msgspec
import redis

from flows.domain.clock import SYSTEM_CLOCK, Clock
from flows.domain.keys import KeySpace

MAX_LIMIT = 1000
DEFAULT_LIMIT = 500

_CacheKey = tuple[str, str, int | None, int | None, int]
_rows_decoder = msgspec.json.Decoder(list[list[Any]])


class KlineStore:
    def __init__(
        self,
        client: redis.Redis,
        keys: KeySpace = KeySpace(),
        cache_size: int = 1024,
        ttl_s: float = 1.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._client = client
        self._keys = keys
        self._cache_size = cache_size
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: OrderedDict[_CacheKey, tuple[float, bytes]] = OrderedDict()
        self._inflight: dict[_CacheKey, Future[bytes]] = {}
        self.redis_calls = 0  # how many requests reached Redis (for tests and metrics)

    # -- public API --------------------------------------------------------------------
    def get_klines(
        self,
        symbol: str,
        interval: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = DEFAULT_LIMIT,
    ) -> list[list[Any]]:
        """Klines as 12-element REST arrays, oldest first."""
        return _rows_decoder.decode(self.get_klines_json(symbol, interval, start_ms, end_ms, limit))

    def get_klines_json(
        self,
        symbol: str,
        interval: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = DEFAULT_LIMIT,
    ) -> bytes:
        """The same, as the JSON body Binance would send."""
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
        key: _CacheKey = (symbol, interval, start_ms, end_ms, limit)
        now = self._clock.monotonic_s()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] > now:
                self._cache.move_to_end(key)
                return hit[1]
            future = self._inflight.get(key)
            owner = future is None
            if future is None:
                future = Future()
                self._inflight[key] = future
        if not owner:
            return future.result()
        try:
            body = self._fetch(*key)
        except BaseException as e:
            with self._lock:
                del self._inflight[key]
            future.set_exception(e)
            raise
        with self._lock:
            del self._inflight[key]
            if self._ttl_s > 0:
                self._cache[key] = (now + self._ttl_s, body)
                self._cache.move_to_end(key)
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        future.set_result(body)
        return body

    def symbols(self) -> set[str]:
        members: set[bytes] = self._client.smembers(self._keys.symbols)  # type: ignore[assignment]
        return {m.decode() for m in members}

    def ping(self) -> bool:
        """Whether Redis answers (raises redis.RedisError when it does not)."""
        return bool(self._client.ping())

    def has_symbol(self, symbol: str) -> bool:
        return bool(self._client.sismember(self._keys.symbols, symbol))

    def last_closed(self, symbol: str, interval: str) -> int | None:
        value = self._client.get(self._keys.last_closed(symbol, interval))
        return int(value) if value is not None else None

    def count(self, symbol: str, interval: str) -> int:
        return int(self._client.zcard(self._keys.klines(symbol, interval)))

    # -- Redis -------------------------------------------------------------------------
    def _fetch(
        self, symbol: str, interval: str, start_ms: int | None, end_ms: int | None, limit: int
    ) -> bytes:
        self.redis_calls += 1
        zkey = self._keys.klines(symbol, interval)
        hi: int | str = end_ms if end_ms is not None else "+inf"
        members: list[bytes]
        if start_ms is not None:
            members = self._client.zrangebyscore(zkey, start_ms, hi, start=0, num=limit)  # type: ignore[assignment]
        else:
            newest: list[bytes] = self._client.zrevrangebyscore(
                zkey, hi, "-inf", start=0, num=limit
            )  # type: ignore[assignment]
            members = newest[::-1]
        return b"[" + b",".join(members) + b"]"
