"""The pipeline's status in one typed report: what `klineflow status` prints.

`status(settings)` asks the servers once: whether Redis and PostgreSQL answer, the live
flow's heartbeat (``flows.app.health``), the data-quality stream, and how many signals each
trader raised (in all and in the last 24 h). PostgreSQL is read as the flow's role when the
login may take it (the flow's login, the owner, the embedded server's superuser), so every
trader counts; the dashboard reads the same counts under its user's row-level security
(`SIGNAL_COUNTS`, through its own data layer). A server that does not answer is part of the
report, never an exception.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
import redis
from psycopg import sql
from psycopg.rows import dict_row

from flows.app.health import COUNTER_NAMES, FlowHeartbeat, Health, HeartbeatError
from flows.domain.clock import SYSTEM_CLOCK, Clock
from flows.domain.keys import KeySpace
from flows.settings import Settings
from flows.storage.pg_roles import FLOW_ROLE

DAY_MS = 86_400_000
RECENT_QUALITY = 5  # data-quality records shown
# every trader the connection may see, with its signals in all and since a time (the one
# parameter)
SIGNAL_COUNTS = (
    "SELECT t.id AS trader_id, t.name AS trader, t.owner_id, t.enabled, "
    "count(s.id) AS total, count(s.id) FILTER (WHERE s.created_at >= %s) AS last_24h "
    "FROM traders t LEFT JOIN signals s ON s.trader_id = t.id "
    "GROUP BY t.id ORDER BY t.id"
)


@dataclass(frozen=True)
class Server:
    reachable: bool
    error: str = ""  # why not, on one line

    @property
    def word(self) -> str:
        return "reachable" if self.reachable else "unreachable"


@dataclass(frozen=True)
class DataQuality:
    records: int  # in the data-quality stream
    gap_symbols: int  # symbols with incomplete ranges recorded
    recent: tuple[dict[str, str], ...]  # the newest records, newest first


@dataclass(frozen=True)
class TraderSignals:
    trader_id: int
    trader: str
    owner_id: int
    enabled: bool
    total: int
    last_24h: int

    @classmethod
    def of_row(cls, row: dict[str, Any]) -> TraderSignals:
        return cls(int(row["trader_id"]), str(row["trader"]), int(row["owner_id"]),
                   bool(row["enabled"]), int(row["total"]), int(row["last_24h"]))  # fmt: skip


@dataclass(frozen=True)
class StatusReport:
    now_ms: int
    namespace: str
    redis: Server
    postgresql: Server
    heartbeat: FlowHeartbeat | None  # None: none in Redis, or unreadable
    heartbeat_error: str  # why the hash in Redis could not be read ('' when it could)
    data_quality: DataQuality | None  # None: Redis unreachable
    signals: tuple[TraderSignals, ...] | None  # None: not readable (signals_error says why)
    signals_error: str
    health: Health

    @property
    def healthy(self) -> bool:
        return self.health.healthy

    def to_json(self) -> dict[str, Any]:
        """One JSON object (the shape of `klineflow status --json`)."""
        beat = self.heartbeat
        flow: object
        if beat is not None:
            flow = {
                "state": beat.state,
                "heartbeat_age_s": round(beat.age_ms(self.now_ms) / 1000, 1),
                "ts_ms": beat.ts_ms,
                "started_ms": beat.started_ms,
                **{n: getattr(beat.counters, n) for n in COUNTER_NAMES},
                "waiting_for": list(beat.waiting_for),
                "klines_closed": dict(beat.klines_closed),
                "processes": beat.processes,
                "processes_seen": beat.processes_seen,
                "processes_missing": list(beat.processes_missing),
                "processes_stopped": list(beat.processes_stopped),
                "feeds": [f.to_json() for f in beat.feeds],
            }
        else:
            flow = self.heartbeat_error or NO_FLOW
        quality = self.data_quality
        return {
            "redis": self.redis.word,
            "postgresql": self.postgresql.word,
            "flow": flow,
            "data_quality": None if quality is None else {
                "records": quality.records, "gap_symbols": quality.gap_symbols,
                "recent": list(quality.recent),
            },
            "signals": None if self.signals is None else [
                {"trader_id": t.trader_id, "trader": t.trader, "owner_id": t.owner_id,
                 "enabled": t.enabled, "total": t.total, "last_24h": t.last_24h}
                for t in self.signals
            ],
            "signals_error": self.signals_error,
            "healthy": self.healthy,
            "reasons": list(self.health.reasons),
        }  # fmt: skip


NO_FLOW = "no heartbeat (no live flow on this Redis and namespace)"


def status(settings: Settings, clock: Clock = SYSTEM_CLOCK) -> StatusReport:
    """Ask Redis and PostgreSQL (configured, or the embedded ones if they run) how the
    pipeline is, and judge it."""
    from flows.services import Services

    services = Services(settings.data_dir)
    keys = KeySpace(settings.namespace)
    redis_server, raw_beat, quality = _read_redis(
        settings.redis_url_value() or services.redis.url, keys
    )
    database_url = settings.database_url_value()
    if database_url is None and services.postgres.running():
        database_url = services.database_url(None)
    now_ms = clock.now_ms()
    if database_url is None:
        pg = Server(False, "not configured, and the embedded server does not run")
        signals, signals_error = None, "PostgreSQL unreachable"
    else:
        pg, signals, signals_error = _read_postgres(database_url, now_ms)
    beat, beat_error = None, ""
    if raw_beat:
        try:
            beat = FlowHeartbeat.decode(raw_beat)
        except HeartbeatError as e:
            beat_error = f"heartbeat unreadable: {e}"
    return StatusReport(
        now_ms=now_ms, namespace=settings.namespace, redis=redis_server, postgresql=pg,
        heartbeat=beat, heartbeat_error=beat_error, data_quality=quality, signals=signals,
        signals_error=signals_error,
        health=judge(redis_server, pg, beat, beat_error, now_ms),
    )  # fmt: skip


def judge(
    redis_server: Server, pg: Server, beat: FlowHeartbeat | None, beat_error: str, now_ms: int
) -> Health:
    """The pipeline's health: both servers answer and the flow's heartbeat is healthy."""
    reasons = [f"{name} unreachable ({server.error})"
               for name, server in (("Redis", redis_server), ("PostgreSQL", pg))
               if not server.reachable]  # fmt: skip
    if beat is not None:
        return Health(tuple(reasons)) + beat.health(now_ms)
    if beat_error:
        reasons.append(beat_error)
    elif redis_server.reachable:
        reasons.append(NO_FLOW)
    return Health(tuple(reasons))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]


def _read_redis(url: str, keys: KeySpace) -> tuple[Server, dict[bytes, bytes], DataQuality | None]:
    client = redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3)
    try:
        client.ping()
        raw: dict[bytes, bytes] = client.hgetall(keys.heartbeat)  # type: ignore[assignment]
        return Server(True), raw, _data_quality(client, keys)
    except (redis.RedisError, OSError) as e:
        return Server(False, _one_line(e)), {}, None
    finally:
        client.close()


def _data_quality(client: redis.Redis, keys: KeySpace) -> DataQuality:
    count = int(client.xlen(keys.data_quality))
    rows: Any = client.xrevrange(keys.data_quality, count=RECENT_QUALITY) if count else []
    recent = tuple(
        {k.decode(errors="replace"): v.decode(errors="replace") for k, v in fields.items()}
        for _, fields in rows
    )
    gap_keys = list(client.scan_iter(match=keys.gaps("*"), count=1000)) if count else []
    return DataQuality(count, len(gap_keys), recent)


def _read_postgres(url: str, now_ms: int) -> tuple[Server, tuple[TraderSignals, ...] | None, str]:
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=3)
    except psycopg.Error as e:
        return Server(False, _one_line(e)), None, "PostgreSQL unreachable"
    with conn:
        # the flow's role sees every trader; a login that may not take it (the owner) sees
        # them all as itself
        with contextlib.suppress(psycopg.Error):
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(FLOW_ROLE)))
        since = datetime.fromtimestamp((now_ms - DAY_MS) / 1000, UTC)
        try:
            with conn.cursor(row_factory=dict_row) as cur:
                cur.execute(SIGNAL_COUNTS, (since,))
                rows = cur.fetchall()
        except psycopg.errors.UndefinedTable:
            return Server(True), None, "no traders table: run `klineflow migrate`"
        except psycopg.Error as e:
            return Server(True), None, f"signal counts not readable ({_one_line(e)})"
    return Server(True), tuple(TraderSignals.of_row(r) for r in rows), ""
