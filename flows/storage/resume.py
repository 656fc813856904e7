"""Where the live flow continues each symbol after any start: what Redis holds.

A restart (a crash at any moment, a lost local state, a cluster of another size) continues
each symbol from its newest closed kline in Redis, not from process-local state: the next
base kline opens right after it, the previous close is its close, and each longer
interval's open kline is rebuilt from the closed klines that tile it (see
`flows.klines.builder.SymbolKlines.resumed`). Trades are then fetched from that point.

Before anything closed, the *origin* recorded at the symbol's first start says where to
begin, so a crash in the first seconds restarts from the same point.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import redis

from flows.domain.intervals import INTERVALS, Interval
from flows.domain.keys import KeySpace
from flows.domain.kline import Kline, decode_member, kline_of_row


@dataclass(frozen=True, slots=True)
class StoredStart:
    """Where a symbol continues: the base kline opening at `next_open_ms` is the first one
    to build; `prev_close` is the close before it (0: unknown); `stored` the closed klines
    that tile the longer intervals' open klines."""

    next_open_ms: int
    prev_close: int
    stored: dict[str, list[Kline]] = field(default_factory=dict)
    from_origin: bool = False  # nothing closed yet: the origin of the first start


def tile_ranges(intervals: Sequence[str], next_open_ms: int) -> dict[str, tuple[int, int]]:
    """For each interval, the open times [first, end) of the stored klines a resume at
    `next_open_ms` needs: those inside the open kline of the next longer interval."""
    ordered = sorted((INTERVALS[i] for i in intervals), key=lambda i: i.length_ms)
    out: dict[str, tuple[int, int]] = {}
    for index, piece in enumerate(ordered):
        longer: list[Interval] = ordered[index + 1 :]
        if not longer:
            continue
        first = min(level.open_time(next_open_ms) for level in longer)
        out[piece.name] = (first, next_open_ms)
    return out


class RedisResume:
    """Reads a symbol's resume point from Redis and records origins (one client, made on
    first use; methods run on the source's worker threads)."""

    def __init__(self, url: str, keys: KeySpace, intervals: Sequence[str]) -> None:
        self._url = url
        self._keys = keys
        self._intervals = tuple(intervals)
        self._smallest = min((INTERVALS[i] for i in intervals), key=lambda i: i.length_ms)
        self._client: redis.Redis | None = None

    def _redis(self) -> redis.Redis:
        if self._client is None:
            self._client = redis.Redis.from_url(self._url, socket_timeout=30)
        return self._client

    def read(self, symbol: str) -> StoredStart | None:
        """The resume point, or None when nothing is stored and no origin was recorded."""
        keys, client = self._keys, self._redis()
        smallest = self._smallest
        pipe = client.pipeline(transaction=False)
        pipe.get(keys.last_closed(symbol, smallest.name))
        pipe.get(keys.origin(symbol))
        marker, origin = pipe.execute()
        if marker is None:
            if origin is None:
                return None
            return StoredStart(int(origin), 0, {}, from_origin=True)
        last_open = int(marker)
        next_open = smallest.next_open(last_open)
        ranges = tile_ranges(self._intervals, next_open)
        ranges.setdefault(smallest.name, (last_open, next_open))
        first, end = ranges[smallest.name]
        ranges[smallest.name] = (min(first, last_open), end)
        names = sorted(ranges)
        pipe = client.pipeline(transaction=False)
        for name in names:
            lo, hi = ranges[name]
            pipe.zrangebyscore(keys.klines(symbol, name), lo, hi - 1)
        stored: dict[str, list[Kline]] = {}
        for name, members in zip(names, pipe.execute(), strict=True):
            # only klines closed before the resume point (an open kline may be stored too)
            stored[name] = [
                k
                for k in (kline_of_row(decode_member(m)) for m in members)
                if INTERVALS[name].next_open(k.open_ms) <= next_open
            ]
        last = [k for k in stored.get(smallest.name, []) if k.open_ms == last_open]
        prev_close = last[0].close if last else 0
        return StoredStart(next_open, prev_close, stored)

    def claim_origin(self, symbol: str, origin_ms: int) -> int:
        """Record where the first start of `symbol` begins, unless one is recorded already;
        returns the origin in force."""
        client = self._redis()
        key = self._keys.origin(symbol)
        if client.set(key, origin_ms, nx=True):
            return origin_ms
        current = client.get(key)
        return int(current) if current is not None else origin_ms

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
