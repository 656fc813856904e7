"""Stream names and the payloads Binance sends on them (BINANCE.md A1), built as text.

- ``<symbol>@aggTrade``: one event per aggTrade, ``E`` = trade time + 1 ms (as
  `flows.sources.synthetic.agg_trade_frame` does).
- ``<symbol>@trade``: each aggTrade split into its ``l - f + 1`` fills (`split_fills`).
- ``<symbol>@kline_<interval>``: see `KlineFeed`.

Times are milliseconds, or microseconds on connections opened with ``timeUnit=MICROSECOND``
(a kline's ``T`` then ends in 999 µs). Stream names that do not name a known symbol and
stream type are accepted by the server (as Binance does) but carry nothing.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from typing import Final

from flows.domain.intervals import INTERVALS
from flows.domain.kline import Kline, Trade
from flows.domain.money import format_units
from flows.klines.builder import SymbolKlines, flat_kline
from flows.simulator.market import AggRow, SimMarket, split_fills

KLINE_LAG_MS: Final = 100  # pushes happen at update boundaries + this (a closing: T + 101 ms)
_MAX_CATCH_UP_TICKS: Final = 10_000


@dataclass(frozen=True, slots=True)
class StreamKey:
    symbol: str  # upper case, as in payloads
    kind: str  # "aggTrade", "trade" or "kline"
    interval: str = ""


def parse_stream(name: str, symbols: Container[str]) -> StreamKey | None:
    """The stream a name denotes, or None when it carries nothing here."""
    sym, at, rest = name.partition("@")
    if not at or sym != sym.lower() or sym.upper() not in symbols:
        return None
    if rest in ("aggTrade", "trade"):
        return StreamKey(sym.upper(), rest)
    if rest.startswith("kline_") and rest[6:] in INTERVALS:
        return StreamKey(sym.upper(), "kline", rest[6:])
    return None


def _bool(value: bool) -> str:
    return "true" if value else "false"


def agg_trade_payload(symbol: str, agg_id: int, trade: Trade, micro: bool = False) -> str:
    f, last, price, qty, t, maker = trade
    m = 1000 if micro else 1
    return (
        f'{{"e":"aggTrade","E":{(t + 1) * m},"s":"{symbol}","a":{agg_id},'
        f'"p":"{format_units(price)}","q":"{format_units(qty)}","f":{f},"l":{last},'
        f'"T":{t * m},"m":{_bool(maker)},"M":true}}'
    )


def trade_payload(symbol: str, trade_id: int, qty: int, trade: Trade, micro: bool = False) -> str:
    _, _, price, _, t, maker = trade
    m = 1000 if micro else 1
    return (
        f'{{"e":"trade","E":{(t + 1) * m},"s":"{symbol}","t":{trade_id},'
        f'"p":"{format_units(price)}","q":"{format_units(qty)}","T":{t * m},'
        f'"m":{_bool(maker)},"M":true}}'
    )


def kline_payload(
    event_ms: int, symbol: str, interval: str, k: Kline, closed: bool, micro: bool = False
) -> str:
    f = format_units
    if micro:
        event, open_t, close_t = event_ms * 1000, k.open_ms * 1000, k.close_ms * 1000 + 999
    else:
        event, open_t, close_t = event_ms, k.open_ms, k.close_ms
    return (
        f'{{"e":"kline","E":{event},"s":"{symbol}","k":{{"t":{open_t},"T":{close_t},'
        f'"s":"{symbol}","i":"{interval}","f":{k.first_trade_id},"L":{k.last_trade_id},'
        f'"o":"{f(k.open)}","c":"{f(k.close)}","h":"{f(k.high)}","l":"{f(k.low)}",'
        f'"v":"{f(k.volume)}","n":{k.trades},"x":{_bool(closed)},"q":"{f(k.quote_volume)}",'
        f'"V":"{f(k.taker_buy_volume)}","Q":"{f(k.taker_buy_quote_volume)}","B":"0"}}}}'
    )


def server_shutdown_payload(event_ms: int, micro: bool = False) -> str:
    return f'{{"e":"serverShutdown","E":{event_ms * 1000 if micro else event_ms}}}'


def wrap(stream: str, payload: str) -> str:
    """The combined-stream wrapper."""
    return f'{{"stream":"{stream}","data":{payload}}}'


# -- events: what a market step produced for one stream, encoded on demand --------------------


class OutEvent:
    """One frame-to-be; `key` orders the frames of several streams (trade or push time)."""

    __slots__ = ("key",)

    def __init__(self, key: int) -> None:
        self.key = key

    def encode(self, micro: bool) -> str:
        raise NotImplementedError


class AggOut(OutEvent):
    __slots__ = ("agg_id", "symbol", "trade")

    def __init__(self, symbol: str, agg_id: int, trade: Trade) -> None:
        super().__init__(trade[4])
        self.symbol, self.agg_id, self.trade = symbol, agg_id, trade

    def encode(self, micro: bool) -> str:
        return agg_trade_payload(self.symbol, self.agg_id, self.trade, micro)


class TradeOut(OutEvent):
    __slots__ = ("qty", "symbol", "trade", "trade_id")

    def __init__(self, symbol: str, trade_id: int, qty: int, trade: Trade) -> None:
        super().__init__(trade[4])
        self.symbol, self.trade_id, self.qty, self.trade = symbol, trade_id, qty, trade

    def encode(self, micro: bool) -> str:
        return trade_payload(self.symbol, self.trade_id, self.qty, self.trade, micro)


class KlineOut(OutEvent):
    __slots__ = ("closed", "interval", "kline", "symbol")

    def __init__(self, at_ms: int, symbol: str, interval: str, kline: Kline, closed: bool) -> None:
        super().__init__(at_ms)
        self.symbol, self.interval, self.kline, self.closed = symbol, interval, kline, closed

    def encode(self, micro: bool) -> str:
        return kline_payload(self.key, self.symbol, self.interval, self.kline, self.closed, micro)


def trade_events(key: StreamKey, rows: list[AggRow]) -> list[OutEvent]:
    """The aggTrade or trade events of a step's new rows."""
    sym = key.symbol
    if key.kind == "aggTrade":
        return [AggOut(sym, a, t) for a, t in rows]
    out: list[OutEvent] = []
    for _, t in rows:
        out.extend(TradeOut(sym, tid, qty, t) for tid, qty in split_fills(t))
    return out


class KlineFeed:
    """The pushes of one ``<symbol>@kline_<interval>`` stream, on market time.

    Pushes happen at "ticks": market times ``k x update + KLINE_LAG_MS`` (update = 1 s for
    ``1s``, else 2 s, Binance's update speeds). A push at tick B carries the trades with time
    before B and has ``E = B``. At a tick:

    1. every kline that ended before B and is not yet sent closed is sent with ``x: true``
       (a kline with no trades as a flat kline at the previous close, ``f = L = -1``; nothing
       before the symbol's first trade);
    2. the open kline is sent with ``x: false`` if trades changed it since its last push.

    So a liquid kline is pushed every 2 s, a quiet one only when it changes, and each closes
    ~100 ms after its ``T``. Values come from `SymbolKlines` (the engine of `build_klines`)
    over the history of the current kline when the first subscriber came, then each trade.
    """

    def __init__(self, symbol: str, interval: str, market: SimMarket, now_ms: int) -> None:
        self.symbol = symbol
        self.name = interval
        self.interval = INTERVALS[interval]
        self.update_ms = 1000 if interval == "1s" else 2000
        self._closed: list[Kline] = []  # ended by a later trade, waiting for their tick
        prev = market.last_trade_before(symbol, self.interval.open_time(now_ms))
        self._prev_close: int | None = prev[2] if prev is not None else None
        self._start(self.interval.open_time(now_ms))
        rows = market.trades(symbol, self._open_ms, now_ms)
        self._feed_current([t for _, t in rows])
        self.next_tick = self._first_tick_after(now_ms)

    def _first_tick_after(self, t_ms: int) -> int:
        u = self.update_ms
        return ((t_ms - KLINE_LAG_MS) // u + 1) * u + KLINE_LAG_MS

    def _start(self, open_ms: int) -> None:
        self._open_ms = open_ms
        self._close_ms = self.interval.close_time(open_ms)
        self._sk = SymbolKlines((self.name,))
        self._has_trades = False
        self._dirty = False

    def _feed_current(self, trades: list[Trade]) -> None:
        if trades:
            self._sk.process(trades, [])
            self._has_trades = self._dirty = True

    def _current(self) -> Kline | None:
        if self._has_trades:
            for name, k in self._sk.open_klines():
                if name == self.name:
                    return k
        if self._prev_close is None:
            return None
        return flat_kline(self.interval, self._open_ms, self._prev_close)

    def _finish(self) -> Kline | None:
        """End the current kline; return it (None before any trade) and open the next."""
        k = self._current()
        if k is not None and k.trades:
            self._prev_close = k.close
        self._start(self.interval.next_open(self._open_ms))
        return k

    def _feed(self, rows: list[AggRow]) -> None:
        i, n = 0, len(rows)
        while i < n:
            t_ms = rows[i][1][4]
            if t_ms > self._close_ms:  # a trade of a later kline, before this one's tick
                k = self._finish()
                if k is not None:
                    self._closed.append(k)
                target = self.interval.open_time(t_ms)
                while self._open_ms < target:
                    k = self._finish()
                    if k is not None:
                        self._closed.append(k)
                continue
            j = i
            while j < n and rows[j][1][4] <= self._close_ms:
                j += 1
            self._feed_current([t for _, t in rows[i:j]])
            i = j

    def _tick(self, at_ms: int, out: list[OutEvent]) -> None:
        for done in self._closed:
            out.append(KlineOut(at_ms, self.symbol, self.name, done, True))
        self._closed.clear()
        while self._close_ms < at_ms:
            ended = self._finish()
            if ended is not None:
                out.append(KlineOut(at_ms, self.symbol, self.name, ended, True))
        if self._dirty:
            current = self._current()
            if current is not None:
                out.append(KlineOut(at_ms, self.symbol, self.name, current, False))
            self._dirty = False

    def step(self, rows: list[AggRow], now_ms: int) -> list[OutEvent]:
        """Take a step's new trades of the symbol (time order, up to now_ms); return pushes."""
        out: list[OutEvent] = []
        if (now_ms - self.next_tick) // self.update_ms > _MAX_CATCH_UP_TICKS:
            # far behind (a paused loop): forget the gap rather than replay every tick of it
            self._closed.clear()
            self._start(self.interval.open_time(now_ms))
            self.next_tick = self._first_tick_after(now_ms - self.update_ms)
            rows = [r for r in rows if r[1][4] >= self._open_ms]
        i, n = 0, len(rows)
        while self.next_tick <= now_ms:
            tick = self.next_tick
            j = i
            while j < n and rows[j][1][4] < tick:
                j += 1
            if j > i:
                self._feed(rows[i:j])
                i = j
            self._tick(tick, out)
            self.next_tick = tick + self.update_ms
        if i < n:
            self._feed(rows[i:])
        return out
