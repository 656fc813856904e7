"""HTTP API: klines from Redis, answered the way Binance's spot REST API answers.

Routes:

- ``GET /api/v3/klines`` with ``symbol``, ``interval``, ``startTime``, ``endTime``,
  ``limit`` (default 500, at most 1000) and ``timeZone``. The body is the JSON that
  `KlineStore.get_klines_json` builds, sent unchanged.
- ``GET /api/v3/ping`` and ``GET /api/v3/time``, which client libraries call on start.
- ``GET /healthz``: 200 when Redis answers PING, else 503.

Differences from Binance worth knowing:

- Only UTC klines are stored, so ``timeZone`` must be absent or a spelling of UTC
  ("0", "+0", "00:00", "+00:00", "-00:00"); any other value is rejected with -1130.
- ``startTime`` greater than ``endTime`` gives an empty list rather than an error.
- ``startTime`` / ``endTime`` of 10**14 or more are read as microseconds and converted to
  milliseconds, as Binance accepts both units.

Invalid requests get HTTP 400 with Binance's ``{"code": ..., "msg": ...}`` body; when Redis
cannot be reached the answer is HTTP 503 with Binance's internal-error body (-1001).
"""

from __future__ import annotations

import logging

import redis
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from flows.binance.rest_params import SYMBOL_RE, ApiError, mandatory, optional_number
from flows.domain.clock import SYSTEM_CLOCK, Clock
from flows.domain.intervals import INTERVALS
from flows.domain.keys import KeySpace
from flows.storage.kline_store import DEFAULT_LIMIT, MAX_LIMIT, KlineStore

logger = logging.getLogger(__name__)

_UTC_SPELLINGS = frozenset({"0", "+0", "00:00", "+00:00", "-00:00"})
_MICROS_FROM = 10**14  # a millisecond timestamp this large would be in the year 5138


def _as_ms(value: int | None) -> int | None:
    return value // 1000 if value is not None and value >= _MICROS_FROM else value


def _error(code: int, msg: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"code": code, "msg": msg}, status_code=status)


def create_app(store: KlineStore, clock: Clock = SYSTEM_CLOCK) -> Starlette:
    """The Starlette application serving `store`."""

    def fetch(symbol: str, interval: str, start: int | None, end: int | None, limit: int) -> bytes:
        # Runs in a worker thread: both calls reach Redis synchronously.
        if not store.has_symbol(symbol):
            raise ApiError(-1121, "Invalid symbol.")
        if start is not None and end is not None and start > end:
            return b"[]"
        return store.get_klines_json(symbol, interval, start, end, limit)

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
            body = await run_in_threadpool(fetch, symbol, interval, start, end, limit)
        except ApiError as e:
            return _error(e.code, e.msg)
        except redis.RedisError as e:
            logger.error("klines request failed, Redis unreachable: %s", e)
            return _error(
                -1001, "Internal error; unable to process your request. Please try again.", 503
            )
        return Response(body, media_type="application/json")

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

    return Starlette(
        routes=[
            Route("/api/v3/klines", klines, methods=["GET"]),
            Route("/api/v3/ping", ping, methods=["GET"]),
            Route("/api/v3/time", server_time, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )


def serve(redis_url: str, host: str, port: int, keys: KeySpace, cache_ttl_s: float) -> None:
    """Serve the klines stored under `keys` in the Redis at `redis_url` until stopped."""
    client = redis.Redis.from_url(redis_url)
    try:
        app = create_app(KlineStore(client, keys, ttl_s=cache_ttl_s))
        uvicorn.run(app, host=host, port=port)
    finally:
        client.close()
