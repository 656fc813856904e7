"""`klineflow status` against real servers: the heartbeat the real writer puts in Redis, the
exit code that follows the flow's health, the signal counts per trader from PostgreSQL, and
text that fits a terminal 80 columns wide."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from rich.cells import cell_len
from typer.testing import CliRunner, Result

from flows.app.health import FeedState, FlowCounters, FlowHeartbeat
from flows.app.status import status
from flows.cli import app
from flows.cluster import ClusterPlace
from flows.dataflows.heartbeat import Heartbeat
from flows.domain.clock import SYSTEM_CLOCK, ManualClock
from flows.domain.keys import KeySpace
from flows.domain.stats import RunStats
from flows.settings import load_settings
from flows.signals.book import TraderRow
from flows.signals.store import TraderStore

DAY_MS = 86_400_000


class NoFeeds:
    """The writer's view of a live source that has opened no connection yet."""

    def __init__(self) -> None:
        self.partitions: list[object] = []


@pytest.fixture
def closed_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def _status(redis_url: str, keys: KeySpace, database_url: str, *more: str) -> Result:
    args = ["status", "--redis-url", redis_url, "--namespace", keys.namespace]
    return CliRunner().invoke(app, [*args, "--database-url", database_url, *more])


def _fits(result: Result, width: int = 80) -> list[str]:
    lines = result.stdout.splitlines()
    assert lines, result.output
    too_long = [line for line in lines if cell_len(line) > width]
    assert not too_long, too_long
    return lines


def _writer(redis_url: str, keys: KeySpace, stats: RunStats, **kw: object) -> Heartbeat:
    return Heartbeat(redis_url, keys, NoFeeds(), stats, **kw)  # type: ignore[arg-type]


def test_status_follows_the_heartbeat_the_writer_puts_in_redis(
    redis_url: str, keys: KeySpace, signals_db: str
) -> None:
    stats = RunStats()
    stats.trades_read = 1234
    writer = _writer(redis_url, keys, stats)
    writer.beat()
    ok = _status(redis_url, keys, signals_db)
    assert ok.exit_code == 0, ok.output
    lines = _fits(ok)
    assert lines[:2] == ["redis       reachable", "postgresql  reachable"]
    assert lines[2].startswith("flow        running, heartbeat ")
    assert lines[3].startswith("  1,234 trades") and lines[-1] == "healthy"

    stats.waiting_for.add("postgresql")
    writer.beat()
    paused = _status(redis_url, keys, signals_db)
    assert paused.exit_code == 1
    assert _fits(paused)[-2:] == [
        "NOT healthy:", "  - waiting for postgresql (the flow is paused)",
    ]  # fmt: skip
    report = json.loads(_status(redis_url, keys, signals_db, "--json").stdout)
    assert report["healthy"] is False and report["flow"]["waiting_for"] == ["postgresql"]
    assert report["reasons"] == ["waiting for postgresql (the flow is paused)"]

    stats.waiting_for.clear()
    writer.stop()  # the flow's last word
    stopped = _status(redis_url, keys, signals_db)
    assert stopped.exit_code == 1 and _fits(stopped)[-1] == "  - the flow stopped"


def test_a_stale_heartbeat_makes_status_fail_and_say_how_old(
    redis_url: str, keys: KeySpace, signals_db: str
) -> None:
    hour_ago = ManualClock(SYSTEM_CLOCK.now_ms() - 3_600_000)
    _writer(redis_url, keys, RunStats(), clock=hour_ago).beat()
    result = _status(redis_url, keys, signals_db)
    assert result.exit_code == 1
    reason = _fits(result)[-1]
    assert reason.startswith("  - no heartbeat for ") and "it stopped or hangs" in reason


def test_a_missing_cluster_member_makes_status_fail(
    redis_url: str, keys: KeySpace, signals_db: str
) -> None:
    place = ClusterPlace(0, ("127.0.0.1:1", "127.0.0.1:2"))
    _writer(redis_url, keys, RunStats(), place=place).beat()  # member 1 never wrote
    result = _status(redis_url, keys, signals_db)
    assert result.exit_code == 1
    lines = _fits(result)
    assert "  cluster: 1 of 2 processes heard from" in lines
    assert lines[-1] == "  - cluster process 1 of 2 not heard from"
    report = json.loads(_status(redis_url, keys, signals_db, "--json").stdout)
    assert report["flow"]["state"] == "degraded" and report["flow"]["processes_missing"] == [1]


def test_no_flow_and_unreachable_servers_are_reasons(
    redis_url: str, keys: KeySpace, signals_db: str, closed_port: int, tmp_path: Path
) -> None:
    none = _status(redis_url, keys, signals_db)
    assert none.exit_code == 1
    assert _fits(none)[-1] == "  - no heartbeat (no live flow on this Redis and namespace)"
    away = f"postgresql://nobody@127.0.0.1:{closed_port}/x"
    gone = _status(f"redis://127.0.0.1:{closed_port}/0", keys, away)
    assert gone.exit_code == 1
    lines = _fits(gone)
    assert lines[:2] == ["redis       unreachable", "postgresql  unreachable"]
    reasons = [line for line in lines if line.startswith("  - ")]
    assert [r.split(" (")[0] for r in reasons] == ["  - Redis unreachable",
                                                   "  - PostgreSQL unreachable"]  # fmt: skip


def _signal(conn: psycopg.Connection[object], trader: int, n: int, age_ms: int) -> None:
    conn.execute(
        "INSERT INTO signals (id, trader_id, trader_version, symbol, interval, kline_open_ms, "
        "kline_close_ms, price, created_at) VALUES (%s, %s, 1, 'BTCUSDT', '1m', %s, %s, 1, "
        "now() - make_interval(secs => %s))",
        (f"t{trader}-{n}", trader, n * 60_000, n * 60_000 + 59_999, age_ms / 1000),
    )


def test_signal_counts_per_trader_in_all_and_in_the_last_day(
    redis_url: str, keys: KeySpace, signals_db: str
) -> None:
    store = TraderStore(signals_db)
    ana = store.add(TraderRow(0, "ana up", "close > open", "1m"), owner="ana")
    bob = store.add(TraderRow(0, "bob down", "close < open", "1m"), owner="bob")
    wide = store.add(TraderRow(0, "\u5927" * 40 + "\x1b[31m", "close > 0", "1m",
                               enabled=False), owner="bob")  # fmt: skip
    with psycopg.connect(signals_db) as conn:
        for n in range(5):  # 3 within the day, 2 older
            _signal(conn, ana.id, n, 3_600_000 if n < 3 else 2 * DAY_MS)
        _signal(conn, bob.id, 0, 2 * DAY_MS)
    report = status(load_settings(redis_url=redis_url, namespace=keys.namespace,
                                  database_url=signals_db))  # fmt: skip
    assert report.signals is not None and report.signals_error == ""
    counts = {t.trader_id: (t.total, t.last_24h) for t in report.signals}
    assert counts == {ana.id: (5, 3), bob.id: (1, 0), wide.id: (0, 0)}

    result = _status(redis_url, keys, signals_db)
    lines = _fits(result)
    assert "\x1b" not in result.stdout  # a trader's name cannot drive the terminal
    row = next(line for line in lines if line.lstrip().startswith(f"{ana.id} "))
    assert row.split()[-2:] == ["5", "3"] and "ana up" in row
    row = next(line for line in lines if line.lstrip().startswith(f"{wide.id} "))
    assert row.split()[-3:] == ["(off)", "0", "0"] and "\u2026" in row  # shortened, whole counts
    listed = json.loads(_status(redis_url, keys, signals_db, "--json").stdout)["signals"]
    assert [(t["trader"], t["total"], t["last_24h"]) for t in listed] == [
        ("ana up", 5, 3),
        ("bob down", 1, 0),
        (wide.name, 0, 0),
    ]


def test_a_busy_cluster_with_data_quality_records_fits_80_columns(
    redis_url: str, redis_client: redis.Redis, keys: KeySpace, signals_db: str
) -> None:
    now = SYSTEM_CLOCK.now_ms()
    feeds = tuple(FeedState(f"{p}/{c}", "connected", 1024, 12_345.678, 10**6, 10**12,
                            process=p) for p in range(12) for c in range(12))  # fmt: skip
    big = FlowCounters(*(10**15 + i for i in range(12)))
    beat = FlowHeartbeat(now, now - DAY_MS, "running", big, (), {"1m": 10**9}, feeds, 12, 12)
    redis_client.hset(keys.heartbeat, mapping=beat.encode())  # type: ignore[arg-type]
    detail = "the stored kline differs from the exchange's: " + "volume 1.00000000 != 2 " * 12
    record = {"symbol": "BTCUSDT", "interval": "1m", "what": "reconcile mismatch", "detail": detail}
    redis_client.xadd(keys.data_quality, record)  # type: ignore[arg-type]
    result = _status(redis_url, keys, signals_db)
    lines = _fits(result)
    assert sum(line.startswith("  feed ") for line in lines) == 144
    text = " ".join(" ".join(lines).split())
    assert " ".join(detail.split()) in text  # wrapped, nothing cut
    assert f"{10**15:,} trades" in text
