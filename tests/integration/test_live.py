"""The live flow against the exchange simulator: each fault ends with Redis equal to what a
fault-free run must hold (the pure builder over the market's own trades): 0 missing, 0 extra,
0 duplicate klines, every field equal, which makes the trade ids contiguous (n sums match)."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import redis

from flows.dataflows.live import LiveJob, run_live
from flows.domain.intervals import INTERVALS
from flows.domain.keys import KeySpace
from flows.domain.stats import RunStats
from flows.klines.builder import build_klines
from flows.simulator import SimConfig, Simulator
from flows.simulator.market import SimMarket

M = 60_000
T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC
INTERVALS_UNDER_TEST = ("1m", "3m")


def _post(base: str, path: str) -> None:
    urllib.request.urlopen(
        urllib.request.Request(base + path, method="POST", data=b""), timeout=10
    ).read()


def _reference(cfg: SimConfig) -> dict[str, dict[str, list[list[object]]]]:
    """Every closed kline a fault-free run must hold, as REST arrays, per symbol and interval."""
    assert cfg.start_ms is not None and cfg.end_ms is not None
    market = SimMarket.synthetic(cfg.symbols, cfg.seed, cfg.rate, cfg.start_ms, cfg.end_ms)
    market.advance(cfg.end_ms)
    out: dict[str, dict[str, list[list[object]]]] = {}
    for symbol in market.symbols:
        trades = [t for _, t in market.trades(symbol)]
        built = build_klines(trades, INTERVALS_UNDER_TEST)
        out[symbol] = {
            # only klines that ended before the market did (the last one may still be open)
            i: [k.to_rest() for k in ks if INTERVALS[i].next_open(k.open_ms) <= cfg.end_ms]
            for i, ks in built.items()
        }
    return out


def _stored(
    client: redis.Redis, keys: KeySpace, symbol: str, interval: str, last_open: int
) -> list[list[object]]:
    rows = client.zrange(keys.klines(symbol, interval), 0, -1, withscores=True)
    scores = [int(s) for _, s in rows]
    assert len(scores) == len(set(scores)), f"two members for one open time in {symbol} {interval}"
    return [json.loads(m) for m, s in rows if s <= last_open]


def _complete(
    client: redis.Redis, keys: KeySpace, want: dict[str, dict[str, list[list[object]]]]
) -> bool:
    for symbol, by_interval in want.items():
        for interval, rows in by_interval.items():
            if not rows:
                continue
            last = client.get(keys.last_closed(symbol, interval))
            if last is None or int(last) < int(rows[-1][0]):  # type: ignore[call-overload]
                return False
    return True


@contextmanager
def _live(
    cfg: SimConfig, redis_url: str, keys: KeySpace, **job_kw: object
) -> Iterator[tuple[str, RunStats, threading.Event]]:
    sim = Simulator(cfg)
    base = sim.start()
    stop = threading.Event()
    stats = RunStats()
    market = SimMarket.synthetic(cfg.symbols, cfg.seed, cfg.rate, 0, 1)
    symbols = job_kw.pop("symbols", None) or market.symbols
    job = LiveJob(
        ws_url=base.replace("http://", "ws://"),
        rest_url=base,
        symbols=tuple(symbols),  # type: ignore[arg-type]
        redis_url=redis_url,
        intervals=INTERVALS_UNDER_TEST,
        keys=keys,
        grace_ms=500,
        open_throttle_ms=200,
        stop=stop,
        **job_kw,  # type: ignore[arg-type]
    )
    failure: list[BaseException] = []

    def run() -> None:
        try:
            run_live(job, stats)
        except BaseException as e:  # surfaced by the test below
            failure.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield base, stats, stop
    finally:
        stop.set()
        thread.join(timeout=30)
        sim.stop()
    assert not failure, failure


def _wait(condition: Callable[[], bool], timeout_s: float) -> bool:
    done = threading.Event()
    for _ in range(int(timeout_s / 0.1)):
        if condition():
            return True
        done.wait(0.1)
    return condition()


def _check_equal(
    client: redis.Redis, keys: KeySpace, want: dict[str, dict[str, list[list[object]]]]
) -> int:
    compared = 0
    for symbol, by_interval in want.items():
        for interval, rows in by_interval.items():
            if not rows:
                continue
            got = _stored(client, keys, symbol, interval, int(rows[-1][0]))  # type: ignore[call-overload]
            first = int(rows[0][0])  # type: ignore[call-overload]
            got = [r for r in got if int(r[0]) >= first]  # type: ignore[call-overload]
            assert got == rows, (symbol, interval)
            compared += len(rows)
    return compared


def _market(**kw: object) -> SimConfig:
    base = dict(symbols=4, seed=11, rate=40.0, speed=20.0, start_ms=T0, end_ms=T0 + 4 * M,
                after_end_ms=2 * M)  # fmt: skip
    base.update(kw)
    return SimConfig(**base)  # type: ignore[arg-type]


def _run_case(redis_url: str, redis_client: redis.Redis, keys: KeySpace, cfg: SimConfig,
              fault: Callable[[str], None] | None = None, fault_after_s: float = 3.0,
              **job_kw: object) -> RunStats:  # fmt: skip
    want = _reference(cfg)
    with _live(cfg, redis_url, keys, **job_kw) as (base, stats, _):
        if fault is not None:
            threading.Event().wait(fault_after_s)
            fault(base)
        assert _wait(lambda: _complete(redis_client, keys, want), 60), "klines did not complete"
    assert _check_equal(redis_client, keys, want) >= 20  # 4 symbols x (4 x 1m + 1 x 3m)
    assert stats.gaps == 0
    return stats


def test_fault_free_run_equals_the_reference(
    redis_url: str, redis_client: redis.Redis, keys: KeySpace
) -> None:
    stats = _run_case(redis_url, redis_client, keys, _market())
    assert stats.trades_read > 0 and stats.dead_letters == {}


def test_connection_dropped_mid_minute(
    redis_url: str, redis_client: redis.Redis, keys: KeySpace
) -> None:
    drop = lambda b: _post(b, "/_sim/drop")  # noqa: E731
    stats = _run_case(redis_url, redis_client, keys, _market(), drop, 2.5)
    assert stats.feed_reconnects >= 1
    assert stats.backfills >= 4  # every symbol caught up after the reconnect


def test_stalled_connection(redis_url: str, redis_client: redis.Redis, keys: KeySpace) -> None:
    stall = lambda b: _post(b, "/_sim/stall?seconds=4")  # noqa: E731
    stats = _run_case(redis_url, redis_client, keys, _market(), stall, 2.0, idle_timeout_s=1.5)
    assert stats.feed_idle_drops >= 1 and stats.feed_reconnects >= 1


def test_rotation_at_max_age_and_server_shutdown(
    redis_url: str, redis_client: redis.Redis, keys: KeySpace
) -> None:
    cfg = _market(max_connection_age_s=60.0)
    shutdown = lambda b: _post(b, "/_sim/shutdown")  # noqa: E731
    stats = _run_case(redis_url, redis_client, keys, cfg, shutdown, 2.0, max_connection_age_s=3.0)
    assert stats.feed_shutdown_notices >= 1  # the notice made a rotation ...
    assert stats.feed_rotations >= 2  # ... and so did our own age limit
    assert stats.duplicates > 0  # the overlaps delivered trades twice; Redis holds each once


def test_garbage_and_oversize_frames_are_dead_lettered(
    redis_url: str, redis_client: redis.Redis, keys: KeySpace
) -> None:
    def faults(base: str) -> None:
        _post(base, "/_sim/garbage?count=3")
        _post(base, "/_sim/oversize?bytes=300000")

    stats = _run_case(redis_url, redis_client, keys, _market(), faults, 2.0)
    assert stats.dead_letters["malformed"] >= 2  # the garbage frames
    assert sum(stats.dead_letters.values()) >= 4  # and the oversize frame
    assert redis_client.xlen(keys.dead_letters) == sum(stats.dead_letters.values())


def test_rest_429_during_backfill(
    redis_url: str, redis_client: redis.Redis, keys: KeySpace
) -> None:
    def faults(base: str) -> None:
        _post(base, "/_sim/rest429?count=3&retry_after=1")
        _post(base, "/_sim/drop")

    stats = _run_case(redis_url, redis_client, keys, _market(), faults, 2.5)
    assert stats.trades_backfilled > 0 and stats.feed_reconnects >= 1
    assert stats.rest_rate_limited >= 1  # the backfill met the 429s and waited them out


def test_universe_refresh_adds_and_removes_symbols_live(
    redis_url: str, redis_client: redis.Redis, keys: KeySpace
) -> None:
    """Start with 3 of 6 symbols; the refresh swaps two of them on the running connection."""
    cfg = _market(symbols=6)
    want = _reference(cfg)
    symbols = sorted(want)
    first, later = symbols[:3], symbols[1:4]
    kw = {"symbols": first, "refresh": lambda: later, "refresh_every_s": 1.0}
    with _live(cfg, redis_url, keys, **kw) as (_, stats, _):
        added = {s: want[s] for s in later}
        assert _wait(lambda: _complete(redis_client, keys, added), 60)
    # changed on the running connection: UNSUBSCRIBE + SUBSCRIBE, both answered, no reconnect
    assert stats.feed_control_sent == 2 and stats.feed_control_answers == 2
    assert stats.feed_reconnects == 0
    assert _check_equal(redis_client, keys, {s: want[s] for s in later}) >= 15
    dropped = symbols[0]
    assert dropped not in later
    # the dropped symbol stopped being followed: it has fewer closed klines than the others
    assert redis_client.zcard(keys.klines(dropped, "1m")) < redis_client.zcard(
        keys.klines(later[-1], "1m")
    )
    never = symbols[4:]
    assert all(redis_client.zcard(keys.klines(s, "1m")) == 0 for s in never)


def test_reconciliation_with_the_exchange_kline_stream(
    redis_url: str, redis_client: redis.Redis, keys: KeySpace
) -> None:
    cfg = _market()
    want = _reference(cfg)
    stats = _run_case(redis_url, redis_client, keys, cfg, reconcile=frozenset(want))
    minutes = sum(len(by["1m"]) for by in want.values())
    assert stats.reconciled >= minutes - len(want)  # every closed minute (the first may be cut)
    assert stats.reconcile_mismatches == 0
    assert redis_client.xlen(keys.reconcile) == 0


def test_the_flow_publishes_a_heartbeat_with_each_feed_state(
    redis_url: str, redis_client: redis.Redis, keys: KeySpace, database_url: str
) -> None:
    import json as _json

    from typer.testing import CliRunner

    from flows.cli import app

    def status() -> tuple[int, dict[str, object]]:
        got = CliRunner().invoke(app, ["status", "--json", "--redis-url", redis_url,
                                       "--namespace", keys.namespace,
                                       "--database-url", database_url])  # fmt: skip
        return got.exit_code, _json.loads(got.stdout)

    def beat() -> dict[bytes, bytes]:
        return redis_client.hgetall(keys.heartbeat)  # type: ignore[return-value]

    cfg = _market()
    with _live(cfg, redis_url, keys, per_connection=2) as (_, stats, _stop):
        assert _wait(lambda: bool(beat()) and stats.trades_read > 0, 30)
        assert _wait(lambda: int(beat()[b"trades_read"]) > 0, 10)
        running = beat()
        feeds = _json.loads(running[b"feeds"])
        assert running[b"state"] == b"running"
        # 4 symbols, 2 a feed, and each feed carries the clock stream too
        assert len(feeds) == 2 and {f["streams"] for f in feeds} == {3}
        assert _wait(lambda: all(f["state"] == "connected"
                                 for f in _json.loads(beat()[b"feeds"])), 10)  # fmt: skip
        ages = [f["last_message_age_s"] for f in _json.loads(beat()[b"feeds"])]
        assert all(a is not None and a >= 0 for a in ages)
        code, report = status()  # `klineflow status`: healthy while it runs
        assert code == 0 and report["healthy"] is True, report
        assert report["redis"] == "reachable" and report["postgresql"] == "reachable"
        text = CliRunner().invoke(app, ["status", "--redis-url", redis_url, "--namespace",
                                        keys.namespace, "--database-url",
                                        database_url])  # fmt: skip
        lines = text.stdout.splitlines()
        assert text.exit_code == 0 and lines[-1] == "healthy", text.output
        assert sum(line.startswith("  feed ") and " connected " in line for line in lines) == 2
        assert all(len(line) <= 80 for line in lines), lines
    code, report = status()
    assert code == 1 and report["healthy"] is False
    assert report["flow"]["state"] == "stopped"  # type: ignore[index]
    assert report["reasons"] == ["the flow stopped"]
    stopped = beat()
    assert stopped[b"state"] == b"stopped"
    assert {f["state"] for f in _json.loads(stopped[b"feeds"])} == {"disconnected"}
    assert 0 < redis_client.ttl(keys.heartbeat) <= 10


def test_metrics_are_scraped_and_move_and_health_follows_the_flow(
    redis_url: str, redis_client: redis.Redis, keys: KeySpace, signals_db: str
) -> None:
    import urllib.error
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    from flows.dataflows import live as live_module
    from flows.signals.book import TraderRow
    from flows.signals.store import TraderStore

    TraderStore(signals_db).add(TraderRow(0, "up", "close > open", "1m",
                                          trigger_mode="every_close", cooldown_bars=0))  # fmt: skip

    def scrape(port: int) -> dict[str, float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return out

    def healthz(port: int) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
                return int(r.status)
        except urllib.error.HTTPError as e:
            return int(e.code)

    before = len(live_module.job_ports)
    cfg = _market()
    moving = (  # each is made to move below: faults injected into the simulator
        "klineflow_trades_in_total", "klineflow_trades_backfilled_total",
        "klineflow_feed_reconnects_total",
        "klineflow_dead_letters_total{reason=malformed}",
        "klineflow_klines_written_total{interval=1m}", "klineflow_open_kline_writes_total",
        "klineflow_rule_evaluations_total", "klineflow_rule_evaluation_seconds_total",
        "klineflow_signals_total",
    )  # fmt: skip
    with _live(cfg, redis_url, keys, metrics_port=0, database_url=signals_db) as (base, stats, _s):
        assert _wait(lambda: len(live_module.job_ports) > before, 10)
        port = live_module.job_ports[-1]
        assert _wait(lambda: scrape(port).get("klineflow_trades_in_total", 0) > 0, 30)
        first = scrape(port)
        assert _wait(lambda: healthz(port) == 200, 20)
        _post(base, "/_sim/garbage?count=3")  # malformed frames -> dead letters
        # frames held back by a stall, then the connection cut: those trades never come on
        # the stream, the reconnect's catch-up fetches them over REST
        _post(base, "/_sim/stall?seconds=2")
        threading.Event().wait(0.5)  # a schedule: trades queue behind the stall meanwhile
        _post(base, "/_sim/drop")
        assert _wait(lambda: scrape(port)["klineflow_feed_reconnects_total"] > 0, 30)
        # rotation with overlap, and the REST catch-ups overlapping the stream: trades
        # delivered twice are dropped (how many overlap depends on timing: some do). After the
        # reconnect, so that the drop cannot be taken for the rotation's end
        _post(base, "/_sim/shutdown?lead_s=1")
        assert _wait(lambda: scrape(port)["klineflow_duplicate_trades_total"] > 0, 30)
        assert _wait(lambda: scrape(port).get("klineflow_signals_total", 0) > 0, 90)
        assert _wait(lambda: all(scrape(port).get(n, 0) > first.get(n, 0) for n in moving), 30), [
            (n, first.get(n), scrape(port).get(n))
            for n in moving
            if not scrape(port).get(n, 0) > first.get(n, 0)
        ]
        now = scrape(port)
    for name in (
        "klineflow_trades_in_total", "klineflow_trades_backfilled_total",
        "klineflow_duplicate_trades_total", "klineflow_feed_reconnects_total",
        "klineflow_gaps_total", "klineflow_dead_letters_total{reason=late}",
        "klineflow_dead_letters_total{reason=invalid}",
        "klineflow_klines_written_total{interval=1m}",
        "klineflow_open_kline_writes_total", "klineflow_rule_evaluations_total",
        "klineflow_rule_evaluation_seconds_total", "klineflow_rule_failures_total",
        "klineflow_signals_total", "klineflow_signal_repeats_total",
        "klineflow_signal_latency_p99_seconds", "klineflow_signals_pending",
        "klineflow_feed_connected{connection=0}",
        "klineflow_feed_last_message_age_seconds{connection=0}",
        "klineflow_lag_seconds{quantile=0.5}", "klineflow_lag_seconds{quantile=0.99}",
        "klineflow_feed_buffered_frames{connection=0}", "klineflow_foreign_batches_total",
    ):  # fmt: skip
        assert name in now, name
    assert now["klineflow_klines_written_total{interval=1m}"] > 0
    assert now["klineflow_rule_evaluation_seconds_total"] > 0
    assert now["klineflow_signals_total"] > 0
    assert now["klineflow_signal_latency_p99_seconds"] > 0  # close -> committed and NOTIFYed
    assert now["klineflow_lag_seconds{quantile=0.99}"] > 0
    assert now["klineflow_foreign_batches_total"] == 0  # one process: nothing crosses
    assert now["klineflow_feed_connected{connection=0}"] == 1.0
    assert stats.trades_read >= now["klineflow_trades_in_total"]


def test_poisoned_frames_are_refused_at_the_door(
    redis_url: str, redis_client: redis.Redis, keys: KeySpace
) -> None:
    """Well-formed trades no exchange could send (a time in 2286, ids of 10^15, ids 5e10 past
    the last trade's, a price of 1e400) are dead-lettered as implausible and change nothing:
    the klines equal the
    reference, no kline was closed early by the far-future time, nothing came late."""

    def poison(base: str) -> None:
        for what in ("time", "id", "jump", "price"):
            _post(base, f"/_sim/poison?what={what}")

    stats = _run_case(redis_url, redis_client, keys, _market(), poison, 2.0)
    assert stats.dead_letters["implausible"] >= 4
    assert stats.dead_letters["late"] == 0 and stats.klines_amended == 0
    reasons = [f[b"reason"] for _, f in redis_client.xrange(keys.dead_letters)]
    assert reasons.count(b"implausible") == stats.dead_letters["implausible"]
