"""The live Binance source: combined-stream connections in, ordered trades with no hole out.

Each partition owns one connection group (at most `per_connection` streams, plus the
exchange *clock stream*) and runs its `StreamFeed` on an asyncio loop in a thread; frames
cross to Bytewax's thread through a bounded deque (the feed stops reading while it is full,
so a flow waiting for a server holds a bounded amount). In `next_batch` (Bytewax's thread)
frames are decoded, and per symbol:

- a trade whose last trade id is not above the last id released is a duplicate (rotation
  overlap, re-deliveries) and is dropped;
- a trade whose first id skips ids opens a **backfill**: REST `aggTrades` from the last
  aggTrade id (or time) fetched on a worker thread, within the weight budget; the symbol's
  live trades wait meanwhile and are released after the backfill;
- after every (re)connect each symbol is caught up the same way, so a quiet symbol's missed
  trades are fetched too;
- a backfill never gives up on data the exchange serves: 429 and 418 answers are waited out
  (their Retry-After), other failures retried with backoff up to a minute, long catch-ups
  fetched a few pages at a time; only a range the exchange does not serve (ids it skips, a
  symbol it refuses) becomes a `GapReport`.

**Where a symbol starts.** At every start of the flow (first start, restart after a crash,
a lost local state, another cluster size) each symbol is *resumed from the stores*
(`flows.storage.resume`): from the base kline after its newest closed kline in Redis, the
longer intervals' open klines rebuilt from the stored klines that tile them; the kline step
gets that builder state (`SymbolBatch.reset`) with the trades fetched from there. A symbol
with nothing stored starts at the open of its current kline of `warmup_interval` at the
*exchange's* time (GET /api/v3/time), recorded as its origin so a crash before anything
closed restarts from the same point; its previous close comes from the exchange's klines,
so empty intervals before its first trade are flat klines as Binance's are.

**When klines close** (watermarks). A connection's streams arrive roughly in event-time
order, so the newest event time a connection has delivered is evidence that its trades up
to then are in. Every connection also carries a clock stream (a liquid symbol's
`@kline_1s`, pushed every second), so quiet connections have evidence too. When that
evidence minus `grace_ms` passes a base-interval boundary, every symbol of the connection
that is caught up gets it as its watermark, and the kline step closes what ended before
it. A stall of any length therefore delays closes instead of closing klines whose trades
are held back; symbols still backfilling get no watermark. A trade that still comes for a
closed kline amends it (`flows.klines.builder`).

**At the door.** A trade whose time is before the exchange existed or more than
`future_margin_ms` ahead of the exchange's clock (its clock stream, or its REST time before
that), or whose ids or amounts cannot be real (`flows.domain.trade_checks`), is
dead-lettered as `implausible` and reaches no state; it never counts as evidence either.

This module holds the Bytewax source and its partition: the feed thread, the batches, the
watermarks and the connection's state. Its parts live beside it: `flows.sources.live_config`
(the configuration), `flows.sources.live_streams` (connections and the universe),
`flows.sources.live_door` (the checks at the door), `flows.sources.live_order` (per-symbol
order and the release of backfills), `flows.sources.live_backfill` (the REST jobs).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Final

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from flows.binance.rest import RestClient
from flows.binance.ws_feed import AttemptLimiter, StreamFeed
from flows.domain.deadletter import DeadLetter
from flows.domain.kline import Kline, Trade
from flows.domain.stats import RunStats
from flows.sources.items import (
    GapReport,
    QualityNote,
    SourceItem,
    SourceReport,
    SymbolBatch,
    Watermarks,
)
from flows.sources.live_backfill import BackfillJobs, Fetched, SymbolState
from flows.sources.live_config import LiveConfig
from flows.sources.live_door import FrameDoor
from flows.sources.live_streams import Universe, stream_groups, symbol_streams

log = logging.getLogger(__name__)

_POLL_MS: Final = 10


class _LivePartition(FrameDoor, StatefulSourcePartition[SourceItem, dict[str, list[int]]]):
    def __init__(
        self,
        streams: list[str],
        cfg: LiveConfig,
        stats: RunStats,
        rest: RestClient,
        limiter: AttemptLimiter,
        resume: dict[str, list[int]] | None,
        universe: Universe | None = None,
        index: int = 0,
    ) -> None:
        self._cfg = cfg
        self._universe = universe
        self._index = index
        self._universe_version = 0
        self._clock = cfg.clock
        self._stats = stats
        self._rest = rest
        self._symbols = {s.split("@", 1)[0].upper() for s in streams if s != cfg.clock_stream}
        self._refs: dict[str, list[Kline]] = {}  # Binance's closed 1m klines, to reconcile
        # Positions are not taken from a snapshot (`resume` is ignored): every start resumes
        # each symbol from what the stores hold, so a lost or foreign snapshot changes nothing.
        self._state: dict[str, SymbolState] = {}
        self._frames: collections.deque[tuple[bytes, int]] = collections.deque()
        self._events: collections.deque[tuple[bool, int]] = collections.deque()
        self._pending: dict[str, list[tuple[int, Trade]]] = {}
        self._jobs: dict[str, Future[Fetched]] = {}
        self._finished: collections.deque[str] = collections.deque()
        self._stale_jobs: set[str] = set()  # jobs that began before the last reconnect
        self._live: set[str] = set()
        self._connected = False
        self._last_bucket = -1
        self._seen_ms = -1  # the newest event time this connection delivered (evidence)
        self._clock_ms = -1  # the newest clock-stream event time (the exchange's clock)
        self._ceiling = cfg.clock.now_ms() + cfg.future_margin_ms  # latest plausible trade time
        self._feed_seen = (0, 0, 0, 0)
        self._control_seen = (0, 0)
        self._time_job: Future[int] | None = None  # the exchange's time, asked after a refusal
        self._time_refused = False  # a frame was refused for its time in this batch
        self._deadline_ms = (
            self._clock.now_ms() + int(cfg.duration_s * 1000)
            if cfg.duration_s is not None
            else None
        )
        self._refused: list[DeadLetter] = []  # implausible trades of backfills
        self._closing = threading.Event()
        self._backfill = BackfillJobs(cfg, stats, rest, self._closing)
        self._pool = ThreadPoolExecutor(cfg.backfill_workers, thread_name_prefix="backfill")
        frames = self._frames
        limit = cfg.max_buffered_frames

        tap = cfg.tap

        def on_frame(raw: bytes, recv_ms: int) -> None:
            frames.append((raw, recv_ms))
            if tap is not None:
                tap(raw, recv_ms)

        feed_streams = list(streams)
        if cfg.clock_stream is not None and cfg.clock_stream not in feed_streams:
            feed_streams.append(cfg.clock_stream)
        self.feed = StreamFeed(
            feed_streams,
            cfg.feed,
            on_frame,
            clock=self._clock,
            limiter=limiter,
            on_state=lambda connected, gen: self._events.append((connected, gen)),
            full=lambda: len(frames) >= limit,
        )
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._thread = threading.Thread(
            target=self._run_feed, name=f"feed-{feed_streams[0]}", daemon=True
        )
        self._thread.start()

    def _run_feed(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self.feed.run(self._stop))

    # -- Bytewax ----------------------------------------------------------------------
    def next_batch(self) -> list[SourceItem]:
        if self._deadline_ms is not None and self._clock.now_ms() >= self._deadline_ms:
            raise StopIteration
        if self._cfg.stop is not None and self._cfg.stop.is_set():
            raise StopIteration
        out: dict[str, list[Trade]] = {}
        resets: dict[str, dict[str, Any]] = {}
        dead: list[DeadLetter] = []
        gaps: list[GapReport] = []
        notes: list[QualityNote] = []
        self._connection_events()
        self._feed_counters()
        if self._universe is not None and self._universe.version != self._universe_version:
            self._follow_universe(self._universe)
        became_live: list[str] = []
        while self._finished:
            symbol = self._finished.popleft()
            job = self._jobs.get(symbol)
            if job is None or not job.done():  # taken already, or replaced by a newer job
                continue
            del self._jobs[symbol]
            if self._finish_backfill(symbol, job, out, gaps, resets):
                became_live.append(symbol)
        if self._time_job is not None and self._time_job.done():
            self._time_job = None
        self._ceiling = max(self._ceiling, self._exchange_clock_ms() + self._cfg.future_margin_ms)
        frames = self._frames
        n = min(len(frames), self._cfg.max_batch_frames)
        seen = self._seen_ms
        for _ in range(n):
            raw, _recv_ms = frames.popleft()
            t = self._frame(raw, out, dead)
            seen = max(seen, t)
        self._seen_ms = seen
        if self._time_refused and self._time_job is None:
            # our idea of the exchange's clock may lag (a host that slept, a clock that runs
            # faster than ours): ask the exchange; a trade refused meanwhile is fetched again
            # over REST when its ids are found skipped
            self._time_job = self._pool.submit(self._backfill.exchange_ms, True)
        self._time_refused = False
        items: list[SourceItem] = []
        watermark = seen - self._cfg.grace_ms
        bucket = watermark // self._cfg.base_interval_ms
        marked: set[str] = set()
        if seen >= 0 and bucket != self._last_bucket and not frames and self._connected:
            self._last_bucket = bucket
            marked = set(self._live)
        elif seen >= 0 and self._last_bucket >= 0:
            # caught up since the last boundary: they get the watermark at once
            marked = {s for s in became_live if s in self._live}
        if self._refs:
            for symbol, refs in self._refs.items():
                batch = SymbolBatch(
                    symbol, out.pop(symbol, []), -1, tuple(refs), resets.pop(symbol, None)
                )
                items.append((symbol, batch))
            self._refs = {}
        for symbol in set(out) | set(resets):
            trades = out.get(symbol, [])
            reset = resets.get(symbol)
            if trades or reset is not None:
                items.append((symbol, SymbolBatch(symbol, trades, reset=reset)))
        if marked:  # after the trades it covers
            items.append(("", Watermarks(tuple(sorted(marked)), watermark)))
        if self._refused:
            dead.extend(self._refused)
            self._refused = []
        if dead or gaps or notes:
            for letter in dead:
                self._stats.add_dead(letter.reason)
            items.append(SourceReport(dead, gaps or None, notes or None))
        return items

    def next_awake(self) -> datetime | None:
        if self._frames:
            return None
        return datetime.fromtimestamp((self._clock.now_ms() + _POLL_MS) / 1000, tz=UTC)

    def snapshot(self) -> dict[str, list[int]]:
        return {s: list(v) for s, v in self._state.items()}

    @property
    def buffered_frames(self) -> int:
        """Frames received and not yet handed to the flow (the feed's queue)."""
        return len(self._frames)

    @property
    def backfilling(self) -> int:
        """Symbols being fetched over REST now (resumes and backfills)."""
        return len(self._jobs)

    def close(self) -> None:
        self._closing.set()
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _follow_universe(self, universe: Universe) -> None:
        self._universe_version = universe.version
        wanted = set(universe.symbols_of(self._index))
        added, removed = wanted - self._symbols, self._symbols - wanted
        self._symbols = wanted
        self._live -= removed
        kind, reconcile = self._cfg.kind, self._cfg.reconcile
        self.feed.update_streams(
            symbol_streams(sorted(added), kind, reconcile),
            symbol_streams(sorted(removed), kind, reconcile),
        )
        if self._connected:
            for symbol in sorted(added):
                if symbol not in self._jobs:
                    self._start_job(symbol)
        log.info(
            "universe changed part=%d added=%s removed=%s",
            self._index,
            sorted(added),
            sorted(removed),
        )

    def _feed_counters(self) -> None:
        """Add what the feed counted since the last batch to the run's counters."""
        now = self.feed.stats
        seen = self._feed_seen
        stats = self._stats
        stats.feed_reconnects += now.reconnects - seen[0]
        stats.feed_rotations += now.rotations - seen[1]
        stats.feed_shutdown_notices += now.shutdown_notices - seen[2]
        stats.feed_idle_drops += now.idle_drops - seen[3]
        stats.feed_control_sent += now.control_sent - self._control_seen[0]
        stats.feed_control_answers += now.control_answers - self._control_seen[1]
        self._control_seen = (now.control_sent, now.control_answers)
        self._feed_seen = (now.reconnects, now.rotations, now.shutdown_notices, now.idle_drops)
        stats.rest_requests = self._rest.requests  # one client per source: its totals
        stats.rest_rate_limited = self._rest.rate_limited

    # -- connection state --------------------------------------------------------------
    def _connection_events(self) -> None:
        while self._events:
            connected, _generation = self._events.popleft()
            self._connected = connected
            if not connected:
                self._live.clear()  # nothing closes while trades may be missing
                continue
            # (re)connected: catch up every symbol (resume it first if it never was)
            self._live = set()
            for symbol in self._symbols:
                if symbol in self._jobs:
                    self._stale_jobs.add(symbol)  # it may end before this connection began
                else:
                    self._start_job(symbol)


class LiveSource(FixedPartitionedSource[SourceItem, dict[str, list[int]]]):
    def __init__(self, cfg: LiveConfig, stats: RunStats) -> None:
        self._cfg = cfg
        self._stats = stats
        self._groups = stream_groups(cfg.symbols, cfg.kind, cfg.per_connection, cfg.reconcile)
        self._limiter = AttemptLimiter(clock=cfg.clock)
        self._rest = RestClient(
            cfg.rest_url, weight_per_minute=cfg.weight_per_minute, clock=cfg.clock
        )
        self.partitions: list[_LivePartition] = []
        self.universe = Universe(self._groups, cfg.per_connection, cfg.kind)
        self._refresher: threading.Thread | None = None

    def list_parts(self) -> list[str]:
        return [f"{self._cfg.part_prefix}conn-{i}" for i in range(len(self._groups))]

    def build_part(
        self, step_id: str, for_part: str, resume_state: dict[str, list[int]] | None
    ) -> _LivePartition:
        index = int(for_part.rsplit("-", 1)[1])
        streams = symbol_streams(
            self.universe.symbols_of(index), self._cfg.kind, self._cfg.reconcile
        )
        part = _LivePartition(
            streams,
            self._cfg,
            self._stats,
            self._rest,
            self._limiter,
            resume_state,
            self.universe,
            index,
        )
        self.partitions.append(part)
        refresh = self._cfg.refresh
        if refresh is not None and self._refresher is None:
            stop = self._cfg.stop or threading.Event()
            self._refresher = threading.Thread(
                target=self.universe.run,
                args=(refresh, self._cfg.refresh_every_s, stop),
                daemon=True,
            )
            self._refresher.start()
        return part


__all__ = ["LiveSource"]
