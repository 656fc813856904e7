"""The kline writer against a Redis that goes away or loses data (real servers):

- `flush_patiently` waits for a stopped Redis and writes everything once it is back;
- a Redis that lost acknowledged writes is noticed (the writer's sentinel key is gone), the
  journal of recent closed klines is written again, and a data-quality record says so;
- `RedisResume` reads back where a symbol continues: the base kline after its newest closed
  one, its close, and the stored klines that tile the longer intervals' open klines.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import redis

from flows.domain.intervals import INTERVALS
from flows.domain.keys import KeySpace
from flows.domain.kline import Trade
from flows.domain.stats import RunStats
from flows.klines.builder import SymbolKlines, build_klines
from flows.services import EmbeddedRedis
from flows.sinks.redis_sink import flush_patiently
from flows.storage.redis_klines import KlineWriter
from flows.storage.resume import RedisResume
from tests.integration.test_live import _wait

M = 60_000
T0 = 1_704_067_200_000


def _trades(minutes: int) -> list[Trade]:
    return [
        (i, i, 100_000 + i % 17, 10 + i, T0 + i * 7_000, i % 2 == 0) for i in range(minutes * 8)
    ]


def _members(client: redis.Redis, keys: KeySpace, interval: str) -> list[int]:
    return [
        int(s) for _, s in client.zrange(keys.klines("BTCUSDT", interval), 0, -1, withscores=True)
    ]


def test_a_stopped_redis_is_waited_for_and_gets_everything(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis")
    url = server.start()
    keys = KeySpace("w")
    writer = KlineWriter(redis.Redis.from_url(url, socket_timeout=2), keys, journal=8)
    klines = build_klines(_trades(5), ("1m",))["1m"]
    writer.add_many("BTCUSDT", (("1m", k) for k in klines[:2]), closed=True)
    writer.flush()
    os.kill(int((tmp_path / "redis" / "redis.pid").read_text()), signal.SIGKILL)
    stats = RunStats()
    writer.add_many("BTCUSDT", (("1m", k) for k in klines[2:]), closed=True)
    done = threading.Event()
    thread = threading.Thread(target=lambda: (flush_patiently(writer.flush, stats), done.set()))
    thread.start()
    assert _wait(lambda: "redis" in stats.waiting_for, 30)  # it waits, it does not fail
    server.start()  # the append-only file brings the first two back
    assert done.wait(60)
    thread.join()
    client = redis.Redis.from_url(url)
    assert _members(client, keys, "1m") == [k.open_ms for k in klines]
    assert stats.store_waits["redis"] == 1 and stats.waiting_for == set()
    assert writer.repairs == 0  # nothing acknowledged was lost
    server.stop()


def test_a_redis_that_lost_data_gets_the_journal_again(
    redis_client: redis.Redis, redis_url: str, keys: KeySpace
) -> None:
    writer = KlineWriter(redis.Redis.from_url(redis_url), keys, journal=3)
    klines = build_klines(_trades(7), ("1m",))["1m"]
    for k in klines[:5]:
        writer.add("BTCUSDT", "1m", k, closed=True)
        writer.flush()
    # the server loses everything of this namespace (a restart without persistence)
    redis_client.delete(*redis_client.keys(f"{keys.namespace}:*"))
    writer.add("BTCUSDT", "1m", klines[5], closed=True)
    writer.flush()
    assert writer.repairs == 1
    assert _members(redis_client, keys, "1m") == [k.open_ms for k in klines[3:6]]  # the journal
    assert int(redis_client.get(keys.last_closed("BTCUSDT", "1m"))) == klines[5].open_ms  # type: ignore[arg-type]
    notes = [f for _, f in redis_client.xrange(keys.data_quality)]
    assert [n[b"what"] for n in notes] == [b"store_lost"]
    assert int(notes[0][b"open_ms"]) == klines[3].open_ms  # older ones may be missing
    writer.add("BTCUSDT", "1m", klines[6], closed=True)
    writer.flush()
    assert writer.repairs == 1  # the sentinel is back: no second repair


def test_a_resume_point_rebuilds_the_open_klines_from_what_is_stored(
    redis_client: redis.Redis, redis_url: str, keys: KeySpace
) -> None:
    intervals = ("1m", "3m", "15m")
    trades = _trades(40)
    want = build_klines(trades, intervals)
    cut = T0 + 22 * M  # the builder continues at 00:22: 3m open at 00:21, 15m at 00:15
    writer = KlineWriter(redis.Redis.from_url(redis_url), keys)
    for name, ks in want.items():
        closed = [k for k in ks if INTERVALS[name].next_open(k.open_ms) <= cut]
        writer.add_many("BTCUSDT", ((name, k) for k in closed), closed=True)
    open_3m = next(k for k in want["3m"] if k.open_ms == T0 + 21 * M)
    writer.add("BTCUSDT", "3m", open_3m, closed=False)  # an open kline is stored too: not used
    writer.flush()
    start = RedisResume(redis_url, keys, intervals).read("BTCUSDT")
    assert start is not None and not start.from_origin
    assert start.next_open_ms == cut
    assert start.prev_close == want["1m"][21].close
    sk = SymbolKlines.resumed(intervals, start.next_open_ms, start.prev_close, start.stored)
    closed: list[tuple[str, object]] = []
    sk.process([t for t in trades if t[4] >= cut], closed)  # type: ignore[arg-type]
    got = {(n, k.open_ms): k for n, k in [*closed, *sk.open_klines()]}  # type: ignore[attr-defined]
    for name, ks in want.items():
        for k in ks:
            if k.open_ms + INTERVALS[name].length_ms > cut:  # open at the cut, or later
                assert got[(name, k.open_ms)].to_rest() == k.to_rest(), (name, k.open_ms)
    assert RedisResume(redis_url, keys, intervals).read("ETHUSDT") is None  # nothing stored
    assert RedisResume(redis_url, keys, intervals).claim_origin("ETHUSDT", T0) == T0
    assert RedisResume(redis_url, keys, intervals).claim_origin("ETHUSDT", T0 + M) == T0
    origin = RedisResume(redis_url, keys, intervals).read("ETHUSDT")
    assert origin is not None and origin.from_origin and origin.next_open_ms == T0
