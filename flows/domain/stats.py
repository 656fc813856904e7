"""Counters of one run, shared by the source, the kline step and the sink of one process."""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass, field


@dataclass
class RunStats:
    trades_read: int = 0
    frames_ignored: int = 0  # valid frames of streams klines do not use
    trades_filtered: int = 0  # trades of symbols not asked for
    duplicates: int = 0
    trades_backfilled: int = 0  # live: trades fetched from REST to fill a gap
    gaps: int = 0  # live: ranges of trades that could not be fetched
    feed_reconnects: int = 0  # live: connections lost and made again
    feed_rotations: int = 0  # live: connections replaced with overlap (age, serverShutdown)
    feed_shutdown_notices: int = 0  # live: serverShutdown events received
    feed_idle_drops: int = 0  # live: connections given up for silence
    feed_control_sent: int = 0  # live: SUBSCRIBE / UNSUBSCRIBE messages (universe changes)
    feed_control_answers: int = 0  # live: their {"result":null} answers
    reconciled: int = 0  # live: closed 1m klines equal to Binance's own
    reconcile_mismatches: int = 0  # live: ... that differ (logged with both values)
    rest_requests: int = 0  # live: REST calls (backfill), retries included
    rest_rate_limited: int = 0  # live: 429/418 answers met (and waited out)
    foreign_batches: int = 0  # cluster: trade batches that came from another process
    backfills: int = 0  # live: catch-ups of a symbol after a reconnect or skipped ids
    resumes: int = 0  # live: symbols resumed from the stores (one per symbol and start)
    clock_frames: int = 0  # live: frames of the clock stream (evidence of delivery)
    backfill_retries: int = 0  # live: REST or store calls of a backfill tried again
    # live: servers the flow is waiting for now, and how many times it waited for each
    waiting_for: set[str] = field(default_factory=set)
    store_waits: Counter[str] = field(default_factory=Counter)
    store_repairs: int = 0  # live: times Redis was found to have lost acknowledged writes
    klines_amended: int = 0  # live: closed klines closed again because a trade came late
    dead_letters: Counter[str] = field(default_factory=Counter)  # by reason
    klines_closed: Counter[str] = field(default_factory=Counter)  # by interval
    open_kline_writes: int = 0
    bytes_done: int = 0
    bytes_total: int = 0
    files_done: int = 0
    files_truncated: int = 0  # replay: compressed files cut short, read up to the cut
    rules: dict[str, float] = field(default_factory=dict)
    # live: wall clock at the Redis write minus the newest trade's time of each symbol written
    # (exchange time, so it includes clock skew), the most recent ones
    lag_ms: deque[int] = field(
        default_factory=lambda: deque(maxlen=2000)
    )  # the rules stage's summary, if any
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_dead(self, reason: str, n: int = 1) -> None:
        with self._lock:
            self.dead_letters[reason] += n

    def summary(self) -> dict[str, object]:
        return {
            "trades_read": self.trades_read,
            "duplicates": self.duplicates,
            "late": self.dead_letters["late"],
            "invalid": self.dead_letters["invalid"],
            "malformed": self.dead_letters["malformed"],
            "unknown": self.dead_letters["unknown"],
            "frames_ignored": self.frames_ignored,
            "trades_filtered": self.trades_filtered,
            "klines_closed": dict(self.klines_closed),
            "open_kline_writes": self.open_kline_writes,
        }
