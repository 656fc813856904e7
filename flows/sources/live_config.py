"""What a live source is configured with, and what it asks of the stores.

`LiveConfig` is the frozen configuration of `flows.sources.live_source.LiveSource`: the feed,
the REST endpoint, the symbols and how they are grouped into connections, the watermark's
grace, the backfill budget, where a first start begins and the checks at the door.
`ResumeStore` is what the source reads of a symbol's stored klines to resume it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from flows.binance.ws_feed import FeedConfig
from flows.domain.clock import SYSTEM_CLOCK, Clock
from flows.domain.intervals import Interval
from flows.storage.resume import StoredStart


class ResumeStore(Protocol):
    """What the stores hold of a symbol (`flows.storage.resume.RedisResume`)."""

    def read(self, symbol: str) -> StoredStart | None: ...

    def claim_origin(self, symbol: str, origin_ms: int) -> int: ...


@dataclass(frozen=True)
class LiveConfig:
    feed: FeedConfig
    rest_url: str
    symbols: tuple[str, ...]
    kind: str = "aggTrade"  # or "trade"
    per_connection: int = 200
    grace_ms: int = 2000
    base_interval_ms: int = 60_000
    intervals: tuple[str, ...] = ("1m",)  # the intervals built (resume points need them)
    max_batch_frames: int = 50_000
    max_buffered_frames: int = 200_000  # the feed stops reading past this many waiting frames
    backfill_workers: int = 2
    pages_per_job: int = 50  # a long catch-up hands its trades on every this many pages
    weight_per_minute: int = 6000
    duration_s: float | None = None  # stop after this long (tests, demo); None: run on
    clock: Clock = SYSTEM_CLOCK
    stop: threading.Event | None = field(default=None, compare=False)  # set: the flow ends
    warmup_interval: Interval | None = None  # a first start begins at this kline's open
    longest_interval: Interval | None = None  # for the "started mid-interval" report
    resume: ResumeStore | None = field(default=None, compare=False)  # None: nothing stored
    history_from_ms: int | None = None  # a first start begins here instead (the demo)
    clock_stream: str | None = None  # e.g. "btcusdt@kline_1s", on every connection
    future_margin_ms: int = 60_000  # trades further ahead of the exchange clock are refused
    refresh: Callable[[], Sequence[str]] | None = field(default=None, compare=False)  # universe
    refresh_every_s: float = 3600.0
    reconcile: frozenset[str] = frozenset()  # also take Binance's @kline_1m for these
    part_prefix: str = ""  # names this process's partitions apart in a cluster ("p0of2-")
    # every frame taken, with its receive time, also handed here (the recorder's tee)
    tap: Callable[[bytes, int], None] | None = field(default=None, compare=False)
