"""What one user's traders may take of the shared flow, held by PostgreSQL itself (sql/0008):
a quota of enabled traders per user and bounded sizes, whoever writes the rows."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest

from flows.signals.book import TraderRow
from flows.signals.store import TraderError, TraderStore


def _limit(db: str, value: int) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "UPDATE klineflow_limits SET value = %s WHERE name = 'max_enabled_traders'", (value,)
        )


def _row(name: str, **kw: Any) -> TraderRow:
    return TraderRow(0, name, "close > open", "1m", **kw)


def test_a_user_may_not_enable_more_traders_than_the_quota(signals_db: str) -> None:
    _limit(signals_db, 3)
    store = TraderStore(signals_db)
    added = [store.add(_row(f"t{i}")) for i in range(3)]
    with pytest.raises(TraderError, match="at most 3 enabled traders"):
        store.add(_row("t3"))
    spare = store.add(_row("off", enabled=False))  # disabled ones do not count
    with pytest.raises(TraderError, match="at most 3 enabled traders"):
        store.update(spare.id, enabled=True)
    store.update(added[0].id, enabled=False)
    store.update(spare.id, enabled=True)  # room again
    store.update(spare.id, description="edited")  # an enabled one edited: still counted once
    other = TraderStore(signals_db).add(_row("theirs"), owner="someone-else")  # per user
    assert other.enabled


def test_concurrent_adds_cannot_pass_the_quota_together(signals_db: str) -> None:
    _limit(signals_db, 5)
    store = TraderStore(signals_db)
    results: list[str] = []
    start = threading.Barrier(12)

    def add(i: int) -> None:
        start.wait()
        try:
            store.add(_row(f"c{i}"))
            results.append("ok")
        except TraderError as exc:
            results.append(str(exc))

    threads = [threading.Thread(target=add, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("ok") == 5
    with psycopg.connect(signals_db) as conn:
        count = conn.execute("SELECT count(*) FROM traders WHERE enabled").fetchone()
    assert count is not None and count[0] == 5


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("expression", "close > " + "1" * 2000),
        ("name", "n" * 101),
        ("description", "d" * 2001),
        ("symbols", tuple(f"S{i}USDT" for i in range(2001))),
        ("symbols_pattern", "*" * 65),
    ],
)
def test_oversized_traders_are_refused_by_the_database(
    signals_db: str, field: str, value: Any
) -> None:
    store = TraderStore(signals_db)
    kw: dict[str, Any] = {field: value}
    if field == "symbols":
        kw["symbols_mode"] = "list"
    if field == "symbols_pattern":
        kw["symbols_mode"] = "pattern"
    name = kw.pop("name", "big")
    with pytest.raises(TraderError, match="rejected by the database"):
        store.add(TraderRow(0, name, kw.pop("expression", "close > open"), "1m", **kw))
