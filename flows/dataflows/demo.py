"""`klineflow demo`: the kline pipeline on a seeded synthetic market, with the klines API.

It builds `history_ms` of past market at full speed (so charts have content at once), then
keeps trading in real time; klines fill Redis and the Binance-compatible API answers.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import uvicorn
from bytewax.testing import run_main
from rich.console import Console

from flows.dataflows.kline_step import KlineStepConfig
from flows.dataflows.klines_flow import build_kline_flow
from flows.domain.clock import SYSTEM_CLOCK, Clock
from flows.domain.keys import KeySpace
from flows.domain.stats import RunStats
from flows.sinks.redis_sink import RedisKlineSink, writer_factory
from flows.sources.synthetic import SyntheticMarket
from flows.sources.synthetic_source import SyntheticSource


@dataclass(frozen=True)
class DemoJob:
    redis_url: str
    keys: KeySpace
    intervals: tuple[str, ...]
    symbols: int = 40
    seed: int = 7
    history_ms: int = 6 * 3_600_000
    rate: float = 50.0
    duration_s: float | None = None
    port: int = 8000
    host: str = "127.0.0.1"
    clock: Clock = SYSTEM_CLOCK


def start_api_thread(job: DemoJob) -> uvicorn.Server:
    import redis

    from flows.api import create_app
    from flows.storage.kline_store import KlineStore

    store = KlineStore(redis.Redis.from_url(job.redis_url), job.keys)
    config = uvicorn.Config(create_app(store), host=job.host, port=job.port, log_level="warning")
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, name="klines-api", daemon=True).start()
    return server


def run_demo(job: DemoJob, console: Console) -> RunStats:
    stats = RunStats()
    market = SyntheticMarket(job.symbols, job.seed, job.clock.now_ms() - job.history_ms, job.rate)
    server = start_api_thread(job) if job.port else None
    first = market.symbols[0]
    console.print(
        f"Synthetic market: {len(market.symbols)} symbols ({', '.join(market.symbols[:5])}, ...)"
    )
    if server is not None:
        base = f"http://{job.host}:{job.port}"
        console.print(
            f"Klines API: {base}/api/v3/klines?symbol={first}&interval=1m&limit=5", soft_wrap=True
        )
    console.print(f"CLI:        klineflow klines {first} 1m --limit 5")
    console.print(
        "Press Ctrl-C to stop." if job.duration_s is None else f"Running for {job.duration_s:g} s."
    )
    flow = build_kline_flow(
        "demo",
        SyntheticSource(market, job.clock, stats, job.duration_s),
        KlineStepConfig(job.intervals, close_at_eof=False, clock=job.clock),
        RedisKlineSink(writer_factory(job.redis_url, keys=job.keys), stats),
        stats,
    )
    try:
        run_main(flow)  # type: ignore[no-untyped-call]
    except KeyboardInterrupt:
        console.print("stopped")
    finally:
        if server is not None:
            server.should_exit = True
    closed = ", ".join(f"{k} {v:,}" for k, v in stats.klines_closed.items())
    console.print(f"trades: {stats.trades_read:,}; klines closed: {closed}", soft_wrap=True)
    return stats
