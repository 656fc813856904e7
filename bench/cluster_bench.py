"""Scale-out benchmark: the flow on 1 and 2 processes, and its cost at live rates.

1. Throughput, 1 vs 2 processes, full flow (trades -> klines -> Redis, closed klines ->
   2 trader rules -> signals in PostgreSQL), fed by an in-memory source so the feed does not
   bound it: each member builds the trades of its own symbols (a seeded synthetic market)
   before the clock starts, then the cluster runs to the end of input. Prints trades/s of
   each and the ratio. (Over WebSockets the Python simulator caps delivery near 22k frames/s,
   see bench/live_bench.py, which would hide the flow's own scaling.)
2. Live rates: `klineflow up` against the simulator (its own process) with 1,600 symbols at
   2,000 trades/s of real time, 1 process and then `--processes 2`: CPU (share of one core)
   and resident memory of each flow process over a steady window after warm-up.
3. Burst (1 process, same run as 2): the simulator holds every frame for 25 s (a stall) and
   then releases them at once, 25 x 2,000 = 50,000 trades, as fast as it can send them. The
   flow's metrics are scraped every 0.2 s: the intake rate it reached, and when every held
   trade was taken, the feed queues were empty and the lag metric (trade time -> kline in
   Redis, p99 of the recent writes) was back under its steady bound, the 1 s open-kline
   throttle plus 100 ms (open klines are written at the end of each second).

Uses the embedded Redis and PostgreSQL unless KLINEFLOW_REDIS_URL / _DATABASE_URL are set.

    .venv/bin/python bench/cluster_bench.py                      # everything
    .venv/bin/python bench/cluster_bench.py --skip-live          # part 1 only
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from flows.cluster import ClusterPlace, local_addresses, local_members  # noqa: E402

T0 = 1_704_067_200_000
TICK = os.sysconf("SC_CLK_TCK")


# -- 1. throughput, in-memory source ------------------------------------------------------------


def member(args: argparse.Namespace) -> None:
    """One member of the throughput cluster (run in its own process)."""
    from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
    from bytewax.testing import cluster_main, run_main

    from flows.dataflows.kline_step import KlineStepConfig
    from flows.dataflows.klines_flow import build_kline_flow
    from flows.domain.keys import KeySpace
    from flows.domain.stats import RunStats
    from flows.signals.runtime import rules_stage
    from flows.simulator.market import SimMarket
    from flows.sinks.redis_sink import RedisKlineSink, writer_factory
    from flows.sources.items import SourceItem, SymbolBatch

    place = ClusterPlace.parse(args.member, args.addresses)
    span_ms = args.minutes * 60_000
    market = SimMarket.synthetic(args.symbols, 5, args.trades / (span_ms / 1000), T0, T0 + span_ms)
    market.advance(T0 + span_ms)
    mine = place.own(market.symbols)
    trades = {s: [t for _, t in market.trades(s)] for s in mine}
    # batches as the live source hands them: a slice of market time, grouped by symbol
    batches: list[list[SourceItem]] = []
    step_ms = 1000
    cursor = dict.fromkeys(mine, 0)
    for start in range(T0, T0 + span_ms, step_ms):
        items: list[SourceItem] = []
        for s in mine:
            ts, i = trades[s], cursor[s]
            j = i
            while j < len(ts) and ts[j][4] < start + step_ms:
                j += 1
            if j > i:
                items.append((s, SymbolBatch(s, ts[i:j])))
                cursor[s] = j
        if items:
            batches.append(items)
    total = sum(len(v) for v in trades.values())
    started: list[float] = []

    class Part(StatefulSourcePartition[SourceItem, int]):
        def __init__(self) -> None:
            self.i = 0

        def next_batch(self) -> list[SourceItem]:
            if not started:
                started.append(time.perf_counter())
            if self.i >= len(batches):
                raise StopIteration
            self.i += 1
            return batches[self.i - 1]

        def snapshot(self) -> int:
            return self.i

    class Source(FixedPartitionedSource[SourceItem, int]):
        def list_parts(self) -> list[str]:
            return [f"mem-{place.process_id}"]

        def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> Part:
            return Part()

    stats = RunStats()
    keys = KeySpace(args.namespace)
    intervals = ("1m", "5m", "15m", "1h")
    rules = rules_stage(args.database_url, args.redis_url, intervals, keys)
    sink = RedisKlineSink(writer_factory(args.redis_url, keys=keys), stats)
    step = KlineStepConfig(intervals, timer_writes=False, workers=place.processes)
    flow = build_kline_flow("bench", Source(), step,
                            sink, stats, rules.stage)  # fmt: skip
    epoch = timedelta(seconds=2)
    if place.processes > 1:
        cluster_main(flow, list(place.addresses), place.process_id, epoch_interval=epoch)
    else:
        run_main(flow, epoch_interval=epoch)
    seconds = time.perf_counter() - started[0]
    rules.stop()
    summary = rules.summary()
    print(json.dumps({"trades": total, "seconds": seconds, "symbols": len(mine),
                      "evaluations": summary.get("evaluations", 0),
                      "signals": summary.get("signals_new", 0),
                      "foreign_batches": stats.foreign_batches}))  # fmt: skip


def throughput(processes: int, redis_url: str, db: str, a: argparse.Namespace) -> dict[str, Any]:
    import redis

    ns = f"clbench{processes}"
    client = redis.Redis.from_url(redis_url)
    for k in client.scan_iter(match=f"{ns}:*", count=1000):
        client.delete(k)
    addresses = local_addresses(processes) if processes > 1 else ("127.0.0.1:0",)
    procs = []
    for i in range(processes):
        cmd = [sys.executable, __file__, "--member", str(i), "--addresses", ";".join(addresses),
               "--redis-url", redis_url, "--database-url", db, "--namespace", ns,
               "--trades", str(a.trades), "--symbols", str(a.symbols),
               "--minutes", str(a.minutes)]  # fmt: skip
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=REPO))
    outs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    trades = sum(o["trades"] for o in outs)
    seconds = max(o["seconds"] for o in outs)
    return {"processes": processes, "trades": trades, "seconds": seconds,
            "rate": trades / seconds, "members": outs}  # fmt: skip


def _prepare_database(url: str) -> None:
    import psycopg

    from flows.signals.book import TraderRow
    from flows.signals.store import TraderStore
    from flows.storage.migrations import apply_migrations

    apply_migrations(url)
    with psycopg.connect(url) as conn:
        conn.execute("DELETE FROM signals")
        conn.execute("DELETE FROM traders WHERE name LIKE 'bench-%'")
    store = TraderStore(url)
    store.add(TraderRow(0, "bench-up", "close > open", "1m", trigger_mode="every_close",
                        cooldown_bars=0))  # fmt: skip
    store.add(TraderRow(0, "bench-rsi", "rsi(14) > 60 and ema(20) > ema(50)", "5m",
                        trigger_mode="every_close", cooldown_bars=0))  # fmt: skip


# -- 2. and 3. live rates against the simulator ------------------------------------------------


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _memory_mb(pid: int) -> tuple[float, float]:
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def _scrape(port: int) -> dict[str, float]:
    """The flow's metrics: name{labels} -> value (labels as Prometheus prints them)."""
    out: dict[str, float] = {}
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
    return out


def _until_caught_up(port: int, processes: int, limit_s: float = 600.0) -> float:
    """Seconds until no symbol is being caught up over REST (every member's metrics)."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit_s:
        try:
            busy = _scrape(port).get("klineflow_symbols_backfilling", 1.0)
        except OSError:
            busy = 1.0
        if busy == 0:
            return time.perf_counter() - started
        time.sleep(1.0)
    return time.perf_counter() - started


def _burst(base: str, port: int, rate: float) -> dict[str, Any]:
    """Hold every frame for 25 s, release them at once, and watch the flow take them in."""
    held = int(25 * rate)
    m0 = _scrape(port)
    stall = urllib.request.Request(base + "/_sim/stall?seconds=25", method="POST", data=b"")
    urllib.request.urlopen(stall, timeout=10).read()
    time.sleep(25.0)
    released = time.perf_counter()
    seen: list[tuple[float, float]] = []  # (seconds since release, trades taken since stall)
    absorbed = None
    lag_after = None
    while time.perf_counter() - released < 60:
        m = _scrape(port)
        t = time.perf_counter() - released
        taken = m["klineflow_trades_in_total"] - m0["klineflow_trades_in_total"]
        seen.append((t, taken))
        buffered = sum(v for k, v in m.items() if k.startswith("klineflow_feed_buffered_frames"))
        lag = m.get('klineflow_lag_seconds{quantile="0.99"}', 0.0)
        # absorbed: every held trade taken (plus those since), nothing waiting, fresh klines:
        # the lag (trade time -> a kline holding it in Redis, which includes the wait for the
        # open-kline write at the end of each second) back under the steady state's bound,
        # the 1 s throttle plus 100 ms
        if absorbed is None and taken >= held + rate * t * 0.9 and buffered == 0 and lag < 1.1:
            absorbed, lag_after = t, lag
            break
        time.sleep(0.2)
    peak = 0.0
    for (t1, n1), (t2, n2) in itertools.pairwise(seen):
        if t2 > t1:
            peak = max(peak, (n2 - n1) / (t2 - t1))
    return {"trades": held, "absorbed_after_s": absorbed, "lag_p99_after_s": lag_after,
            "peak_intake_per_s": peak}  # fmt: skip


def live(processes: int, redis_url: str, a: argparse.Namespace, burst: bool) -> dict[str, Any]:
    sim_port = local_addresses(1)[0].rsplit(":", 1)[1]
    sim = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "simulate", "--symbols", str(a.live_symbols),
         "--rate", str(a.live_rate), "--speed", "1", "--port", sim_port, "--seed", "3"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{sim_port}"
    try:
        for _ in range(100):
            try:
                info = _get(base + "/api/v3/exchangeInfo")
                break
            except OSError:
                time.sleep(0.2)
        symbols = [s["symbol"] for s in info["symbols"]][: a.live_symbols]
        metrics_port = int(local_addresses(1)[0].rsplit(":", 1)[1])
        data = Path(tempfile.mkdtemp(prefix="klineflow-clbench-"))
        env = dict(os.environ, PYTHONPATH=str(REPO), KLINEFLOW_DATA_DIR=str(data))
        cmd = [sys.executable, "-m", "flows.cli", "up", "--exchange-url", base,
               "--symbols", ",".join(symbols), "--redis-url", redis_url,
               "--namespace", f"clbenchlive{processes}", "--no-rules", "--no-dashboard",
               "--metrics-port", str(metrics_port),
               "--processes", str(processes)]  # fmt: skip
        log = (data / "flow.log").open("wb")
        flow = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            time.sleep(a.warmup)
            # steady state: the start's catch-up of every symbol over REST (rate-limited by
            # the weight budget: over a minute for 1,600 symbols) has ended
            caught_up_s = _until_caught_up(metrics_port, processes) + a.warmup
            pids = local_members(flow.pid) if processes > 1 else [flow.pid]
            cpu0 = {p: _cpu_s(p) for p in pids}
            t0 = time.perf_counter()
            time.sleep(a.window)
            elapsed = time.perf_counter() - t0
            per = []
            for p in pids:
                rss, hwm = _memory_mb(p)
                per.append({"pid": p, "cpu_core_share": (_cpu_s(p) - cpu0[p]) / elapsed,
                            "rss_mb": rss, "peak_rss_mb": hwm})  # fmt: skip
            out: dict[str, Any] = {
                "processes": processes, "symbols": len(symbols), "rate": a.live_rate,
                "window_s": elapsed, "per_process": per, "caught_up_s": caught_up_s,
            }  # fmt: skip
            if burst:
                out["burst"] = _burst(base, metrics_port, a.live_rate)
            return out
        finally:
            flow.send_signal(signal.SIGINT)
            try:
                flow.wait(timeout=30)
            except subprocess.TimeoutExpired:
                flow.kill()
            log.close()
    finally:
        sim.terminate()
        sim.wait(timeout=20)


def calibration() -> float:
    """us per json.loads of one aggTrade frame (the machine's pace; PERFORMANCE.md: 2.3 us)."""
    frame = (b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1,"s":"BTCUSDT",'
             b'"a":1,"p":"1.0","q":"1.0","f":1,"l":1,"T":1,"m":true,"M":true}}')  # fmt: skip
    n = 200_000
    t = time.perf_counter()
    for _ in range(n):
        json.loads(frame)
    return (time.perf_counter() - t) / n * 1e6


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--member", type=int)
    p.add_argument("--addresses")
    p.add_argument("--redis-url")
    p.add_argument("--database-url")
    p.add_argument("--namespace", default="clbench")
    p.add_argument("--trades", type=int, default=600_000)
    p.add_argument("--symbols", type=int, default=200)
    p.add_argument("--minutes", type=int, default=60)
    p.add_argument("--live-symbols", type=int, default=1600)
    p.add_argument("--live-rate", type=float, default=2000.0)
    p.add_argument("--warmup", type=float, default=60.0)
    p.add_argument("--window", type=float, default=60.0)
    p.add_argument("--skip-live", action="store_true")
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--live-processes", default="1,2", help="e.g. 1 (only one process)")
    a = p.parse_args()
    if a.member is not None:
        member(a)
        return
    from flows.services import Services

    services = Services(Path(tempfile.gettempdir()) / "klineflow-bench-servers")
    redis_url = services.redis_url(os.environ.get("KLINEFLOW_REDIS_URL"))
    db = services.database_url(os.environ.get("KLINEFLOW_DATABASE_URL"))
    print(f"calibration: json.loads of one aggTrade frame {calibration():.1f} us "
          "(PERFORMANCE.md's machine: 2.3 us)", flush=True)  # fmt: skip
    print(f"cores: {os.cpu_count()}", flush=True)
    results = []
    for n in () if a.skip_throughput else (1, 2):
        _prepare_database(db)
        r = throughput(n, redis_url, db, a)
        results.append(r)
        print(f"full flow, {n} process(es): {r['trades']:,} trades in {r['seconds']:.1f} s = "
              f"{r['rate']:,.0f} trades/s; members {r['members']}", flush=True)  # fmt: skip
    if results:
        print(f"ratio 2 processes / 1 process: {results[1]['rate'] / results[0]['rate']:.2f}")
    if a.skip_live:
        return
    for n in (int(x) for x in a.live_processes.split(",")):
        r = live(n, redis_url, a, burst=(n == 1))
        for m in r["per_process"]:
            print(f"live, {r['symbols']} symbols at {r['rate']:,.0f} trades/s, {n} process(es), "
                  f"pid {m['pid']}: CPU {100 * m['cpu_core_share']:.1f}% of one core over "
                  f"{r['window_s']:.0f} s after the start's catch-up ended "
                  f"({r['caught_up_s']:.0f} s); RSS {m['rss_mb']:.0f} MB "
                  f"(peak {m['peak_rss_mb']:.0f} MB)", flush=True)  # fmt: skip
        if "burst" in r:
            b = r["burst"]
            print(f"burst: {b['trades']:,} trades held 25 s by the simulator, then released at "
                  f"once: taken in at up to {b['peak_intake_per_s']:,.0f} trades/s; all absorbed "
                  f"(feed queues empty, lag p99 {b['lag_p99_after_s']} s) after "
                  f"{b['absorbed_after_s']} s", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
