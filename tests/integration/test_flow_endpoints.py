"""`flows.io` endpoints plugged into the kline flow, one output per kind: a kline sink gets
every kline Redis gets (every field, every interval), a report sink every dead letter, a
signal sink every signal PostgreSQL records, and any trade source can feed the flow."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
import redis

from flows.dataflows.replay import ReplayJob, run_replay
from flows.domain.deadletter import DeadLetter
from flows.domain.keys import KeySpace
from flows.domain.kline import Kline, kline_of_row
from flows.io.files import FileTrades
from flows.io.memory import MemoryKlines, MemoryReports, MemorySignals
from flows.signals.store import TraderStore
from flows.signals.trader_rows import TraderRow
from flows.sources.chunks import ReadOptions
from flows.storage.redis_klines import RetentionPolicy
from tests.unit.test_columnar_csv import ODD_ROWS

INTERVALS = ("1m", "5m", "1h")
NO_TRIM = RetentionPolicy(default=100_000, by_interval={})
XRPETH = "XRPETH-aggTrades-20191011-20191013.csv"


def stored(client: redis.Redis, keys: KeySpace, symbol: str, interval: str) -> list[Kline]:
    members = client.zrange(keys.klines(symbol, interval), 0, -1)
    return [kline_of_row(json.loads(m)) for m in members]  # type: ignore[union-attr]


def without_ids(k: Kline) -> Kline:
    return k._replace(first_trade_id=-1, last_trade_id=-1)


def _dump(tmp_path: Path, shared_data: Path) -> Path:
    """The real dump with odd rows put in: dead letters to report."""
    lines = (shared_data / XRPETH).read_bytes().splitlines()
    for i, row in enumerate(ODD_ROWS[4:20]):
        lines.insert(1000 + 500 * i, row)
    path = tmp_path / XRPETH
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_kline_and_report_sinks_get_what_redis_gets(
    shared_data: Path, tmp_path: Path, redis_url: str, redis_client: redis.Redis, keys: KeySpace
) -> None:
    path = _dump(tmp_path, shared_data)
    klines, reports = MemoryKlines(), MemoryReports()
    job = ReplayJob(paths=[path], redis_url=redis_url, intervals=INTERVALS, keys=keys,
                    retention=NO_TRIM, sinks=(klines, reports))  # fmt: skip
    stats = run_replay(job)
    held = klines.contents()
    for interval in INTERVALS:
        in_redis = stored(redis_client, keys, "XRPETH", interval)
        in_sink = [r.kline for (s, iv, _), r in held.items() if s == "XRPETH" and iv == interval]
        # every field of every kline (Redis members do not hold the first and last trade ids)
        assert len(in_redis) > 2 and [without_ids(k) for k in in_sink] == in_redis
        assert all(k.first_trade_id > 0 for k in in_sink if k.trades)
        assert all(r.closed for r in held.values())  # a replay ends with every kline closed
    letters = [r for r in reports.contents() if isinstance(r, DeadLetter)]
    entries = redis_client.xrange(keys.dead_letters)
    assert len(letters) == len(entries) == sum(stats.dead_letters.values()) > 5
    assert [e[1][b"position"].decode() for e in entries] == [d.position for d in letters]


def test_any_trade_source_feeds_the_flow(
    shared_data: Path, tmp_path: Path, redis_url: str, redis_client: redis.Redis, keys: KeySpace
) -> None:
    path = _dump(tmp_path, shared_data)
    by_files = KeySpace(keys.namespace + ":files")
    files = run_replay(ReplayJob(paths=[path], redis_url=redis_url, intervals=INTERVALS,
                                 keys=by_files, retention=NO_TRIM))  # fmt: skip
    source = FileTrades([path], ReadOptions(column_rows=1000))
    stats = run_replay(ReplayJob(paths=[], redis_url=redis_url, intervals=INTERVALS, keys=keys,
                                 retention=NO_TRIM, source=source))  # fmt: skip
    assert stats.trades_read == files.trades_read > 12_000
    assert stats.dead_letters == files.dead_letters
    for interval in INTERVALS:
        assert stored(redis_client, keys, "XRPETH", interval) == stored(
            redis_client, by_files, "XRPETH", interval
        )


def test_a_signal_sink_gets_every_signal_postgresql_records(
    shared_data: Path, redis_url: str, keys: KeySpace, signals_db: str
) -> None:
    TraderStore(signals_db).add(TraderRow(0, "up", "close > open", "5m",
                                          trigger_mode="every_close", cooldown_bars=0))  # fmt: skip
    signals = MemorySignals()
    run_replay(ReplayJob(paths=[shared_data / XRPETH], redis_url=redis_url, intervals=INTERVALS,
                         keys=keys, retention=NO_TRIM, database_url=signals_db,
                         sinks=(signals,)))  # fmt: skip
    with psycopg.connect(signals_db) as conn:
        rows = conn.execute("SELECT id, symbol, interval, kline_open_ms FROM signals").fetchall()
    held = signals.contents()
    assert len(rows) > 50
    assert {r[0]: (r[1], r[2], r[3]) for r in rows} == {
        i: (sym, iv, open_ms) for i, (_, sym, iv, open_ms, _) in held.items()
    }


def test_sinks_of_no_kind_or_signals_without_traders_are_refused(
    shared_data: Path, redis_url: str, keys: KeySpace
) -> None:
    job = ReplayJob(paths=[shared_data / XRPETH], redis_url=redis_url, intervals=INTERVALS,
                    keys=keys)  # fmt: skip
    with pytest.raises(ValueError, match="no traders"):
        run_replay(ReplayJob(**{**job.__dict__, "sinks": (MemorySignals(),)}))
    with pytest.raises(TypeError, match="is not a KlineSink"):
        run_replay(ReplayJob(**{**job.__dict__, "sinks": (object(),)}))


def test_the_live_flow_gives_a_kline_sink_what_redis_holds(
    redis_url: str, redis_client: redis.Redis, keys: KeySpace
) -> None:
    from tests.integration.test_live import (
        INTERVALS_UNDER_TEST,
        _complete,
        _live,
        _market,
        _reference,
        _wait,
    )

    cfg = _market()
    want = _reference(cfg)
    klines = MemoryKlines()
    with _live(cfg, redis_url, keys, sinks=(klines,)):
        assert _wait(lambda: _complete(redis_client, keys, want), 60)
    held = klines.contents()
    for symbol in want:
        for interval in INTERVALS_UNDER_TEST:
            closed = [without_ids(r.kline) for (s, iv, _), r in held.items()
                      if s == symbol and iv == interval and r.closed]  # fmt: skip
            in_redis = stored(redis_client, keys, symbol, interval)
            assert closed and closed == in_redis[: len(closed)]
            assert len(in_redis) - len(closed) <= 1  # the open kline the flow stopped in


def test_an_added_sink_loses_nothing_to_kill_9_at_any_moment(
    redis_url: str, redis_client: redis.Redis, keys: KeySpace, tmp_path: Path
) -> None:
    """The live flow with an added kline sink, killed with SIGKILL at four random moments (the
    first second included) and restarted: the sink ends holding every closed kline of the
    reference, 0 missing, 0 extra, 0 different, as the flow's own Redis does (a sink is
    written before Redis commits the same batch, so what a restart resumes after is in it)."""
    import os
    import random
    import signal
    import subprocess
    import sys

    from flows.simulator import Simulator
    from tests.integration.test_live import M, _check_equal, _complete, _market, _reference
    from tests.integration.test_live_kill import _wait, kill_at

    cfg = _market(end_ms=_market().start_ms + 6 * M, speed=15.0)  # 24 s of wall time
    want = _reference(cfg)
    sink_keys = KeySpace(keys.namespace + ":sink")
    rng = random.Random(20261205)
    moments = sorted([rng.uniform(0.2, 1.0), *(rng.uniform(1.0, 20.0) for _ in range(3))])
    log = tmp_path / "flow.log"
    repo = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(repo), KLINEFLOW_DATA_DIR=str(tmp_path))
    with Simulator(cfg) as sim:
        args = [sys.executable, "-m", "tests.integration.sink_flow", sim.base_url,
                ",".join(sorted(want)), redis_url, keys.namespace, sink_keys.namespace]  # fmt: skip

        def start() -> subprocess.Popen[bytes]:
            return subprocess.Popen(args, env=env, cwd=repo, stdout=log.open("ab"),
                                    stderr=subprocess.STDOUT)  # fmt: skip

        running = [start()]
        try:
            assert kill_at(moments, running, start, log) == 4
            assert _wait(lambda: _complete(redis_client, keys, want), 90), log.read_text()[-3000:]
            assert _wait(lambda: _complete(redis_client, sink_keys, want), 30)
        finally:
            running[0].send_signal(signal.SIGKILL)
            running[0].wait(timeout=10)
    assert _check_equal(redis_client, keys, want) >= 4 * (6 + 2)
    assert _check_equal(redis_client, sink_keys, want) >= 4 * (6 + 2)
