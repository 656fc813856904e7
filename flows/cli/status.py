"""`status`, `klines`, `migrate` and `services`: looking at and preparing the stores."""

from __future__ import annotations

import json
import textwrap
import unicodedata
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.cells import cell_len, set_cell_size

from flows.cli.boundary import out
from flows.cli.common import (
    DatabaseUrl,
    Namespace,
    RedisUrl,
    _settings,
    app,
    services_app,
)

if TYPE_CHECKING:  # the heavy imports stay inside the commands that need them
    from flows.app.status import StatusReport

WIDTH = 80  # every line of `status` fits a terminal this wide
MAX_TRADERS = 30  # traders listed in the text form (--json lists them all)


@app.command()
def status(
    redis_url: RedisUrl = None,
    namespace: Namespace = None,
    database_url: DatabaseUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object")] = False,
) -> None:
    """The pipeline's health at a glance: servers, the live flow's heartbeat and feeds, data
    quality, signals per trader. Exits 1 when not healthy (a server unreachable, the flow's
    heartbeat stale or missing, a feed not connected or silent, the flow waiting for a
    server, a cluster member missing), with the reasons."""
    from flows.app.status import status as gather

    report = gather(_settings(redis_url=redis_url, namespace=namespace, database_url=database_url))
    if as_json:
        out.print_json(json.dumps(report.to_json()))
    else:
        for line in render(report):
            out.print(line, soft_wrap=True, markup=False, highlight=False)
    if not report.healthy:
        raise typer.Exit(1)


def render(report: StatusReport, width: int = WIDTH) -> list[str]:
    """The report as lines of at most `width` cells: long text is wrapped, never cut, but
    for trader names (shortened with an ellipsis: the id says which)."""
    lines = [f"redis       {report.redis.word}", f"postgresql  {report.postgresql.word}"]
    beat = report.heartbeat
    if beat is None:
        lines.append("flow        " + (report.heartbeat_error or "no heartbeat (no live flow "
                                        "on this Redis and namespace)"))  # fmt: skip
    else:
        c = beat.counters
        age_s = beat.age_ms(report.now_ms) / 1000
        lines.append(f"flow        {beat.state}, heartbeat {age_s:.1f} s old, started "
                     f"{_when(beat.started_ms)}")  # fmt: skip
        lines.append(f"  {c.trades_read:,} trades ({c.trades_backfilled:,} backfilled), "
                     f"{c.late:,} late, {c.duplicates:,} duplicates, {c.gaps:,} gaps")  # fmt: skip
        if c.implausible or c.klines_amended or c.store_repairs:
            lines.append(f"  {c.implausible:,} implausible trades refused, {c.klines_amended:,} "
                         f"klines amended, {c.store_repairs:,} Redis repairs")  # fmt: skip
        if beat.waiting_for:
            lines.append(f"  WAITING for {', '.join(beat.waiting_for)} (the flow is paused)")
        if beat.processes > 1:
            lines.append(f"  cluster: {beat.processes_seen} of {beat.processes} processes "
                         "heard from")  # fmt: skip
        for f in beat.feeds:
            age = f.last_message_age_s
            heard = "never heard from" if age is None else f"last message {age:.1f} s ago"
            lines.append(f"  feed {f.connection:<5} {f.state:<12} {f.streams:>4} streams, "
                         f"{heard}, {f.reconnects:,} reconnects")  # fmt: skip
    quality = report.data_quality
    if quality is not None and quality.records:
        lines.append(f"data quality: {quality.records:,} record(s), {quality.gap_symbols:,} "
                     "symbol(s) with gaps; newest:")  # fmt: skip
        lines += ["  " + _quality_line(rec) for rec in quality.recent]
    lines += _signals(report, width)
    if report.healthy:
        lines.append("healthy")
    else:
        lines.append("NOT healthy:")
        lines += [f"  - {reason}" for reason in report.health.reasons]
    return [part for line in lines for part in _wrapped(line, width)]


def _signals(report: StatusReport, width: int) -> list[str]:
    if report.signals is None:
        return [f"signals     {report.signals_error}"] if report.postgresql.reachable else []
    if not report.signals:
        return ["signals     no traders"]
    name_cells = width - 2 - 8 - 2 - 2 - 12 - 2 - 10
    head = f"  {'id':>8}  {'trader':<{name_cells}}  {'total':>12}  {'last 24 h':>10}"
    lines = [f"signals     per trader ({len(report.signals):,})", head]
    for t in report.signals[:MAX_TRADERS]:
        name = _cells(_printable(t.trader), name_cells, "" if t.enabled else " (off)")
        lines.append(f"  {t.trader_id:>8}  {name}  {t.total:>12,}  {t.last_24h:>10,}")
    if len(report.signals) > MAX_TRADERS:
        lines.append(f"  ... {len(report.signals) - MAX_TRADERS:,} more (--json lists all)")
    return lines


def _printable(text: str) -> str:
    """User text on one line, without control characters (no escape reaches the terminal)."""
    return "".join(" " if unicodedata.category(ch).startswith("C") else ch
                   for ch in " ".join(text.split()))  # fmt: skip


def _cells(text: str, cells: int, suffix: str = "") -> str:
    """Text and suffix in exactly `cells` terminal cells: padded, or the text shortened with
    an ellipsis (the suffix kept whole)."""
    room = cells - cell_len(suffix)
    if cell_len(text) > room:
        text = set_cell_size(text, room - 1) + "\u2026"
    return set_cell_size(text + suffix, cells)


def _wrapped(line: str, width: int) -> list[str]:
    if cell_len(line) <= width:
        return [line]
    indent = " " * (len(line) - len(line.lstrip(" ")) + 4)
    parts = textwrap.wrap(line, width, subsequent_indent=indent, break_on_hyphens=False)
    out_lines: list[str] = []
    for part in parts:  # text of wide characters: cut by cells as a last resort
        rest = part
        while cell_len(rest) > width:
            head = set_cell_size(rest, width)
            out_lines.append(head)
            rest = indent + rest[len(head) :]
        out_lines.append(rest)
    return out_lines


def _when(ms: int) -> str:
    if ms < 0:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def _quality_line(rec: dict[str, str]) -> str:
    def when(ms: str) -> str:
        return _when(int(ms)) if ms.lstrip("-").isdigit() else "-"

    if "reason" in rec:  # a range of trades that could not be had
        return (f"{rec.get('symbol')}: {rec['reason']}, {when(rec.get('from_ms', '-1'))} .. "
                f"{when(rec.get('to_ms', '-1'))}")  # fmt: skip
    return f"{rec.get('symbol')} {rec.get('interval', '')}: {rec.get('what')}: {rec.get('detail')}"


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
    from flows.app.klines import read_klines

    settings = _settings(redis_url=redis_url, namespace=namespace)
    rows = read_klines(settings, symbol, interval, start, end, limit)
    for row in rows:
        out.print(json.dumps(row, separators=(",", ":")), highlight=False, soft_wrap=True)


@app.command()
def migrate(
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="PostgreSQL URL (default: embedded)")
    ] = None,
) -> None:
    """Apply the forward-only SQL migrations in sql/ that are not applied yet."""
    from flows.app.database import database_url as url_of
    from flows.storage.migrations import apply_migrations

    done = apply_migrations(url_of(_settings(database_url=database_url)))
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
