"""The worker-thread side of a live connection's backfills: REST fetches that never give up.

`BackfillJobs` runs on the backfill pool of a `flows.sources.live_source` partition: a resume
job finds where a symbol continues (what the stores hold, or its first start at the
exchange's time, with the previous close from the exchange's klines) and fetches the trades
from there; a backfill fetches the aggTrades after a symbol's position, a few pages at a
time. Rate limits are waited out and other failures retried with backoff until the partition
closes; only a refusal retrying cannot change is raised. What a job brings back is a
`Fetched`, released in order on Bytewax's thread (`flows.sources.live_order`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final, TypeVar

from flows.binance.decode import InvalidTrade, RestAggTrade, agg_trade_to_trade
from flows.binance.rest import BinanceError, RateLimited, RestClient
from flows.domain.intervals import INTERVALS
from flows.domain.kline import Trade, kline_of_row
from flows.domain.stats import RunStats
from flows.klines.builder import SymbolKlines, base_interval_for
from flows.sources.items import GapReport
from flows.sources.live_config import LiveConfig

log = logging.getLogger(__name__)

_PAGE: Final = 1000
_RETRY_MAX_S: Final = 60.0
_T = TypeVar("_T")

# per symbol: [last trade id, its trade time ms, last aggTrade id (-1 unknown)]
SymbolState = list[int]


class Closing(Exception):
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


class BackfillJobs:
    """The jobs a partition submits to its backfill pool, and the exchange's clock they read."""

    def __init__(
        self, cfg: LiveConfig, stats: RunStats, rest: RestClient, closing: threading.Event
    ) -> None:
        self._cfg = cfg
        self._clock = cfg.clock
        self._stats = stats
        self._rest = rest
        self._closing = closing
        self.exchange_now: tuple[float, int] | None = None  # (monotonic s, exchange ms)

    def _patiently(self, what: str, call: Callable[[], _T]) -> _T:
        """`call()` until it answers: rate limits waited out, other failures retried with
        backoff (the exchange or a store may be away for minutes). A refusal that retrying
        cannot change (BinanceError) is raised. Runs on a worker thread."""
        delay = 1.0
        failures = 0
        while True:
            if self._closing.is_set():
                raise Closing
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
                raise Closing

    def exchange_ms(self, fresh: bool = False) -> int:
        """The exchange's clock (GET /api/v3/time, kept for a few seconds unless `fresh`)."""
        now_s = self._clock.monotonic_s()
        known = self.exchange_now
        if fresh or known is None or now_s - known[0] > 5.0:
            server = self._patiently("exchange time", self._rest.server_time)
            known = self.exchange_now = (now_s, server)
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

    def resume_job(self, symbol: str) -> Fetched:
        """Where the symbol continues (what Redis holds, or its first start), and the trades
        from there. Runs on a worker thread."""
        cfg = self._cfg
        resume = cfg.resume
        self.exchange_ms()  # the exchange's clock, for the checks at the door
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
        fetched = self.fetch(symbol, -1, origin, -1)
        fetched.reset = sk.snapshot()
        fetched.position = [-1, origin, -1]
        fetched.gaps = gaps + fetched.gaps
        return fetched

    def _first_open(self) -> int:
        cfg = self._cfg
        if cfg.history_from_ms is not None:
            return cfg.history_from_ms
        now = self.exchange_ms()
        base = INTERVALS[base_interval_for(cfg.intervals)]
        warmup = cfg.warmup_interval or base
        return warmup.open_time(now)

    def fetch(self, symbol: str, last_id: int, last_ms: int, last_agg: int) -> Fetched:
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
                return Fetched(got, True, exchange_ms=self.exchange_ms(fresh=True))
            from_id, start_ms = page[-1].a + 1, None
        return Fetched(got, False, exchange_ms=self.exchange_ms(fresh=True))

    def _page(self, symbol: str, from_id: int | None, start_ms: int | None) -> list[RestAggTrade]:
        return self._rest.agg_trades(symbol, from_id=from_id, start_ms=start_ms, limit=_PAGE)
