"""The live flow's heartbeat in Redis, for the dashboard's Status page and `klineflow status`.

Every `every_s` a thread rewrites one hash (KeySpace.heartbeat): the time, the flow's
counters, and each feed connection's state (connecting / connected / reconnecting, then
disconnected when the flow stops) with the age of its last message. The hash expires a few
periods after the last write, so a flow that died without a word shows as gone.

In a cluster each process writes its own hash (KeySpace.heartbeat_of(process)) and then
rewrites the flow's hash from every member's: counters summed, feeds listed as
"process/connection", `processes` and `processes_seen`, and state "degraded" while a member's
hash is missing or not running. Any live member keeps it fresh, so readers need not know the
cluster's shape.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from typing import Any

import redis

from flows.cluster import SINGLE, ClusterPlace
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
                "buffered_frames": part.buffered_frames,
                "backfilling": part.backfilling,
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
        place: ClusterPlace = SINGLE,
    ) -> None:
        super().__init__(name="klineflow-heartbeat", daemon=True)
        self._place = place
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
            "implausible": s.dead_letters["implausible"],
            "foreign_batches": s.foreign_batches,
            "klines_amended": s.klines_amended,
            "resumes": s.resumes,
            "backfill_retries": s.backfill_retries,
            "store_repairs": s.store_repairs,
            "waiting_for": ",".join(sorted(s.waiting_for)),
            "klines_closed": json.dumps(dict(s.klines_closed)),
            "feeds": json.dumps(feeds(self._source, stopped)),
        }
        place = self._place
        if place.processes == 1:
            self._write(self._keys.heartbeat, fields)
            return
        self._write(self._keys.heartbeat_of(place.process_id), fields)
        pipe = self._client.pipeline()
        for i in range(place.processes):
            pipe.hgetall(self._keys.heartbeat_of(i))
        members = [
            ({k.decode(): v.decode() for k, v in raw.items()} if raw else None)
            for raw in pipe.execute()
        ]
        self._write(self._keys.heartbeat, combine(members, self._clock.now_ms()))

    def _write(self, key: str, fields: dict[str, Any]) -> None:
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


_SUMMED = ("trades_read", "trades_backfilled", "feed_reconnects", "gaps", "duplicates", "late",
           "implausible", "foreign_batches", "klines_amended", "resumes", "backfill_retries",
           "store_repairs")  # fmt: skip


def combine(members: list[dict[str, str] | None], now_ms: int) -> dict[str, Any]:
    """The flow's heartbeat from its members' (None: a member whose hash is missing)."""
    seen = [(i, m) for i, m in enumerate(members) if m is not None]
    closed: dict[str, int] = {}
    all_feeds: list[dict[str, Any]] = []
    for i, m in seen:
        for interval, n in json.loads(m.get("klines_closed", "{}")).items():
            closed[interval] = closed.get(interval, 0) + int(n)
        for f in json.loads(m.get("feeds", "[]")):
            all_feeds.append(dict(f, connection=f"{i}/{f['connection']}", process=i))
    states = {m.get("state") for _, m in seen}
    if not seen:
        state = "stopped"
    elif len(seen) == len(members) and states == {"running"}:
        state = "running"
    elif states == {"stopped"}:
        state = "stopped"
    else:
        state = "degraded"
    out: dict[str, Any] = {
        "ts_ms": now_ms,
        "started_ms": min((int(m["started_ms"]) for _, m in seen), default=now_ms),
        "state": state,
        "processes": len(members),
        "processes_seen": len(seen),
        "klines_closed": json.dumps(closed),
        "feeds": json.dumps(all_feeds),
    }
    for name in _SUMMED:
        out[name] = sum(int(m.get(name, 0)) for _, m in seen)
    waiting = {w for _, m in seen for w in m.get("waiting_for", "").split(",") if w}
    out["waiting_for"] = ",".join(sorted(waiting))
    return out
