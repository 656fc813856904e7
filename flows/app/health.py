"""The live flow's heartbeat as one typed record, and the one definition of a healthy flow.

The flow writes a `FlowHeartbeat` into a Redis hash every 2 s (``flows.dataflows.heartbeat``);
`klineflow status`, the dashboard's Status page and the metrics' /healthz read it through
`FlowHeartbeat.decode` and judge it with `FlowHeartbeat.health(now_ms)`. Pure: no Redis, no
clock (the reader says what time it is).

>>> beat = FlowHeartbeat(ts_ms=10_000, started_ms=0, state="running",
...                      feeds=(FeedState("0", "connected", last_message_age_s=0.5),))
>>> FlowHeartbeat.decode(beat.encode()) == beat
True
>>> beat.health(now_ms=11_000).healthy
True
>>> beat.health(now_ms=52_000).reasons
('no heartbeat for 42 s (the flow writes one every 2 s): it stopped or hangs',)

A hash from an older flow lacks the newer fields; they read as their defaults. Garbage is a
`HeartbeatError` that names the field:

>>> FlowHeartbeat.decode({b"ts_ms": b"5", b"state": b"running"}).counters.store_repairs
0
>>> FlowHeartbeat.decode({"ts_ms": "soon", "state": "running"})
Traceback (most recent call last):
...
flows.app.health.HeartbeatError: heartbeat field 'ts_ms': expected an integer, got 'soon'
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from flows.domain.stats import RunStats

FlowState = Literal["running", "stopped", "degraded"]
FLOW_STATES: tuple[FlowState, ...] = ("running", "stopped", "degraded")
BEAT_EVERY_S = 2.0  # how often the flow writes its heartbeat
STALE_AFTER_MS = 10_000  # a heartbeat older than this: the flow stopped or hangs
FEED_SILENT_AFTER_S = 30.0  # a connected feed heard from longer ago than this is silent


class HeartbeatError(ValueError):
    """A heartbeat hash that cannot be read (a field of the wrong kind, or none at all)."""


@dataclass(frozen=True)
class FeedState:
    """One feed connection ("2", or "process/connection" in a cluster) as of the heartbeat."""

    connection: str
    state: str  # connecting, connected, reconnecting; disconnected once the flow stopped
    streams: int = 0
    last_message_age_s: float | None = None  # None: nothing heard yet
    reconnects: int = 0
    frames: int = 0
    buffered_frames: int = 0
    backfilling: int = 0  # symbols being caught up over REST
    process: int | None = None  # the cluster member it belongs to

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        if self.process is None:
            del out["process"]
        return out

    @classmethod
    def of_json(cls, raw: object) -> FeedState:
        if not isinstance(raw, dict) or "connection" not in raw or "state" not in raw:
            raise HeartbeatError(f"heartbeat field 'feeds': expected objects with a connection "
                                 f"and a state, got {_shown(raw)}")  # fmt: skip
        age = raw.get("last_message_age_s")
        process = raw.get("process")
        try:
            return cls(
                connection=str(raw["connection"]),
                state=str(raw["state"]),
                streams=_count(raw.get("streams", 0)),
                last_message_age_s=None if age is None else float(age),
                reconnects=_count(raw.get("reconnects", 0)),
                frames=_count(raw.get("frames", 0)),
                buffered_frames=_count(raw.get("buffered_frames", 0)),
                backfilling=_count(raw.get("backfilling", 0)),
                process=None if process is None else _count(process),
            )
        except (TypeError, ValueError) as e:
            raise HeartbeatError(f"heartbeat field 'feeds': a feed of the wrong kind: "
                                 f"{_shown(raw)}") from e  # fmt: skip


@dataclass(frozen=True)
class FlowCounters:
    """The flow's counters since it started (summed over a cluster's members)."""

    trades_read: int = 0
    trades_backfilled: int = 0
    feed_reconnects: int = 0
    gaps: int = 0
    duplicates: int = 0
    late: int = 0
    implausible: int = 0
    foreign_batches: int = 0
    klines_amended: int = 0
    resumes: int = 0
    backfill_retries: int = 0
    store_repairs: int = 0

    @classmethod
    def of_stats(cls, s: RunStats) -> FlowCounters:
        return cls(
            trades_read=s.trades_read, trades_backfilled=s.trades_backfilled,
            feed_reconnects=s.feed_reconnects, gaps=s.gaps, duplicates=s.duplicates,
            late=s.dead_letters["late"], implausible=s.dead_letters["implausible"],
            foreign_batches=s.foreign_batches, klines_amended=s.klines_amended,
            resumes=s.resumes, backfill_retries=s.backfill_retries, store_repairs=s.store_repairs,
        )  # fmt: skip

    def __add__(self, other: FlowCounters) -> FlowCounters:
        return FlowCounters(*(getattr(self, n) + getattr(other, n) for n in COUNTER_NAMES))


COUNTER_NAMES = tuple(f.name for f in fields(FlowCounters))


@dataclass(frozen=True)
class Health:
    """Healthy when there is no reason not to be."""

    reasons: tuple[str, ...] = ()

    @property
    def healthy(self) -> bool:
        return not self.reasons

    def __add__(self, other: Health) -> Health:
        return Health(self.reasons + other.reasons)


@dataclass(frozen=True)
class FlowHeartbeat:
    ts_ms: int  # when it was written
    started_ms: int
    state: FlowState
    counters: FlowCounters = FlowCounters()
    waiting_for: tuple[str, ...] = ()  # servers the flow is paused for ("postgresql", "redis")
    klines_closed: Mapping[str, int] = field(default_factory=dict)  # interval -> count
    feeds: tuple[FeedState, ...] = ()
    processes: int = 1  # cluster members the flow has
    processes_seen: int = 1  # of which a heartbeat was found
    processes_missing: tuple[int, ...] = ()  # members whose heartbeat is missing
    processes_stopped: tuple[int, ...] = ()  # members whose heartbeat says stopped

    @classmethod
    def of_run(
        cls, stats: RunStats, feeds: Iterable[Mapping[str, Any]], now_ms: int, started_ms: int,
        stopped: bool = False,
    ) -> FlowHeartbeat:  # fmt: skip
        """One process's heartbeat now, from its counters and its feeds' states."""
        return cls(
            ts_ms=now_ms,
            started_ms=started_ms,
            state="stopped" if stopped else "running",
            counters=FlowCounters.of_stats(stats),
            waiting_for=tuple(sorted(stats.waiting_for)),
            klines_closed=dict(stats.klines_closed),
            feeds=tuple(FeedState.of_json(dict(f)) for f in feeds),
        )

    # -- the Redis hash --------------------------------------------------------------------
    def encode(self) -> dict[str, str]:
        """The hash's fields (every value a string, as Redis gives them back)."""
        return {
            "ts_ms": str(self.ts_ms),
            "started_ms": str(self.started_ms),
            "state": self.state,
            **{name: str(getattr(self.counters, name)) for name in COUNTER_NAMES},
            "waiting_for": ",".join(self.waiting_for),
            "klines_closed": json.dumps(dict(self.klines_closed)),
            "feeds": json.dumps([f.to_json() for f in self.feeds]),
            "processes": str(self.processes),
            "processes_seen": str(self.processes_seen),
            "processes_missing": ",".join(map(str, self.processes_missing)),
            "processes_stopped": ",".join(map(str, self.processes_stopped)),
        }

    @classmethod
    def decode(cls, raw: Mapping[bytes, bytes] | Mapping[str, str]) -> FlowHeartbeat:
        """The record from the hash's fields (bytes as redis-py gives them, or text). A field
        a older flow did not write takes its default; a field of the wrong kind, or a hash
        without ts_ms or state, raises HeartbeatError."""
        text = {_text(k): _text(v) for k, v in raw.items()}
        if "ts_ms" not in text or "state" not in text:
            missing = " and ".join(n for n in ("ts_ms", "state") if n not in text)
            raise HeartbeatError(f"not a heartbeat: it has no {missing} (fields: "
                                 f"{', '.join(sorted(text)) or 'none'})")  # fmt: skip
        state = text["state"]
        if state not in FLOW_STATES:
            raise HeartbeatError(f"heartbeat field 'state': expected one of "
                                 f"{', '.join(FLOW_STATES)}, got {state!r}")  # fmt: skip
        ts_ms = _int_field(text, "ts_ms")
        closed = _json_field(text, "klines_closed", "{}")
        if not isinstance(closed, dict):
            raise HeartbeatError(f"heartbeat field 'klines_closed': expected an object, got "
                                 f"{_shown(closed)}")  # fmt: skip
        feeds = _json_field(text, "feeds", "[]")
        if not isinstance(feeds, list):
            raise HeartbeatError(f"heartbeat field 'feeds': expected a list, got {_shown(feeds)}")
        processes = _int_field(text, "processes", 1)
        return cls(
            ts_ms=ts_ms,
            started_ms=_int_field(text, "started_ms", ts_ms),
            state=state,
            counters=FlowCounters(*(_int_field(text, n, 0) for n in COUNTER_NAMES)),
            waiting_for=_names(text.get("waiting_for", "")),
            klines_closed={str(k): _count(v, "klines_closed") for k, v in closed.items()},
            feeds=tuple(FeedState.of_json(f) for f in feeds),
            processes=processes,
            processes_seen=_int_field(text, "processes_seen", processes),
            processes_missing=_ints(text, "processes_missing"),
            processes_stopped=_ints(text, "processes_stopped"),
        )

    # -- judging it ------------------------------------------------------------------------
    def age_ms(self, now_ms: int) -> int:
        return max(0, now_ms - self.ts_ms)  # a clock a little behind the writer's: 0

    def health(
        self,
        now_ms: int,
        stale_after_ms: int = STALE_AFTER_MS,
        feed_silent_after_s: float = FEED_SILENT_AFTER_S,
    ) -> Health:
        """Healthy, or why not. A stale heartbeat or a stopped flow is the one reason given
        (what the rest of a last word says is no longer news)."""
        age_ms = self.age_ms(now_ms)
        if age_ms > stale_after_ms:
            return Health((f"no heartbeat for {age_ms // 1000} s (the flow writes one every "
                           f"{BEAT_EVERY_S:.0f} s): it stopped or hangs",))  # fmt: skip
        if self.state == "stopped":
            return Health(("the flow stopped",))
        reasons = [f"waiting for {server} (the flow is paused)" for server in self.waiting_for]
        if self.processes > 1:
            reasons += [f"cluster process {p} of {self.processes} not heard from"
                        for p in self.processes_missing]  # fmt: skip
            reasons += [f"cluster process {p} of {self.processes} stopped"
                        for p in self.processes_stopped]  # fmt: skip
            if self.processes_seen < self.processes and not self.processes_missing:
                reasons.append(f"cluster: {self.processes_seen} of {self.processes} processes "
                               "heard from")  # fmt: skip
            if self.state == "degraded" and len(reasons) == len(self.waiting_for):
                reasons.append("cluster degraded")  # an older writer named no member
        for f in self.feeds:
            age = f.last_message_age_s
            if f.state != "connected":
                reasons.append(f"feed {f.connection} {f.state}")
            elif age is not None and age > feed_silent_after_s:
                reasons.append(f"feed {f.connection} silent for {age:.0f} s")
        return Health(tuple(reasons))


def combine(members: Sequence[FlowHeartbeat | None], now_ms: int) -> FlowHeartbeat:
    """The flow's heartbeat from its cluster members' own (None: a member whose hash is
    missing): counters summed, feeds named "process/connection", state running only when
    every member is heard from and running, stopped when every member heard from stopped."""
    seen = [(i, m) for i, m in enumerate(members) if m is not None]
    closed: dict[str, int] = {}
    feeds: list[FeedState] = []
    counters = FlowCounters()
    for i, m in seen:
        counters += m.counters
        for interval, n in m.klines_closed.items():
            closed[interval] = closed.get(interval, 0) + n
        feeds += [replace(f, connection=f"{i}/{f.connection}", process=i) for f in m.feeds]
    states = {m.state for _, m in seen}
    state: FlowState
    if not seen or states == {"stopped"}:
        state = "stopped"
    elif len(seen) == len(members) and states == {"running"}:
        state = "running"
    else:
        state = "degraded"
    return FlowHeartbeat(
        ts_ms=now_ms,
        started_ms=min((m.started_ms for _, m in seen), default=now_ms),
        state=state,
        counters=counters,
        waiting_for=tuple(sorted({w for _, m in seen for w in m.waiting_for})),
        klines_closed=closed,
        feeds=tuple(feeds),
        processes=len(members),
        processes_seen=len(seen),
        processes_missing=tuple(i for i, m in enumerate(members) if m is None),
        processes_stopped=tuple(i for i, m in seen if m.state == "stopped"),
    )


# -- reading fields --------------------------------------------------------------------------
def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _shown(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _int_field(text: Mapping[str, str], name: str, default: int | None = None) -> int:
    if name not in text:
        assert default is not None, name
        return default
    value = text[name].strip()
    if not value.lstrip("-").isdigit():
        raise HeartbeatError(f"heartbeat field {name!r}: expected an integer, got "
                             f"{_shown(text[name])}")  # fmt: skip
    return int(value)


def _count(value: object, name: str = "feeds") -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise HeartbeatError(f"heartbeat field {name!r}: expected an integer, got "
                             f"{_shown(value)}")  # fmt: skip
    try:
        return int(value)
    except ValueError as e:
        raise HeartbeatError(f"heartbeat field {name!r}: expected an integer, got "
                             f"{_shown(value)}") from e  # fmt: skip


def _json_field(text: Mapping[str, str], name: str, default: str) -> object:
    try:
        return json.loads(text.get(name, default))
    except ValueError as e:
        raise HeartbeatError(f"heartbeat field {name!r}: expected JSON, got "
                             f"{_shown(text[name])}") from e  # fmt: skip


def _names(value: str) -> tuple[str, ...]:
    return tuple(w.strip() for w in value.split(",") if w.strip())


def _ints(text: Mapping[str, str], name: str) -> tuple[int, ...]:
    parts: Iterable[str] = _names(text.get(name, ""))
    try:
        return tuple(int(p) for p in parts)
    except ValueError as e:
        raise HeartbeatError(f"heartbeat field {name!r}: expected process numbers, got "
                             f"{_shown(text[name])}") from e  # fmt: skip
