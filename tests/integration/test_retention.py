"""Retention: the running flow bounds signals, trader errors and dead letters by age.

Rows are back-dated in a real PostgreSQL, dead letters given stream ids in the past in a
real Redis; a pass (with the flow's own role, in batches smaller than what is old) must
delete exactly the old ones and keep every newer one; a live flow applies it by itself.
"""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import redis

from flows.domain.keys import KeySpace
from flows.signals.book import TraderRow
from flows.signals.store import TraderStore
from flows.storage.retention import DAY_MS, RetentionAges, RetentionThread
from tests.integration.test_live import _live, _market

NOW_MS = 1_767_225_600_000  # 2026-01-01


def _seed(db: str) -> tuple[int, set[str], set[str]]:
    """A trader with 12 signals and 4 errors, half of each back-dated past retention."""
    trader = TraderStore(db).add(TraderRow(0, "t", "close > open", "1m"))
    old, new = set(), set()
    with psycopg.connect(db, autocommit=True) as conn:
        for i in range(12):
            sid = f"{trader.id}-S{i}USDT-1m-{i * 60_000}"
            age = "100 days" if i % 2 else "1 hour"
            conn.execute(
                "INSERT INTO signals (id, trader_id, trader_version, symbol, interval, "
                "kline_open_ms, kline_close_ms, price, created_at) VALUES (%s, %s, 1, %s, "
                "'1m', %s, %s, 1, now() - %s::interval)",
                (sid, trader.id, f"S{i}USDT", i * 60_000, i * 60_000 + 59_999, age),
            )
            (old if i % 2 else new).add(sid)
        for i in range(4):
            conn.execute(
                "INSERT INTO trader_errors (trader_id, trader_version, symbol, error, "
                "kline_open_ms, created_at) VALUES (%s, 1, %s, 'x', 0, now() - %s::interval)",
                (trader.id, f"E{i}USDT", "40 days" if i % 2 else "2 days"),
            )
    return trader.id, old, new


def _left(db: str) -> tuple[set[str], set[str]]:
    with psycopg.connect(db) as conn:
        signals = {str(r[0]) for r in conn.execute("SELECT id FROM signals")}
        errors = {str(r[0]) for r in conn.execute("SELECT symbol FROM trader_errors")}
    return signals, errors


class _Fixed:
    def now_ms(self) -> int:
        return NOW_MS

    def monotonic_s(self) -> float:
        return 0.0


def test_a_pass_deletes_exactly_what_is_older_than_its_age(
    signals_db: str, redis_url: str, redis_client: redis.Redis, keys: KeySpace
) -> None:
    _, old, new = _seed(signals_db)
    stream = keys.dead_letters
    for days_ago in (30, 20, 15, 13, 1):
        redis_client.xadd(stream, {"reason": "late"}, id=f"{NOW_MS - days_ago * DAY_MS}-0")
    ages = RetentionAges(batch=2)  # 6 old signals: three full batches, then an empty one
    pruner = RetentionThread(signals_db, redis_url, keys, ages, _Fixed())  # type: ignore[arg-type]
    pruner.run_once()
    signals, errors = _left(signals_db)
    assert signals == new and not (signals & old)
    assert errors == {"E0USDT", "E2USDT"}
    kept = [int(i.split(b"-")[0]) for i, _ in redis_client.xrange(stream)]  # type: ignore[union-attr]
    assert kept == [NOW_MS - 13 * DAY_MS, NOW_MS - 1 * DAY_MS]
    assert (pruner.removed.signals, pruner.removed.trader_errors) == (6, 2)
    assert pruner.removed.dead_letters == 3 and pruner.removed.errors == []
    pruner.run_once()  # nothing more is old: nothing more goes
    assert _left(signals_db) == (new, {"E0USDT", "E2USDT"})


def test_zero_keeps_for_ever(signals_db: str, redis_url: str, keys: KeySpace) -> None:
    _, old, new = _seed(signals_db)
    ages = RetentionAges(signals_days=0, trader_errors_days=0, dead_letters_days=0)
    RetentionThread(signals_db, redis_url, keys, ages).run_once()
    signals, errors = _left(signals_db)
    assert signals == old | new and len(errors) == 4


def test_a_pass_with_postgresql_away_is_counted_and_the_next_one_works(
    signals_db: str, redis_url: str, keys: KeySpace
) -> None:
    _, _, new = _seed(signals_db)
    away = signals_db.replace("dbname=", "dbname=missing_") if "dbname=" in signals_db else (
        signals_db.rsplit("/", 1)[0] + "/no_such_database"
    )  # fmt: skip
    pruner = RetentionThread(away, redis_url, keys, RetentionAges())
    pruner.run_once()
    assert pruner.removed.passes == 1 and pruner.removed.errors[0].startswith("postgresql")
    RetentionThread(signals_db, redis_url, keys, RetentionAges()).run_once()
    assert _left(signals_db)[0] == new


def test_the_live_flow_applies_retention_by_itself(
    signals_db: str, redis_url: str, keys: KeySpace
) -> None:
    from flows.dataflows import live as live_module

    _, old, new = _seed(signals_db)
    before = len(live_module.retention_threads)
    with _live(_market(), redis_url, keys, database_url=signals_db) as _:
        done = threading.Event()
        for _ in range(300):
            threads: list[Any] = live_module.retention_threads[before:]
            if threads and threads[0].passed.is_set():
                break
            done.wait(0.1)
        assert live_module.retention_threads[before:], "the live flow started no retention"
        assert live_module.retention_threads[before].passed.is_set()
    signals, _ = _left(signals_db)
    assert not (signals & old) and new <= signals
