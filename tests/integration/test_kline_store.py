"""KlineStore: Binance's window rules, the LRU cache with its TTL, in-flight de-duplication."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from flows.domain.clock import ManualClock
from flows.domain.keys import KeySpace
from flows.domain.kline import Kline
from flows.storage.kline_store import KlineStore
from flows.storage.redis_klines import KlineWriter

T0 = 1_700_000_040_000


def _fill(redis_client: redis.Redis, keys: KeySpace, n: int = 20) -> None:
    writer = KlineWriter(redis_client, keys)
    for i in range(n):
        t = T0 + i * 60_000
        writer.add(
            "BTCUSDT",
            "1m",
            Kline(t, t + 59_999, 100 + i, 100 + i, 100 + i, 100 + i, 1, 1, 1, 0, 0),
            True,
        )
    writer.flush()


def test_window_rules(redis_client: redis.Redis, keys: KeySpace) -> None:
    _fill(redis_client, keys)
    store = KlineStore(redis_client, keys, ttl_s=0)
    opens = lambda rows: [r[0] for r in rows]  # noqa: E731
    every = [T0 + i * 60_000 for i in range(20)]
    assert opens(store.get_klines("BTCUSDT", "1m", limit=5)) == every[-5:]  # newest, oldest first
    assert opens(store.get_klines("BTCUSDT", "1m", start_ms=every[3], limit=4)) == every[3:7]
    assert opens(store.get_klines("BTCUSDT", "1m", start_ms=every[3] + 1, limit=2)) == every[4:6]
    assert opens(store.get_klines("BTCUSDT", "1m", end_ms=every[10], limit=3)) == every[8:11]
    assert (
        opens(store.get_klines("BTCUSDT", "1m", start_ms=every[2], end_ms=every[5])) == every[2:6]
    )
    assert store.get_klines("BTCUSDT", "1m", start_ms=every[5], end_ms=every[2]) == []
    assert store.get_klines("ETHUSDT", "1m") == []
    with pytest.raises(ValueError, match="between 1 and 1000"):
        store.get_klines("BTCUSDT", "1m", limit=1001)
    assert store.has_symbol("BTCUSDT") and not store.has_symbol("ETHUSDT")
    assert store.symbols() == {"BTCUSDT"}
    assert store.last_closed("BTCUSDT", "1m") == every[-1] and store.count("BTCUSDT", "1m") == 20


def test_cache_serves_repeats_until_the_ttl_and_evicts_least_recent(
    redis_client: redis.Redis, keys: KeySpace
) -> None:
    _fill(redis_client, keys)
    clock = ManualClock(0)
    store = KlineStore(redis_client, keys, cache_size=2, ttl_s=1.0, clock=clock)
    first = store.get_klines_json("BTCUSDT", "1m", limit=3)
    assert store.get_klines_json("BTCUSDT", "1m", limit=3) == first
    assert store.redis_calls == 1
    clock.advance(1_500)  # past the TTL
    store.get_klines_json("BTCUSDT", "1m", limit=3)
    assert store.redis_calls == 2
    store.get_klines_json("BTCUSDT", "1m", limit=4)
    store.get_klines_json("BTCUSDT", "1m", limit=5)  # evicts limit=3, the least recent
    assert store.redis_calls == 4
    store.get_klines_json("BTCUSDT", "1m", limit=3)
    assert store.redis_calls == 5


class _HeldStore(KlineStore):
    """Holds the first Redis read open until released, so concurrent requests overlap."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.entered = threading.Event()
        self.release = threading.Event()

    def _fetch(self, *args):  # type: ignore[no-untyped-def]
        self.entered.set()
        assert self.release.wait(10)
        return super()._fetch(*args)


def _until(condition, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    """Poll with a bounded wait."""
    done = threading.Event()
    for _ in range(int(timeout_s / 0.005)):
        if condition():
            return
        done.wait(0.005)
    raise AssertionError("condition not met in time")


def test_concurrent_identical_requests_share_one_redis_call(
    redis_client: redis.Redis, keys: KeySpace
) -> None:
    _fill(redis_client, keys)
    store = _HeldStore(redis_client, keys, ttl_s=0)  # no cache: only in-flight sharing
    with ThreadPoolExecutor(max_workers=6) as pool:
        first = pool.submit(store.get_klines, "BTCUSDT", "1m", None, None, 7)
        assert store.entered.wait(10)
        (future,) = store._inflight.values()
        others = [pool.submit(store.get_klines, "BTCUSDT", "1m", None, None, 7) for _ in range(5)]
        _until(lambda: len(future._condition._waiters) == 5)  # all five wait on the shared read
        store.release.set()
        results = [first.result(10)] + [f.result(10) for f in others]
    assert store.redis_calls == 1
    assert all(r == results[0] for r in results) and len(results[0]) == 7
    assert store._inflight == {}
    store.get_klines("BTCUSDT", "1m", limit=7)  # nothing in flight and no cache: a new call
    assert store.redis_calls == 2


def test_a_failed_read_is_raised_to_every_waiter_and_not_cached(keys: KeySpace) -> None:
    client = redis.Redis(unix_socket_path="/nonexistent/redis.sock", retry=None)
    store = KlineStore(client, keys, ttl_s=10)
    for _ in range(2):
        with pytest.raises(redis.ConnectionError):
            store.get_klines("BTCUSDT", "1m")
    assert store.redis_calls == 2
