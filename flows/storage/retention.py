"""Retention of what grows with time: signals, trader errors and dead letters.

Klines are bounded by count per key already (``RetentionPolicy``). The rest is bounded by
age, applied by the running live flow: a thread that, at start and then every
``every_s`` seconds, deletes

- ``signals`` recorded more than ``signals_days`` ago (default 90),
- ``trader_errors`` recorded more than ``trader_errors_days`` ago (default 30),
- dead letters older than ``dead_letters_days`` (default 14), besides the stream's count cap
  (KLINEFLOW_DEAD_LETTER_MAXLEN),

in batches of ``batch`` rows, each its own short transaction, so neither the signal writer nor
the dashboard waits behind a long delete. A value of 0 keeps that kind for ever. In a cluster
every member runs it; a PostgreSQL advisory lock lets one at a time work, and deleting what
another already deleted is harmless.

Sizes: a signal row with its indexes and three recorded values takes about 440 bytes
(measured on the embedded PostgreSQL with 50,000 rows). At one signal a second the default
90 days hold 7.8 million rows, about 3.4 GB; the size is rate x days x 440 bytes, so a
deployment whose traders fire hundreds of times a second (0.4 MB/s was seen) should keep
days, not months: KLINEFLOW_SIGNALS_RETENTION_DAYS=2 bounds that rate at about 70 GB.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

import psycopg
import redis

from flows.domain import defaults
from flows.domain.clock import SYSTEM_CLOCK, Clock
from flows.domain.keys import KeySpace
from flows.storage.pg_roles import FLOW_ROLE, connect_as

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
_LOCK_KEY = 0x6B66726574656E74  # "kfretent": one retention pass at a time per database


@dataclass(frozen=True)
class RetentionAges:
    signals_days: float = defaults.SIGNALS_RETENTION_DAYS
    trader_errors_days: float = defaults.TRADER_ERRORS_RETENTION_DAYS
    dead_letters_days: float = defaults.DEAD_LETTERS_RETENTION_DAYS
    every_s: float = defaults.RETENTION_EVERY_S
    batch: int = 5000


@dataclass
class Removed:
    signals: int = 0
    trader_errors: int = 0
    dead_letters: int = 0
    passes: int = 0
    errors: list[str] = field(default_factory=list)


_DELETE = {
    "signals": "DELETE FROM signals WHERE id IN (SELECT id FROM signals WHERE created_at < "
    "now() - make_interval(secs => %s) ORDER BY created_at LIMIT %s)",
    "trader_errors": "DELETE FROM trader_errors WHERE ctid IN (SELECT ctid FROM trader_errors "
    "WHERE created_at < now() - make_interval(secs => %s) ORDER BY created_at LIMIT %s)",
}


def prune_postgres(url: str, ages: RetentionAges, removed: Removed) -> None:
    """One pass over PostgreSQL: batches until nothing old is left (or another process holds
    the pass)."""
    with connect_as(url, FLOW_ROLE, autocommit=True) as conn:
        got = conn.execute("SELECT pg_try_advisory_lock(%s)", (_LOCK_KEY,)).fetchone()
        if not got or not got[0]:
            return  # another member is pruning
        try:
            for table, days in (
                ("signals", ages.signals_days),
                ("trader_errors", ages.trader_errors_days),
            ):
                if days <= 0:
                    continue
                while True:
                    cur = conn.execute(_DELETE[table], (days * 86_400, ages.batch))
                    setattr(removed, table, getattr(removed, table) + cur.rowcount)
                    if cur.rowcount < ages.batch:
                        break
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))


def prune_redis(
    client: redis.Redis, keys: KeySpace, ages: RetentionAges, removed: Removed, now_ms: int
) -> None:
    """Dead letters older than their age (stream ids are milliseconds since the epoch)."""
    if ages.dead_letters_days <= 0:
        return
    oldest = int(now_ms - ages.dead_letters_days * DAY_MS)
    removed.dead_letters += int(client.xtrim(keys.dead_letters, minid=oldest, approximate=False))


class RetentionThread(threading.Thread):
    """Runs the passes while the flow runs (``stop()`` ends it)."""

    def __init__(
        self,
        database_url: str | None,
        redis_url: str,
        keys: KeySpace,
        ages: RetentionAges,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        super().__init__(name="klineflow-retention", daemon=True)
        self._database_url = database_url
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=30)
        self._keys = keys
        self.ages = ages
        self._clock = clock
        self._stop = threading.Event()
        self.removed = Removed()
        self.passed = threading.Event()  # set after each pass (tests wait on it)

    def run_once(self) -> None:
        removed = self.removed
        try:
            prune_redis(self._redis, self._keys, self.ages, removed, self._clock.now_ms())
        except redis.RedisError as exc:
            removed.errors.append(f"redis: {exc}")
            log.warning("retention: Redis unavailable (%s); next pass in %gs", exc,
                        self.ages.every_s)  # fmt: skip
        if self._database_url is not None:
            try:
                prune_postgres(self._database_url, self.ages, removed)
            except psycopg.Error as exc:
                removed.errors.append(f"postgresql: {exc}")
                log.warning("retention: PostgreSQL unavailable (%s); next pass in %gs",
                            str(exc).strip(), self.ages.every_s)  # fmt: skip
        removed.passes += 1
        self.passed.set()

    def run(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(self.ages.every_s)

    def stop(self) -> None:
        self._stop.set()
