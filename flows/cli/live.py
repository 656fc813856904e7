"""`up`, `demo`, `simulate`, `api` and `dashboard`: the long-running processes."""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from flows.api_weights import REQUEST_WEIGHT_LIMIT
from flows.app.notifications import start_notifier
from flows.cli.boundary import console, out
from flows.cli.common import (
    DashboardOpt,
    DashboardPort,
    DatabaseUrl,
    ExchangeUrl,
    Namespace,
    NotifyOpt,
    QuoteOpt,
    RedisUrl,
    SymbolsOpt,
    TopOpt,
    _database,
    _demo_sign_in,
    _redis_url,
    _settings,
    _start_dashboard,
    _universe,
    app,
    stopping_on_signals,
)
from flows.domain import defaults
from flows.domain.keys import KeySpace
from flows.settings import Settings

if TYPE_CHECKING:  # the heavy imports stay inside the commands that need them
    from flows.cluster import ClusterPlace
    from flows.recorder import RecordingTap


@app.command()
def api(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    weight_limit: Annotated[
        int, typer.Option(min=1, help="request weight a client IP may use per minute (Binance's)")
    ] = REQUEST_WEIGHT_LIMIT,
    redis_url: RedisUrl = None,
    namespace: Namespace = None,
) -> None:
    """Serve Binance's market-data REST endpoints (klines, exchangeInfo, ping, time) from Redis."""
    from flows.api import serve
    from flows.app.ports import ensure_free

    ensure_free(host, port, "the API", "--port")
    settings = _settings(redis_url=redis_url, namespace=namespace)
    serve(_redis_url(settings), host, port, KeySpace(settings.namespace), settings.api_cache_ttl_s,
          weight_limit)  # fmt: skip


@app.command()
def demo(
    symbols: Annotated[int, typer.Option(help="how many synthetic symbols")] = 40,
    seed: Annotated[int, typer.Option(help="random seed of the synthetic market")] = 7,
    history_hours: Annotated[float, typer.Option(help="hours of past market built at start")] = 6.0,
    rate: Annotated[float, typer.Option(help="trades per second, all symbols together")] = 50.0,
    duration: Annotated[float | None, typer.Option(help="stop after this many seconds")] = None,
    port: Annotated[int, typer.Option(help="port of the klines API")] = 8000,
    dashboard: DashboardOpt = True,
    dashboard_port: DashboardPort = 8501,
    record: Annotated[
        bool,
        typer.Option(
            help="record the market (history and stream) for backtests, under "
            "<recordings dir>/demo/"
        ),
    ] = True,
    notify: NotifyOpt = True,
    redis_url: RedisUrl = None,
    namespace: Namespace = None,
) -> None:
    """Run the pipeline on a seeded synthetic market, with the klines API and the dashboard,
    on embedded servers; record the market for the Backtest page."""
    from flows.app.backtests import recordings_dir
    from flows.app.ports import ensure_free
    from flows.dataflows.demo import DemoJob, run_demo

    if port:  # the ports first: a taken one fails the start before anything runs
        ensure_free("127.0.0.1", port, "the klines API", "--port")
    if dashboard:
        ensure_free("127.0.0.1", dashboard_port, "the dashboard", "--dashboard-port")
    settings = _settings(redis_url=redis_url, namespace=namespace)
    from flows.signals.examples import seed_examples
    from flows.signals.store import TraderStore

    url = _redis_url(settings)
    db_url = _database(settings)
    console.print(f"Redis:      {url}", soft_wrap=True)
    console.print(f"PostgreSQL: {db_url}", soft_wrap=True)
    added = seed_examples(TraderStore(db_url))
    if added:
        console.print(f"example traders added: {', '.join(added)}", soft_wrap=True)
    demo_password = _demo_sign_in(db_url)
    if demo_password:
        console.print(f"Sign in:    user local, password {demo_password} (owner of the "
                      "example traders; `klineflow users password local` changes it)",
                      soft_wrap=True)  # fmt: skip
    console.print("Traders:    klineflow traders list", soft_wrap=True)
    stop = threading.Event()
    job = DemoJob(
        redis_url=url,
        stop=stop,
        keys=KeySpace(settings.namespace),
        intervals=settings.intervals,
        symbols=symbols,
        seed=seed,
        history_ms=int(history_hours * 3_600_000),
        rate=rate,
        duration_s=duration,
        port=port,
        database_url=db_url,
        recordings_dir=recordings_dir(settings) if record else None,
    )
    board = _start_dashboard(settings, url, db_url, dashboard_port) if dashboard else None
    notifier = start_notifier(db_url) if notify else None
    try:
        with stopping_on_signals(stop):
            run_demo(job, console)
    finally:
        if notifier is not None:
            console.print(notifier.close())
        if board is not None:
            board.stop()


@app.command()
def up(
    symbols: SymbolsOpt = None,
    top: TopOpt = None,
    quote: QuoteOpt = "USDT",
    intervals: Annotated[str | None, typer.Option(help="e.g. 1m,5m,1h")] = None,
    exchange_url: ExchangeUrl = None,
    ws_url: Annotated[str | None, typer.Option(help="WebSocket base (default Binance's)")] = None,
    rest_url: Annotated[str | None, typer.Option(help="REST base (default Binance's)")] = None,
    kind: Annotated[str, typer.Option(help="aggTrade or trade streams")] = "aggTrade",
    per_connection: Annotated[
        int, typer.Option(help="streams per connection (max 1024)")
    ] = defaults.STREAMS_PER_CONNECTION,
    grace_ms: Annotated[
        int,
        typer.Option(
            help="close a kline once its connection delivered events this long past its end"
        ),
    ] = defaults.GRACE_MS,
    record: Annotated[
        Path | None, typer.Option("--record", help="also record every frame here")
    ] = None,
    archive: Annotated[
        Path | None,
        typer.Option(help="with --record: each closed recording's trades into this archive"),
    ] = None,
    reconcile: Annotated[
        int, typer.Option(help="compare this many symbols' 1m klines with Binance's @kline_1m")
    ] = 0,
    refresh_every: Annotated[
        float, typer.Option(help="seconds between refreshes of a --top universe")
    ] = 3600.0,
    duration: Annotated[float | None, typer.Option(help="stop after this many seconds")] = None,
    rules: Annotated[
        bool, typer.Option(help="evaluate the traders in PostgreSQL and write signals")
    ] = True,
    dashboard: DashboardOpt = True,
    dashboard_port: DashboardPort = 8501,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="serve /metrics (Prometheus) and /healthz on this port; 0: none"),
    ] = 9108,
    metrics_host: Annotated[
        str, typer.Option(help="address /metrics listens on (0.0.0.0: reachable from others)")
    ] = "127.0.0.1",
    processes: Annotated[
        int, typer.Option(help="run as a Bytewax cluster of this many local processes")
    ] = 1,
    process_id: Annotated[
        int | None, typer.Option(help="run one member of a cluster: its index in --addresses")
    ] = None,
    addresses: Annotated[
        str | None,
        typer.Option(help='every member\'s host:port, ";"-separated, same order everywhere'),
    ] = None,
    notify: NotifyOpt = True,
    database_url: DatabaseUrl = None,
    redis_url: RedisUrl = None,
    namespace: Namespace = None,
) -> None:
    """Run the live flow: Binance's trade streams -> klines in Redis and signals in
    PostgreSQL, surviving restarts."""
    from flows.cluster import SINGLE, ClusterPlace
    from flows.dataflows.live import LiveJob, run_live
    from flows.dataflows.universe_cli import exchange_urls
    from flows.storage.retention import RetentionAges

    if kind not in ("aggTrade", "trade"):
        console.print(f"[red]error:[/red] --kind must be aggTrade or trade, got {kind!r}")
        raise typer.Exit(2)
    place = SINGLE
    try:
        if processes < 1:
            raise ValueError(f"--processes must be 1 or more, got {processes}")
        if archive is not None and record is None:
            raise ValueError("--archive writes the trades of --record's recordings: give both")
        if (process_id is None) != (addresses is None):
            raise ValueError("--process-id and --addresses go together")
        if process_id is not None and addresses is not None:
            if processes != 1:
                raise ValueError("--processes starts a local cluster; a member started with "
                                 "--process-id takes its size from --addresses")  # fmt: skip
            place = ClusterPlace.parse(process_id, addresses)
    except ValueError as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from e
    settings = _settings(
        intervals=intervals, redis_url=redis_url, namespace=namespace, database_url=database_url
    )
    exchange = exchange_urls(exchange_url, ws_url, rest_url)
    universe = _universe(exchange, symbols, top, quote)
    db_url = _database(settings, away_ok=True) if rules else None
    console.print(f"{len(universe)} symbols from {exchange.ws_url}: {', '.join(universe[:8])}"
                  f"{', ...' if len(universe) > 8 else ''}", soft_wrap=True)  # fmt: skip
    if processes > 1:  # each member records its own connections' frames
        _up_cluster(settings, processes, db_url, dashboard, dashboard_port, metrics_port)
        return
    # the recorder as a tee on the flow's own feed: the frames the flow reads, as it reads them
    tap = _recording_tap(exchange.ws_url, record, archive, place) if record else None
    stop = threading.Event()
    job = LiveJob(
        ws_url=exchange.ws_url,
        stop=stop,
        rest_url=exchange.rest_url,
        symbols=tuple(universe),
        redis_url=_redis_url(settings),
        intervals=settings.intervals,
        keys=KeySpace(settings.namespace),
        kind=kind,
        per_connection=per_connection,
        grace_ms=grace_ms,
        open_throttle_ms=settings.open_kline_throttle_ms,
        refresh=_refresher(exchange.rest_url, top, quote)
        if top is not None and not symbols
        else None,
        refresh_every_s=refresh_every,
        reconcile=frozenset(universe[:reconcile]),
        duration_s=duration,
        database_url=db_url,
        rule_budget_ms=settings.rule_budget_ms,
        pruning=RetentionAges(
            signals_days=settings.signals_retention_days,
            trader_errors_days=settings.trader_errors_retention_days,
            dead_letters_days=settings.dead_letters_retention_days,
            every_s=settings.retention_every_s,
        ),
        metrics_port=metrics_port or None,
        metrics_host=metrics_host,
        cluster=place,
        tap=tap,
    )
    board = _start_dashboard(settings, job.redis_url, db_url, dashboard_port) if dashboard else None
    notifier = start_notifier(db_url) if notify and db_url else None
    from flows.domain.stats import RunStats

    stats = RunStats()
    # one process: a signal ends the flow gracefully; a cluster member keeps the interrupt,
    # its supervisor stopping every member together
    graceful = stopping_on_signals(stop) if place.processes == 1 else contextlib.nullcontext()
    try:
        with graceful:
            run_live(job, stats)
    except KeyboardInterrupt:  # a second Ctrl-C, or the cluster's supervisor
        console.print("stopped")
    finally:
        if tap is not None:
            tap.close()
            if tap.stats.write_failures:
                console.print(f"[red]recording:[/red] {tap.stats.write_failures:,} frames not "
                              f"written ({tap.stats.last_error})")  # fmt: skip
        if board is not None:
            board.stop()
        if notifier is not None:
            console.print(notifier.close())
    lines = [
        f"trades: {stats.trades_read:,}; backfilled: {stats.trades_backfilled:,}",
        f"gaps that could not be filled: {stats.gaps}",
    ]
    if place.processes > 1:
        lines.insert(0, f"process {place.process_id} of {place.processes}:")
        lines.append(f"trade batches from other processes: {stats.foreign_batches}")
    out.print("\n".join(lines))
    if stats.rules:
        r = stats.rules
        new, repeats = r.get("signals_new", 0), r.get("signals_repeat", 0)
        out.print(f"rule evaluations: {r.get('evaluations', 0):,}; "
                  f"signals: {new:,} new, {repeats:,} repeats")  # fmt: skip
    if reconcile:
        equal, differ = stats.reconciled, stats.reconcile_mismatches
        out.print(f"reconciled with Binance: {equal:,} equal, {differ} differ")


def _up_cluster(
    settings: Settings,
    processes: int,
    db_url: str | None,
    dashboard: bool,
    dashboard_port: int,
    metrics_port: int | None,
) -> None:
    """`up --processes N`: N members on this machine, supervised (restarted together when
    one fails); the dashboard runs here, once; each member records its own frames."""
    from flows.cluster import member_args, supervise

    argv = sys.argv[sys.argv.index("up") + 1 :]

    def command(place: ClusterPlace) -> list[str]:
        port = metrics_port + place.process_id if metrics_port else 0
        return [sys.executable, "-m", "flows.cli", "up", *member_args(argv, place, port)]

    redis = _redis_url(settings)
    board = _start_dashboard(settings, redis, db_url, dashboard_port) if dashboard else None
    if metrics_port:
        console.print(f"metrics: http://127.0.0.1:{metrics_port}..{metrics_port + processes - 1}"
                      "/metrics (one port per process)")  # fmt: skip
    try:
        code = supervise(command, processes)
    finally:
        if board is not None:
            board.stop()
    if code == 130:
        console.print("stopped")
        return
    if code != 0:
        raise typer.Exit(code)


def _refresher(rest_url: str, top: int, quote: str) -> Callable[[], list[str]]:
    """The --top N universe, recomputed from REST (run on the refresh thread)."""
    from flows.binance.rest import RestClient
    from flows.dataflows.universe_cli import resolve_symbols

    client = RestClient(rest_url)
    return lambda: resolve_symbols(client, None, top, quote)


def _recording_tap(
    ws_url: str, out_dir: Path, archive: Path | None, place: ClusterPlace
) -> RecordingTap:
    """The recorder fed by the live source; a cluster member's files carry its place."""
    from flows.recorder import RecordingTap

    return RecordingTap(out_dir, f"{ws_url.rstrip('/')}/stream (klineflow up)",
                        part=place.part_prefix,
                        archive=archive)  # fmt: skip


@app.command()
def simulate(
    symbols: Annotated[
        int, typer.Option(help="synthetic symbols (liquid first, then a quiet tail)")
    ] = 200,
    seed: Annotated[int, typer.Option(help="random seed of the synthetic market")] = 7,
    rate: Annotated[
        float, typer.Option(help="trades per second of market time, all symbols")
    ] = 200.0,
    speed: Annotated[float, typer.Option(help="market time per wall time (1 = real time)")] = 1.0,
    history_hours: Annotated[float, typer.Option(help="market history REST serves at start")] = 0.0,
    recording: Annotated[Path | None, typer.Option(help="play this recording instead")] = None,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port (WebSocket and REST)")] = 9000,
    max_connection_age: Annotated[
        float, typer.Option(help="seconds before a connection is closed")
    ] = 86_400.0,
    faults: Annotated[
        str,
        typer.Option(help='scheduled faults, e.g. "10:drop,30:stall?seconds=5,60:rest429?count=3"'),
    ] = "",
) -> None:
    """A local exchange speaking Binance's spot protocol (streams, REST, faults under /_sim/)."""
    from flows.simulator import SimConfig, parse_schedule, serve

    try:
        schedule = parse_schedule(faults)
        config = SimConfig(
            symbols=symbols,
            seed=seed,
            rate=rate,
            speed=speed,
            history_ms=int(history_hours * 3_600_000),
            recording=recording,
            host=host,
            port=port,
            max_connection_age_s=max_connection_age,
            schedule=schedule,
        )
    except ValueError as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from e

    def ready(url: str) -> None:
        console.print(
            f"Binance simulator: {url} (WebSocket {url.replace('http', 'ws', 1)})", soft_wrap=True
        )
        console.print(
            f"Run the flow on it: klineflow up --exchange-url {url} --top 20", soft_wrap=True
        )

    serve(config, on_start=ready)


@app.command("dashboard")
def dashboard_cmd(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8501,
    database_url: DatabaseUrl = None,
    redis_url: RedisUrl = None,
    namespace: Namespace = None,
) -> None:
    """Serve the Streamlit dashboard alone (the flow runs elsewhere: `up` or `demo`)."""
    from flows.dashboard_server import start_dashboard

    settings = _settings(redis_url=redis_url, namespace=namespace, database_url=database_url)
    redis = _redis_url(settings)
    db = _database(settings)
    proc = start_dashboard(redis, db, settings.namespace, host=host, port=port)
    console.print(f"Dashboard: {proc.url}  (Ctrl-C to stop)")
    stop = threading.Event()
    try:
        with stopping_on_signals(stop):
            while proc.process.poll() is None and not stop.wait(0.5):
                pass
    except KeyboardInterrupt:
        pass
    finally:
        proc.stop()
