"""The live flow as a Bytewax cluster of 2 local processes (`up --processes 2`).

- Over a real recording (the simulator replaying Binance's BTC/ETH/DOT capture), 2 processes
  write exactly the klines and signals 1 process writes, and no trade batch crosses processes
  (each member counts those it received for a symbol it does not ingest: 0).
- `kill -9` of one member at random points of the market, each time of a running cluster: the
  supervisor restarts the cluster, whose members resume from the stores, and Redis and
  PostgreSQL end with exactly the reference klines and the signals an independent TA-Lib
  evaluation gives (what one process writes, proven equal to the same reference by
  test_live_kill).

Every wait is for a state (members' heartbeats, klines closed, processes ended), bounded far
above what it takes on an idle machine: these tests start several Python processes each, and
on a loaded 2-core machine that takes tens of seconds.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
import redis

from flows.cluster import local_members, worker_of
from flows.domain.keys import KeySpace
from flows.signals.book import TraderRow
from flows.signals.store import TraderStore
from flows.simulator import SimConfig, Simulator
from flows.simulator.market import SimMarket
from flows.storage.migrations import apply_migrations
from tests.conftest import NewDatabase
from tests.integration.test_live import (
    M,
    _check_equal,
    _complete,
    _market,
    _post,
    _reference,
    _wait,
)
from tests.integration.test_live_kill import expected_signals, start_flow

REPO = Path(__file__).resolve().parents[2]
CAPTURE = "ws-capture-2021-04-04-btc-eth-dot.txt"


def _traders(db: str) -> tuple[int, int]:
    store = TraderStore(db)
    up = store.add(TraderRow(0, "up", "close > open", "1m", trigger_mode="every_close",
                             cooldown_bars=0))  # fmt: skip
    strong = store.add(TraderRow(0, "strong", "rsi(5) > 50", "1m", trigger_mode="every_close",
                                 cooldown_bars=0))  # fmt: skip
    return up.id, strong.id


def _klines(
    client: redis.Redis, keys: KeySpace, symbols: list[str], intervals: tuple[str, ...]
) -> dict[str, object]:
    """Every closed kline and last-closed marker the flow wrote, per symbol and interval."""
    out: dict[str, object] = {}
    for s in symbols:
        for i in intervals:
            last = client.get(keys.last_closed(s, i))
            rows = [json.loads(m) for m in client.zrange(keys.klines(s, i), 0, -1)]
            closed = [r for r in rows if last is not None and int(r[0]) <= int(last)]  # type: ignore[arg-type]
            out[f"{s} {i}"] = (last, closed)
    return out


def _signals(db: str) -> list[tuple[object, ...]]:
    with psycopg.connect(db) as conn:
        return conn.execute(
            "SELECT id, trader_id, symbol, interval, kline_open_ms, kline_close_ms, price,"
            ' "values", repeat_count FROM signals ORDER BY id'
        ).fetchall()


def _connected(client: redis.Redis, keys: KeySpace, processes: int) -> bool:
    """Whether the flow's heartbeat shows every process and every feed connected."""
    beat = client.hgetall(keys.heartbeat)
    if not beat:
        return False
    feeds = json.loads(beat[b"feeds"])
    seen = int(beat.get(b"processes_seen", b"1"))
    return seen == processes and bool(feeds) and all(f["state"] == "connected" for f in feeds)


def _cluster_running(
    client: redis.Redis, keys: KeySpace, processes: int, started_after_ms: int
) -> int | None:
    """The latest start time (ms) of the members, once each member's own heartbeat shows it
    started after `started_after_ms` (a new cluster, not one from before a restart) and
    running with every feed connected (so the members formed their cluster and read the
    market); else None."""
    starts = []
    for i in range(processes):
        beat = client.hgetall(keys.heartbeat_of(i))
        if not beat or beat.get(b"state") != b"running":
            return None
        feeds = json.loads(beat.get(b"feeds", b"[]"))
        if not feeds or any(f["state"] != "connected" for f in feeds):
            return None
        started = int(beat[b"started_ms"])
        if started <= started_after_ms:
            return None
        starts.append(started)
    return max(starts)


def _closed_through(client: redis.Redis, keys: KeySpace, symbols: list[str], open_ms: int) -> bool:
    """Whether every symbol's 1m kline that opens at `open_ms` is closed."""
    marks = [client.get(keys.last_closed(s, "1m")) for s in symbols]
    return all(m is not None and int(m) >= open_ms for m in marks)  # type: ignore[arg-type]


def _settler(db: str) -> Callable[[], bool]:
    """A check that is true once the signals stopped changing between two looks."""
    seen: list[int] = []

    def settled() -> bool:
        with psycopg.connect(db) as conn:
            row = conn.execute("SELECT count(*) + coalesce(sum(repeat_count), 0) FROM signals")
            n = row.fetchone()
        seen.append(int(n[0]) if n else 0)
        return len(seen) > 1 and seen[-1] == seen[-2]

    return settled


def _capture_run(
    recording: Path,
    symbols: list[str],
    redis_url: str,
    client: redis.Redis,
    db: str,
    tmp_path: Path,
    processes: int,
) -> tuple[dict[str, object], list[tuple[object, ...]], str]:
    """`up --processes N` over the capture: (klines written, signals written, its output)."""
    last_open = 1617566640000  # the capture's last minute, 20:04 UTC
    keys = KeySpace(f"cl{os.getpid()}p{processes}")
    log = tmp_path / f"flow{processes}.log"
    # the exchange clock stops 10 s after the last minute ends (past the 0.5 s grace), so both
    # runs close exactly the same klines however long they run
    end = last_open + 60_000
    with Simulator(
        SimConfig(recording=recording, speed=20.0, end_ms=end, after_end_ms=10_000)
    ) as sim:
        # the market waits until every feed of the flow is connected, so both runs see the
        # whole recording live however long the processes take to start
        _post(sim.base_url, "/_sim/pause")
        proc = start_flow(
            sim.base_url, symbols, redis_url, keys, tmp_path / f"data{processes}", log, db,
            "--intervals", "1m", "--processes", str(processes),
        )  # fmt: skip
        try:
            assert _wait(lambda: _connected(client, keys, processes), 180), log.read_text()
            _post(sim.base_url, "/_sim/resume")

            def done() -> bool:  # 91 s of market at 20x; the last minute closes once the
                # exchange clock (its 1-second klines) passes it + the grace
                marks = [client.get(keys.last_closed(s, "1m")) for s in symbols]
                return all(m is not None and int(m) >= last_open for m in marks)  # type: ignore[arg-type]

            assert _wait(done, 180), log.read_text()[-3000:]
            _wait(_settler(db), 10)
        finally:
            proc.send_signal(signal.SIGINT)
            # a bound above the supervisor's own (5 s, then 20 s, for each member to end)
            assert proc.wait(timeout=180) == 0, log.read_text()[-3000:]
    out = (_klines(client, keys, symbols, ("1m",)), _signals(db), log.read_text())
    for name in client.scan_iter(match=f"{keys.namespace}:*", count=1000):
        client.delete(name)
    return out


@pytest.mark.timeout(900)
def test_two_processes_write_what_one_process_writes(
    shared_data: Path,
    redis_url: str,
    redis_client: redis.Redis,
    new_database: NewDatabase,
    tmp_path: Path,
) -> None:
    recording = shared_data / CAPTURE
    symbols = SimMarket.from_recording(recording).symbols
    # both processes get symbols of this recording (else the test would prove nothing)
    assert {worker_of(s, 2) for s in symbols} == {0, 1}
    results = {}
    for processes in (1, 2):
        db = new_database()
        apply_migrations(db)
        assert _traders(db) == (1, 2)  # the same trader ids in both databases
        results[processes] = _capture_run(
            recording, symbols, redis_url, redis_client, db, tmp_path, processes
        )
    one, two = results[1], results[2]
    assert one[0] == two[0]
    assert one[1] == two[1]
    closed_1m = sum(len(v[1]) for k, v in one[0].items() if k.endswith("1m"))  # type: ignore[index, arg-type]
    assert closed_1m >= 6, one[0]  # 20:03 and 20:04 of 3 symbols
    assert len(one[1]) >= 3, one[1]  # "close > open" fired on some of them
    # each member reported its share, and nothing came from the other process
    assert two[2].count("process 0 of 2:") == 1 and two[2].count("process 1 of 2:") == 1, two[2]
    assert re.findall(r"trade batches from other processes: (\d+)", two[2]) == ["0", "0"], two[2]
    traded = [int(n.replace(",", "")) for n in re.findall(r"trades: ([\d,]+);", two[2])]
    assert len(traded) == 2 and min(traded) > 0  # both processes ingested trades


@pytest.mark.timeout(900)
def test_kill_9_of_one_member_restarts_the_cluster_and_ends_identical(
    redis_url: str, redis_client: redis.Redis, keys: KeySpace, tmp_path: Path, signals_db: str
) -> None:
    cfg = _market(symbols=6, end_ms=_market().start_ms + 6 * M, speed=15.0)  # 24 s of market
    assert cfg.start_ms is not None
    want = _reference(cfg)
    symbols = sorted(want)
    assert {worker_of(s, 2) for s in symbols} == {0, 1}
    up_id, strong_id = _traders(signals_db)
    rng = random.Random(20261125)
    # each kill once the cluster runs and has closed this minute of every symbol: the first
    # with history to resume from, the second a minute or two later (or as soon as the
    # restarted cluster runs, when its restart took longer than that)
    first = rng.choice([0, 1])
    kill_after = [first, first + rng.choice([1, 2])]
    log = tmp_path / "flow.log"
    killed: list[int] = []
    with Simulator(cfg) as sim:
        # the market waits for the first cluster to connect, however long it takes to start
        _post(sim.base_url, "/_sim/pause")
        sup = start_flow(sim.base_url, symbols, redis_url, keys, tmp_path, log, signals_db,
                         "--intervals", "1m,3m", "--processes", "2")  # fmt: skip
        try:
            cluster = -1  # the latest member start of the running cluster
            for number, minute in enumerate(kill_after):
                started: list[int] = []

                def running(after: int = cluster, into: list[int] = started) -> bool:
                    latest = _cluster_running(redis_client, keys, 2, after)
                    if latest is not None:
                        into.append(latest)
                    return latest is not None

                assert _wait(running, 180), log.read_text()[-3000:]
                cluster = started[-1]
                if number == 0:
                    _post(sim.base_url, "/_sim/resume")
                open_ms = cfg.start_ms + minute * M
                closed = _wait(
                    lambda at=open_ms: _closed_through(redis_client, keys, symbols, at), 180
                )
                assert closed, log.read_text()[-3000:]
                members = local_members(sup.pid)
                assert len(members) == 2, (members, log.read_text()[-3000:])
                victim = rng.choice(members)
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)
                assert sup.poll() is None, log.read_text()[-3000:]
            # the cluster after the last restart runs: a new start of both members
            assert _wait(lambda: _cluster_running(redis_client, keys, 2, cluster) is not None,
                         180), log.read_text()[-3000:]  # fmt: skip
            assert _wait(lambda: _complete(redis_client, keys, want), 180), log.read_text()[-3000:]
            # `klineflow status` sees the whole cluster through the combined heartbeat
            env = dict(os.environ, PYTHONPATH=str(REPO), KLINEFLOW_DATA_DIR=str(tmp_path))
            status = [sys.executable, "-m", "flows.cli", "status", "--json"]
            status += ["--redis-url", redis_url, "--namespace", keys.namespace]
            status += ["--database-url", signals_db]

            def healthy_cluster() -> bool:
                done = subprocess.run(status, check=False, env=env, capture_output=True,
                                      text=True, timeout=120, cwd=REPO)  # fmt: skip
                report = json.loads(done.stdout)
                flow = report["flow"]
                return (
                    bool(report["healthy"])
                    and flow["processes_seen"] == 2
                    and len({f["connection"].split("/")[0] for f in flow["feeds"]}) == 2
                )

            assert _wait(healthy_cluster, 120)
        finally:
            sup.send_signal(signal.SIGINT)  # Ctrl-C: the supervisor stops both members
            # the supervisor's own bounds: 5 s for each member to end by itself, then 20 s
            # after asking it; far more here, so this waits for it to end, not for a time
            try:
                sup.wait(timeout=180)
            except subprocess.TimeoutExpired:
                sup.kill()
                sup.wait()
                pytest.fail("the supervisor did not end 180 s after Ctrl-C:\n"
                            + log.read_text()[-3000:])  # fmt: skip
    text = log.read_text()
    assert sup.returncode == 0, text[-3000:]  # stopped by the signal, not by a failure
    # both members of the last cluster ended cleanly, with their summaries
    assert "process 0 of 2:" in text and "process 1 of 2:" in text, text[-3000:]
    assert len(killed) == 2
    assert text.count("restarting the cluster") >= 2, text[-3000:]
    assert _check_equal(redis_client, keys, want) >= 6 * (6 + 2)
    expected, written = expected_signals(redis_client, keys, want, signals_db, up_id, strong_id)
    _wait(lambda: written() >= expected, 60)  # the last closes' signals may still be on the way
    got = written()
    assert got == expected, sorted(got ^ expected)
    assert len(expected) >= 15


@pytest.mark.parametrize(
    "argv",
    [
        ["--processes", "0"],
        ["--process-id", "0"],
        ["--process-id", "2", "--addresses", "a:1;b:2"],
        ["--process-id", "0", "--addresses", "nohost"],
        ["--processes", "2", "--process-id", "0", "--addresses", "a:1;b:2"],
    ],
)
def test_bad_cluster_options_are_refused_with_a_reason(argv: list[str], tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO), KLINEFLOW_DATA_DIR=str(tmp_path))
    args = [sys.executable, "-m", "flows.cli", "up", "--symbols", "BTCUSDT", "--no-rules",
            "--no-dashboard", "--redis-url", "redis://127.0.0.1:9/0", *argv]  # fmt: skip
    done = subprocess.run(
        args, check=False, env=env, capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "error" in done.stdout + done.stderr
