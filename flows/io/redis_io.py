"""Redis endpoints: klines in sorted sets (`flows.storage.redis_klines.KlineWriter`, the
layout the dashboard and the API read), and reports in the operator's streams.

Reports are written once: each carries a digest of its fields, and a report whose digest is
among the recent ones (as many as the streams keep) is not added again, so a batch
re-delivered after a restart leaves the streams as they were.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Final, Self

import redis

from flows.domain import defaults
from flows.domain.deadletter import DeadLetter
from flows.domain.keys import KeySpace
from flows.domain.stats import RunStats
from flows.io.contracts import ContractEnv, KlineRecord, KlineSink, Report, ReportSink
from flows.sinks.redis_sink import flush_patiently
from flows.sources.items import GapReport
from flows.storage.redis_klines import KlineWriter, RetentionPolicy


class _OnRedis:
    """What both Redis endpoints hold: a client, the key space, the run's counters."""

    def __init__(self, url: str, keys: KeySpace, stats: RunStats | None = None) -> None:
        self._client = redis.Redis.from_url(url, socket_timeout=30)
        self._keys = keys
        self._stats = stats if stats is not None else RunStats()

    def close(self) -> None:
        self._client.close()

    @classmethod
    def for_contract(cls, env: ContractEnv) -> Self:
        return cls(env.redis_url, KeySpace(env.namespace))


class RedisKlines(_OnRedis, KlineSink):
    """Klines into `klines:<symbol>:<interval>` (one MULTI/EXEC per batch; a record replaces
    the member of the same open time), waiting for Redis while it is away."""

    def __init__(
        self,
        url: str,
        keys: KeySpace = KeySpace(),
        retention: RetentionPolicy | None = None,
        stats: RunStats | None = None,
    ) -> None:
        super().__init__(url, keys, stats)
        self._writer = KlineWriter(self._client, keys=keys,
                                   retention=retention or RetentionPolicy())  # fmt: skip

    def write_batch(self, records: Sequence[KlineRecord]) -> None:
        add = self._writer.add
        for r in records:
            add(r.symbol, r.interval, r.kline, r.closed)
        flush_patiently(self._writer.flush, self._stats)

    def contents(self) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        pattern = self._keys.klines("*", "*")
        prefix = len(self._keys.klines("", ""))  # "klines::" and the namespace
        for name in sorted(self._client.scan_iter(match=pattern, count=1000)):
            key = name.decode()
            symbol, _, interval = key[prefix - 1 :].partition(":")
            if symbol in ("last_closed", "origin", "gaps", "symbols", "closed"):
                continue
            scored: list[tuple[bytes, float]] = self._client.zrange(name, 0, -1, withscores=True)  # type: ignore[assignment]  # sync client
            for member, score in scored:
                out[(symbol, interval, int(score))] = member
            last = self._client.get(self._keys.last_closed(symbol, interval))
            out[("last_closed", symbol, interval)] = last
        return out


_ADD_ONCE: Final = """
-- KEYS: digests zset, stream; ARGV: maxlen, digest, then field, value pairs
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then return 0 end
local n = redis.call('INCR', KEYS[1] .. ':n')
redis.call('ZADD', KEYS[1], n, ARGV[2])
local keep = tonumber(ARGV[1])
if redis.call('ZCARD', KEYS[1]) > keep then
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -keep - 1)
end
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', keep, '*', unpack(fields))
return 1
"""


class RedisReports(_OnRedis, ReportSink):
    """Dead letters into `klineflow:dead_letters`, gaps and notes into
    `klineflow:data_quality` (and each gap into `klines:gaps:<symbol>`), once each."""

    def __init__(
        self,
        url: str,
        keys: KeySpace = KeySpace(),
        maxlen: int = defaults.DEAD_LETTER_MAXLEN,
        stats: RunStats | None = None,
    ) -> None:
        super().__init__(url, keys, stats)
        self._maxlen = maxlen
        self._add_once = self._client.register_script(_ADD_ONCE)

    def _stream(self, report: Report) -> str:
        return (
            self._keys.dead_letters if isinstance(report, DeadLetter) else self._keys.data_quality
        )

    def write_batch(self, reports: Sequence[Report]) -> None:
        if not reports:
            return

        def send() -> None:
            pipe = self._client.pipeline(transaction=True)
            digests = self._keys.dead_letters + ":digests"
            for r in reports:
                fields = {k: str(v) for k, v in r.fields().items()}
                digest = hashlib.blake2b(repr(sorted(fields.items())).encode(), digest_size=12)
                args: list[Any] = [self._maxlen, digest.hexdigest()]
                for k, v in fields.items():
                    args += [k, v]
                self._add_once(keys=[digests, self._stream(r)], args=args, client=pipe)
                if isinstance(r, GapReport):
                    pipe.zadd(self._keys.gaps(r.symbol), {r.span(): r.from_ms})
            pipe.execute()

        flush_patiently(send, self._stats)

    def contents(self) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for stream in (self._keys.dead_letters, self._keys.data_quality):
            entries: list[tuple[bytes, dict[bytes, bytes]]] = self._client.xrange(stream)  # type: ignore[assignment]  # sync client
            for i, (_, fields) in enumerate(entries):
                out[(stream, i)] = tuple(sorted(fields.items()))
        for name in sorted(self._client.scan_iter(match=self._keys.gaps("*"), count=1000)):
            out[name] = self._client.zrange(name, 0, -1)
        return out


__all__ = ["RedisKlines", "RedisReports"]
