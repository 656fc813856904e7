"""`replay`, `backtest` and `record`: recorded trades through the dataflow, and recording."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from flows.app.errors import NothingUsable
from flows.cli.boundary import console, out
from flows.cli.common import (
    DatabaseUrl,
    ExchangeUrl,
    Namespace,
    QuoteOpt,
    RedisUrl,
    SymbolsOpt,
    TopOpt,
    _database,
    _reading_files,
    _redis_url,
    _settings,
    _universe,
    _when,
    app,
    stopping_on_signals,
)
from flows.domain.clock import SYSTEM_CLOCK
from flows.domain.keys import KeySpace

if TYPE_CHECKING:  # the heavy imports stay inside the commands that need them
    from flows.domain.stats import RunStats
    from flows.settings import Settings
    from flows.sources.read_ahead import FileChunk, ReadAhead
    from flows.sources.readers import ReadOptions


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
    from flows.allocator import keep_freed_memory
    from flows.sources.inputs import expand_inputs
    from flows.sources.read_ahead import ReadAhead, replay_chunks
    from flows.sources.readers import ReadOptions

    settings = _settings(intervals=intervals, redis_url=redis_url, namespace=namespace)
    wanted = (
        frozenset(s.strip().upper() for s in symbols.split(",") if s.strip()) if symbols else None
    )
    read = ReadOptions(
        symbol=symbol,
        symbols=wanted,
        chunk_records=settings.chunk_records,
        future_margin_ms=settings.future_margin_ms,
    )
    keep_freed_memory()  # a batch job: blocks of the file reuse freed memory
    files = expand_inputs(paths)
    # the files are read (on threads) while the dataflow's modules load
    ahead = ReadAhead(replay_chunks(files, read)) if all(f.is_file() for f in files) else None
    try:
        _replay(files, read, settings, fresh, progress, ahead)
    finally:
        if ahead is not None:
            ahead.close()


def _replay(
    files: list[Path],
    read: ReadOptions,
    settings: Settings,
    fresh: bool,
    progress: bool,
    ahead: ReadAhead[FileChunk] | None,
) -> None:
    from flows.app.errors import nothing_read
    from flows.dataflows.replay import ReplayJob, run_replay
    from flows.domain.stats import RunStats
    from flows.storage.redis_klines import RetentionPolicy

    job = ReplayJob(
        paths=files,
        redis_url=_redis_url(settings),
        intervals=settings.intervals,
        keys=KeySpace(settings.namespace),
        read=read,
        retention=RetentionPolicy(settings.retention, {"1m": settings.retention_1m}),
        open_throttle_ms=settings.open_kline_throttle_ms,
        max_fill=settings.max_flat_fill,
        dead_letter_maxlen=settings.dead_letter_maxlen,
        fresh=fresh,
        ahead=ahead,
    )
    stats = RunStats()
    started = SYSTEM_CLOCK.monotonic_s()
    with _reading_files(stats, "replay", progress):
        run_replay(job, stats)
    _print_summary(stats, SYSTEM_CLOCK.monotonic_s() - started, settings.intervals)
    empty = nothing_read(stats)
    if empty is not None:
        raise empty


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
    from flows.allocator import keep_freed_memory
    from flows.app.backtests import run_and_record
    from flows.app.errors import BadInput, BadRule
    from flows.backtest.report import export, summary
    from flows.domain.intervals import get_interval
    from flows.domain.stats import RunStats
    from flows.rules.errors import RuleError
    from flows.signals.book import Book, TraderRow, compile_trader
    from flows.signals.store import TraderStore

    if (expr is None) == (not trader):
        raise BadInput("give --trader REF (one or more) or --expr RULE")
    rows: list[TraderRow] = []
    if expr is not None:  # checked before any server is started
        get_interval(interval)  # an unknown interval is said as such, not as a bad rule
        rows.append(TraderRow(0, "command line", expr, interval, trigger_mode=trigger,
                              cooldown_bars=cooldown))  # fmt: skip
        try:
            compile_trader(rows[0])
        except RuleError as e:
            raise BadRule(expr, e) from None
    start_ms, end_ms = _when(start), _when(end)
    settings = _settings(redis_url=redis_url, database_url=database_url)
    db = _database(settings) if (store or trader) else None
    if trader:
        assert db is not None
        rows = [TraderStore(db).find(ref) for ref in trader]
    compiled = []
    for row in rows:
        try:
            compiled.append(compile_trader(row))
        except RuleError as e:
            raise BadRule(row.expression, e) from None
    book = Book(tuple(compiled), version=1)
    wanted = frozenset(s.strip().upper() for s in symbols.split(",")) if symbols else None
    params = {"symbols": sorted(wanted) if wanted else None, "from": start, "to": end}
    stats = RunStats()
    keep_freed_memory()  # a batch job: blocks of the files reuse freed memory
    with _reading_files(stats, "backtest", progress):
        recorded = run_and_record(
            data, book, _redis_url(settings), db if store else None, symbols=wanted,
            start_ms=start_ms, end_ms=end_ms, params=params, stats=stats,
            future_margin_ms=settings.future_margin_ms,
        )  # fmt: skip
    run_id, result, rows_out = recorded.run_id, recorded.result, recorded.rows
    seconds, span = recorded.seconds, recorded.span_ms
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


@app.command("record")
def record_cmd(
    out_dir: Annotated[Path, typer.Option("--out", help="directory for the hourly recordings")],
    symbols: SymbolsOpt = None,
    top: TopOpt = None,
    quote: QuoteOpt = "USDT",
    exchange_url: ExchangeUrl = None,
    kind: Annotated[str, typer.Option(help="aggTrade or trade streams")] = "aggTrade",
    duration: Annotated[float | None, typer.Option(help="stop after this many seconds")] = None,
    archive: Annotated[
        Path | None,
        typer.Option(help="also write each closed recording's trades to this Parquet archive"),
    ] = None,
) -> None:
    """Record every raw frame with its receive time (gzip JSON lines, rotated hourly).

    A status line shows frames, bytes, files and reconnects while it records; Ctrl-C or
    SIGTERM ends it with a summary."""
    import asyncio

    from flows.binance.universe import stream_names
    from flows.dataflows.universe_cli import exchange_urls
    from flows.recorder import RecorderStats
    from flows.recorder import record as record_frames

    exchange = exchange_urls(exchange_url, None, None)
    universe = _universe(exchange, symbols, top, quote)
    stats = RecorderStats()
    stopping = threading.Event()
    started = SYSTEM_CLOCK.monotonic_s()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        if duration is not None:
            loop.call_later(duration, stop.set)

        async def watch() -> None:  # a signal sets `stopping` (a thread-safe flag)
            while not stop.is_set():
                if stopping.is_set():
                    stop.set()
                await asyncio.sleep(0.2)

        watcher = asyncio.create_task(watch())
        try:
            await record_frames(exchange.ws_url, stream_names(universe, kind), out_dir,
                                stop=stop, stats=stats, archive=archive)  # fmt: skip
        finally:
            watcher.cancel()

    console.print(f"recording {len(universe)} symbols' {kind} streams into {out_dir} "
                  f"({'for ' + format(duration, 'g') + ' s' if duration else 'Ctrl-C to stop'})",
                  soft_wrap=True)  # fmt: skip
    with stopping_on_signals(stopping), console.status("") as status:
        bar = threading.Thread(target=_record_status, args=(stats, status, stopping),
                               daemon=True)  # fmt: skip
        bar.start()
        try:
            asyncio.run(main())
        finally:
            stopping.set()
            bar.join()
    seconds = SYSTEM_CLOCK.monotonic_s() - started
    table = Table(title="recording summary", show_header=False)
    table.add_row("frames", f"{stats.frames:,}")
    table.add_row("received", f"{stats.bytes_received / 1e6:,.1f} MB")
    table.add_row("files", f"{stats.files:,}")
    table.add_row("connections (reconnects)", f"{stats.connections:,} ({stats.reconnects:,})")
    table.add_row("wall time", f"{seconds:,.1f} s")
    if stats.last_error:
        table.add_row("last connection error", stats.last_error)
    if archive is not None:
        table.add_row("archive files (failures)", f"{len(stats.archived):,} "
                      f"({stats.archive_failures:,})")  # fmt: skip
    out.print(table)
    for path in [*stats.paths, *stats.archived]:
        out.print(str(path), highlight=False, soft_wrap=True)
    if not stats.frames:
        raise NothingUsable("nothing was recorded", "check the symbols and --exchange-url")


@app.command("archive")
def archive_cmd(
    paths: Annotated[list[Path], typer.Argument(help="recordings, captures, CSV dumps, REST JSON")],
    out_dir: Annotated[Path, typer.Option("--out", help="the trade archive's folder")],
    symbol: Annotated[
        str | None, typer.Option(help="symbol of dump files whose name does not say")
    ] = None,
) -> None:
    """Write the trades of recorded files into the columnar trade archive (Parquet, one folder
    per symbol and day), which replay and backtest read without parsing."""
    from flows.allocator import keep_freed_memory
    from flows.sources.chunks import ReadOptions
    from flows.sources.trade_archive import archive_file

    keep_freed_memory()  # a batch job: blocks of the files reuse freed memory
    written: list[Path] = []
    for path in paths:
        if not path.is_file():
            raise NothingUsable(f"no such file: {path}", "give recorded files to archive")
        written += archive_file(path, out_dir, ReadOptions(symbol=symbol))
    if not written:
        raise NothingUsable("no trades to archive", "give files with trades in them")
    for path in written:
        out.print(str(path), highlight=False, soft_wrap=True)


def _record_status(stats: object, status: object, done: threading.Event) -> None:
    """The recorder's progress on the status line, every half second."""
    from rich.status import Status

    from flows.recorder import RecorderStats

    assert isinstance(stats, RecorderStats) and isinstance(status, Status)
    while not done.wait(0.5):
        status.update(f"{stats.frames:,} frames, {stats.bytes_received / 1e6:,.1f} MB, "
                      f"{stats.files} file(s), {stats.reconnects} reconnects")  # fmt: skip
