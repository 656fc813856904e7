"""`klineflow demo`: the live flow against the exchange simulator, with the klines API.

The simulator plays the seeded synthetic market (`symbols`, `rate`) in real time and serves
`history_ms` of past market over REST. The live flow connects exactly as it would to Binance;
each symbol's history comes in through the same REST backfill a restart uses (a symbol's
first start begins at the beginning of the history), so charts have content at once. With
`recordings_dir` the market is also recorded there, history and stream
(``flows.dataflows.demo_recording``), so backtests have recordings at once.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from rich.console import Console

from flows.dataflows.live import LiveJob, run_live
from flows.domain.clock import SYSTEM_CLOCK, Clock
from flows.domain.keys import KeySpace
from flows.domain.stats import RunStats
from flows.simulator import SimConfig, Simulator


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
    database_url: str | None = None  # traders and signals (migrated and seeded by the caller)
    stop: threading.Event | None = None  # set it to end the demo (Ctrl-C, SIGTERM)
    recordings_dir: Path | None = None  # record the market under <this>/demo/<UTC start>/


def start_api_thread(job: DemoJob) -> uvicorn.Server:
    import redis

    from flows.api import create_app
    from flows.app.ports import listening_socket
    from flows.storage.kline_store import KlineStore

    sock = listening_socket(job.host, job.port, "the klines API", "--port")  # or PortTaken
    store = KlineStore(redis.Redis.from_url(job.redis_url), job.keys)
    config = uvicorn.Config(create_app(store), host=job.host, port=job.port, log_level="warning")
    server = uvicorn.Server(config)
    threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="klines-api", daemon=True
    ).start()
    return server


def run_demo(job: DemoJob, console: Console) -> RunStats:
    now = job.clock.now_ms()
    sim_config = SimConfig(
        symbols=job.symbols,
        seed=job.seed,
        rate=job.rate,
        speed=1.0,
        start_ms=now - job.history_ms,
        history_ms=job.history_ms,
    )
    with Simulator(sim_config) as sim:
        symbols = tuple(sim.market.symbols)
        server = start_api_thread(job) if job.port else None
        console.print(
            f"Exchange simulator: {sim.base_url} "
            f"({len(symbols)} symbols: {', '.join(symbols[:5])}, ...)",
            soft_wrap=True,
        )
        if server is not None:
            base = f"http://{job.host}:{job.port}"
            console.print(
                f"Klines API: {base}/api/v3/klines?symbol={symbols[0]}&interval=1m&limit=5",
                soft_wrap=True,
            )
        console.print(f"CLI:        klineflow klines {symbols[0]} 1m --limit 5")
        recording = None
        if job.recordings_dir is not None:
            from flows.dataflows.demo_recording import DemoRecording

            recording = DemoRecording(sim.market, sim.ws_url, job.recordings_dir, job.clock,
                                      abandon=job.stop)  # fmt: skip
            recording.start()
            console.print(f"Recording:  {recording.folder} (history and stream; the "
                          "dashboard's Backtest page lists them)", soft_wrap=True)  # fmt: skip
        console.print(
            "Press Ctrl-C to stop."
            if job.duration_s is None
            else f"Running for {job.duration_s:g} s."
        )
        live = LiveJob(
            ws_url=sim.ws_url,
            rest_url=sim.base_url,
            symbols=symbols,
            redis_url=job.redis_url,
            intervals=job.intervals,
            keys=job.keys,
            duration_s=job.duration_s,
            clock=job.clock,
            history_from_ms=now - job.history_ms,  # a first start fetches all the history
            database_url=job.database_url,
            stop=job.stop,
        )
        stats = RunStats()
        try:
            run_live(live, stats)
        except KeyboardInterrupt:
            console.print("stopped")
        finally:
            if recording is not None:
                recording.close()
            if server is not None:
                server.should_exit = True
    closed = ", ".join(f"{k} {v:,}" for k, v in stats.klines_closed.items())
    console.print(
        f"trades: {stats.trades_read:,} ({stats.trades_backfilled:,} from REST); "
        f"klines closed: {closed}",
        soft_wrap=True,
    )
    if stats.rules:
        r = stats.rules
        console.print(
            f"traders: {r.get('traders', 0)}; rule evaluations: {r.get('evaluations', 0):,}; "
            f"signals: {r.get('signals_new', 0):,} new, {r.get('signals_repeat', 0):,} repeats",
            soft_wrap=True,
        )
    return stats
