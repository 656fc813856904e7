"""The live Binance source: combined-stream connections in, ordered trades with no hole out.

Each partition owns one connection group (at most `per_connection` streams) and runs its
`StreamFeed` on an asyncio loop in a thread; frames cross to Bytewax's thread through a deque.
In `next_batch` (Bytewax's thread) frames are decoded, and per symbol:

- a trade whose last trade id is not above the last id released is a duplicate (rotation
  overlap, replays after a restart) and is dropped;
- a trade whose first id skips ids opens a **backfill**: REST `aggTrades` from the last
  aggTrade id (or time) fetched on a worker thread, within the weight budget and honouring
  429/418; the symbol's live trades wait meanwhile and are released after the backfill;
- after every (re)connect each symbol with history is caught up the same way, so a quiet
  symbol's missed trades are fetched too;
- a gap that cannot be filled becomes a `GapReport` (the klines of its range are incomplete)
  and trading goes on;
- at the first trade of a symbol with no history, its trades are fetched from the open of
  its current kline of `warmup_interval` (the longest configured interval up to 1 h), so the
  klines open at start are complete; longer ones (4h, 1d, ...) start incomplete, and a
  `GapReport` with reason "started mid-interval" says so.

The recovery state is, per symbol, (last trade id, its time, last aggTrade id): Bytewax
snapshots it with the kline state, so after a crash both restart from the same point and
the backfill refetches what followed.

Watermarks (the grace timer): the exchange's clock is estimated from its own stream as
`wall now + max(trade time - receive time)` over the frames received (exact enough with
Binance; behind, never ahead, with a simulator running faster than real time, and immune to
our own clock's skew). Once that estimate minus `grace_ms` passes a base-interval boundary,
every symbol that is connected and caught up gets it as its watermark, and the kline step
closes what ended before it. Symbols still backfilling or disconnected get none, so no kline
closes before its trades are in.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from flows.binance.decode import (
    AggTradeEvent,
    FrameError,
    InvalidTrade,
    KlineEvent,
    LaxAggTrade,
    LaxCombined,
    TradeEvent,
    agg_trade_to_trade,
    decode_frame,
    kline_of_event,
    lax_trade,
    trade_event_to_trade,
)
from flows.binance.rest import RestClient, RestError
from flows.binance.ws_feed import AttemptLimiter, FeedConfig, StreamFeed
from flows.domain import deadletter as dl
from flows.domain.clock import SYSTEM_CLOCK, Clock
from flows.domain.deadletter import DeadLetter
from flows.domain.intervals import Interval
from flows.domain.kline import Kline, Trade
from flows.domain.stats import RunStats
from flows.sources.items import GapReport, SourceItem, SourceReport, SymbolBatch

log = logging.getLogger(__name__)

_lax_frame: Final = msgspec.json.Decoder(LaxCombined, strict=False)
_LAX_ERRORS: Final = (msgspec.DecodeError, msgspec.ValidationError)
_PAGE: Final = 1000
_POLL_MS: Final = 10

# per symbol: [last trade id, its trade time ms, last aggTrade id (-1 unknown)]
SymbolState = list[int]


@dataclass(frozen=True)
class LiveConfig:
    feed: FeedConfig
    rest_url: str
    symbols: tuple[str, ...]
    kind: str = "aggTrade"  # or "trade"
    per_connection: int = 200
    grace_ms: int = 2000
    base_interval_ms: int = 60_000
    max_batch_frames: int = 50_000
    backfill_workers: int = 2
    max_backfill_pages: int = 200
    weight_per_minute: int = 6000
    duration_s: float | None = None  # stop after this long (tests, demo); None: run on
    clock: Clock = SYSTEM_CLOCK
    stop: threading.Event | None = field(default=None, compare=False)  # set: the flow ends
    warmup_interval: Interval | None = None  # first trades fetched from this kline's open
    longest_interval: Interval | None = None  # for the "started mid-interval" report
    initial_positions: Mapping[str, list[int]] = field(default_factory=dict)  # without resume
    refresh: Callable[[], Sequence[str]] | None = field(default=None, compare=False)  # universe
    refresh_every_s: float = 3600.0
    reconcile: frozenset[str] = frozenset()  # also take Binance's @kline_1m for these
    part_prefix: str = ""  # names this process's partitions apart in a cluster ("p0of2-")


def symbol_streams(symbols: Sequence[str], kind: str, reconcile: frozenset[str]) -> list[str]:
    """Each symbol's trade stream, and its @kline_1m when it is reconciled."""
    out: list[str] = []
    for s in symbols:
        out.append(f"{s.lower()}@{kind}")
        if s in reconcile:
            out.append(f"{s.lower()}@kline_1m")
    return out


def stream_groups(
    symbols: tuple[str, ...],
    kind: str,
    per_connection: int,
    reconcile: frozenset[str] = frozenset(),
) -> list[list[str]]:
    """Streams per connection; a reconciled symbol's @kline_1m rides with its trades."""
    if not 1 <= per_connection <= 1024:
        raise ValueError(
            f"streams per connection must be 1..1024 (Binance's limit), got {per_connection}"
        )
    groups: list[list[str]] = [[]]
    for s in symbols:
        mine = symbol_streams([s], kind, reconcile)
        if len(groups[-1]) + len(mine) > per_connection:
            groups.append([])
        groups[-1].extend(mine)
    return [g for g in groups if g]


class Universe:
    """Which symbols each connection carries; `refresh` recomputes it every `every_s` on a
    thread: symbols that stay keep their connection, symbols that leave are dropped, new ones
    go to the connections with the most room (at most `per_connection` each)."""

    def __init__(self, groups: list[list[str]], per_connection: int, kind: str) -> None:
        self._lock = threading.Lock()
        self._groups = [[s.split("@", 1)[0].upper() for s in g] for g in groups]
        self._per_connection = per_connection
        self._kind = kind
        self.version = 0
        self.refreshes = 0

    def symbols_of(self, index: int) -> list[str]:
        with self._lock:
            return list(self._groups[index])

    def apply(self, wanted: Sequence[str]) -> None:
        want = [s.upper() for s in wanted]
        keep = set(want)
        with self._lock:
            groups = [[s for s in g if s in keep] for g in self._groups]
            placed = {s for g in groups for s in g}
            for symbol in want:
                if symbol in placed:
                    continue
                room = min(range(len(groups)), key=lambda i: len(groups[i]))
                if len(groups[room]) >= self._per_connection:
                    log.warning(
                        "universe: no room for symbol=%s (every connection is full)", symbol
                    )
                    continue
                groups[room].append(symbol)
                placed.add(symbol)
            if groups != self._groups:
                self._groups = groups
                self.version += 1
            self.refreshes += 1

    def run(
        self, refresh: Callable[[], Sequence[str]], every_s: float, stop: threading.Event
    ) -> None:
        while not stop.wait(every_s):
            try:
                self.apply(refresh())
            except Exception as e:  # a failed refresh keeps the current universe
                log.warning("universe refresh failed: %s", e)


class _LivePartition(StatefulSourcePartition[SourceItem, dict[str, list[int]]]):
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
        self._symbols = {s.split("@", 1)[0].upper() for s in streams}
        self._refs: dict[str, list[Kline]] = {}  # Binance's closed 1m klines, to reconcile
        start = resume if resume is not None else cfg.initial_positions
        self._state: dict[str, SymbolState] = {
            s: list(v) for s, v in start.items() if s in self._symbols
        }
        self._frames: collections.deque[tuple[bytes, int]] = collections.deque()
        self._events: collections.deque[tuple[bool, int]] = collections.deque()
        self._pending: dict[str, list[tuple[int, Trade]]] = {}
        self._jobs: dict[str, Future[list[tuple[int, Trade]]]] = {}
        self._live: set[str] = set()
        self._connected = False
        self._last_bucket = -1
        self._offset_ms: int | None = None  # max(trade time - receive time): exchange clock
        self._feed_seen = (0, 0, 0, 0)
        self._control_seen = (0, 0)
        self._started: list[tuple[str, int]] = []  # symbols first seen: (symbol, warm-up open)
        self._deadline_ms = (
            self._clock.now_ms() + int(cfg.duration_s * 1000)
            if cfg.duration_s is not None
            else None
        )
        self._pool = ThreadPoolExecutor(cfg.backfill_workers, thread_name_prefix="backfill")

        def on_frame(raw: bytes, recv_ms: int) -> None:
            self._frames.append((raw, recv_ms))

        self.feed = StreamFeed(
            streams, cfg.feed, on_frame, clock=self._clock, limiter=limiter,
            on_state=lambda connected, gen: self._events.append((connected, gen)),
        )  # fmt: skip
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._thread = threading.Thread(
            target=self._run_feed, name=f"feed-{streams[0]}", daemon=True
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
        dead: list[DeadLetter] = []
        gaps: list[GapReport] = []
        self._connection_events()
        self._feed_counters()
        if self._universe is not None and self._universe.version != self._universe_version:
            self._follow_universe(self._universe)
        for symbol, job in list(self._jobs.items()):
            if job.done():
                del self._jobs[symbol]
                self._finish_backfill(symbol, job, out, gaps)
        frames = self._frames
        n = min(len(frames), self._cfg.max_batch_frames)
        offset = self._offset_ms
        for _ in range(n):
            raw, recv_ms = frames.popleft()
            t = self._frame(raw, out, dead)
            if t >= 0 and (offset is None or t - recv_ms > offset):
                offset = t - recv_ms
        self._offset_ms = offset
        items: list[SourceItem] = []
        watermark = self._clock.now_ms() + (offset or 0) - self._cfg.grace_ms
        bucket = watermark // self._cfg.base_interval_ms
        if offset is not None and bucket != self._last_bucket and not frames and self._connected:
            self._last_bucket = bucket
            for symbol in self._live:
                items.append((symbol, SymbolBatch(symbol, out.pop(symbol, []), watermark)))
        if self._refs:
            for symbol, refs in self._refs.items():
                items.append((symbol, SymbolBatch(symbol, out.pop(symbol, []), -1, tuple(refs))))
            self._refs = {}
        items.extend(
            (symbol, SymbolBatch(symbol, trades)) for symbol, trades in out.items() if trades
        )
        longest = self._cfg.longest_interval
        while self._started:
            symbol, since = self._started.pop()
            if longest is not None and longest.open_time(since) < since:
                gaps.append(
                    GapReport(
                        symbol, -1, -1, longest.open_time(since), since, "started mid-interval"
                    )
                )
        if dead or gaps:
            for letter in dead:
                self._stats.add_dead(letter.reason)
            items.append(SourceReport(dead, gaps or None))
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

    def close(self) -> None:
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
            self._live |= {s for s in added if s not in self._state}
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
                self._live.clear()  # nothing closes on the clock while trades may be missing
                continue
            # (re)connected: catch up every symbol with history; the rest are live at once
            self._live = {s for s in self._symbols if s not in self._state}
            for symbol in self._state:
                if symbol in self._symbols and symbol not in self._jobs:
                    self._start_backfill(symbol, until_trade_id=None)

    # -- frames ------------------------------------------------------------------------
    def _frame(self, raw: bytes, out: dict[str, list[Trade]], dead: list[DeadLetter]) -> int:
        """Take one frame; returns its trade time (-1 for frames that are not trades)."""
        try:
            ev: Any = _lax_frame.decode(raw).data
            trade = lax_trade(ev)
        except _LAX_ERRORS:
            trade = None
        if trade is not None:
            agg_id = ev.a if type(ev) is LaxAggTrade else -1
            self._accept(ev.s, agg_id, trade, out)
            return trade[4]
        text = raw[:4000].decode("utf-8", "replace")
        try:
            exact = decode_frame(raw)
        except FrameError as e:
            dead.append(DeadLetter(e.reason, e.detail, text, "live"))
            return -1
        if isinstance(exact, AggTradeEvent | TradeEvent):
            try:
                if isinstance(exact, AggTradeEvent):
                    trade, agg_id = agg_trade_to_trade(exact), exact.a
                else:
                    trade, agg_id = trade_event_to_trade(exact), -1
            except InvalidTrade as e:
                dead.append(DeadLetter(dl.INVALID, str(e), text, "live", exact.s))
                return -1
            self._accept(exact.s, agg_id, trade, out)
            return trade[4]
        if isinstance(exact, KlineEvent) and exact.k.x and exact.s in self._cfg.reconcile:
            self._refs.setdefault(exact.s, []).append(kline_of_event(exact))
            return -1
        self._stats.frames_ignored += 1  # depth, tickers, kline and serverShutdown frames
        return -1

    def _accept(self, symbol: str, agg_id: int, trade: Trade, out: dict[str, list[Trade]]) -> None:
        if symbol in self._jobs:
            self._pending.setdefault(symbol, []).append((agg_id, trade))
            return
        st = self._state.get(symbol)
        if st is None:
            warmup = self._cfg.warmup_interval
            if warmup is None:
                self._state[symbol] = [trade[1], trade[4], agg_id]
                self._emit(symbol, trade, out)
                return
            # first sight: fetch the trades of the klines open now, from the warm-up open
            since = warmup.open_time(trade[4])
            self._state[symbol] = [-1, since, -1]
            self._pending.setdefault(symbol, []).append((agg_id, trade))
            self._start_backfill(symbol, until_trade_id=trade[0] - 1)
            self._started.append((symbol, since))
            return
        if trade[1] <= st[0]:
            self._stats.duplicates += 1
            return
        if trade[0] > st[0] + 1:  # ids were skipped: fetch them before going on
            self._pending.setdefault(symbol, []).append((agg_id, trade))
            self._live.discard(symbol)
            self._start_backfill(symbol, until_trade_id=trade[0] - 1)
            return
        st[0], st[1], st[2] = trade[1], trade[4], agg_id
        self._emit(symbol, trade, out)

    def _emit(self, symbol: str, trade: Trade, out: dict[str, list[Trade]]) -> None:
        self._stats.trades_read += 1
        lst = out.get(symbol)
        if lst is None:
            out[symbol] = lst = []
        lst.append(trade)

    # -- backfill ----------------------------------------------------------------------
    def _start_backfill(self, symbol: str, until_trade_id: int | None) -> None:
        st = self._state[symbol]
        self._jobs[symbol] = self._pool.submit(
            self._fetch, symbol, st[0], st[1], st[2], until_trade_id
        )

    def _fetch(
        self, symbol: str, last_id: int, last_ms: int, last_agg: int, until_id: int | None
    ) -> list[tuple[int, Trade]]:
        """aggTrades after last_id, up to until_id (or the present). Runs on a worker thread."""
        got: list[tuple[int, Trade]] = []
        from_id = last_agg + 1 if last_agg >= 0 else None
        start_ms = None if from_id is not None else last_ms
        for _ in range(self._cfg.max_backfill_pages):
            page = self._rest.agg_trades(symbol, from_id=from_id, start_ms=start_ms, limit=_PAGE)
            for x in page:
                if x.l <= last_id:
                    continue
                try:
                    trade = agg_trade_to_trade(x.event(symbol))
                except InvalidTrade:
                    continue  # Binance's invalid-marker rows carry no trade
                got.append((x.a, trade))
                if until_id is not None and x.l >= until_id:
                    return got
            if len(page) < _PAGE:
                return got
            from_id, start_ms = page[-1].a + 1, None
        return got

    def _finish_backfill(
        self,
        symbol: str,
        job: Future[list[tuple[int, Trade]]],
        out: dict[str, list[Trade]],
        gaps: list[GapReport],
    ) -> None:
        try:
            fetched = job.result()
            reason = ""
        except RestError as e:
            fetched, reason = [], f"backfill failed: {e}"
            log.warning("backfill failed symbol=%s error=%s", symbol, e)
        self._stats.trades_backfilled += len(fetched)
        st = self._state[symbol]
        held = self._pending.pop(symbol, [])
        for agg_id, trade in fetched + held:
            if trade[1] <= st[0]:
                continue
            if trade[0] > st[0] + 1 and st[0] >= 0:  # (no history yet: nothing to miss)
                gaps.append(
                    GapReport(
                        symbol,
                        st[0] + 1,
                        trade[0] - 1,
                        st[1],
                        trade[4],
                        reason or "not served by REST",
                    )
                )
                self._stats.gaps += 1
            st[0], st[1], st[2] = trade[1], trade[4], agg_id
            self._emit(symbol, trade, out)
        if reason and not held:
            gaps.append(GapReport(symbol, st[0] + 1, -1, st[1], self._clock.now_ms(), reason))
            self._stats.gaps += 1
        if self._connected:
            self._live.add(symbol)


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
