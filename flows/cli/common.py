"""What every command module shares: the typer app, the consoles, the common options,
settings, the servers' URLs and the progress bar."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from flows.app.errors import EXIT_INTERRUPTED
from flows.cli.boundary import DEBUG, GuardedGroup, console, out
from flows.settings import Settings, load_settings

if TYPE_CHECKING:  # the heavy imports stay inside the commands that need them
    from flows.dashboard_server import DashboardProcess
    from flows.dataflows.universe_cli import Exchange
    from flows.domain.stats import RunStats


app = typer.Typer(
    cls=GuardedGroup,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # a docstring's lines are joined into paragraphs
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            out.print(f"klineflow {version('klineflow')}")
        except PackageNotFoundError:  # a checkout that was never installed
            out.print("klineflow (not installed)")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="show the traceback of a failure")] = False,
) -> None:
    """Binance trades to Binance-exact klines, trader rules and signals.

    Exit codes: 0 done; 1 the command failed (a server unreachable, a login refused, a port
    taken, nothing usable in the input); 2 bad usage or input (an option, setting, URL, rule
    or file); 130 a one-off command interrupted by Ctrl-C. `up`, `demo` and `dashboard` stop
    on Ctrl-C or SIGTERM with their summary and exit 0."""
    DEBUG["on"] = debug


services_app = typer.Typer(
    cls=GuardedGroup, no_args_is_help=True, help="The embedded Redis and PostgreSQL servers."
)
app.add_typer(services_app, name="services")


RedisUrl = Annotated[str | None, typer.Option("--redis-url", help="Redis URL (default: embedded)")]


Namespace = Annotated[str | None, typer.Option("--namespace", help="prefix for every Redis key")]


DashboardOpt = Annotated[
    bool, typer.Option("--dashboard/--no-dashboard", help="also start the Streamlit dashboard")
]


DashboardPort = Annotated[int, typer.Option("--dashboard-port", help="port of the dashboard")]


NotifyOpt = Annotated[
    bool,
    typer.Option("--notify/--no-notify", help="also deliver signals to their channels (the "
                 "notifier; `klineflow channels`)"),
]  # fmt: skip


DatabaseUrl = Annotated[
    str | None, typer.Option("--database-url", help="PostgreSQL URL (default: embedded)")
]


ExchangeUrl = Annotated[
    str | None,
    typer.Option("--exchange-url", help="one server for WebSocket and REST (e.g. the simulator)"),
]


SymbolsOpt = Annotated[str | None, typer.Option("--symbols", help="e.g. BTCUSDT,ETHUSDT")]


TopOpt = Annotated[
    int | None, typer.Option("--top", help="the N symbols with the most 24h quote volume")
]


QuoteOpt = Annotated[str, typer.Option("--quote", help="quote asset for --top")]


def _settings(**overrides: object) -> Settings:
    """The settings with these options over the environment's; a bad one is explained by
    the error boundary (one line, exit 2)."""
    return load_settings(**overrides)


def _database(settings: Settings, away_ok: bool = False) -> str:
    """The PostgreSQL URL, its schema current (see flows.app.database.open_database)."""
    from flows.app.database import open_database

    def warn(text: str) -> None:
        console.print(f"[yellow]warning:[/yellow] {text}")

    return open_database(settings, away_ok, warn)


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
    """Give the demo's user `local` a password if it has none (see
    dashboard.data.users.demo_password); returns it, None when one was set before."""
    from dashboard.data.users import demo_password

    return demo_password(db_url)


def _redis_url(settings: Settings) -> str:
    from flows.app.database import redis_url

    return redis_url(settings)


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
    """A run over recorded files, with a progress bar while it lasts (if asked)."""
    stop = threading.Event()
    bar = threading.Thread(target=_progress_loop, args=(stats, stop, label), daemon=True)
    if progress:
        bar.start()
    try:
        yield
    finally:
        stop.set()
        if progress:
            bar.join()


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


@contextlib.contextmanager
def stopping_on_signals(stop: threading.Event) -> Iterator[list[int]]:
    """Ctrl-C and SIGTERM set `stop`: the flow ends after what it is doing, every child is
    stopped by the command's own `finally`, and the summary is printed (no interrupt lands
    inside the engine, whose threads would panic). A second signal interrupts what is
    running; a third leaves at once (exit 130), whatever waits. Yields the signals
    received."""
    got: list[int] = []

    def handler(signum: int, _frame: object) -> None:
        got.append(signum)
        if len(got) >= 3:  # something does not let go (a store away for ever): leave now
            console.print("stopped at once, without the summary")
            os._exit(EXIT_INTERRUPTED)
        if len(got) == 2:
            raise KeyboardInterrupt
        console.print(f"stopped by {signal.Signals(signum).name}: finishing what is in flight "
                      "(press Ctrl-C again to stop at once)")  # fmt: skip
        stop.set()

    if threading.current_thread() is not threading.main_thread():
        yield got  # signals reach the main thread only (an embedding, a test runner)
        return
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield got
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
