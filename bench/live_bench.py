"""Live ingest benchmark against the exchange simulator over loopback.

1. Full speed: a paused simulator market of N trades is released at once (after the flow has
   connected and resumed every symbol from the stores, a REST catch-up each, timed apart as
   its start); the time for the
   whole flow (WebSocket -> decode -> klines -> Redis) to take every trade, against the time
   a bare `websockets` client takes to receive the same stream from an identical simulator,
   in the same run. Prints both rates and the ratio (target >= 0.5).
2. Lag at a steady rate (default 2,000 trades/s over 1,000 symbols, real time): a poller reads
   the open 1m kline of sample symbols every 10 ms; each trade's lag is the time from its trade
   time until a kline in Redis includes it. Prints p50/p99 (target p99 < 100 ms + throttle).

Uses the embedded Redis unless KLINEFLOW_REDIS_URL is set.

    .venv/bin/python bench/live_bench.py --trades 200000 --lag-seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from websockets.asyncio.client import connect

from flows.dataflows.live import LiveJob, run_live
from flows.domain.intervals import DEFAULT_INTERVALS
from flows.domain.keys import KeySpace
from flows.domain.stats import RunStats
from flows.services import EmbeddedRedis
from flows.simulator import SimConfig, Simulator
from flows.simulator.market import SimMarket

T0 = 1_704_067_200_000


def _post(base: str, path: str) -> None:
    urllib.request.urlopen(
        urllib.request.Request(base + path, method="POST", data=b""), timeout=10
    ).read()


def _full_speed_config(trades: int, symbols: int) -> SimConfig:
    span_ms = 600_000
    return SimConfig(
        symbols=symbols,
        seed=5,
        rate=trades / (span_ms / 1000),
        speed=1e6,
        start_ms=T0,
        end_ms=T0 + span_ms,
        start_paused=True,
        max_queue_frames=10_000_000,
        history_limit=10_000_000,
    )


def bare_client(cfg: SimConfig, expected: int) -> float:
    """Seconds for a bare websockets client to receive `expected` trade frames."""
    with Simulator(cfg) as sim:
        streams = "/".join(f"{s.lower()}@aggTrade" for s in sim.market.symbols)

        async def run() -> float:
            async with connect(
                f"{sim.ws_url}/stream?streams={streams}", compression=None, max_size=1 << 22
            ) as ws:
                _post(sim.base_url, "/_sim/resume")
                started = time.perf_counter()
                got = 0
                async for _ in ws:
                    got += 1
                    if got >= expected:
                        return time.perf_counter() - started
            raise RuntimeError(f"stream ended after {got} frames")

        return asyncio.run(run())


starts: list[float] = []  # seconds from starting the flow to every symbol resumed


def full_flow(cfg: SimConfig, expected: int, redis_url: str) -> float:
    with Simulator(cfg) as sim:
        stop = threading.Event()
        stats = RunStats()
        job = LiveJob(
            ws_url=sim.ws_url,
            rest_url=sim.base_url,
            symbols=tuple(sim.market.symbols),
            redis_url=redis_url,
            intervals=DEFAULT_INTERVALS,
            keys=KeySpace(f"lb{time.monotonic_ns()}"),
            stop=stop,
            warmup_max_ms=0,
        )
        thread = threading.Thread(target=run_live, args=(job, stats), daemon=True)
        begun = time.perf_counter()
        thread.start()
        while sim.state()["connections"] < 1:  # the flow is connected before the market goes
            time.sleep(0.01)
        # every symbol resumed from the stores (its REST catch-up at start) before the market
        # goes: the figure is the flow's intake, not its start
        while stats.resumes < len(sim.market.symbols):
            time.sleep(0.01)
        starts.append(time.perf_counter() - begun)
        _post(sim.base_url, "/_sim/resume")
        started = time.perf_counter()
        while stats.trades_read < expected:
            time.sleep(0.002)
        elapsed = time.perf_counter() - started
        stop.set()
        thread.join(timeout=30)
        return elapsed


def lag_run(seconds: float, symbols: int, rate: float, redis_url: str, sample: int) -> list[float]:
    """Per-trade lag (ms) from trade time to the first kline in Redis that includes it."""
    cfg = SimConfig(symbols=symbols, seed=9, rate=rate, speed=1.0, max_queue_frames=1_000_000)
    with Simulator(cfg) as sim:
        stop = threading.Event()
        keys = KeySpace(f"lag{time.monotonic_ns()}")
        job = LiveJob(
            ws_url=sim.ws_url,
            rest_url=sim.base_url,
            symbols=tuple(sim.market.symbols),
            redis_url=redis_url,
            intervals=DEFAULT_INTERVALS,
            keys=keys,
            stop=stop,
            warmup_max_ms=0,
        )
        thread = threading.Thread(target=run_live, args=(job, RunStats()), daemon=True)
        thread.start()
        watched = sim.market.symbols[:sample]
        client = redis.Redis.from_url(redis_url)
        seen: dict[
            tuple[str, int], tuple[int, int]
        ] = {}  # (symbol, open) -> (count, first seen ms)
        observations: list[tuple[str, int, int, int]] = []  # symbol, open, count, wall ms
        warm_until_ms = time.time_ns() // 1_000_000 + 10_000  # steady state: skip the start
        deadline = time.monotonic() + seconds + 10
        while time.monotonic() < deadline:
            pipe = client.pipeline(transaction=False)
            for s in watched:
                pipe.zrange(keys.klines(s, "1m"), -2, -1)
            now_ms = time.time_ns() // 1_000_000
            for s, members in zip(watched, pipe.execute(), strict=True):
                for m in members:
                    row = json.loads(m)
                    key = (s, row[0])
                    if seen.get(key, (0, 0))[0] < row[8]:
                        seen[key] = (row[8], now_ms)
                        observations.append((s, row[0], row[8], now_ms))
            time.sleep(0.01)
        stop.set()
        thread.join(timeout=30)
        market: SimMarket = sim.market
        lags: list[float] = []
        for s in watched:
            rows = market.trades(s)
            by_minute: dict[int, list[tuple[int, int]]] = {}
            for _, t in rows:  # fills and time of each aggTrade, per minute
                by_minute.setdefault(t[4] - t[4] % 60_000, []).append((t[1] - t[0] + 1, t[4]))
            obs = sorted((o for o in observations if o[0] == s), key=lambda o: (o[1], o[3]))
            for open_ms, trades in by_minute.items():
                cumulative = 0
                mine = [o for o in obs if o[1] == open_ms]
                for fills, t_ms in trades:
                    cumulative += fills
                    first = next((o[3] for o in mine if o[2] >= cumulative), None)
                    if first is not None and t_ms >= warm_until_ms:
                        lags.append(first - t_ms)
        return lags


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--trades", type=int, default=200_000)
    ap.add_argument("--symbols", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--lag-seconds", type=float, default=60.0)
    ap.add_argument("--lag-symbols", type=int, default=1000)
    ap.add_argument("--lag-rate", type=float, default=2000.0)
    ap.add_argument("--lag-sample", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="kfl-") as tmp:
        url = os.environ.get("KLINEFLOW_REDIS_URL")
        server = None
        if not url:
            server = EmbeddedRedis(Path(tmp) / "redis")
            url = server.start()
        cfg = _full_speed_config(args.trades, args.symbols)
        market = SimMarket.synthetic(cfg.symbols, cfg.seed, cfg.rate, T0, cfg.end_ms)
        expected = sum(len(v) for v in market.advance(cfg.end_ms or 0).values())
        bare, flow = [], []
        for i in range(args.repeat):
            b = expected / bare_client(cfg, expected)
            f = expected / full_flow(cfg, expected, url)
            bare.append(b)
            flow.append(f)
            print(f"run {i + 1}: bare websockets client {b:,.0f} trades/s; full flow {f:,.0f}")
        f_med, b_med = statistics.median(flow), statistics.median(bare)
        print(f"full speed, {expected:,} trades over {args.symbols} symbols: median full flow")
        print(
            f"  {f_med:,.0f} trades/s, bare client {b_med:,.0f} trades/s, ratio {f_med / b_med:.2f}"
        )
        print(f"  start: {args.symbols} symbols connected and resumed from the stores (a REST "
              f"catch-up each) in a median {statistics.median(starts):.2f} s")  # fmt: skip
        lags = sorted(
            lag_run(args.lag_seconds, args.lag_symbols, args.lag_rate, url, args.lag_sample)
        )
        if lags:
            p50 = lags[len(lags) // 2]
            p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))]
            rate, n = args.lag_rate, args.lag_symbols
            print(
                f"lag at {rate:,.0f} trades/s over {n} symbols, steady state, {len(lags):,} trades"
            )
            print(f"  of {args.lag_sample} symbols: p50 {p50:.0f} ms, p99 {p99:.0f} ms")
            print("  (target: p99 under 100 ms plus the 1,000 ms open-kline throttle)")
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
