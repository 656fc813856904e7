"""`status`, `klines`, `migrate` and `services`: looking at and preparing the stores."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from flows.cli.boundary import console, out
from flows.cli.common import (
    DatabaseUrl,
    Namespace,
    RedisUrl,
    _redis_url,
    _settings,
    app,
    services_app,
)
from flows.domain.clock import SYSTEM_CLOCK
from flows.domain.intervals import IntervalError, get_interval
from flows.domain.keys import KeySpace

if TYPE_CHECKING:  # the heavy imports stay inside the commands that need them
    pass


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
