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
from functools import partial
from typing import Any, Final, Protocol, TypeVar

import msgspec
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from flows.binance.decode import (
    AggTradeEvent,
    FrameError,
    InvalidTrade,
    KlineEvent,
    LaxAggTrade,
    LaxCombined,
    RestAggTrade,
    TradeEvent,
    agg_trade_to_trade,
    decode_frame,
    kline_of_event,
    lax_trade,
    trade_event_to_trade,
)
from flows.binance.rest import BinanceError, RateLimited, RestClient, RestError
from flows.binance.ws_feed import AttemptLimiter, FeedConfig, StreamFeed
from flows.domain import deadletter as dl
from flows.domain.clock import SYSTEM_CLOCK, Clock
from flows.domain.deadletter import DeadLetter
from flows.domain.intervals import INTERVALS, Interval
from flows.domain.kline import Kline, Trade, kline_of_row
from flows.domain.stats import RunStats
from flows.domain.trade_checks import implausible, implausible_jump
from flows.klines.builder import SymbolKlines, base_interval_for
from flows.sources.items import GapReport, QualityNote, SourceItem, SourceReport, SymbolBatch
from flows.storage.resume import StoredStart

log = logging.getLogger(__name__)

_lax_frame: Final = msgspec.json.Decoder(LaxCombined, strict=False)
_LAX_ERRORS: Final = (msgspec.DecodeError, msgspec.ValidationError)
_PAGE: Final = 1000
_POLL_MS: Final = 10
_RETRY_MAX_S: Final = 60.0
_T = TypeVar("_T")

# per symbol: [last trade id, its trade time ms, last aggTrade id (-1 unknown)]
SymbolState = list[int]


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


def clock_stream_for(symbols: Sequence[str], listed: Sequence[str] = ()) -> str:
    """The clock stream every connection carries: BTCUSDT's 1-second klines when the exchange
    lists it (the most traded symbol, so it is pushed every second), else those of the first
    symbol of the universe (the most traded one for a --top universe)."""
    pick = "BTCUSDT" if "BTCUSDT" in listed or "BTCUSDT" in symbols else symbols[0]
    return f"{pick.lower()}@kline_1s"


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
            return list(dict.fromkeys(self._groups[index]))

    def apply(self, wanted: Sequence[str]) -> None:
        want = [s.upper() for s in wanted]
        keep = set(want)
        with self._lock:
            groups = [list(dict.fromkeys(s for s in g if s in keep)) for g in self._groups]
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


class _Closing(Exception):
    """The partition is closing: a worker thread gives up waiting."""


@dataclass
class Fetched:
    """What a backfill or resume job brings back (made on a worker thread)."""

    trades: list[tuple[int, Trade]]
    complete: bool  # reached the present (or the trade it was asked to reach)
    reset: dict[str, Any] | None = None  # resume jobs: the builder state to continue from
    position: SymbolState | None = None  # resume jobs: the symbol's position before `trades`
    gaps: list[GapReport] = field(default_factory=list)
    exchange_ms: int = -1  # the exchange's clock when the fetch ended (-1: not read)


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
        self._symbols = {s.split("@", 1)[0].upper() for s in streams if s != cfg.clock_stream}
        self._refs: dict[str, list[Kline]] = {}  # Binance's closed 1m klines, to reconcile
        # Positions are not taken from a snapshot (`resume` is ignored): every start resumes
        # each symbol from what the stores hold, so a lost or foreign snapshot changes nothing.
        self._state: dict[str, SymbolState] = {}
        self._frames: collections.deque[tuple[bytes, int]] = collections.deque()
        self._events: collections.deque[tuple[bool, int]] = collections.deque()
        self._pending: dict[str, list[tuple[int, Trade]]] = {}
        self._jobs: dict[str, Future[Fetched]] = {}
        self._stale_jobs: set[str] = set()  # jobs that began before the last reconnect
        self._live: set[str] = set()
        self._connected = False
        self._last_bucket = -1
        self._seen_ms = -1  # the newest event time this connection delivered (evidence)
        self._clock_ms = -1  # the newest clock-stream event time (the exchange's clock)
        self._ceiling = cfg.clock.now_ms() + cfg.future_margin_ms  # latest plausible trade time
        self._feed_seen = (0, 0, 0, 0)
        self._control_seen = (0, 0)
        self._exchange_now: tuple[float, int] | None = None  # (monotonic s, exchange ms)
        self._time_job: Future[int] | None = None  # the exchange's time, asked after a refusal
        self._time_refused = False  # a frame was refused for its time in this batch
        self._deadline_ms = (
            self._clock.now_ms() + int(cfg.duration_s * 1000)
            if cfg.duration_s is not None
            else None
        )
        self._refused: list[DeadLetter] = []  # implausible trades of backfills
        self._closing = threading.Event()
        self._pool = ThreadPoolExecutor(cfg.backfill_workers, thread_name_prefix="backfill")
        frames = self._frames
        limit = cfg.max_buffered_frames

        def on_frame(raw: bytes, recv_ms: int) -> None:
            frames.append((raw, recv_ms))

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
        for symbol, job in list(self._jobs.items()):
            if job.done():
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
            self._time_job = self._pool.submit(self._exchange_ms, True)
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
        for symbol in marked:
            batch = SymbolBatch(
                symbol, out.pop(symbol, []), watermark, reset=resets.pop(symbol, None)
            )
            items.append((symbol, batch))
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

    # -- frames ------------------------------------------------------------------------
    def _exchange_clock_ms(self) -> int:
        """The exchange's clock as best known: its clock stream, else its REST time (advanced
        by our own clock since it was read), else our own clock."""
        known = self._exchange_now
        rest = (
            -1 if known is None else known[1] + int((self._clock.monotonic_s() - known[0]) * 1000)
        )
        best = max(self._clock_ms, rest)
        return best if best >= 0 else self._clock.now_ms()

    def _frame(self, raw: bytes, out: dict[str, list[Trade]], dead: list[DeadLetter]) -> int:
        """Take one frame; returns the event time it proves delivered (-1 for none)."""
        try:
            ev: Any = _lax_frame.decode(raw).data
            trade = lax_trade(ev, self._ceiling)
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
                dead.append(DeadLetter(e.reason, str(e), text, "live", exact.s))
                return -1
            why = implausible(trade, self._ceiling)
            if why is not None:
                self._time_refused |= trade[4] > self._ceiling
                dead.append(DeadLetter(dl.IMPLAUSIBLE, why, text, "live", exact.s))
                return -1
            self._accept(exact.s, agg_id, trade, out)
            return trade[4]
        if isinstance(exact, KlineEvent):
            k = exact.k
            event_ms = exact.E // 1000 if exact.E >= 100_000_000_000_000 else exact.E
            if event_ms > self._ceiling:
                self._time_refused = True
                dead.append(DeadLetter(dl.IMPLAUSIBLE, f"event time {event_ms} is after "
                                       f"{self._ceiling}", text, "live", exact.s))  # fmt: skip
                return -1
            if k.i == "1m" and k.x and exact.s in self._cfg.reconcile:
                self._refs.setdefault(exact.s, []).append(kline_of_event(exact))
            else:
                self._stats.clock_frames += 1
                if event_ms > self._clock_ms:
                    # the exchange's clock moved: so does the latest plausible time
                    self._clock_ms = event_ms
                    self._ceiling = max(self._ceiling, event_ms + self._cfg.future_margin_ms)
            return event_ms
        self._stats.frames_ignored += 1  # depth, tickers and serverShutdown frames
        return -1

    def _accept(self, symbol: str, agg_id: int, trade: Trade, out: dict[str, list[Trade]]) -> None:
        st = self._state.get(symbol)
        if symbol in self._jobs or st is None:
            self._pending.setdefault(symbol, []).append((agg_id, trade))
            if st is None and symbol not in self._jobs and symbol in self._symbols:
                self._start_job(symbol)
            return
        if trade[1] <= st[0]:
            self._stats.duplicates += 1
            return
        if trade[0] > st[0] + 1 and st[0] >= 0:  # ids were skipped: fetch them before going on
            self._pending.setdefault(symbol, []).append((agg_id, trade))
            self._live.discard(symbol)
            self._start_job(symbol)
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
    def _start_job(self, symbol: str) -> None:
        """Resume the symbol from the stores (first time in this process), or fetch the
        trades after its position."""
        self._live.discard(symbol)
        st = self._state.get(symbol)
        if st is None:
            self._jobs[symbol] = self._pool.submit(self._resume_job, symbol)
        else:
            self._jobs[symbol] = self._pool.submit(self._fetch, symbol, st[0], st[1], st[2])

    def _patiently(self, what: str, call: Callable[[], _T]) -> _T:
        """`call()` until it answers: rate limits waited out, other failures retried with
        backoff (the exchange or a store may be away for minutes). A refusal that retrying
        cannot change (BinanceError) is raised. Runs on a worker thread."""
        delay = 1.0
        failures = 0
        while True:
            if self._closing.is_set():
                raise _Closing
            try:
                return call()
            except BinanceError:
                raise
            except RateLimited as e:
                wait = max(e.retry_after_s, 1.0)
                error: Exception = e
            except Exception as e:  # unreachable, 5xx, a store away: all worth a retry
                wait, delay = delay, min(delay * 2, _RETRY_MAX_S)
                error = e
            failures += 1
            self._stats.backfill_retries += 1
            if failures == 1 or failures % 10 == 0:
                log.warning(
                    "%s: waiting %.0f s and trying again (attempt %d): %s",
                    what,
                    wait,
                    failures,
                    error,
                )
            if self._closing.wait(wait):
                raise _Closing

    def _exchange_ms(self, fresh: bool = False) -> int:
        """The exchange's clock (GET /api/v3/time, kept for a few seconds unless `fresh`)."""
        now_s = self._clock.monotonic_s()
        known = self._exchange_now
        if fresh or known is None or now_s - known[0] > 5.0:
            server = self._patiently("exchange time", self._rest.server_time)
            known = self._exchange_now = (now_s, server)
        return known[1] + int((now_s - known[0]) * 1000)

    def _prev_close(self, symbol: str, open_ms: int) -> int:
        """The close of the exchange's kline before `open_ms` (0: none, not listed yet)."""
        base = base_interval_for(self._cfg.intervals)
        rows = self._patiently(
            f"previous close of {symbol}",
            lambda: self._rest.klines(symbol, base, end_ms=open_ms - 1, limit=1),
        )
        if not rows:
            return 0
        k = kline_of_row(rows[-1])
        return k.close if k.open_ms < open_ms else 0

    def _resume_job(self, symbol: str) -> Fetched:
        """Where the symbol continues (what Redis holds, or its first start), and the trades
        from there. Runs on a worker thread."""
        cfg = self._cfg
        resume = cfg.resume
        self._exchange_ms()  # the exchange's clock, for the checks at the door
        start = None
        if resume is not None:
            start = self._patiently(f"resume point of {symbol}", lambda: resume.read(symbol))
        gaps: list[GapReport] = []
        if start is not None and not start.from_origin:
            sk = SymbolKlines.resumed(
                cfg.intervals, start.next_open_ms, start.prev_close, start.stored
            )
            origin = start.next_open_ms
        else:
            if start is not None:
                origin = start.next_open_ms  # a first start that closed nothing yet
            else:
                origin = self._first_open()
                if resume is not None:
                    first = origin
                    origin = self._patiently(
                        f"origin of {symbol}", lambda: resume.claim_origin(symbol, first)
                    )
                longest = cfg.longest_interval
                if longest is not None and longest.open_time(origin) < origin:
                    gaps.append(
                        GapReport(
                            symbol,
                            -1,
                            -1,
                            longest.open_time(origin),
                            origin,
                            "started mid-interval",
                        )
                    )
            prev = self._prev_close(symbol, origin)
            sk = SymbolKlines.resumed(cfg.intervals, origin, prev, {})
        fetched = self._fetch(symbol, -1, origin, -1)
        fetched.reset = sk.snapshot()
        fetched.position = [-1, origin, -1]
        fetched.gaps = gaps + fetched.gaps
        return fetched

    def _first_open(self) -> int:
        cfg = self._cfg
        if cfg.history_from_ms is not None:
            return cfg.history_from_ms
        now = self._exchange_ms()
        base = INTERVALS[base_interval_for(cfg.intervals)]
        warmup = cfg.warmup_interval or base
        return warmup.open_time(now)

    def _fetch(self, symbol: str, last_id: int, last_ms: int, last_agg: int) -> Fetched:
        """aggTrades after last_id (from last_agg + 1, or from the time last_ms), up to the
        present or `pages_per_job` pages. Runs on a worker thread."""
        got: list[tuple[int, Trade]] = []
        from_id = last_agg + 1 if last_agg >= 0 else None
        start_ms = None if from_id is not None else last_ms
        for _ in range(self._cfg.pages_per_job):
            page = self._patiently(
                f"backfill of {symbol}", partial(self._page, symbol, from_id, start_ms)
            )
            for x in page:
                if x.l <= last_id:
                    continue
                try:
                    trade = agg_trade_to_trade(x.event(symbol))
                except InvalidTrade:
                    continue  # Binance's invalid-marker rows carry no trade
                got.append((x.a, trade))
            if len(page) < _PAGE:
                # what the exchange served reaches its clock now: the door's check of these
                # trades uses it (ours, or the stream's, may lag behind)
                return Fetched(got, True, exchange_ms=self._exchange_ms(fresh=True))
            from_id, start_ms = page[-1].a + 1, None
        return Fetched(got, False, exchange_ms=self._exchange_ms(fresh=True))

    def _page(self, symbol: str, from_id: int | None, start_ms: int | None) -> list[RestAggTrade]:
        return self._rest.agg_trades(symbol, from_id=from_id, start_ms=start_ms, limit=_PAGE)

    def _finish_backfill(
        self,
        symbol: str,
        job: Future[Fetched],
        out: dict[str, list[Trade]],
        gaps: list[GapReport],
        resets: dict[str, dict[str, Any]],
    ) -> bool:
        """Release what a job fetched (and, once caught up, the live trades held meanwhile);
        returns whether the symbol is caught up and live."""
        stale = symbol in self._stale_jobs
        self._stale_jobs.discard(symbol)
        try:
            res = job.result()
        except _Closing:
            return False
        except RestError as e:  # the exchange refuses (e.g. an unknown symbol): cannot be had
            log.warning("backfill refused symbol=%s error=%s", symbol, e)
            st = self._state.setdefault(symbol, [-1, self._clock.now_ms(), -1])
            gaps.append(
                GapReport(
                    symbol,
                    st[0] + 1,
                    -1,
                    st[1],
                    self._clock.now_ms(),
                    f"refused by the exchange: {e}",
                )
            )
            self._stats.gaps += 1
            res = Fetched([], True)
        self._stats.trades_backfilled += len(res.trades)
        gaps.extend(res.gaps)
        if res.reset is None:
            self._stats.backfills += 1
        if res.reset is not None and res.position is not None:
            self._stats.resumes += 1
            resets[symbol] = res.reset
            self._state[symbol] = res.position
        st = self._state[symbol]
        held = self._pending.pop(symbol, []) if res.complete and not stale else []
        ceiling = max(self._ceiling, res.exchange_ms + self._cfg.future_margin_ms)
        for agg_id, trade in res.trades + held:
            if trade[1] <= st[0]:
                self._stats.duplicates += 1  # fetched and also held from the stream
                continue
            why = implausible(trade, ceiling)
            if why is not None:
                self._refused.append(DeadLetter(dl.IMPLAUSIBLE, why, repr(trade), "rest", symbol))
                continue
            if trade[0] > st[0] + 1 and st[0] >= 0:  # (no position yet: nothing to miss)
                jump = implausible_jump(trade[0], st[0], trade[4] - st[1])
                if jump is not None:  # ids the exchange itself did not serve: a poisoned frame
                    self._refused.append(
                        DeadLetter(dl.IMPLAUSIBLE, jump, repr(trade), "live", symbol)
                    )
                    continue
                gaps.append(
                    GapReport(
                        symbol, st[0] + 1, trade[0] - 1, st[1], trade[4], "not served by REST"
                    )
                )
                self._stats.gaps += 1
            st[0], st[1], st[2] = trade[1], trade[4], agg_id
            self._emit(symbol, trade, out)
        if not res.complete or stale:
            self._start_job(symbol)  # more to fetch (or fetched before the last reconnect)
            return False
        if self._connected and symbol in self._symbols:
            self._live.add(symbol)
            return True
        return False


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


__all__ = ["LiveConfig", "LiveSource", "Mapping", "clock_stream_for", "stream_groups"]
