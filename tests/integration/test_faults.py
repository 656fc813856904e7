"""The fault suite: the live flow (`klineflow up`, a subprocess) against the exchange simulator
and real Redis and PostgreSQL servers, under real faults: stream stalls, a frozen exchange,
`kill -9` of the flow at random moments, a lost data directory, `kill -9` of Redis and of
PostgreSQL, PostgreSQL away across a crash of the flow, runs of 429s and a 418 ban during a
backfill, and a quiet symbol whose trades all came before the start.

Every case ends with the same checks (`verify`), while the flow still runs:

- every closed kline of every symbol and interval (1m, 3m), all fields, equals the reference
  built from the simulator's own trades: 0 missing, 0 extra, 0 different;
- the signals of an always-true trader and of ``rsi(5) > 50`` (both 1m, every close, no
  cooldown) are exactly those an independent TA-Lib evaluation of the stored klines gives;
- no trade was dead-lettered as late, and no range of trades was given up (no gap record).

Fault schedules are seeded and set in market time where it matters (read from
``GET /_sim/state``); outcomes are waited for as states, with bounded waits.
"""

from __future__ import annotations

import json
import os
import pprint
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import psycopg
import redis
from psycopg.conninfo import make_conninfo

from flows.domain.intervals import INTERVALS
from flows.domain.keys import KeySpace
from flows.klines.builder import build_klines, flat_kline
from flows.services import EmbeddedPostgres, EmbeddedRedis
from flows.signals.book import TraderRow
from flows.signals.store import TraderStore
from flows.simulator import SimConfig, Simulator, make_market
from flows.simulator.market import SimMarket
from flows.sources.recording import RecordingWriter
from flows.sources.synthetic import agg_trade_frame
from flows.storage.migrations import apply_migrations
from tests.conftest import NewDatabase
from tests.integration.test_live import (
    INTERVALS_UNDER_TEST,
    T0,
    M,
    _complete,
    _market,
    _post,
    _stored,
    _wait,
)
from tests.integration.test_live_kill import REPO, expected_signals, start_flow

SEED = 20260407
ALWAYS = "close > open or close <= open"
STRONG = "rsi(5) > 50"
Reference = dict[str, dict[str, list[list[object]]]]


# -- the exchange -------------------------------------------------------------------------------
def _state(base: str) -> dict[str, Any]:
    with urllib.request.urlopen(base + "/_sim/state", timeout=10) as r:
        state: dict[str, Any] = json.loads(r.read())
    return state


def _market_ms(base: str) -> int:
    return int(_state(base)["marketTimeMs"])


def _until_market(base: str, at_ms: int, timeout_s: float = 120.0) -> None:
    """Wait (a fault schedule) until the exchange's market time reaches `at_ms`."""
    assert _wait(lambda: _market_ms(base) >= at_ms, timeout_s), (at_ms, _state(base))


def _reference(cfg: SimConfig, end_ms: int, from_ms: int | None = None) -> Reference:
    """Every closed kline a fault-free run holds from `from_ms` (default: the open of the 3m
    kline the market starts in, where a first start begins) to `end_ms`, as REST arrays,
    built from the simulator's own trades (its history included), with the flat klines of a
    symbol that stopped trading."""
    market, _ = make_market(cfg)
    market.advance(end_ms)
    out: Reference = {}
    for symbol in market.symbols:
        trades = [t for _, t in market.trades(symbol) if t[4] < end_ms]
        built = build_klines(trades, INTERVALS_UNDER_TEST)
        out[symbol] = {}
        for name, klines in built.items():
            interval = INTERVALS[name]
            if klines:  # the symbol stopped trading: flat klines at its last close
                open_ms = interval.next_open(klines[-1].open_ms)
                while interval.next_open(open_ms) <= end_ms:
                    klines.append(flat_kline(interval, open_ms, klines[-1].close))
                    open_ms = interval.next_open(open_ms)
            first = INTERVALS["3m"].open_time(market.start_ms) if from_ms is None else from_ms
            out[symbol][name] = [
                cast(list[object], k.to_rest())
                for k in klines
                if k.open_ms >= first and interval.next_open(k.open_ms) <= end_ms
            ]
    return out


def write_recording(path: Path, trades: dict[str, list[tuple[int, Any]]]) -> None:
    """A klineflow recording of these (aggregate id, trade) rows, in time order."""
    rows = sorted((t[4], s, a, t) for s, ts in trades.items() for a, t in ts)
    with RecordingWriter(path, rows[0][0], "synthetic") as writer:
        writer.write_many([(ms + 5, agg_trade_frame(s, a, t)) for ms, s, a, t in rows])


def synthetic_recording(path: Path, seed: int, minutes: int) -> None:
    """The seeded synthetic market of 4 symbols from T0 for `minutes`, as a recording."""
    market = SimMarket.synthetic(4, seed, 40.0, T0, T0 + minutes * M)
    market.advance(T0 + minutes * M)
    write_recording(path, {s: market.trades(s) for s in market.symbols})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/api/v3/ping", timeout=2):
            return True
    except OSError:
        return False


@contextmanager
def simulator_process(recording: Path, speed: float, log: Path) -> Iterator[tuple[str, int]]:
    """`klineflow simulate --recording` as a process of its own: (its URL, its pid)."""
    port = _free_port()
    args = [sys.executable, "-m", "flows.cli", "simulate", "--recording", str(recording)]
    args += ["--speed", str(speed), "--port", str(port)]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(args, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        assert _wait(lambda: _answers(base), 30), log.read_text()[-2000:]
        yield base, proc.pid
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.kill()
        proc.wait(timeout=10)


# -- the stores and the flow --------------------------------------------------------------------
@dataclass
class Stores:
    """Where one case's flow writes, and the two traders it evaluates."""

    redis_url: str
    keys: KeySpace
    db: str
    always: int = 0
    strong: int = 0
    _client: redis.Redis | None = None

    def __post_init__(self) -> None:
        store = TraderStore(self.db)
        every = {"trigger_mode": "every_close", "cooldown_bars": 0}
        self.always = store.add(TraderRow(0, "always", ALWAYS, "1m", **every)).id  # type: ignore[arg-type]
        self.strong = store.add(TraderRow(0, "strong", STRONG, "1m", **every)).id  # type: ignore[arg-type]

    def client(self) -> redis.Redis:
        if self._client is None:  # one client (it reconnects after a server restart)
            self._client = redis.Redis.from_url(self.redis_url, socket_timeout=10)
        return self._client

    def last_closed(self, symbol: str = "BTCUSDT") -> int:
        try:
            value = self.client().get(self.keys.last_closed(symbol, "1m"))
        except (redis.ConnectionError, redis.TimeoutError):
            return -1
        return -1 if value is None else int(value)


class Flow:
    """`klineflow up` on one exchange and one pair of stores, killed and started again."""

    def __init__(self, base: str, symbols: list[str], stores: Stores, workdir: Path) -> None:
        self.base = base
        self.symbols = symbols
        self.stores = stores
        self.data_dir = workdir / "data"
        self.log = workdir / "flow.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self) -> None:
        s = self.stores
        self.proc = start_flow(self.base, self.symbols, s.redis_url, s.keys, self.data_dir,
                               self.log, s.db)  # fmt: skip

    def launch(self) -> None:
        """A first start on a paused exchange: market time runs once the flow is connected."""
        self.start()
        assert _wait(lambda: _state(self.base)["connections"] >= 1, 60), self.tail()
        _post(self.base, "/_sim/resume")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        assert self.proc is not None and self.running(), f"the flow ended: {self.tail()}"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.kills += 1

    def close(self) -> None:
        if self.proc is not None and self.running():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def tail(self) -> str:
        code = None if self.proc is None else self.proc.poll()
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"(flow exit code {code}) ...{text[-3000:]}"

    def __enter__(self) -> Flow:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def kline_diff(client: redis.Redis, keys: KeySpace, want: Reference) -> dict[str, list[str]]:
    """Closed klines missing from Redis, there but not in the reference, and different."""
    out: dict[str, list[str]] = {"missing": [], "extra": [], "different": []}
    for symbol, by_interval in want.items():
        for interval, rows in by_interval.items():
            if not rows:
                continue
            last = int(rows[-1][0])  # type: ignore[call-overload]
            got = {int(r[0]): r for r in _stored(client, keys, symbol, interval, last)}  # type: ignore[call-overload]
            exp = {int(r[0]): r for r in rows}  # type: ignore[call-overload]
            for t, row in exp.items():
                if t not in got:
                    out["missing"].append(f"{symbol} {interval} {t}")
                elif got[t] != row:
                    out["different"].append(f"{symbol} {interval} {t}: {got[t]} != {row}")
            out["extra"] += [f"{symbol} {interval} {t}" for t in sorted(set(got) - set(exp))]
    return out


def _progress(client: redis.Redis, keys: KeySpace, want: Reference) -> dict[str, str]:
    """Per symbol and interval: the newest closed kline stored / the last one wanted."""
    out = {}
    for symbol, by_interval in want.items():
        for interval, rows in by_interval.items():
            if rows:
                last = client.get(keys.last_closed(symbol, interval))
                out[f"{symbol} {interval}"] = f"{last and int(last)} / {rows[-1][0]}"
    return out


def _records(client: redis.Redis, stream: str) -> list[dict[str, str]]:
    entries = client.xrange(stream)
    return [{k.decode(): v.decode() for k, v in f.items()} for _, f in entries]  # type: ignore[union-attr]


def _evidence(client: redis.Redis, keys: KeySpace) -> dict[str, object]:
    """What the flow reported: dead letters and data-quality records, counted by kind, with
    the first of each (for a failure's message)."""
    out: dict[str, object] = {}
    for name, stream, kind in (("dead letters", keys.dead_letters, "reason"),
                               ("data quality", keys.data_quality, "what")):  # fmt: skip
        counts: dict[str, int] = {}
        first: dict[str, str] = {}
        for record in _records(client, stream):
            what = record.get(kind) or f"gap: {record.get('reason')}"
            counts[what] = counts.get(what, 0) + 1
            first.setdefault(what, str(record)[:400])
        out[name] = {"counts": counts, "first": first}
    return out


def _why(*parts: object) -> str:
    """A failure's message: each part pretty-printed in full."""
    return "\n".join(p if isinstance(p, str) else pprint.pformat(p, width=100) for p in parts)


def verify(stores: Stores, want: Reference, flow: Flow, at_least: int = 20) -> None:
    """The klines, the signals, and nothing late or given up, once market time has passed the
    last kline wanted (the flow still runs: signals held back may still be written)."""
    client, keys = stores.client(), stores.keys
    end_ms = max(INTERVALS[i].next_open(int(rows[-1][0]))  # type: ignore[call-overload]
                 for by in want.values() for i, rows in by.items() if rows)  # fmt: skip
    _until_market(flow.base, end_ms, 300)
    complete = lambda: _complete(client, keys, want)  # noqa: E731
    _wait(lambda: complete() or not flow.running(), 20)
    assert complete(), _why(_progress(client, keys, want), _evidence(client, keys), flow.tail())
    diff = kline_diff(client, keys, want)
    assert diff == {"missing": [], "extra": [], "different": []}, _why(
        diff, _evidence(client, keys)
    )
    assert sum(len(rows) for by in want.values() for rows in by.values()) >= at_least

    expected, written = expected_signals(
        client, keys, want, stores.db, stores.always, stores.strong, up=lambda o, c: True
    )
    _wait(lambda: written() >= expected, 60)  # the last closes' signals may be on their way
    got = written()
    missing, extra = sorted(expected - got), sorted(got - expected)
    assert got == expected, _why({"missing": missing, "extra": extra}, _evidence(client, keys))
    assert {int(i.split("-")[0]) for i in expected} == {stores.always, stores.strong}

    late = [r for r in _records(client, keys.dead_letters) if r["reason"] == "late"]
    assert late == [], _why(_evidence(client, keys))
    gaps = [r for r in _records(client, keys.data_quality) if "first_trade_id" in r]
    assert gaps == [], _why(_evidence(client, keys))  # a gap record: trades given up
    assert all(client.zcard(keys.gaps(s)) == 0 for s in want)


def _namespace(keys: KeySpace, name: str) -> KeySpace:
    """A namespace inside the test's own (removed with it)."""
    return KeySpace(f"{keys.namespace}:{name}")


def _database(new_database: NewDatabase) -> str:
    url = new_database()
    apply_migrations(url)
    return url


def _pause(seconds: float) -> None:
    """A fault schedule's wait (never used to decide an outcome)."""
    threading.Event().wait(seconds)


# -- 1. stalls, and a frozen exchange -----------------------------------------------------------
def _stall_case(seconds: float, stores: Stores, workdir: Path) -> None:
    """A stall of `seconds` of wall time starting 3 s of market time before a minute ends."""
    speed = 20.0
    stall_at = T0 + M - 3_000
    stalled_to = INTERVALS["1m"].next_open(stall_at + int(seconds * 1000 * speed))
    end_ms = max(stalled_to + M, T0 + 8 * M)
    cfg = _market(end_ms=end_ms, speed=speed, start_paused=True)
    want = _reference(cfg, end_ms)
    with Simulator(cfg) as sim, Flow(sim.base_url, sorted(want), stores, workdir) as flow:
        flow.launch()
        _until_market(sim.base_url, stall_at)
        _post(sim.base_url, f"/_sim/stall?seconds={seconds}")
        verify(stores, want, flow)


def _freeze_case(seconds: float, stores: Stores, workdir: Path) -> None:
    """The exchange's process stopped (SIGSTOP) for `seconds`, 3 s of market time before a
    minute ends, then continued (SIGCONT)."""
    speed = 20.0
    freeze_at = T0 + M - 3_000
    minutes = (INTERVALS["1m"].next_open(freeze_at + int(seconds * 1000 * speed)) - T0) // M + 1
    recording = workdir / "market.jsonl.gz"
    synthetic_recording(recording, SEED, minutes)
    end_ms = T0 + minutes * M
    want = _reference(SimConfig(recording=recording), end_ms)
    with simulator_process(recording, speed, workdir / "simulator.log") as (base, pid):
        _post(base, "/_sim/pause")  # the flow's first start is at T0, however long it takes
        with Flow(base, sorted(want), stores, workdir) as flow:
            flow.launch()
            _until_market(base, freeze_at)
            os.kill(pid, signal.SIGSTOP)
            try:
                _pause(seconds)
            finally:
                os.kill(pid, signal.SIGCONT)
            verify(stores, want, flow)


def test_stalls_and_a_frozen_exchange(
    redis_url: str, keys: KeySpace, new_database: NewDatabase, tmp_path: Path
) -> None:
    """Stalls of 5, 15 and 40 s and a 40 s SIGSTOP of the exchange's process (speed 20), each
    on its own exchange, flow and stores, run side by side (the faults last wall time: this
    keeps the suite short). Each must end exact."""
    cases: dict[str, Callable[[Stores, Path], None]] = {
        "stall 5 s": lambda s, d: _stall_case(5.0, s, d),
        "stall 15 s": lambda s, d: _stall_case(15.0, s, d),
        "stall 40 s": lambda s, d: _stall_case(40.0, s, d),
        "exchange frozen 40 s": lambda s, d: _freeze_case(40.0, s, d),
    }
    stores, dirs = {}, {}
    for i, name in enumerate(cases):
        stores[name] = Stores(redis_url, _namespace(keys, f"c{i}"), _database(new_database))
        dirs[name] = tmp_path / f"c{i}"
        dirs[name].mkdir()
    with ThreadPoolExecutor(len(cases)) as pool:
        futures = {n: pool.submit(run, stores[n], dirs[n]) for n, run in cases.items()}
    failures = {n: f.exception() for n, f in futures.items() if f.exception() is not None}
    assert failures == {}, "\n\n".join(f"{n}: {e}" for n, e in failures.items())


# -- 2, 3. kill -9 of the flow, and a lost data directory -------------------------------------
def test_kill_9_of_the_flow_at_ten_random_moments(
    redis_url: str, keys: KeySpace, signals_db: str, tmp_path: Path
) -> None:
    """Ten kills, restarted after each: the first within the first second of the fresh
    start's connection, two in quick succession (the second in the restart's first second),
    the others at random moments of a run (start-up, catch-up, writes)."""
    rng = random.Random(SEED)
    delays = [rng.uniform(1.0, 4.0) for _ in range(9)]  # after each restart
    quick = rng.randrange(1, 8)
    delays[quick] = rng.uniform(0.2, 1.0)  # right after the kill before it
    cfg = _market(end_ms=T0 + 8 * M, speed=20.0, start_paused=True)
    want = _reference(cfg, T0 + 8 * M)
    stores = Stores(redis_url, keys, signals_db)
    with Simulator(cfg) as sim, Flow(sim.base_url, sorted(want), stores, tmp_path) as flow:
        flow.launch()
        _pause(rng.uniform(0.0, 1.0))
        flow.kill()
        flow.start()
        for delay in delays:
            _pause(delay)
            flow.kill()
            flow.start()
        assert flow.kills == 10
        verify(stores, want, flow, at_least=4 * (8 + 2))


def test_restart_with_the_data_directory_deleted(
    redis_url: str, keys: KeySpace, signals_db: str, tmp_path: Path
) -> None:
    """A kill, the flow's data directory (KLINEFLOW_DATA_DIR) deleted, a restart."""
    cfg = _market(end_ms=T0 + 7 * M, speed=20.0, start_paused=True)
    want = _reference(cfg, T0 + 7 * M)
    stores = Stores(redis_url, keys, signals_db)
    with Simulator(cfg) as sim, Flow(sim.base_url, sorted(want), stores, tmp_path) as flow:
        flow.data_dir.mkdir()
        flow.launch()
        assert _wait(lambda: stores.last_closed() >= T0 + M, 60), flow.tail()
        _pause(random.Random(SEED).uniform(0.5, 3.0))
        flow.kill()
        shutil.rmtree(flow.data_dir)
        flow.start()
        verify(stores, want, flow)


# -- 4, 5, 6. Redis and PostgreSQL killed or away ---------------------------------------------
def _kill_redis(server: EmbeddedRedis) -> None:
    pid = int(server.pidfile.read_text())
    os.kill(pid, signal.SIGKILL)
    assert _wait(lambda: not server.running(), 30)


def _kill_postgres(server: EmbeddedPostgres) -> None:
    pid = int((server.directory / "postmaster.pid").read_text().split("\n", 1)[0])
    os.kill(pid, signal.SIGKILL)
    assert _wait(lambda: not server.running(), 60)  # gone (and reaped)


def _away_over_a_close(base: str, down: Callable[[], object], up: Callable[[], object]) -> None:
    """Take a server `down` 10 s of market time before a minute ends and bring it `up` 2 s of
    wall time after market time passed it by 5 s (the close was due meanwhile; at speed 20 the
    outage leaves a backlog of most of a minute of market time)."""
    boundary = INTERVALS["1m"].next_open(_market_ms(base) + 10_000)
    _until_market(base, boundary - 10_000)
    down()
    _until_market(base, boundary + 5_000)
    _pause(2.0)
    up()


def test_kill_9_of_redis_while_the_flow_runs(
    signals_db: str, keys: KeySpace, tmp_path: Path
) -> None:
    """Redis (its own server) killed once, and later twice in a row, each time away over a
    close; started again from its append-only file."""
    server = EmbeddedRedis(tmp_path / "redis")
    stores = Stores(server.start(), keys, signals_db)
    rng = random.Random(SEED)
    cfg = _market(end_ms=T0 + 7 * M, speed=20.0, start_paused=True)
    want = _reference(cfg, T0 + 7 * M)

    def twice() -> None:
        _kill_redis(server)
        server.start()
        _pause(rng.uniform(0.2, 1.0))
        _kill_redis(server)

    try:
        with Simulator(cfg) as sim, Flow(sim.base_url, sorted(want), stores, tmp_path) as flow:
            flow.launch()
            assert _wait(lambda: stores.last_closed() >= T0 + M, 60), flow.tail()
            _away_over_a_close(sim.base_url, lambda: _kill_redis(server), server.start)
            assert _wait(lambda: stores.last_closed() >= T0 + 3 * M, 60), flow.tail()
            _away_over_a_close(sim.base_url, twice, server.start)
            verify(stores, want, flow)
    finally:
        server.stop()


@contextmanager
def private_postgres(directory: Path) -> Iterator[tuple[EmbeddedPostgres, str]]:
    """A PostgreSQL server of the test's own, with a migrated database: (server, its URL)."""
    server = EmbeddedPostgres(directory)
    url = make_conninfo(server.start(), dbname="postgres")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE faults")
    db = make_conninfo(url, dbname="faults")
    apply_migrations(db)
    try:
        yield server, db
    finally:
        server.stop()


def _signal_count(db: str) -> int:
    try:
        with psycopg.connect(db, connect_timeout=3) as conn:
            row = conn.execute("SELECT count(*) FROM signals").fetchone()
    except psycopg.OperationalError:
        return -1
    return int(row[0]) if row else 0


def test_kill_9_of_postgresql_while_the_flow_runs(
    redis_url: str, keys: KeySpace, tmp_path: Path
) -> None:
    """PostgreSQL (its own server) killed while signals are being written, kept away over
    a close, started again."""
    cfg = _market(end_ms=T0 + 7 * M, speed=20.0, start_paused=True)
    want = _reference(cfg, T0 + 7 * M)
    with private_postgres(tmp_path / "pg") as (server, db):
        stores = Stores(redis_url, keys, db)
        with Simulator(cfg) as sim, Flow(sim.base_url, sorted(want), stores, tmp_path) as flow:
            flow.launch()
            assert _wait(lambda: _signal_count(db) > 0, 60), flow.tail()
            _pause(random.Random(SEED).uniform(0.0, 2.0))
            _away_over_a_close(sim.base_url, lambda: _kill_postgres(server), server.start)
            verify(stores, want, flow)


def test_postgresql_away_across_a_crash_of_the_flow(
    redis_url: str, keys: KeySpace, tmp_path: Path
) -> None:
    """PostgreSQL stopped; the flow runs on (klines close), is killed, started again while
    PostgreSQL is still away and runs on; then PostgreSQL comes back."""
    cfg = _market(end_ms=T0 + 8 * M, speed=20.0, start_paused=True)
    want = _reference(cfg, T0 + 8 * M)
    with private_postgres(tmp_path / "pg") as (server, db):
        stores = Stores(redis_url, keys, db)
        with Simulator(cfg) as sim, Flow(sim.base_url, sorted(want), stores, tmp_path) as flow:
            flow.launch()
            assert _wait(lambda: _signal_count(db) > 0, 60), flow.tail()
            server.stop()
            closed = stores.last_closed()
            assert _wait(lambda: stores.last_closed() >= closed + 2 * M, 60), flow.tail()
            flow.kill()
            flow.start()
            closed = stores.last_closed()
            _wait(lambda: stores.last_closed() >= closed + M or not flow.running(), 60)
            assert flow.running() and stores.last_closed() >= closed + M, flow.tail()
            server.start()
            verify(stores, want, flow)


# -- 7. 429s and a 418 ban during a backfill -------------------------------------------------
def test_429s_and_a_418_ban_during_a_backfill(
    redis_url: str, keys: KeySpace, signals_db: str, tmp_path: Path
) -> None:
    """20 consecutive 429s (Retry-After 1 s), then a 418 ban (Retry-After 2 s), each met by
    the backfill after a dropped connection."""
    cfg = _market(end_ms=T0 + 7 * M, speed=20.0, start_paused=True)
    want = _reference(cfg, T0 + 7 * M)
    stores = Stores(redis_url, keys, signals_db)
    with Simulator(cfg) as sim, Flow(sim.base_url, sorted(want), stores, tmp_path) as flow:
        base = sim.base_url
        flow.launch()
        assert _wait(lambda: stores.last_closed() >= T0 + M, 60), flow.tail()
        _post(base, "/_sim/rest429?count=20&retry_after=1")
        _post(base, "/_sim/drop")
        assert _wait(lambda: sim.hub.rest429_left == 0, 120), flow.tail()  # all 20 were met
        _post(base, "/_sim/rest418?count=1&retry_after=2")
        _post(base, "/_sim/drop")
        assert _wait(lambda: sim.hub.rest429_left == 0, 60), flow.tail()
        assert sim.hub.faults["rest429"] == 1 and sim.hub.faults["rest418"] == 1
        verify(stores, want, flow)


# -- 8. a quiet symbol ------------------------------------------------------------------------
def test_a_quiet_symbol_whose_trades_all_came_before_the_start(
    redis_url: str, keys: KeySpace, signals_db: str, tmp_path: Path
) -> None:
    """QUIETUSDT traded only in the market's first minutes, which the exchange serves as
    history (REST only) when the flow first starts; BTCUSDT trades throughout. Every kline
    of both from the open of the 3m kline open at the start is there, the quiet symbol's all
    flat at its last price."""
    end_ms = T0 + 10 * M
    btc = SimMarket.synthetic(1, SEED, 12.0, T0, end_ms)
    btc.advance(end_ms)
    rng = random.Random(SEED)
    quiet, ids = [], 5_000
    for i in range(12):  # a dozen trades in the market's first 100 s
        price, qty = rng.randrange(99_000, 101_000) * 10_000, rng.randrange(1, 50) * 10**7
        quiet.append((i, (ids + i, ids + i, price, qty, T0 + 8_000 * (i + 1), rng.random() < 0.5)))
    recording = tmp_path / "market.jsonl.gz"
    write_recording(recording, {"BTCUSDT": btc.trades("BTCUSDT"), "QUIETUSDT": quiet})
    cfg = SimConfig(recording=recording, history_ms=4 * M + 30_000, end_ms=end_ms,
                    after_end_ms=2 * M, speed=20.0, start_paused=True)  # fmt: skip
    stores = Stores(redis_url, keys, signals_db)
    with Simulator(cfg) as sim:
        from_ms = INTERVALS["3m"].open_time(_market_ms(sim.base_url))
        assert from_ms == T0 + 3 * M  # the start is at 4 min 30 s; the last quiet trade at 1:36
        want = _reference(cfg, end_ms, from_ms)
        assert all(r[5] == "0.00000000" for by in want["QUIETUSDT"].values() for r in by)
        with Flow(sim.base_url, sorted(want), stores, tmp_path) as flow:
            flow.launch()
            verify(stores, want, flow, at_least=2 * (7 + 2))
