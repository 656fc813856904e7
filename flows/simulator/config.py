"""What a simulator run is: the market to play, the server's limits, and faults to inject."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Final
from urllib.parse import parse_qsl

FAULTS: Final = frozenset(
    {
        "drop",
        "stall",
        "garbage",
        "oversize",
        "shutdown",
        "rest429",
        "rest418",
        "poison",
        "pause",
        "resume",
    }
)

DAY_S: Final = 86_400.0


@dataclass(frozen=True, slots=True)
class ScheduledFault:
    """A fault to inject `after_s` seconds of wall time after the server started."""

    after_s: float
    fault: str
    params: MappingProxyType[str, str] = field(
        default_factory=lambda: MappingProxyType({})  # immutable, so the config stays frozen
    )

    def __post_init__(self) -> None:
        if self.fault not in FAULTS:
            raise ValueError(f"unknown fault {self.fault!r}; known: {', '.join(sorted(FAULTS))}")
        if self.after_s < 0:
            raise ValueError("a fault cannot be scheduled before the start")

    @classmethod
    def of(cls, after_s: float, fault: str, **params: object) -> ScheduledFault:
        return cls(after_s, fault, MappingProxyType({k: str(v) for k, v in params.items()}))


def parse_schedule(text: str) -> tuple[ScheduledFault, ...]:
    """``"5:drop,12.5:stall?seconds=3,30:rest429?count=2&retry_after=1"`` -> faults.

    Each item is ``<seconds after start>:<fault>[?<query string of parameters>]``.
    """
    out: list[ScheduledFault] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        when, sep, rest = item.partition(":")
        if not sep:
            raise ValueError(f"schedule item {item!r} is not <seconds>:<fault>[?params]")
        name, _, query = rest.partition("?")
        params = MappingProxyType(dict(parse_qsl(query, keep_blank_values=True)))
        out.append(ScheduledFault(float(when), name.strip(), params))
    return tuple(sorted(out, key=lambda f: f.after_s))


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Everything a `Simulator` needs; every field has a usable default.

    Market: the seeded synthetic market (`symbols`, `seed`, `rate` in trades per second of
    market time, spread over the symbols) or, when `recording` is set, the trades of that file.
    Market time starts at `start_ms` (None: the wall clock at start for the synthetic market,
    the first trade of a recording) plus `history_ms` generated at once before serving (REST
    has history at once; nothing of it is streamed), then runs at `speed` times the wall clock.
    After `end_ms` (if set) there are no more trades; market time goes on for `after_end_ms`
    more (None: for ever; kline streams keep pushing, REST klines are flat), as an exchange's
    clock does, then stops.
    """

    symbols: int = 20
    seed: int = 7
    rate: float = 50.0
    speed: float = 1.0
    start_ms: int | None = None
    end_ms: int | None = None
    after_end_ms: int | None = 0  # market time past end_ms (None: no limit)
    history_ms: int = 0
    recording: Path | None = None
    start_paused: bool = False  # market time frozen until POST /_sim/resume
    history_limit: int = 500_000  # aggTrades kept per symbol for REST and kline streams
    # server
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port, chosen at start
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 60.0
    max_connection_age_s: float = DAY_S
    shutdown_lead_s: float = 5.0  # serverShutdown is sent this long before the close
    max_incoming_per_s: int = 5  # more incoming messages within one second closes
    max_streams: int = 1024
    max_queue_frames: int = 50_000  # a client further behind than this is dropped
    step_s: float = 0.025  # wall time between two market steps
    rest_weight_limit: int = 6000  # REQUEST_WEIGHT per minute
    schedule: tuple[ScheduledFault, ...] = ()
    log_level: str = "warning"

    def __post_init__(self) -> None:
        if self.symbols < 1 or self.rate <= 0 or self.speed <= 0:
            raise ValueError("symbols, rate and speed must be positive")
        if self.history_limit < 1 or self.max_queue_frames < 1 or self.max_streams < 1:
            raise ValueError("history_limit, max_queue_frames and max_streams must be positive")
        if self.history_ms < 0 or self.step_s <= 0 or self.max_connection_age_s <= 0:
            raise ValueError("history_ms, step_s and max_connection_age_s must be positive")
        if self.start_ms is not None and self.end_ms is not None and self.end_ms < self.start_ms:
            raise ValueError("end_ms is before start_ms")
