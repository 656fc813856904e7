"""The live flow: Binance (or the simulator) -> klines in Redis (and, with a database,
trader rules -> signals in PostgreSQL), with crash recovery.

Restarts resume from the stores, not from process-local state: each symbol continues from
its newest closed kline in Redis (`flows.storage.resume`), with the trades after it fetched
over REST, and the trader rules continue from the progress recorded with the signals in
PostgreSQL (`flows.signals`). So a `kill -9` at any moment, a lost data directory or a
cluster of another size loses nothing, and the flow keeps no recovery snapshots of its own
(Bytewax's would only hold state the stores already have, and tie it to one cluster size).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from bytewax.errors import BytewaxRuntimeError
from bytewax.testing import cluster_main, run_main

from flows.binance.ws_feed import FeedConfig
from flows.cluster import SINGLE, ClusterPlace
from flows.dataflows.endpoints import Endpoint
from flows.dataflows.heartbeat import Heartbeat, feeds
from flows.dataflows.kline_step import KlineStepConfig
from flows.dataflows.klines_flow import build_kline_flow
from flows.domain import defaults
from flows.domain.clock import SYSTEM_CLOCK, Clock
from flows.domain.intervals import INTERVALS
from flows.domain.keys import KeySpace
from flows.domain.stats import RunStats
from flows.klines.builder import base_interval_for
from flows.metrics import FlowView, MetricsServer
from flows.sinks.redis_sink import RedisKlineSink, writer_factory
from flows.sources.live_config import LiveConfig
from flows.sources.live_source import LiveSource
from flows.sources.live_streams import clock_stream_for
from flows.storage.redis_klines import RetentionPolicy
from flows.storage.resume import RedisResume
from flows.storage.retention import RetentionAges, RetentionThread

if TYPE_CHECKING:
    from flows.signals.runtime import RulesRuntime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LiveJob:
    ws_url: str  # e.g. wss://stream.binance.com:9443 or ws://127.0.0.1:PORT
    rest_url: str  # e.g. https://api.binance.com or http://127.0.0.1:PORT
    symbols: tuple[str, ...]
    redis_url: str
    intervals: tuple[str, ...]
    keys: KeySpace = KeySpace()
    kind: str = "aggTrade"
    per_connection: int = defaults.STREAMS_PER_CONNECTION
    grace_ms: int = defaults.GRACE_MS
    open_throttle_ms: int = defaults.OPEN_KLINE_THROTTLE_MS
    retention: RetentionPolicy = RetentionPolicy()
    epoch_s: float = 2.0
    max_connection_age_s: float = 23.5 * 3600
    idle_timeout_s: float = 30.0
    duration_s: float | None = None
    warmup_max_ms: int = 3_600_000  # complete the klines open at start up to this length
    history_from_ms: int | None = None  # a symbol's first start begins here (the demo)
    clock_stream: str | None = None  # the exchange clock on every connection (None: chosen)
    refresh: Callable[[], Sequence[str]] | None = None  # recomputes the universe (--top N)
    refresh_every_s: float = 3600.0
    reconcile: frozenset[str] = frozenset()  # compare these symbols' 1m klines with Binance's
    stop: threading.Event | None = None  # set it to end the flow (tests, embedding)
    clock: Clock = SYSTEM_CLOCK
    database_url: str | None = None  # set: evaluate its traders, write signals there
    rule_budget_ms: float = defaults.RULE_BUDGET_MS  # one trader's evaluation on one kline
    pruning: RetentionAges | None = field(default_factory=RetentionAges)  # by age (None: off)
    metrics_port: int | None = None  # set: /metrics and /healthz on 127.0.0.1:PORT (0: any)
    metrics_host: str = "127.0.0.1"
    cluster: ClusterPlace = SINGLE  # this process's place in a cluster (one process: SINGLE)
    # every frame the source takes, with its receive time, also handed here (`up --record`)
    tap: Callable[[bytes, int], None] | None = field(default=None, compare=False)
    # `flows.io` sinks given an output each beside Redis and PostgreSQL (at least once)
    sinks: Sequence[Endpoint] = field(default=(), compare=False)


def _metrics(
    job: LiveJob, source: LiveSource, stats: RunStats, rules: RulesRuntime | None
) -> MetricsServer | None:
    import psycopg
    import redis

    client = redis.Redis.from_url(job.redis_url, socket_timeout=3, socket_connect_timeout=3)
    checks: dict[str, Callable[[], bool]] = {"redis": lambda: bool(client.ping())}
    if job.database_url is not None:
        url = job.database_url

        def postgres() -> bool:
            with psycopg.connect(url, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            return True

        checks["postgresql"] = postgres
    view = FlowView(
        stats,
        feeds=lambda: feeds(source),
        rules=rules.summary if rules is not None else (lambda: {}),
        checks=checks,
    )
    try:
        server = MetricsServer(view, job.metrics_host, job.metrics_port or 0).start()
    except OSError as exc:  # port taken: the start fails, rather than run on unobserved
        from flows.app.errors import PortTaken

        raise PortTaken(
            f"metrics cannot listen on {job.metrics_host}:{job.metrics_port}: {exc}",
            "stop what listens there, or choose another with --metrics-port (0: none)",
        ) from exc
    log.info("metrics on http://%s:%d/metrics", job.metrics_host, server.port)
    job_ports.append(server.port)
    return server


job_ports: list[int] = []  # where the metrics servers of this process listen (tests)
retention_threads: list[RetentionThread] = []  # the retention of each flow run here (tests)


def _interrupted(exc: BaseException) -> bool:
    """Whether Bytewax stopped because of Ctrl-C: it says "signal received" when the signal
    came between steps, and wraps the KeyboardInterrupt when it came inside one."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt) or "signal received" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def run_live(job: LiveJob, stats: RunStats | None = None) -> RunStats:
    stats = stats if stats is not None else RunStats()
    place = job.cluster
    symbols = tuple(place.own(job.symbols))
    refresh = job.refresh
    if refresh is not None and place.processes > 1:
        everything = refresh
        refresh = lambda: place.own(everything())  # noqa: E731
    if place.processes > 1:
        log.info("cluster process=%d of %d owns %d of %d symbols", place.process_id,
                 place.processes, len(symbols), len(job.symbols))  # fmt: skip
        if not symbols:
            log.warning("process=%d owns no symbol of this universe", place.process_id)
    base_ms = INTERVALS[base_interval_for(job.intervals)].length_ms
    by_length = sorted((INTERVALS[i] for i in job.intervals), key=lambda i: i.length_ms)
    warmup = [i for i in by_length if i.length_ms <= job.warmup_max_ms]
    feed = FeedConfig(
        job.ws_url, max_age_s=job.max_connection_age_s, idle_timeout_s=job.idle_timeout_s
    )
    source = LiveSource(
        LiveConfig(
            feed=feed,
            rest_url=job.rest_url,
            symbols=symbols,
            kind=job.kind,
            per_connection=job.per_connection,
            grace_ms=job.grace_ms,
            base_interval_ms=base_ms,
            intervals=job.intervals,
            duration_s=job.duration_s,
            clock=job.clock,
            stop=job.stop,
            warmup_interval=warmup[-1] if warmup else None,
            longest_interval=by_length[-1],
            resume=RedisResume(job.redis_url, job.keys, job.intervals),
            history_from_ms=job.history_from_ms,
            clock_stream=job.clock_stream or clock_stream_for(job.symbols),
            refresh=refresh,
            refresh_every_s=job.refresh_every_s,
            reconcile=job.reconcile & set(symbols),
            part_prefix=place.part_prefix,
            tap=job.tap,
        ),
        stats,
    )
    step = KlineStepConfig(
        job.intervals,
        open_throttle_ms=job.open_throttle_ms,
        close_at_eof=False,
        clock=job.clock,
        reconcile=bool(job.reconcile),
        owns=place.owns if place.processes > 1 else None,
        workers=place.processes,
    )
    rules = None
    rules_start = None
    if job.database_url is not None:
        from flows.signals.runtime import rules_stage
        from flows.signals.step import RulesStart

        rules = rules_stage(
            job.database_url, job.redis_url, job.intervals, job.keys, clock=job.clock,
            budget_ms=job.rule_budget_ms,
        )  # fmt: skip
        rules_start = RulesStart(rules.holder)
    sink = RedisKlineSink(
        writer_factory(job.redis_url, keys=job.keys, retention=job.retention, journal=16),
        stats,
        job.stop,
        rules_start=rules_start,
    )
    flow = build_kline_flow(
        "live", source, step, sink, stats, rules.stage if rules is not None else None, job.sinks
    )
    try:  # first: a taken port fails the start before anything else runs
        metrics = _metrics(job, source, stats, rules) if job.metrics_port is not None else None
    except BaseException:
        if rules is not None:
            rules.stop()
        raise
    heartbeat = Heartbeat(job.redis_url, job.keys, source, stats, clock=job.clock, place=place)
    heartbeat.start()
    pruner = None
    if job.pruning is not None:
        pruner = RetentionThread(job.database_url, job.redis_url, job.keys, job.pruning,
                                 job.clock)  # fmt: skip
        pruner.start()
        retention_threads.append(pruner)
    epoch = timedelta(seconds=job.epoch_s)
    try:
        if place.processes > 1:
            cluster_main(flow, list(place.addresses), place.process_id, epoch_interval=epoch)  # type: ignore[no-untyped-call]
        else:
            run_main(flow, epoch_interval=epoch)  # type: ignore[no-untyped-call]
    except BytewaxRuntimeError as exc:
        if _interrupted(exc):
            raise KeyboardInterrupt from None
        raise
    finally:
        heartbeat.stop()
        if pruner is not None:
            pruner.stop()
        if metrics is not None:
            metrics.stop()
        if rules is not None:
            rules.stop()
            stats.rules = rules.summary()
    return stats
