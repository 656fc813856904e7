"""The simulated market: trades with aggTrade ids, a bounded history per symbol, market time.

`SimMarket` is fed by the seeded `SyntheticMarket` or by the trades of a recording file. Its
trades depend only on the source (seed, symbols, rate, start and end, or the file), never on
how often or by how much `advance` is called, so a run at speed 60 and one at speed 600 hold
the same trades. `MarketClock` maps wall time to market time (`start + elapsed * speed`).

Every method is safe to call from another thread (tests read the history while the server's
loop advances it).
"""

from __future__ import annotations

import threading
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from flows.domain.clock import Clock
from flows.domain.kline import Trade
from flows.sources.readers import read_file
from flows.sources.synthetic import SyntheticMarket

AggRow = tuple[int, Trade]  # (aggregate trade id "a", trade)

_QUOTES = ("FDUSD", "USDT", "USDC", "BUSD", "TUSD", "BTC", "ETH", "BNB", "EUR", "TRY", "USD")
_TRIM_SLACK = 4096


def split_symbol(symbol: str) -> tuple[str, str]:
    """("BTC", "USDT") for "BTCUSDT": the quote is the longest known suffix."""
    for quote in _QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    return symbol[:-3], symbol[-3:]


def _decimal_zeros(units: int) -> int:
    """How many of the 8 decimals of an amount are trailing zeros (8 for a whole number)."""
    n = 0
    while n < 8 and units and units % 10 == 0:
        units //= 10
        n += 1
    return n


def split_fills(trade: Trade) -> list[tuple[int, int]]:
    """An aggTrade as its l-f+1 fills: (trade id, qty units), quantities summing exactly.

    The quantity is cut in the coarsest power-of-ten step that still gives every fill at
    least one step (a real lot size), the remainder going to the first fills.
    """
    first, last, _, qty, _, _ = trade
    count = last - first + 1
    if count <= 1:
        return [(first, qty)]
    step = 1
    while qty % (step * 10) == 0 and qty // (step * 10) >= count:
        step *= 10
    lots = qty // step  # exact: step divides qty
    base, extra = divmod(lots, count)
    return [(first + i, (base + (1 if i < extra else 0)) * step) for i in range(count)]


class _History:
    __slots__ = ("first_id", "next_id", "price_zeros", "qty_zeros", "trades")

    def __init__(self, first_id: int) -> None:
        self.first_id = first_id  # agg id of trades[0]
        self.next_id = first_id  # agg id the next trade gets
        self.trades: list[Trade] = []
        self.price_zeros = 8
        self.qty_zeros = 8


class _SyntheticSource:
    """`SyntheticMarket` stepped on a fixed grid of market time, whatever the pacing.

    `SyntheticMarket` draws every symbol's trades from one random stream, symbol after
    symbol, so *how* it is advanced changes what it draws. Here it is only ever advanced to
    multiples of `GRID_MS` (epoch-aligned), ahead of what is asked, and the trades are handed
    out by time from a buffer: the trades depend on the seed, symbols, rate and start alone.
    """

    GRID_MS: Final = 1000

    def __init__(self, market: SyntheticMarket) -> None:
        self._market = market
        self._made_to = market.now_ms
        self._pending: dict[str, list[Trade]] = {}

    def advance_to(self, end_ms: int) -> dict[str, list[Trade]]:
        # a trade stamped end_ms may be drawn at any float time below end_ms + 1
        while self._made_to < end_ms + 1:
            self._made_to = (self._made_to // self.GRID_MS + 1) * self.GRID_MS
            for symbol, trades in self._market.advance_to(self._made_to).items():
                self._pending.setdefault(symbol, []).extend(trades)
        out: dict[str, list[Trade]] = {}
        for symbol, trades in self._pending.items():
            stop = bisect_right(trades, end_ms, key=lambda t: t[4])
            if stop:
                out[symbol] = trades[:stop]
                del trades[:stop]
        return out


class _RecordingSource:
    """The trades of a file, handed out by time."""

    def __init__(self, path: Path) -> None:
        per_symbol: dict[str, list[Trade]] = {}
        for chunk in read_file(path):
            for symbol, trades in chunk.trades.items():
                per_symbol.setdefault(symbol, []).extend(trades)
        if not per_symbol:
            raise ValueError(f"{path}: no trades to replay")
        self.trades: dict[str, list[Trade]] = {}
        for symbol, trades in sorted(per_symbol.items()):
            trades.sort(key=lambda t: (t[4], t[0]))
            kept: list[Trade] = []
            for t in trades:  # drop repeats (a trade id seen already)
                if not kept or t[0] > kept[-1][1]:
                    kept.append(t)
            self.trades[symbol] = kept
        self.symbols = list(self.trades)
        self.first_ms = min(t[0][4] for t in self.trades.values())
        self._pos = dict.fromkeys(self.symbols, 0)

    def advance_to(self, end_ms: int) -> dict[str, list[Trade]]:
        out: dict[str, list[Trade]] = {}
        for symbol, trades in self.trades.items():
            pos = self._pos[symbol]
            stop = bisect_right(trades, end_ms, lo=pos, key=lambda t: t[4])
            if stop > pos:
                out[symbol] = trades[pos:stop]
                self._pos[symbol] = stop
        return out


class SimMarket:
    """Trades of every symbol with their aggTrade ids, produced step by step.

    >>> m = SimMarket.synthetic(symbols=2, seed=1, rate=20.0, start_ms=0, end_ms=60_000)
    >>> new = m.advance(30_000)
    >>> rows = new["BTCUSDT"]
    >>> [a for a, _ in rows] == list(range(rows[0][0], rows[0][0] + len(rows)))
    True
    >>> m.advance(10**9) and m.now_ms
    60000
    """

    def __init__(
        self,
        source: _SyntheticSource | _RecordingSource,
        symbols: list[str],
        first_ids: dict[str, int],
        start_ms: int,
        end_ms: int | None,
        history_limit: int,
    ) -> None:
        self._source = source
        self.symbols = list(symbols)
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.after_end_ms: int | None = 0
        self.now_ms = start_ms
        self.history_limit = history_limit
        self._lock = threading.Lock()
        self._history = {s: _History(first_ids[s]) for s in self.symbols}

    @classmethod
    def synthetic(
        cls,
        symbols: int,
        seed: int,
        rate: float,
        start_ms: int,
        end_ms: int | None = None,
        history_limit: int = 500_000,
    ) -> SimMarket:
        synthetic = SyntheticMarket(symbols, seed, start_ms, rate)
        first_ids = {s: synthetic.agg_id(i) for i, s in enumerate(synthetic.symbols)}
        source = _SyntheticSource(synthetic)
        return cls(source, synthetic.symbols, first_ids, start_ms, end_ms, history_limit)

    @classmethod
    def from_recording(
        cls,
        path: Path,
        start_ms: int | None = None,
        end_ms: int | None = None,
        history_limit: int = 500_000,
    ) -> SimMarket:
        """Replay a file's trades; ids start at 100,000 x (symbol number), as synthetic ones.

        Market time starts just before the file's first trade unless `start_ms` says;
        trades at or before `start_ms` become history at the first `advance`.
        """
        source = _RecordingSource(path)
        first_ids = {s: 100_000 * (i + 1) for i, s in enumerate(source.symbols)}
        start = source.first_ms - 1 if start_ms is None else start_ms
        market = cls(source, source.symbols, first_ids, start, end_ms, history_limit)
        market.now_ms = min(start, source.first_ms - 1)
        return market

    # -- producing trades ------------------------------------------------------------------
    def advance(self, now_ms: int) -> dict[str, list[AggRow]]:
        """The trades with time up to `now_ms` (and `end_ms`) not handed out yet, by symbol.
        Past `end_ms` market time goes on for `after_end_ms` more (None: for ever), with no
        more trades: an exchange's clock does not stop with its trades."""
        target = now_ms
        if self.end_ms is not None and self.after_end_ms is not None:
            target = min(target, self.end_ms + self.after_end_ms)
        if target <= self.now_ms:
            return {}
        last = target if self.end_ms is None else min(target, self.end_ms)
        batch = self._source.advance_to(last) if last > self.now_ms else {}
        out: dict[str, list[AggRow]] = {}
        with self._lock:
            self.now_ms = target
            for symbol, trades in batch.items():
                hist = self._history[symbol]
                a = hist.next_id
                out[symbol] = list(zip(range(a, a + len(trades)), trades, strict=True))
                hist.next_id = a + len(trades)
                hist.trades.extend(trades)
                self._learn_steps(hist, trades)
                surplus = len(hist.trades) - self.history_limit
                if surplus >= _TRIM_SLACK or (surplus > 0 and self.history_limit < _TRIM_SLACK):
                    del hist.trades[:surplus]
                    hist.first_id += surplus
        return out

    @staticmethod
    def _learn_steps(hist: _History, trades: Iterable[Trade]) -> None:
        pz, qz = hist.price_zeros, hist.qty_zeros
        for t in trades:
            if pz:
                pz = min(pz, _decimal_zeros(t[2]))
            if qz:
                qz = min(qz, _decimal_zeros(t[3]))
            if not pz and not qz:
                break
        hist.price_zeros, hist.qty_zeros = pz, qz

    @property
    def finished(self) -> bool:
        return self.end_ms is not None and self.now_ms >= self.end_ms

    # -- reading the history ---------------------------------------------------------------
    def _range(self, hist: _History, start_ms: int | None, end_ms: int | None) -> tuple[int, int]:
        trades = hist.trades
        lo = 0 if start_ms is None else bisect_left(trades, start_ms, key=lambda t: t[4])
        hi = len(trades) if end_ms is None else bisect_right(trades, end_ms, key=lambda t: t[4])
        return lo, max(lo, hi)

    def trades(
        self, symbol: str, start_ms: int | None = None, end_ms: int | None = None
    ) -> list[AggRow]:
        """Every kept trade of `symbol` with time in [start_ms, end_ms], with its agg id."""
        with self._lock:
            hist = self._history[symbol]
            lo, hi = self._range(hist, start_ms, end_ms)
            return list(
                zip(range(hist.first_id + lo, hist.first_id + hi), hist.trades[lo:hi], strict=True)
            )

    def agg_trades(
        self,
        symbol: str,
        from_id: int | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 500,
    ) -> list[AggRow]:
        """What ``GET /api/v3/aggTrades`` answers (BINANCE.md A2's window rules)."""
        with self._lock:
            hist = self._history[symbol]
            n = len(hist.trades)
            if from_id is not None:
                lo = max(0, from_id - hist.first_id)
                hi = min(n, lo + limit)
                if end_ms is not None:
                    hi = min(hi, max(lo, self._range(hist, None, end_ms)[1]))
            elif start_ms is not None:
                lo, hi = self._range(hist, start_ms, end_ms)
                hi = min(hi, lo + limit)
            else:
                lo, hi = self._range(hist, None, end_ms)
                lo = max(lo, hi - limit)
            return list(
                zip(range(hist.first_id + lo, hist.first_id + hi), hist.trades[lo:hi], strict=True)
            )

    def last_trade_before(self, symbol: str, time_ms: int) -> Trade | None:
        """The last kept trade with time strictly before `time_ms`."""
        with self._lock:
            trades = self._history[symbol].trades
            i = bisect_left(trades, time_ms, key=lambda t: t[4])
            return trades[i - 1] if i else None

    def first_trade_ms(self, symbol: str) -> int | None:
        with self._lock:
            trades = self._history[symbol].trades
            return trades[0][4] if trades else None

    def last_agg_id(self, symbol: str) -> int:
        """The agg id of the newest trade, -1 before the first."""
        with self._lock:
            hist = self._history[symbol]
            return hist.next_id - 1 if hist.trades else -1

    def last_agg_ids(self) -> dict[str, int]:
        return {s: self.last_agg_id(s) for s in self.symbols}

    def steps(self, symbol: str) -> tuple[int, int]:
        """(tick size, lot step) in units, as far as the trades seen so far show them."""
        with self._lock:
            hist = self._history[symbol]
            return 10**hist.price_zeros, 10**hist.qty_zeros

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._history


def trade_count(rows: Iterable[AggRow]) -> int:
    """Individual trades (fills) in some aggTrades."""
    return sum(t[1] - t[0] + 1 for _, t in rows)


class MarketClock:
    """Market time = origin + wall time run (not paused) x speed.

    >>> from flows.domain.clock import ManualClock
    >>> wall = ManualClock(0)
    >>> mc = MarketClock(wall, origin_ms=1_000, speed=60.0)
    >>> wall.advance(500); mc.now_ms()
    31000
    >>> mc.pause(); wall.advance(10_000); mc.now_ms()
    31000
    """

    def __init__(self, wall: Clock, origin_ms: int, speed: float, paused: bool = False) -> None:
        self._wall = wall
        self.origin_ms = origin_ms
        self.speed = speed
        self._run_s = 0.0  # wall seconds run before the current stretch
        self._since: float | None = None if paused else wall.monotonic_s()

    @property
    def paused(self) -> bool:
        return self._since is None

    def _elapsed_s(self) -> float:
        if self._since is None:
            return self._run_s
        return self._run_s + self._wall.monotonic_s() - self._since

    def now_ms(self) -> int:
        return self.origin_ms + int(self._elapsed_s() * 1000.0 * self.speed)

    def now_exact_ms(self) -> float:
        return self.origin_ms + self._elapsed_s() * 1000.0 * self.speed

    def pause(self) -> None:
        if self._since is not None:
            self._run_s = self._elapsed_s()
            self._since = None

    def resume(self) -> None:
        if self._since is None:
            self._since = self._wall.monotonic_s()
