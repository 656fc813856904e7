"""The `klineflow` command: thin wrappers over the package."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from dashboard.users_cli import users_app
from flows.access_cli import access_app
from flows.domain.clock import SYSTEM_CLOCK
from flows.domain.intervals import IntervalError, get_interval
from flows.domain.keys import KeySpace
from flows.settings import Settings, load_settings
from flows.traders_cli import traders_app

if TYPE_CHECKING:  # the heavy imports stay inside the commands that need them
    from flows.cluster import ClusterPlace
    from flows.dashboard_server import DashboardProcess
    from flows.dataflows.universe_cli import Exchange
    from flows.domain.stats import RunStats

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Binance trades to Binance-exact klines."
)
services_app = typer.Typer(no_args_is_help=True, help="The embedded Redis and PostgreSQL servers.")
app.add_typer(services_app, name="services")
app.add_typer(traders_app, name="traders")
app.add_typer(users_app, name="users")
app.add_typer(access_app, name="access")
console = Console(stderr=True)
out = Console()

RedisUrl = Annotated[str | None, typer.Option("--redis-url", help="Redis URL (default: embedded)")]
Namespace = Annotated[str | None, typer.Option("--namespace", help="prefix for every Redis key")]
DashboardOpt = Annotated[
    bool, typer.Option("--dashboard/--no-dashboard", help="also start the Streamlit dashboard")
]
DashboardPort = Annotated[int, typer.Option("--dashboard-port", help="port of the dashboard")]
DatabaseUrl = Annotated[
    str | None, typer.Option("--database-url", help="PostgreSQL URL (default: embedded)")
]


def _settings(**overrides: object) -> Settings:
    try:
        return load_settings(**overrides)
    except Exception as e:  # pydantic's ValidationError names the bad setting
        console.print(f"[red]configuration error:[/red] {e}")
        raise typer.Exit(2) from e


def _database(settings: Settings, away_ok: bool = False) -> str:
    """The PostgreSQL URL (configured, or the embedded server started), migrated.
    `away_ok` (the live flow): a configured server that does not answer is not an error; the
    flow starts without it and its rules begin (migrating first) when it answers."""
    import psycopg

    from flows.services import Services
    from flows.storage.migrations import MigrationError
    from flows.storage.pg_roles import ensure_schema

    configured = settings.database_url_value()
    url = Services(settings.data_dir).database_url(configured)
    try:
        ensure_schema(url)  # a component's login only checks that the schema is current
    except MigrationError as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(1) from e
    except psycopg.OperationalError as e:
        if away_ok and configured and "password authentication" not in str(e):
            console.print("[yellow]warning:[/yellow] PostgreSQL does not answer; klines start "
                          "now, the trader rules when it answers")  # fmt: skip
            return url
        console.print(f"[red]error:[/red] cannot reach PostgreSQL ({type(e).__name__}: {e})")
        raise typer.Exit(1) from e
    except Exception as e:  # psycopg errors and friends: say where, not a traceback
        console.print(f"[red]error:[/red] cannot reach PostgreSQL ({type(e).__name__}: {e})")
        raise typer.Exit(1) from e
    return url


def _start_dashboard(
    settings: Settings, redis_url: str, database_url: str | None, port: int
) -> DashboardProcess:
    from flows.dashboard_server import start_dashboard

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    proc = start_dashboard(
        redis_url, database_url, settings.namespace, port=port,
        log=settings.data_dir / "dashboard.log",
    )  # fmt: skip
    console.print(f"Dashboard:  {proc.url} (log: {settings.data_dir / 'dashboard.log'})")
    return proc


def _demo_sign_in(db_url: str) -> str | None:
    """Give the demo's user `local` a password if it has none, so the dashboard's Signals and
    Traders pages can be opened at once; returns it (None when one was set before)."""
    import psycopg

    from dashboard.data.users import set_password

    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT password_hash FROM users WHERE name = 'local'").fetchone()
    if row is None or row[0] is not None:
        return None
    password = "local-demo"
    set_password(db_url, "local", password)
    return password


def _redis_url(settings: Settings) -> str:
    from flows.services import Services

    return Services(settings.data_dir).redis_url(settings.redis_url_value())


@app.command()
def replay(
    paths: Annotated[
        list[Path], typer.Argument(help="captures, recordings, CSV dumps or REST JSON")
    ],
    symbols: Annotated[
        str | None, typer.Option(help="only these symbols, e.g. BTCUSDT,ETHUSDT")
    ] = None,
    intervals: Annotated[
        str | None, typer.Option(help="e.g. 1m,5m,1h (default 1m,5m,15m,1h,4h,1d)")
    ] = None,
    symbol: Annotated[
        str | None, typer.Option(help="symbol of dump files whose name does not say")
    ] = None,
    redis_url: RedisUrl = None,
    namespace: Namespace = None,
    fresh: Annotated[
        bool, typer.Option(help="forget where earlier replays left each symbol")
    ] = False,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    """Run the kline dataflow over recorded files to the end, then print a summary."""
    from flows.dataflows.replay import ReplayJob, run_replay
    from flows.domain.stats import RunStats
    from flows.sources.readers import ReadOptions
    from flows.storage.redis_klines import RetentionPolicy

    settings = _settings(intervals=intervals, redis_url=redis_url, namespace=namespace)
    wanted = (
        frozenset(s.strip().upper() for s in symbols.split(",") if s.strip()) if symbols else None
    )
    job = ReplayJob(
        paths=paths,
        redis_url=_redis_url(settings),
        intervals=settings.intervals,
        keys=KeySpace(settings.namespace),
        read=ReadOptions(
            symbol=symbol,
            symbols=wanted,
            chunk_records=settings.chunk_records,
            future_margin_ms=settings.future_margin_ms,
        ),
        retention=RetentionPolicy(settings.retention, {"1m": settings.retention_1m}),
        open_throttle_ms=settings.open_kline_throttle_ms,
        max_fill=settings.max_flat_fill,
        dead_letter_maxlen=settings.dead_letter_maxlen,
        fresh=fresh,
    )
    stats = RunStats()
    started = SYSTEM_CLOCK.monotonic_s()
    with _reading_files(stats, "replay", progress):
        run_replay(job, stats)
    _print_summary(stats, SYSTEM_CLOCK.monotonic_s() - started, settings.intervals)


def _progress_loop(stats: RunStats, stop: threading.Event, label: str = "replay") -> None:
    with Progress(
        TextColumn(label),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TextColumn("{task.fields[trades]:>12,} trades"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("replay", total=max(stats.bytes_total, 1), trades=0)
        while not stop.wait(0.2):
            progress.update(task, completed=stats.bytes_done, trades=stats.trades_read)
        progress.update(task, completed=stats.bytes_total, trades=stats.trades_read)


@contextlib.contextmanager
def _reading_files(stats: RunStats, label: str, progress: bool) -> Iterator[None]:
    """A run over recorded files: a progress bar while it lasts (if asked), and a missing or
    unreadable file as a one-line error (exit 1) rather than a traceback."""
    from flows.sources.readers import FormatError

    stop = threading.Event()
    bar = threading.Thread(target=_progress_loop, args=(stats, stop, label), daemon=True)
    if progress:
        bar.start()
    try:
        yield
    except (FileNotFoundError, FormatError) as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(1) from e
    finally:
        stop.set()
        if progress:
            bar.join()


def _print_summary(stats: RunStats, seconds: float, intervals: tuple[str, ...]) -> None:
    table = Table(title="replay summary", show_header=False)
    table.add_row("trades read", f"{stats.trades_read:,}")
    for interval in intervals:
        table.add_row(f"klines written {interval}", f"{stats.klines_closed[interval]:,}")
    table.add_row("late trades", f"{stats.dead_letters['late']:,}")
    table.add_row("duplicate trades", f"{stats.duplicates:,}")
    table.add_row("invalid trades", f"{stats.dead_letters['invalid']:,}")
    table.add_row("implausible trades", f"{stats.dead_letters['implausible']:,}")
    table.add_row(
        "malformed / unknown frames",
        f"{stats.dead_letters['malformed']:,} / {stats.dead_letters['unknown']:,}",
    )
    if stats.dead_letters["no_symbol"]:
        table.add_row("files without a symbol", f"{stats.dead_letters['no_symbol']:,}")
    if stats.files_truncated:
        table.add_row("files truncated (read up to the cut)", f"{stats.files_truncated:,}")
    table.add_row("frames of other streams", f"{stats.frames_ignored:,}")
    if stats.trades_filtered:
        table.add_row("trades of other symbols", f"{stats.trades_filtered:,}")
    table.add_row("wall time", f"{seconds:.2f} s")
    table.add_row("trades/s", f"{stats.trades_read / seconds:,.0f}" if seconds > 0 else "-")
    out.print(table)


@app.command()
def klines(
    symbol: str,
    interval: str,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 500,
    start: Annotated[int | None, typer.Option(help="open time from (ms)")] = None,
    end: Annotated[int | None, typer.Option(help="open time up to (ms)")] = None,
    redis_url: RedisUrl = None,
    namespace: Namespace = None,
) -> None:
    """Print stored klines as JSON arrays in Binance's REST form, one per line."""
    from flows.services import connect_redis
    from flows.storage.kline_store import KlineStore

    try:
        get_interval(interval)
    except IntervalError as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from e
    settings = _settings(redis_url=redis_url, namespace=namespace)
    store = KlineStore(connect_redis(_redis_url(settings)), KeySpace(settings.namespace), ttl_s=0)
    rows = store.get_klines(symbol.upper(), interval, start, end, limit)
    if not rows and not store.has_symbol(symbol.upper()):
        console.print(f"no klines stored for symbol {symbol.upper()!r}")
        raise typer.Exit(1)
    for row in rows:
        out.print(json.dumps(row, separators=(",", ":")), highlight=False, soft_wrap=True)


@app.command()
def api(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    redis_url: RedisUrl = None,
    namespace: Namespace = None,
) -> None:
    """Serve GET /api/v3/klines, compatible with Binance's REST endpoint, from Redis."""
    from flows.api import serve

    settings = _settings(redis_url=redis_url, namespace=namespace)
    serve(_redis_url(settings), host, port, KeySpace(settings.namespace), settings.api_cache_ttl_s)


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
    redis_url: RedisUrl = None,
    namespace: Namespace = None,
) -> None:
    """Run the pipeline on a seeded synthetic market, with the klines API and the dashboard,
    on embedded servers."""
    from flows.dataflows.demo import DemoJob, run_demo

    settings = _settings(redis_url=redis_url, namespace=namespace)
    from flows.services import Services
    from flows.signals.examples import seed_examples
    from flows.signals.store import TraderStore

    services = Services(settings.data_dir)
    url = services.redis_url(settings.redis_url_value())
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
    job = DemoJob(
        redis_url=url,
        keys=KeySpace(settings.namespace),
        intervals=settings.intervals,
        symbols=symbols,
        seed=seed,
        history_ms=int(history_hours * 3_600_000),
        rate=rate,
        duration_s=duration,
        port=port,
        database_url=db_url,
    )
    board = _start_dashboard(settings, url, db_url, dashboard_port) if dashboard else None
    try:
        run_demo(job, console)
    finally:
        if board is not None:
            board.stop()


ExchangeUrl = Annotated[
    str | None,
    typer.Option("--exchange-url", help="one server for WebSocket and REST (e.g. the simulator)"),
]
SymbolsOpt = Annotated[str | None, typer.Option("--symbols", help="e.g. BTCUSDT,ETHUSDT")]
TopOpt = Annotated[
    int | None, typer.Option("--top", help="the N symbols with the most 24h quote volume")
]
QuoteOpt = Annotated[str, typer.Option("--quote", help="quote asset for --top")]


def _universe(exchange: Exchange, symbols: str | None, top: int | None, quote: str) -> list[str]:
    from flows.binance.rest import RestClient, RestError
    from flows.binance.universe import UniverseError
    from flows.dataflows.universe_cli import resolve_symbols

    if not symbols and top is None:
        console.print("[red]error:[/red] give --symbols S1,S2 or --top N")
        raise typer.Exit(2)
    wanted = [s.strip().upper() for s in symbols.split(",") if s.strip()] if symbols else None
    try:
        return resolve_symbols(RestClient(exchange.rest_url, max_retries=2), wanted, top, quote)
    except RestError as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(1) from e
    except UniverseError as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from e


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
    per_connection: Annotated[int, typer.Option(help="streams per connection (max 1024)")] = 200,
    grace_ms: Annotated[
        int,
        typer.Option(
            help="close a kline once its connection delivered events this long past its end"
        ),
    ] = 2000,
    record: Annotated[
        Path | None, typer.Option("--record", help="also record every frame here")
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
    recorder_stop = _start_recorder(exchange.ws_url, universe, kind, record) if record else None
    if processes > 1:
        _up_cluster(settings, processes, db_url, dashboard, dashboard_port, metrics_port,
                    recorder_stop)  # fmt: skip
        return
    job = LiveJob(
        ws_url=exchange.ws_url,
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
    )
    board = _start_dashboard(settings, job.redis_url, db_url, dashboard_port) if dashboard else None
    from flows.domain.stats import RunStats

    stats = RunStats()
    try:
        run_live(job, stats)
    except KeyboardInterrupt:  # Ctrl-C (or the cluster's supervisor): the summary still
        console.print("stopped")
    finally:
        if recorder_stop is not None:
            recorder_stop()
        if board is not None:
            board.stop()
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
    recorder_stop: Callable[[], None] | None,
) -> None:
    """`up --processes N`: N members on this machine, supervised (restarted together when
    one fails); the dashboard and the recorder run here, once."""
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
        if recorder_stop is not None:
            recorder_stop()
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


def _start_recorder(
    ws_url: str, symbols: list[str], kind: str, out_dir: Path
) -> Callable[[], None]:
    """The recorder on its own connection and thread; returns a function that stops it."""
    import asyncio

    from flows.binance.universe import stream_names
    from flows.recorder import record as record_frames

    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    streams = stream_names(symbols, kind)
    thread = threading.Thread(
        target=lambda: loop.run_until_complete(record_frames(ws_url, streams, out_dir, stop=stop)),
        name="recorder",
        daemon=True,
    )
    thread.start()

    def halt() -> None:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)

    return halt


@app.command("record")
def record_cmd(
    out_dir: Annotated[Path, typer.Option("--out", help="directory for the hourly recordings")],
    symbols: SymbolsOpt = None,
    top: TopOpt = None,
    quote: QuoteOpt = "USDT",
    exchange_url: ExchangeUrl = None,
    kind: Annotated[str, typer.Option(help="aggTrade or trade streams")] = "aggTrade",
    duration: Annotated[float | None, typer.Option(help="stop after this many seconds")] = None,
) -> None:
    """Record every raw frame with its receive time (gzip JSON lines, rotated hourly)."""
    import asyncio

    from flows.binance.universe import stream_names
    from flows.dataflows.universe_cli import exchange_urls
    from flows.recorder import record as record_frames

    exchange = exchange_urls(exchange_url, None, None)
    universe = _universe(exchange, symbols, top, quote)

    async def main() -> object:
        stop = asyncio.Event()
        if duration is not None:
            asyncio.get_running_loop().call_later(duration, stop.set)
        return await record_frames(
            exchange.ws_url, stream_names(universe, kind), out_dir, stop=stop
        )

    stats = asyncio.run(main())
    out.print(f"recorded: {stats}")


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


def _when(text: str | None) -> int | None:
    """A time given as epoch ms or an ISO date/time (UTC unless it says)."""
    if text is None:
        return None
    if text.isdigit():
        return int(text)
    from datetime import UTC, datetime

    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        console.print(f"[red]error:[/red] {text!r} is neither epoch ms nor an ISO time")
        raise typer.Exit(2) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


@app.command()
def backtest(
    data: Annotated[list[Path], typer.Option("--data", help="recordings, captures or dumps")],
    trader: Annotated[
        list[str] | None, typer.Option("--trader", help="a stored trader (id or name)")
    ] = None,
    expr: Annotated[str | None, typer.Option("--expr", help="a rule instead of traders")] = None,
    interval: Annotated[str, typer.Option(help="the --expr rule's interval")] = "1m",
    trigger: Annotated[str, typer.Option(help="every_close or on_change (--expr)")] = "on_change",
    cooldown: Annotated[int, typer.Option(help="cooldown in bars (--expr)")] = 0,
    symbols: Annotated[str | None, typer.Option(help="only these symbols")] = None,
    start: Annotated[str | None, typer.Option("--from", help="ms or ISO time")] = None,
    end: Annotated[str | None, typer.Option("--to", help="ms or ISO time")] = None,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="export: .parquet, else CSV")
    ] = None,
    store: Annotated[bool, typer.Option(help="keep the run in PostgreSQL")] = True,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
    database_url: DatabaseUrl = None,
    redis_url: RedisUrl = None,
) -> None:
    """Replay recorded trades through the live dataflow with traders; print their signals'
    statistics (forward returns after 1, 5, 15, 60 bars, excursions, signals per day)."""
    from flows.backtest.report import export, outcomes, span_ms, summary
    from flows.backtest.run import needed_intervals, run_backtest
    from flows.backtest.store import finish_run, start_run
    from flows.domain.stats import RunStats
    from flows.rules.errors import RuleError
    from flows.signals.book import Book, TraderRow, compile_trader
    from flows.signals.store import TraderError, TraderStore

    if (expr is None) == (not trader):
        console.print("[red]error:[/red] give --trader REF (one or more) or --expr RULE")
        raise typer.Exit(2)
    settings = _settings(redis_url=redis_url, database_url=database_url)
    db = _database(settings) if (store or trader) else None
    rows: list[TraderRow] = []
    if expr is not None:
        rows.append(TraderRow(0, "command line", expr, interval, trigger_mode=trigger,
                              cooldown_bars=cooldown))  # fmt: skip
    else:
        assert db is not None and trader is not None
        try:
            rows = [TraderStore(db).find(ref) for ref in trader]
        except TraderError as e:
            console.print(f"[red]error:[/red] {e}")
            raise typer.Exit(1) from e
    try:
        compiled = tuple(compile_trader(r) for r in rows)
    except RuleError as e:
        console.print(f"[red]bad rule:[/red] {e.message} (at {e.position})")
        raise typer.Exit(2) from e
    book = Book(compiled, version=1)
    needed = needed_intervals(book)
    wanted = frozenset(s.strip().upper() for s in symbols.split(",")) if symbols else None
    params = {"symbols": sorted(wanted) if wanted else None, "from": start, "to": end,
              "intervals": needed}  # fmt: skip
    run_id = start_run(db, {}, book, params) if (store and db) else None
    stats = RunStats()
    started = SYSTEM_CLOCK.monotonic_s()
    with _reading_files(stats, "backtest", progress):
        result = run_backtest(data, book, tuple(needed), _redis_url(settings), wanted,
                              _when(start), _when(end), stats=stats,
                              future_margin_ms=settings.future_margin_ms)  # fmt: skip
    seconds = SYSTEM_CLOCK.monotonic_s() - started
    rows_out = outcomes(result.signals, result.klines)
    span = span_ms(result.klines)
    if run_id is not None and db is not None:
        klines = sum(stats.klines_closed.values())
        finish_run(db, run_id, rows_out, stats.trades_read, klines, seconds,
                   inputs=result.input_hashes, span_ms=span)  # fmt: skip
    if out_file is not None:
        export(rows_out, out_file)
    table = Table(title=f"backtest{f' run {run_id}' if run_id else ''}: {stats.trades_read:,} "
                  f"trades in {seconds:.1f} s")  # fmt: skip
    for column in ("trader", "symbol", "signals", "per day", "ret1", "ret5", "ret15", "ret60",
                   "hit15", "mfe15", "mae15"):  # fmt: skip
        table.add_column(column, justify="left" if column in ("trader", "symbol") else "right")

    def pct(v: object) -> str:
        return "" if v is None else f"{float(v) * 100:.2f}%"  # type: ignore[arg-type]

    for line in summary(rows_out, span):
        table.add_row(str(line["trader_id"]), str(line["symbol"]), str(line["signals"]),
                      f"{float(line['signals_per_day'] or 0):.1f}",
                      pct(line["ret1_mean"]), pct(line["ret5_mean"]), pct(line["ret15_mean"]),
                      pct(line["ret60_mean"]), pct(line["ret15_hit_rate"]),
                      pct(line["mfe15_mean"]), pct(line["mae15_mean"]))  # fmt: skip
    out.print(table)
    if result.failures:
        out.print(f"rule failures: {len(result.failures)} (first: {result.failures[0].error})")
    if out_file is not None:
        out.print(f"signals written to {out_file}")


@app.command()
def status(
    redis_url: RedisUrl = None,
    namespace: Namespace = None,
    database_url: DatabaseUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object")] = False,
) -> None:
    """The pipeline's health at a glance: servers, the live flow's heartbeat and feeds.
    Exits 1 when a server is unreachable or the flow's heartbeat is stale or missing."""
    import json as _json

    import psycopg
    import redis as _redis

    from flows.services import Services

    settings = _settings(redis_url=redis_url, namespace=namespace, database_url=database_url)
    services = Services(settings.data_dir)
    rurl = settings.redis_url_value() or services.redis.url
    report: dict[str, object] = {"redis": "unreachable", "postgresql": "unreachable"}
    beat: dict[str, object] | None = None
    keys = KeySpace(settings.namespace)
    try:
        client = _redis.Redis.from_url(rurl, socket_timeout=3, socket_connect_timeout=3)
        client.ping()
        report["redis"] = "reachable"
        raw = client.hgetall(keys.heartbeat)
        if raw:
            beat = {k.decode(): v.decode() for k, v in raw.items()}  # type: ignore[union-attr]
        report["data_quality"] = _data_quality(client, keys)
    except (_redis.RedisError, OSError):
        pass
    durl = settings.database_url_value()
    if durl is None and services.postgres.running():
        durl = services.database_url(None)
    if durl:
        try:
            with psycopg.connect(durl, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            report["postgresql"] = "reachable"
        except psycopg.Error:
            pass
    now = SYSTEM_CLOCK.now_ms()
    healthy = report["redis"] == "reachable" and report["postgresql"] == "reachable"
    if beat is None:
        report["flow"] = "no heartbeat (no live flow on this Redis and namespace)"
        healthy = False
    else:
        age_s = (now - int(str(beat["ts_ms"]))) / 1000
        feeds = _json.loads(str(beat.get("feeds", "[]")))
        report["flow"] = {
            "state": beat.get("state"),
            "heartbeat_age_s": round(age_s, 1),
            "trades_read": int(str(beat.get("trades_read", 0))),
            "late": int(str(beat.get("late", 0))),
            "duplicates": int(str(beat.get("duplicates", 0))),
            "gaps": int(str(beat.get("gaps", 0))),
            "implausible": int(str(beat.get("implausible", 0))),
            "klines_amended": int(str(beat.get("klines_amended", 0))),
            "store_repairs": int(str(beat.get("store_repairs", 0))),
            "waiting_for": [w for w in str(beat.get("waiting_for", "")).split(",") if w],
            "processes": int(str(beat.get("processes", 1))),
            "processes_seen": int(str(beat.get("processes_seen", 1))),
            "feeds": feeds,
        }
        stale_feed = any(f["state"] != "connected" for f in feeds)
        waiting = bool(str(beat.get("waiting_for", "")))
        healthy = (
            healthy and beat.get("state") == "running" and age_s < 10 and not stale_feed
            and not waiting
        )  # fmt: skip
    report["healthy"] = healthy
    if as_json:
        out.print_json(_json.dumps(report))
    else:
        out.print(f"redis       {report['redis']}")
        out.print(f"postgresql  {report['postgresql']}")
        flow = report["flow"]
        if isinstance(flow, dict):
            out.print(f"flow        {flow['state']}, heartbeat {flow['heartbeat_age_s']} s ago, "
                      f"{flow['trades_read']:,} trades, {flow['late']} late, "
                      f"{flow['duplicates']} duplicates, {flow['gaps']} gaps")  # fmt: skip
            if flow["waiting_for"]:
                out.print(f"  WAITING for {', '.join(flow['waiting_for'])} (the flow is paused)")
            if flow["implausible"] or flow["klines_amended"] or flow["store_repairs"]:
                out.print(f"  {flow['implausible']} implausible trades refused, "
                          f"{flow['klines_amended']} klines amended, "
                          f"{flow['store_repairs']} Redis repairs")  # fmt: skip
            if flow["processes"] > 1:
                out.print(f"  cluster: {flow['processes_seen']} of {flow['processes']} "
                          "processes heard from")  # fmt: skip
            for f in flow["feeds"]:
                age = f["last_message_age_s"]
                out.print(f"  feed {f['connection']}: {f['state']}, {f['streams']} streams, "
                          f"last message {'-' if age is None else f'{age:.1f} s'} ago, "
                          f"{f['reconnects']} reconnects")  # fmt: skip
        else:
            out.print(f"flow        {flow}")
        quality = report.get("data_quality")
        if isinstance(quality, dict) and quality["records"]:
            out.print(f"data quality: {quality['records']} record(s), "
                      f"{quality['gap_symbols']} symbol(s) with gaps; newest:")  # fmt: skip
            for rec in quality["recent"]:
                out.print("  " + _quality_line(rec), soft_wrap=True)
        out.print("healthy" if healthy else "NOT healthy")
    if not healthy:
        raise typer.Exit(1)


def _data_quality(client: object, keys: KeySpace, newest: int = 5) -> dict[str, object]:
    """What the data-quality stream holds: how many records, how many symbols have gaps, and
    the newest records."""
    import redis as _redis

    assert isinstance(client, _redis.Redis)
    count = int(client.xlen(keys.data_quality))
    rows = client.xrevrange(keys.data_quality, count=newest) if count else []
    recent = [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in rows]  # type: ignore[union-attr]
    gap_keys = list(client.scan_iter(match=keys.gaps("*"), count=1000)) if count else []
    return {"records": count, "gap_symbols": len(gap_keys), "recent": recent}


def _quality_line(rec: dict[str, str]) -> str:
    from datetime import UTC, datetime

    def when(ms: str) -> str:
        value = int(ms) if ms.lstrip("-").isdigit() else -1
        if value < 0:
            return "-"
        return datetime.fromtimestamp(value / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")

    if "reason" in rec:  # a range of trades that could not be had
        return (f"{rec.get('symbol')}: {rec['reason']}, {when(rec.get('from_ms', '-1'))} .. "
                f"{when(rec.get('to_ms', '-1'))}")  # fmt: skip
    return f"{rec.get('symbol')} {rec.get('interval', '')}: {rec.get('what')}: {rec.get('detail')}"


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
    try:
        proc.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        proc.stop()


@app.command()
def migrate(
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="PostgreSQL URL (default: embedded)")
    ] = None,
) -> None:
    """Apply the forward-only SQL migrations in sql/ that are not applied yet."""
    from flows.services import Services
    from flows.storage.migrations import MigrationError, apply_migrations

    settings = _settings(database_url=database_url)
    url = Services(settings.data_dir).database_url(settings.database_url_value())
    try:
        done = apply_migrations(url)
    except MigrationError as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(1) from e
    out.print("applied: " + (", ".join(done) if done else "nothing (the schema is up to date)"))


@services_app.command("start")
def services_start() -> None:
    """Start the embedded servers (those not given by URL) and print where they are."""
    from flows.services import Services

    settings = _settings()
    services = Services(settings.data_dir)
    out.print(f"redis    {services.redis_url(settings.redis_url_value())}")
    out.print(f"postgres {services.database_url(settings.database_url_value())}")


@services_app.command("stop")
def services_stop() -> None:
    """Stop the embedded servers cleanly."""
    from flows.services import Services

    stopped = Services(_settings().data_dir).stop()
    out.print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@services_app.command("status")
def services_status() -> None:
    """Say whether each embedded server runs."""
    from flows.services import Services

    services = Services(_settings().data_dir)
    out.print(
        f"redis    {'running' if services.redis.running() else 'stopped'}  {services.redis.url}"
    )
    pg_state = "running" if services.postgres.running() else "stopped"
    out.print(f"postgres {pg_state}  {services.postgres.directory}")


def main() -> None:
    from flows.logs import setup

    setup(logging.WARNING)
    app()


__all__ = ["app", "main"]


if __name__ == "__main__":
    main()
