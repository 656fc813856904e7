"""Public market data from Redis: symbols, klines, 24h tickers, the flow's status.

One `MarketData` per process (see `dashboard.data.sources`), reading through the package's
`KlineStore` (LRU cache and in-flight de-duplication shared by every session). Every
function answers a `Fetched`: when Redis is unreachable, the last good answer, marked stale.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgspec
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from flows.app.health import FlowHeartbeat, HeartbeatError
from flows.domain.clock import SYSTEM_CLOCK, Clock
from flows.domain.intervals import get_interval
from flows.domain.keys import KeySpace
from flows.domain.kline import Kline, kline_of_row
from flows.signals.preview import PreviewResult, preview
from flows.storage.kline_store import MAX_LIMIT, KlineStore

from .stale import Fetched, LastGood

REDIS_ERRORS: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
DAY_MS = 86_400_000
TICKER_TTL_S = 10.0
SPARK_POINTS = 96  # closes kept of a ticker's day for its sparkline (every 15 min of 1m)
PREVIEW_BARS = 1500  # closed klines a draft rule is tried on (1m keeps 1,500)
_rows = msgspec.json.Decoder(list[int | str])


@dataclass(frozen=True)
class Candles:
    """Klines oldest first; the newest may still be open (it opened after `last_closed`)."""

    symbol: str
    interval: str
    klines: list[Kline]
    last_closed: int | None

    @property
    def forming(self) -> Kline | None:
        if self.klines and (self.last_closed is None or self.klines[-1].open_ms > self.last_closed):
            return self.klines[-1]
        return None

    @property
    def closed(self) -> list[Kline]:
        return self.klines[:-1] if self.forming is not None else self.klines


@dataclass(frozen=True)
class Ticker:
    symbol: str
    last_price: float
    change_pct: float | None
    quote_volume: float
    bars: int  # klines the 24h figures were computed from
    interval: str
    newest_open_ms: int
    # closes across the same day, oldest first, at most SPARK_POINTS of them evenly spaced
    # (the newest close always the last): the screener's sparkline
    closes: tuple[float, ...] = ()


@dataclass(frozen=True)
class SeriesStatus:
    symbol: str
    interval: str
    stored: int
    newest_open_ms: int | None
    last_closed_ms: int | None  # the open time of the newest closed kline (as Redis keeps it)

    @property
    def newest_end_ms(self) -> int | None:
        """When the newest kline closes (or closed): its open plus its interval."""
        return _end_ms(self.interval, self.newest_open_ms)

    @property
    def last_closed_end_ms(self) -> int | None:
        """When the newest closed kline closed: its open plus its interval."""
        return _end_ms(self.interval, self.last_closed_ms)

    @property
    def forming(self) -> bool:
        """The newest kline opened after the newest one the flow closed."""
        return (
            self.newest_open_ms is not None
            and self.last_closed_ms is not None
            and self.newest_open_ms > self.last_closed_ms
        )


def _end_ms(interval: str, open_ms: int | None) -> int | None:
    return None if open_ms is None else get_interval(interval).next_open(open_ms)


@dataclass(frozen=True)
class RedisStatus:
    reachable: bool
    symbols: int
    series: list[SeriesStatus]
    dead_letters: int  # stream length (capped, so a lower bound once it is full)
    dead_letter_reasons: dict[str, int]  # reasons among the newest `scanned` entries
    dead_letters_scanned: int
    recent_dead_letters: list[dict[str, str]]
    data_quality: int
    recent_data_quality: list[dict[str, str]]
    gaps: dict[str, int]  # symbol -> recorded incomplete ranges
    reconcile_mismatches: int
    now_ms: int = 0
    notes: list[str] = field(default_factory=list)
    heartbeat: FlowHeartbeat | None = None  # the live flow's, if one is running (or just ran)
    heartbeat_error: str = ""  # why the heartbeat hash in Redis could not be read


def _client(url: str) -> redis.Redis:
    # short timeouts and one quick retry: an unreachable Redis must not hold a page for long
    return redis.Redis.from_url(
        url,
        socket_timeout=3,
        socket_connect_timeout=2,
        retry=Retry(NoBackoff(), 1),
        health_check_interval=30,
    )


class MarketData:
    def __init__(
        self, url: str, keys: KeySpace, intervals: tuple[str, ...], clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.keys = keys
        self.intervals = intervals
        self._clock = clock
        self._lock = threading.Lock()
        self.last_good = LastGood("Redis", clock=clock)
        self._tickers: tuple[float, list[Ticker]] | None = None
        self.url = ""
        self.connect(url)

    def connect(self, url: str) -> None:
        """Use another Redis (the configuration changed); what was fetched is kept."""
        with self._lock:
            if url == self.url:
                return
            old = getattr(self, "client", None)
            self.url = url
            self.client = _client(url)
            self.store = KlineStore(self.client, self.keys, clock=self._clock)
            self._tickers = None
            self.last_good.server_changed()
        if old is not None:
            old.close()

    def close(self) -> None:
        self.client.close()

    @property
    def base_interval(self) -> str:
        return "1m" if "1m" in self.intervals else self.intervals[0]

    # -- symbols and klines ----------------------------------------------------------------
    def symbols(self) -> Fetched[list[str]]:
        return self.last_good.fetch(
            ("symbols",), lambda: sorted(self.store.symbols()), [], REDIS_ERRORS
        )

    def read_klines(
        self, symbol: str, interval: str, limit: int, end_ms: int | None = None
    ) -> list[Kline]:
        """The newest `limit` klines up to end_ms (any number: read 1,000 at a time)."""
        out: list[Kline] = []
        hi = end_ms
        while len(out) < limit:
            want = min(MAX_LIMIT, limit - len(out))
            rows = self.store.get_klines(symbol, interval, end_ms=hi, limit=want)
            if not rows:
                break
            out[:0] = [kline_of_row(r) for r in rows]
            if len(rows) < want:
                break
            hi = int(rows[0][0]) - 1
        return out

    def candles(
        self, symbol: str, interval: str, limit: int, end_ms: int | None = None
    ) -> Fetched[Candles]:
        def read() -> Candles:
            klines = self.read_klines(symbol, interval, limit, end_ms)
            return Candles(symbol, interval, klines, self.store.last_closed(symbol, interval))

        empty = Candles(symbol, interval, [], None)
        return self.last_good.fetch(
            ("candles", symbol, interval, limit, end_ms), read, empty, REDIS_ERRORS
        )

    def closed_klines(self, symbol: str, interval: str, count: int) -> list[Kline]:
        """The newest `count` klines that closed before now (what the flow's rules see).
        Raises redis.RedisError: the caller decides (a preview is not worth a stale copy)."""
        now = self._clock.now_ms()
        klines = self.read_klines(symbol, interval, count + 2)
        return [k for k in klines if k.close_ms < now][-count:]

    def preview(
        self, expression: str, interval: str, symbol: str, trigger_mode: str = "every_close"
    ) -> tuple[PreviewResult, list[Kline]]:
        """Where a draft rule would have fired over the stored closed klines of `symbol`
        (the newest PREVIEW_BARS of each interval it reads), and the klines of its own
        interval. RuleError for a bad rule, redis.RedisError when Redis is away."""
        read: dict[str, list[Kline]] = {}

        def klines(iv: str) -> list[Kline]:
            if iv not in read:
                read[iv] = self.closed_klines(symbol, iv, PREVIEW_BARS)
            return read[iv]

        result = preview(expression, interval, symbol, klines, trigger_mode)
        return result, klines(interval)

    # -- prices -----------------------------------------------------------------------------
    def last_prices(self, symbols: list[str]) -> Fetched[dict[str, float]]:
        """The newest close (of the forming kline when there is one) of each symbol."""

        def read() -> dict[str, float]:
            pipe = self.client.pipeline(transaction=False)
            for s in symbols:
                pipe.zrevrange(self.keys.klines(s, self.base_interval), 0, 0)
            prices: dict[str, float] = {}
            for s, members in zip(symbols, pipe.execute(), strict=True):
                if members:
                    prices[s] = float(_rows.decode(members[0])[4])
            return prices

        return self.last_good.fetch(("prices", tuple(symbols)), read, {}, REDIS_ERRORS)

    def tickers(self) -> Fetched[list[Ticker]]:
        """Last price, 24h change, 24h quote volume and the day's closes of every symbol,
        from the newest day of stored base-interval klines (the forming one included, as
        Binance's ticker does), the most traded first (by 24h quote volume, then by name).
        One pipelined Redis round trip per 50 symbols. Cached for TICKER_TTL_S: a screener
        does not need every second."""
        now = self._clock.monotonic_s()
        cached = self._tickers
        if cached is not None and cached[0] > now:
            return Fetched(cached[1], self._clock.now_ms())
        answer: Fetched[list[Ticker]] = self.last_good.fetch(
            ("tickers",), self._read_tickers, [], REDIS_ERRORS
        )
        if not answer.stale:
            self._tickers = (now + TICKER_TTL_S, answer.value)
        return answer

    def most_traded(self, limit: int | None = None) -> Fetched[list[str]]:
        """Symbols by 24h quote volume, highest first (the tickers' order; cached alike)."""
        answer = self.tickers()
        names = [t.symbol for t in answer.value][:limit]
        return Fetched(names, answer.fetched_ms, answer.stale, answer.server, answer.error)

    def _read_tickers(self) -> list[Ticker]:
        interval = self.base_interval
        bars = max(1, DAY_MS // get_interval(interval).length_ms)
        symbols = sorted(self.store.symbols())
        out: list[Ticker] = []
        for start in range(0, len(symbols), 50):
            chunk = symbols[start : start + 50]
            pipe = self.client.pipeline(transaction=False)
            for s in chunk:
                pipe.zrevrange(self.keys.klines(s, interval), 0, bars - 1)
            for s, members in zip(chunk, pipe.execute(), strict=True):
                if members:
                    out.append(_ticker(s, interval, members))
        out.sort(key=lambda t: (-t.quote_volume, t.symbol))
        return out

    # -- status -----------------------------------------------------------------------------
    def status(self, max_symbols: int = 200) -> Fetched[RedisStatus]:
        unreachable = RedisStatus(False, 0, [], 0, {}, 0, [], 0, [], {}, 0)
        return self.last_good.fetch(
            ("status", max_symbols), lambda: self._status(max_symbols), unreachable, REDIS_ERRORS
        )

    def _status(self, max_symbols: int) -> RedisStatus:
        k = self.keys
        self.client.ping()
        symbols = sorted(self.store.symbols())
        shown = symbols[:max_symbols]
        pipe = self.client.pipeline(transaction=False)
        for s in shown:
            for iv in self.intervals:
                pipe.zcard(k.klines(s, iv))
                pipe.zrevrange(k.klines(s, iv), 0, 0, withscores=True)
                pipe.get(k.last_closed(s, iv))
            pipe.zcard(k.gaps(s))
        pipe.xlen(k.dead_letters)
        pipe.xrevrange(k.dead_letters, count=1000)
        pipe.xlen(k.data_quality)
        pipe.xrevrange(k.data_quality, count=20)
        pipe.xlen(k.reconcile)
        pipe.hgetall(k.heartbeat)
        results: list[Any] = pipe.execute()
        series: list[SeriesStatus] = []
        gaps: dict[str, int] = {}
        i = 0
        for s in shown:
            for iv in self.intervals:
                stored, newest, last_closed = results[i : i + 3]
                i += 3
                if stored:
                    series.append(
                        SeriesStatus(
                            s,
                            iv,
                            int(stored),
                            int(newest[0][1]) if newest else None,
                            int(last_closed) if last_closed is not None else None,
                        )
                    )
            if results[i]:
                gaps[s] = int(results[i])
            i += 1
        dl_len, dl_recent, dq_len, dq_recent, rec_len, beat = results[i : i + 6]
        letters = [_text_fields(fields) for _, fields in dl_recent]
        heartbeat, heartbeat_error = _heartbeat(beat)
        notes = []
        if len(symbols) > max_symbols:
            notes.append(f"series of the first {max_symbols} of {len(symbols)} symbols shown")
        return RedisStatus(
            reachable=True,
            symbols=len(symbols),
            series=series,
            dead_letters=int(dl_len),
            dead_letter_reasons=dict(Counter(x.get("reason", "?") for x in letters)),
            dead_letters_scanned=len(letters),
            recent_dead_letters=letters[:20],
            data_quality=int(dq_len),
            recent_data_quality=[_text_fields(fields) for _, fields in dq_recent],
            gaps=gaps,
            reconcile_mismatches=int(rec_len),
            now_ms=self._clock.now_ms(),
            notes=notes,
            heartbeat=heartbeat,
            heartbeat_error=heartbeat_error,
        )


def _heartbeat(fields: dict[bytes, bytes]) -> tuple[FlowHeartbeat | None, str]:
    """The flow's heartbeat (None when there is none), or why it cannot be read."""
    if not fields:
        return None, ""
    try:
        return FlowHeartbeat.decode(fields), ""
    except HeartbeatError as e:
        return None, str(e)


def _text_fields(fields: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(errors="replace"): v.decode(errors="replace")[:300] for k, v in fields.items()}


def _ticker(symbol: str, interval: str, members: list[bytes]) -> Ticker:
    rows = [_rows.decode(m) for m in members]  # newest first
    last = float(rows[0][4])
    first_open = float(rows[-1][1])
    change = (last - first_open) / first_open * 100 if first_open else None
    quote = sum(float(r[7]) for r in rows)
    step = -(-len(rows) // SPARK_POINTS)  # ceil: at most SPARK_POINTS closes
    closes = tuple(float(r[4]) for r in reversed(rows[::step]))
    return Ticker(symbol, last, change, quote, len(rows), interval, int(rows[0][0]), closes)
