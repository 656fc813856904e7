"""The data the browser tests chart: the XRPETH replay most of them use, and the removal of
a module's Redis keys when its shared dashboard is done."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import redis

from flows.dataflows.replay import ReplayJob, run_replay
from flows.domain.keys import KeySpace

XRPETH = "XRPETH-aggTrades-20191011-20191013.csv"


def replay_into(
    paths: Sequence[Path], redis_url: str, keys: KeySpace, database_url: str | None = None
) -> None:
    """Recorded trades replayed into Redis as 1m and 5m klines (and signals, given a
    database)."""
    run_replay(ReplayJob(paths=list(paths), redis_url=redis_url, intervals=("1m", "5m"),
                         keys=keys, database_url=database_url))  # fmt: skip


def drop_namespace(redis_url: str, keys: KeySpace) -> None:
    """Every key of the namespace deleted (a module-scoped dashboard's data)."""
    client = redis.Redis.from_url(redis_url)
    try:
        names = list(client.scan_iter(match=f"{keys.namespace}:*", count=1000))
        if names:
            client.delete(*names)
    finally:
        client.close()
