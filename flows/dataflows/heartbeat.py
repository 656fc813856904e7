"""The live flow's heartbeat in Redis, for the dashboard's Status page and `klineflow status`.

Every `every_s` a thread rewrites one hash (KeySpace.heartbeat): the time, the flow's
counters, and each feed connection's state (connecting / connected / reconnecting, then
disconnected when the flow stops) with the age of its last message. The hash expires a few
periods after the last write, so a flow that died without a word shows as gone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from typing import Any

import redis

from flows.domain.clock import SYSTEM_CLOCK, Clock
from flows.domain.keys import KeySpace
from flows.domain.stats import RunStats
from flows.sources.live_source import LiveSource

log = logging.getLogger(__name__)


def feeds(source: LiveSource, stopped: bool = False) -> list[dict[str, Any]]:
    out = []
    for index, part in enumerate(list(source.partitions)):
        feed = part.feed
        state, age = feed.state()
        out.append(
            {
                "connection": index,
                "streams": len(feed.streams),
                "state": "disconnected" if stopped else state,
                "last_message_age_s": None if age is None else round(age, 3),
                "reconnects": feed.stats.reconnects,
                "frames": feed.stats.frames,
            }
        )
    return out


class Heartbeat(threading.Thread):
    def __init__(
        self,
        redis_url: str,
        keys: KeySpace,
        source: LiveSource,
        stats: RunStats,
        every_s: float = 2.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        super().__init__(name="klineflow-heartbeat", daemon=True)
        self._client = redis.Redis.from_url(redis_url, socket_timeout=5)
        self._keys, self._source, self._stats = keys, source, stats
        self._every_s, self._clock = every_s, clock
        self._stop = threading.Event()
        self.started_ms = clock.now_ms()

    def beat(self, stopped: bool = False) -> None:
        s = self._stats
        fields = {
            "ts_ms": self._clock.now_ms(),
            "started_ms": self.started_ms,
            "state": "stopped" if stopped else "running",
            "trades_read": s.trades_read,
            "trades_backfilled": s.trades_backfilled,
            "feed_reconnects": s.feed_reconnects,
            "gaps": s.gaps,
            "duplicates": s.duplicates,
            "late": s.dead_letters["late"],
            "klines_closed": json.dumps(dict(s.klines_closed)),
            "feeds": json.dumps(feeds(self._source, stopped)),
        }
        key = self._keys.heartbeat
        pipe = self._client.pipeline()
        pipe.delete(key)
        pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
        pipe.expire(key, max(10, int(self._every_s * 5)))
        pipe.execute()

    def run(self) -> None:
        while not self._stop.wait(self._every_s):
            try:
                self.beat()
            except redis.RedisError as exc:  # Redis away: the next beat tries again
                log.warning("heartbeat not written: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(redis.RedisError):
            self.beat(stopped=True)
        self._client.close()
