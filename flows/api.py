"""HTTP API: klines from Redis, answered the way Binance's spot REST API answers.

Routes:

- ``GET /api/v3/klines`` with ``symbol``, ``interval``, ``startTime``, ``endTime``,
  ``limit`` (default 500, at most 1000) and ``timeZone``. The body is the JSON that
  `KlineStore.get_klines_json` builds, sent unchanged.
- ``GET /api/v3/exchangeInfo`` with Binance's optional ``symbol``, ``symbols``,
  ``permissions``, ``symbolStatus``, ``showPermissionSets``.
- ``GET /api/v3/ping`` and ``GET /api/v3/time``, which client libraries call on start.
- ``GET /healthz``: 200 when Redis answers PING, else 503.

Differences from Binance worth knowing:

- Only UTC klines are stored, so ``timeZone`` must be absent or a spelling of UTC
  ("0", "+0", "00:00", "+00:00", "-00:00"); any other value is rejected with -1130.
- ``startTime`` greater than ``endTime`` gives an empty list rather than an error.
- ``startTime`` / ``endTime`` of 10**14 or more are read as microseconds and converted to
  milliseconds, as Binance accepts both units.
- **A range older than what is stored.** Binance answers ``startTime`` with the first
  ``limit`` klines opening at or after it. When that window begins before the oldest kline
  held here (older than the retention, or before the recording began), the answer is the
  klines of that same window that are held: possibly fewer, possibly ``[]``, never klines
  from after the window. A ``startTime`` before July 2017 (Binance had no kline then; 0 is
  the usual "from the beginning") still gives the first ``limit`` klines held, as Binance
  gives its first ones. Every 200 answer for a series holding klines carries
  ``X-Klineflow-Oldest-Open-Time`` (ms), so a client can tell "nothing there" from "not
  kept here" and start from that time.

Every answer carries Binance's used-weight headers, and past the weight limit the answer is
429 (see `flows.api_weights`). ``GET /api/v3/exchangeInfo`` lists the stored symbols (see
`flows.api_exchange_info`).

Invalid requests get HTTP 400 with Binance's ``{"code": ..., "msg": ...}`` body; when Redis
cannot be reached the answer is HTTP 503 with Binance's internal-error body (-1001).
"""

from __future__ import annotations

import logging
from typing import Any

import redis
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from flows.api_exchange_info import exchange_info
from flows.api_weights import REQUEST_WEIGHT_LIMIT, WeightMeter, WeightMiddleware
from flows.binance.rest_params import SYMBOL_RE, ApiError, mandatory, optional_number
from flows.domain.clock import SYSTEM_CLOCK, Clock
from flows.domain.intervals import INTERVALS
from flows.domain.keys import KeySpace
from flows.storage.kline_store import DEFAULT_LIMIT, MAX_LIMIT, KlineStore

logger = logging.getLogger(__name__)

OLDEST_HEADER = "X-Klineflow-Oldest-Open-Time"
# No Binance kline opens before July 2017: a startTime before it asks for the first klines
# there are (python-binance finds a series' start with startTime=0, limit=1)
BINANCE_OPENED_MS = 1_498_867_200_000  # 2017-07-01T00:00:00Z
_UTC_SPELLINGS = frozenset({"0", "+0", "00:00", "+00:00", "-00:00"})
_MICROS_FROM = 10**14  # a millisecond timestamp this large would be in the year 5138
_UNAVAILABLE = "Internal error; unable to process your request. Please try again."


def _as_ms(value: int | None) -> int | None:
    return value // 1000 if value is not None and value >= _MICROS_FROM else value


def _error(code: int, msg: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"code": code, "msg": msg}, status_code=status)


def binance_window_end(interval: str, start_ms: int, end_ms: int | None, limit: int) -> int:
    """The last millisecond Binance's answer to `start_ms` (and `end_ms`) can reach: the close
    of the `limit`-th kline opening at or after `start_ms`, or `end_ms` if earlier.

    >>> binance_window_end("1m", 60_001, None, 2)  # klines opening at 120000 and 180000
    239999
    >>> binance_window_end("1m", 60_000, 100_000, 5)
    100000
    """
    iv = INTERVALS[interval]
    first = iv.open_time(start_ms)
    if first < start_ms:
        first = iv.next_open(first)
    last_close = iv.advance(first, limit) - 1
    return last_close if end_ms is None else min(end_ms, last_close)


def create_app(
    store: KlineStore, clock: Clock = SYSTEM_CLOCK, weight_limit: int = REQUEST_WEIGHT_LIMIT
) -> Starlette:
    """The Starlette application serving `store`, at most `weight_limit` weight per IP a minute."""

    def oldest_open(symbol: str, interval: str) -> int | None:
        first = store.get_klines(symbol, interval, 0, None, 1)
        return int(first[0][0]) if first else None

    def fetch(
        symbol: str, interval: str, start: int | None, end: int | None, limit: int
    ) -> tuple[bytes, int | None]:
        # Runs in a worker thread: every call reaches Redis synchronously.
        if not store.has_symbol(symbol):
            raise ApiError(-1121, "Invalid symbol.")
        oldest = oldest_open(symbol, interval)
        if oldest is None or (start is not None and end is not None and start > end):
            return b"[]", oldest
        if start is not None and BINANCE_OPENED_MS <= start < oldest:
            # Binance's window may begin before what is held: answer only that window
            end = binance_window_end(interval, start, end, limit)
            if end < oldest:
                return b"[]", oldest
        return store.get_klines_json(symbol, interval, start, end, limit), oldest

    async def klines(request: Request) -> Response:
        try:
            symbol = mandatory(request, "symbol")
            if not SYMBOL_RE.fullmatch(symbol):
                raise ApiError(
                    -1100,
                    "Illegal characters found in parameter 'symbol'; "
                    "legal range is '^[A-Z0-9-_.]{1,20}$'.",
                )
            interval = mandatory(request, "interval")
            if interval not in INTERVALS:
                raise ApiError(-1120, "Invalid interval.")
            start = _as_ms(optional_number(request, "startTime"))
            end = _as_ms(optional_number(request, "endTime"))
            limit = optional_number(request, "limit")
            limit = DEFAULT_LIMIT if limit is None else limit
            if not 1 <= limit <= MAX_LIMIT:
                raise ApiError(-1130, "Data sent for parameter 'limit' is not valid.")
            time_zone = request.query_params.get("timeZone")
            if time_zone is not None and time_zone not in _UTC_SPELLINGS:
                raise ApiError(-1130, "Data sent for parameter 'timeZone' is not valid.")
            body, oldest = await run_in_threadpool(fetch, symbol, interval, start, end, limit)
        except ApiError as e:
            return _error(e.code, e.msg)
        except redis.RedisError as e:
            logger.error("klines request failed, Redis unreachable: %s", e)
            return _error(-1001, _UNAVAILABLE, 503)
        headers = {OLDEST_HEADER: str(oldest)} if oldest is not None else None
        return Response(body, media_type="application/json", headers=headers)

    async def info(request: Request) -> Response:
        params = dict(request.query_params)
        try:
            stored = await run_in_threadpool(store.symbols)
            body: dict[str, Any] = exchange_info(stored, params, clock.now_ms(), weight_limit)
        except ApiError as e:
            return _error(e.code, e.msg)
        except redis.RedisError as e:
            logger.error("exchangeInfo request failed, Redis unreachable: %s", e)
            return _error(-1001, _UNAVAILABLE, 503)
        return JSONResponse(body)

    async def ping(request: Request) -> Response:
        return JSONResponse({})

    async def server_time(request: Request) -> Response:
        return JSONResponse({"serverTime": clock.now_ms()})

    def redis_answers() -> bool:
        try:
            return store.ping()
        except redis.RedisError as e:
            logger.warning("health check: Redis unreachable: %s", e)
            return False

    async def healthz(request: Request) -> Response:
        if await run_in_threadpool(redis_answers):
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "redis unreachable"}, status_code=503)

    meter = WeightMeter(clock, weight_limit)
    return Starlette(
        routes=[
            Route("/api/v3/klines", klines, methods=["GET"]),
            Route("/api/v3/exchangeInfo", info, methods=["GET"]),
            Route("/api/v3/ping", ping, methods=["GET"]),
            Route("/api/v3/time", server_time, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        middleware=[Middleware(WeightMiddleware, meter=meter)],
    )


def serve(
    redis_url: str,
    host: str,
    port: int,
    keys: KeySpace,
    cache_ttl_s: float,
    weight_limit: int = REQUEST_WEIGHT_LIMIT,
) -> None:
    """Serve the klines stored under `keys` in the Redis at `redis_url` until stopped."""
    client = redis.Redis.from_url(redis_url)
    try:
        app = create_app(KlineStore(client, keys, ttl_s=cache_ttl_s), weight_limit=weight_limit)
        uvicorn.run(app, host=host, port=port)
    finally:
        client.close()
