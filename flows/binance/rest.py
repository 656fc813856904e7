"""A small synchronous client for Binance's public spot REST endpoints (backfill, discovery).

Standard library only (`urllib.request`), meant to run in worker threads. It keeps Binance's
rules so an IP is never banned (BINANCE.md, A2):

- **Weight budget.** Every call spends request weight (aggTrades 4, klines 2, exchangeInfo 20,
  ticker/24hr 80 for all symbols). The client keeps its own budget over a rolling minute and,
  before a call that would overspend it, sleeps until enough weight has left the window. The
  server's own count (header ``X-MBX-USED-WEIGHT-1M``, per calendar minute, per IP, so it also
  counts other processes) is trusted when it is higher: then the client waits for the minute
  to turn.
- **429 / 418.** The client sleeps ``Retry-After`` seconds (60 when absent) and retries, up to
  ``max_retries`` times, then raises `RateLimited`. A wait longer than ``max_wait_s`` (a ban
  of hours) is not slept through: `RateLimited` is raised at once, and every later call
  raises it too, without a request, until the ban is over.
- **Binance errors** (4xx with a ``{"code","msg"}`` body) raise `BinanceError`; they are not
  retried, retrying would not change the answer.
- **Connection failures and 5xx** are retried with exponential backoff and jitter, then raise
  `ExchangeUnreachable` ("cannot reach <url>: <reason>").

Time is read through an injected `Clock` and waiting goes through an injected ``sleep``, so
tests run on a `ManualClock` without waiting.
"""

from __future__ import annotations

import gzip
import http.client
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Callable, Mapping
from email.message import Message
from typing import Any, Final

import msgspec

from flows.binance.decode import RestAggTrade
from flows.domain.clock import SYSTEM_CLOCK, Clock
from flows.domain.intervals import INTERVAL_NAMES

WEIGHT_AGG_TRADES: Final = 4
WEIGHT_KLINES: Final = 2
WEIGHT_TIME: Final = 1
WEIGHT_EXCHANGE_INFO: Final = 20
WEIGHT_TICKER_24HR_ALL: Final = 80
WEIGHT_TICKER_24HR_ONE: Final = 2
MAX_LIMIT: Final = 1000
DEFAULT_RETRY_AFTER_S: Final = 60.0
WINDOW_S: Final = 60.0
_MINUTE_MS: Final = 60_000
USED_WEIGHT_HEADER: Final = "X-MBX-USED-WEIGHT-1M"


class RestError(Exception):
    """Base of every error this client raises."""


class BinanceError(RestError):
    """Binance refused the request with its ``{"code": ..., "msg": ...}`` body."""

    def __init__(self, code: int, msg: str, status: int = 400, url: str = "") -> None:
        super().__init__(f"Binance error {code}: {msg} (HTTP {status}{', ' + url if url else ''})")
        self.code = code
        self.msg = msg
        self.status = status
        self.url = url


class HttpError(RestError):
    """An HTTP error without Binance's error body (e.g. 403 from the WAF)."""

    def __init__(self, status: int, url: str, body: str) -> None:
        super().__init__(f"HTTP {status} from {url}: {body[:200]}")
        self.status = status
        self.url = url
        self.body = body


class RateLimited(RestError):
    """429 (rate limit) or 418 (IP banned) still answered after the retries allowed."""

    def __init__(self, status: int, retry_after_s: float, url: str) -> None:
        what = "IP banned (418)" if status == 418 else "rate limited (429)"
        super().__init__(f"{what} by {url}; Retry-After {retry_after_s:g} s")
        self.status = status
        self.retry_after_s = retry_after_s
        self.url = url


class ExchangeUnreachable(RestError):
    """No answer from the exchange after the retries allowed."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach {url}: {reason}")
        self.url = url
        self.reason = reason


class _ErrorBody(msgspec.Struct):
    code: int
    msg: str


_agg_decoder: Final = msgspec.json.Decoder(list[RestAggTrade])
_error_decoder: Final = msgspec.json.Decoder(_ErrorBody)


class _Answer:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: Message, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class RestClient:
    """Binance spot REST market data, within the weight budget; safe to share between threads."""

    def __init__(
        self,
        base_url: str,
        *,
        weight_per_minute: int = 6000,
        clock: Clock = SYSTEM_CLOCK,
        sleep: Callable[[float], None] = time.sleep,
        timeout_s: float = 10.0,
        max_retries: int = 5,
        rng: random.Random | None = None,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        max_wait_s: float = 900.0,
        user_agent: str = "klineflow",
    ) -> None:
        if weight_per_minute < WEIGHT_TICKER_24HR_ALL:
            raise ValueError(
                f"weight_per_minute must be at least {WEIGHT_TICKER_24HR_ALL} "
                f"(the heaviest call), got {weight_per_minute}"
            )
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.base_url = base_url.rstrip("/")
        self.weight_per_minute = weight_per_minute
        self._clock = clock
        self._sleep = sleep
        self._timeout_s = timeout_s
        self._max_retries = max_retries
        self._rng = rng if rng is not None else random.Random()
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._max_wait_s = max_wait_s
        self._headers = {
            "Accept": "application/json",
            "Accept-Encoding": "gzip",
            "User-Agent": user_agent,
        }
        self._lock = threading.Lock()  # guards the budget and the counters; never held to wait
        self._turn = threading.Lock()  # callers take weight one at a time, waiting in turn
        self._spent: deque[tuple[float, int]] = deque()  # (monotonic s, weight) in the window
        self._server_used = 0  # last X-MBX-USED-WEIGHT-1M seen
        self._server_minute = -1  # the UTC minute (epoch ms // 60000) it belongs to
        self._blocked_until_s = 0.0  # monotonic time before which nothing is sent (429/418)
        self._blocked_status = 429
        # counters, for metrics
        self.requests = 0  # HTTP requests sent (retries included)
        self.retries = 0  # requests repeated after a 429/418, a 5xx or a connection failure
        self.rate_limited = 0  # 429 and 418 answers
        self.weight_used = 0  # weight spent by this client
        self.budget_waits = 0  # times a call waited for the weight budget
        self.budget_wait_s = 0.0  # seconds spent waiting for it

    # -- endpoints --------------------------------------------------------------------

    def agg_trades(
        self,
        symbol: str,
        from_id: int | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = MAX_LIMIT,
    ) -> list[RestAggTrade]:
        """``GET /api/v3/aggTrades``: trades from ``from_id`` (inclusive) or in a time window."""
        _check_limit(limit)
        params: dict[str, str | int] = {"symbol": symbol.upper()}
        if from_id is not None:
            params["fromId"] = from_id
        _add_window(params, start_ms, end_ms)
        params["limit"] = limit
        body = self._get("/api/v3/aggTrades", params, WEIGHT_AGG_TRADES)
        return _agg_decoder.decode(body)

    def klines(
        self,
        symbol: str,
        interval: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 500,
    ) -> list[list[Any]]:
        """``GET /api/v3/klines``: 12-element arrays; the last one may be the open kline."""
        if interval not in INTERVAL_NAMES:
            raise ValueError(f"unknown kline interval {interval!r}")
        _check_limit(limit)
        params: dict[str, str | int] = {"symbol": symbol.upper(), "interval": interval}
        _add_window(params, start_ms, end_ms)
        params["limit"] = limit
        body = self._get("/api/v3/klines", params, WEIGHT_KLINES)
        rows: list[list[Any]] = msgspec.json.decode(body, type=list[list[Any]])
        return rows

    def server_time(self) -> int:
        """``GET /api/v3/time``: the exchange's clock, ms."""
        body = self._get("/api/v3/time", {}, WEIGHT_TIME)
        return int(msgspec.json.decode(body, type=dict[str, int])["serverTime"])

    def exchange_info(self) -> dict[str, Any]:
        """``GET /api/v3/exchangeInfo`` for every symbol, decoded."""
        body = self._get("/api/v3/exchangeInfo", {}, WEIGHT_EXCHANGE_INFO)
        info: dict[str, Any] = msgspec.json.decode(body, type=dict[str, Any])
        return info

    def ticker_24hr(self, symbol: str | None = None) -> list[dict[str, Any]]:
        """``GET /api/v3/ticker/24hr``: every symbol (weight 80), or one (weight 2) as a list."""
        if symbol is None:
            body = self._get("/api/v3/ticker/24hr", {}, WEIGHT_TICKER_24HR_ALL)
            rows: list[dict[str, Any]] = msgspec.json.decode(body, type=list[dict[str, Any]])
            return rows
        body = self._get("/api/v3/ticker/24hr", {"symbol": symbol.upper()}, WEIGHT_TICKER_24HR_ONE)
        return [msgspec.json.decode(body, type=dict[str, Any])]

    # -- the weight budget ------------------------------------------------------------

    @property
    def server_used_weight(self) -> int:
        """The last ``X-MBX-USED-WEIGHT-1M`` seen (0 before any answer)."""
        return self._server_used

    def _take_weight(self, weight: int) -> None:
        """Wait until `weight` fits in the budget, then book it."""
        with self._turn:
            with self._lock:
                wait = self._budget_wait(weight)
            if wait > 0:
                with self._lock:
                    self.budget_waits += 1
                    self.budget_wait_s += wait
                self._sleep(wait)  # one computed wait: the clock may be a test's ManualClock
            with self._lock:
                self._spent.append((self._clock.monotonic_s(), weight))
                self.weight_used += weight

    def _budget_wait(self, weight: int) -> float:
        """Seconds to wait before `weight` more fits both the local and the server figure."""
        now_s = self._clock.monotonic_s()
        wait = max(0.0, self._blocked_until_s - now_s)
        spent = self._spent
        while spent and spent[0][0] <= now_s - WINDOW_S:
            spent.popleft()
        used = sum(w for _, w in spent)
        if used + weight > self.weight_per_minute:
            # the oldest entries leave the window first: wait for enough of them to go
            freed = 0
            for t, w in spent:
                freed += w
                if used - freed + weight <= self.weight_per_minute:
                    wait = max(wait, t + WINDOW_S - now_s)
                    break
        now_ms = self._clock.now_ms()
        minute = now_ms // _MINUTE_MS
        if minute == self._server_minute and self._server_used + weight > self.weight_per_minute:
            # Binance counts per calendar minute: its figure drops when the minute turns
            wait = max(wait, ((minute + 1) * _MINUTE_MS - now_ms) / 1000.0)
        return wait

    def _note_server_weight(self, headers: Message) -> None:
        raw = headers.get(USED_WEIGHT_HEADER)
        if raw is None:
            return
        try:
            used = int(raw)
        except ValueError:
            return
        minute = self._clock.now_ms() // _MINUTE_MS
        with self._lock:
            if minute != self._server_minute or used > self._server_used:
                self._server_minute = minute
                self._server_used = used

    def _block_for(self, status: int, seconds: float) -> None:
        with self._lock:
            until = self._clock.monotonic_s() + seconds
            if until > self._blocked_until_s:
                self._blocked_until_s = until
                self._blocked_status = status

    def _check_not_banned(self, url: str) -> None:
        """Raise at once, without a request, while a block too long to wait out runs."""
        with self._lock:
            left = self._blocked_until_s - self._clock.monotonic_s()
            status = self._blocked_status
        if left > self._max_wait_s:
            raise RateLimited(status, left, url)

    # -- HTTP ---------------------------------------------------------------------------

    def url(self, path: str, params: Mapping[str, str | int]) -> str:
        query = urllib.parse.urlencode(params)
        return f"{self.base_url}{path}{'?' + query if query else ''}"

    def _get(self, path: str, params: Mapping[str, str | int], weight: int) -> bytes:
        url = self.url(path, params)
        failures = 0  # connection failures and 5xx in a row
        limited = 0  # 429/418 answers in a row
        while True:
            self._check_not_banned(url)
            self._take_weight(weight)
            with self._lock:
                self.requests += 1
            try:
                answer = self._fetch(url)
            except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
                reason = _reason(e)
                if failures >= self._max_retries:
                    raise ExchangeUnreachable(url, reason) from e
                self._backoff(failures)
                failures += 1
                continue
            self._note_server_weight(answer.headers)
            status = answer.status
            if status < 300:
                return answer.body
            if status in (418, 429):
                with self._lock:
                    self.rate_limited += 1
                retry_after = _retry_after_s(answer.headers)
                # no other call from this client may go out before the server allows it
                self._block_for(status, retry_after)
                if limited >= self._max_retries or retry_after > self._max_wait_s:
                    raise RateLimited(status, retry_after, url)
                limited += 1
                with self._lock:
                    self.retries += 1
                continue  # _take_weight waits out the block
            error = _binance_error(answer.body)
            if error is not None and status < 500:
                raise BinanceError(error.code, error.msg, status, url)
            if status >= 500:
                if failures >= self._max_retries:
                    text = answer.body.decode("utf-8", "replace")[:200]
                    raise ExchangeUnreachable(url, f"HTTP {status} {text}".strip())
                self._backoff(failures)
                failures += 1
                continue
            raise HttpError(status, url, answer.body.decode("utf-8", "replace"))

    def _backoff(self, attempt: int) -> None:
        delay = min(self._backoff_max_s, self._backoff_base_s * 2**attempt)
        delay *= 0.5 + 0.5 * self._rng.random()  # jitter: half to all of the delay
        with self._lock:
            self.retries += 1
        self._sleep(delay)

    def _fetch(self, url: str) -> _Answer:
        request = urllib.request.Request(url, headers=self._headers, method="GET")
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                return _Answer(response.status, response.headers, _body(response))
        except urllib.error.HTTPError as e:
            with e:
                return _Answer(e.code, e.headers, _body(e))


def _body(response: Any) -> bytes:
    data: bytes = response.read()
    if response.headers.get("Content-Encoding", "").lower() == "gzip":
        data = gzip.decompress(data)
    return data


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be 1..{MAX_LIMIT}, got {limit}")


def _add_window(params: dict[str, str | int], start_ms: int | None, end_ms: int | None) -> None:
    if start_ms is not None and end_ms is not None and end_ms < start_ms:
        raise ValueError(f"end_ms {end_ms} is before start_ms {start_ms}")
    if start_ms is not None:
        params["startTime"] = start_ms
    if end_ms is not None:
        params["endTime"] = end_ms


def _retry_after_s(headers: Message) -> float:
    raw = headers.get("Retry-After")
    if raw is None:
        return DEFAULT_RETRY_AFTER_S
    try:
        value = float(raw)
    except ValueError:
        return DEFAULT_RETRY_AFTER_S  # an HTTP date: Binance sends seconds, so not expected
    return value if value >= 0 else DEFAULT_RETRY_AFTER_S


def _binance_error(body: bytes) -> _ErrorBody | None:
    try:
        return _error_decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def _reason(e: BaseException) -> str:
    if isinstance(e, urllib.error.URLError) and not isinstance(e, urllib.error.HTTPError):
        inner = e.reason
        return _reason(inner) if isinstance(inner, BaseException) else str(inner)
    if isinstance(e, TimeoutError):
        return "timed out"
    text = str(e) or type(e).__name__
    return text if not isinstance(e, OSError) or e.strerror is None else e.strerror
