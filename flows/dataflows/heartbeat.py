"""The live flow's heartbeat in Redis, for the dashboard's Status page and `klineflow status`.

Every `every_s` a thread rewrites one hash (KeySpace.heartbeat) with a
``flows.app.health.FlowHeartbeat`` (the record every reader decodes): the time, the flow's
counters, and each feed connection's state (connecting / connected / reconnecting, then
disconnected when the flow stops) with the age of its last message. The hash expires a few
periods after the last write, so a flow that died without a word shows as gone.

In a cluster each process writes its own hash (KeySpace.heartbeat_of(process)) and then
rewrites the flow's hash from every member's (``flows.app.health.combine``): counters summed,
feeds listed as "process/connection", the members missing or stopped named, and state
"degraded" while one is. Any live member keeps it fresh, so readers need not know the
cluster's shape.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

import redis

from flows.app.health import FlowHeartbeat, HeartbeatError, combine
from flows.cluster import SINGLE, ClusterPlace
from flows.domain.clock import SYSTEM_CLOCK, Clock
from flows.domain.keys import KeySpace
from flows.domain.stats import RunStats
from flows.sources.live_source import LiveSource

log = logging.getLogger(__name__)


def feeds(source: LiveSource, stopped: bool = False) -> list[dict[str, Any]]:
    """Each feed connection's state now (what the metrics read, and the heartbeat carries)."""
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

    def beat(self, stopped: bool = False) -> FlowHeartbeat:
        """Write the heartbeat now (and in a cluster the flow's, combined); returns what the
        flow's hash says."""
        own = FlowHeartbeat.of_run(self._stats, feeds(self._source, stopped),
                                   self._clock.now_ms(), self.started_ms, stopped)  # fmt: skip
        place = self._place
        if place.processes == 1:
            self._write(self._keys.heartbeat, own)
            return own
        self._write(self._keys.heartbeat_of(place.process_id), own)
        pipe = self._client.pipeline()
        for i in range(place.processes):
            pipe.hgetall(self._keys.heartbeat_of(i))
        members = [_member(i, raw) for i, raw in enumerate(pipe.execute())]
        flow = combine(members, self._clock.now_ms())
        self._write(self._keys.heartbeat, flow)
        return flow

    def _write(self, key: str, beat: FlowHeartbeat) -> None:
        pipe = self._client.pipeline()
        pipe.delete(key)
        pipe.hset(key, mapping=beat.encode())  # type: ignore[arg-type]
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


def _member(process: int, raw: dict[bytes, bytes]) -> FlowHeartbeat | None:
    """A member's own heartbeat; None when missing or unreadable (counted as missing)."""
    if not raw:
        return None
    try:
        return FlowHeartbeat.decode(raw)
    except HeartbeatError as exc:
        log.warning("heartbeat of process=%s unreadable: %s", process, exc)
        return None
