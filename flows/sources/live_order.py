"""The per-symbol order of a live connection: no duplicate, no hole, on Bytewax's thread.

`SymbolOrder` is the part of a `flows.sources.live_source` partition that takes each
plausible trade of a symbol: a trade whose last id is not above the last id released is a
duplicate and is dropped; one whose first id skips ids is held and a backfill started; a
symbol not resumed yet is held until its resume job ends. When a job ends its trades are
released in order with the trades held meanwhile, each checked at the door again, and ids
the exchange does not serve become a `GapReport`.
"""

from __future__ import annotations

import collections
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from flows.binance.rest import RestError
from flows.domain import deadletter as dl
from flows.domain.clock import Clock
from flows.domain.deadletter import DeadLetter
from flows.domain.kline import Trade
from flows.domain.stats import RunStats
from flows.domain.trade_checks import implausible, implausible_jump
from flows.sources.items import GapReport
from flows.sources.live_backfill import BackfillJobs, Closing, Fetched, SymbolState
from flows.sources.live_config import LiveConfig

log = logging.getLogger(__name__)


class SymbolOrder:
    """Per-symbol positions, held trades and backfill jobs (state set up by the partition)."""

    _cfg: LiveConfig
    _clock: Clock
    _stats: RunStats
    _symbols: set[str]
    _state: dict[str, SymbolState]
    _pending: dict[str, list[tuple[int, Trade]]]
    _jobs: dict[str, Future[Fetched]]
    _finished: collections.deque[str]  # symbols whose job ended (appended by the job's thread)
    _stale_jobs: set[str]
    _live: set[str]
    _connected: bool
    _ceiling: int
    _refused: list[DeadLetter]
    _closing: threading.Event
    _pool: ThreadPoolExecutor
    _backfill: BackfillJobs

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
            job = self._pool.submit(self._backfill.resume_job, symbol)
        else:
            job = self._pool.submit(self._backfill.fetch, symbol, st[0], st[1], st[2])
        self._jobs[symbol] = job
        # the poll takes the ended jobs from a queue instead of asking every job (a thousand
        # resumes pending at a start were asked a hundred times a second)
        job.add_done_callback(lambda _job: self._finished.append(symbol))

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
        except Closing:
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
