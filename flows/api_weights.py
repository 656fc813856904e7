"""Request weight, counted per client IP per minute as Binance counts it (BINANCE.md A2).

Every answer of the HTTP API carries ``X-MBX-USED-WEIGHT-1M`` and ``X-MBX-USED-WEIGHT``: the
weight the client's IP has used in the current UTC minute, this request included. Weights
are Binance's for the endpoints served (`ENDPOINT_WEIGHTS`); ``/healthz`` weighs nothing and
any other path 1. Past the limit (Binance's 6000 a minute unless configured) the answer is
HTTP 429 with ``Retry-After`` (whole seconds to the next minute) and Binance's -1003 body;
a refused request still counts, as on Binance, so the header shows what was asked for.
There is no 418 ban: the window simply ends.

>>> from flows.domain.clock import ManualClock
>>> meter = WeightMeter(ManualClock(now_ms=60_000 * 5 + 59_500), limit=3)
>>> meter.charge("10.0.0.1", 2), meter.charge("10.0.0.1", 2), meter.charge("10.0.0.2", 2)
((2, 0), (4, 1), (2, 0))
"""

from __future__ import annotations

from typing import Final

import msgspec
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flows.domain.clock import Clock
from flows.domain.intervals import MINUTE_MS

REQUEST_WEIGHT_LIMIT: Final = 6000  # Binance's REQUEST_WEIGHT per minute since 2023-08-25
ENDPOINT_WEIGHTS: Final = {
    "/api/v3/klines": 2,
    "/api/v3/exchangeInfo": 20,
    "/api/v3/ping": 1,
    "/api/v3/time": 1,
    "/healthz": 0,
}
OTHER_WEIGHT: Final = 1


class WeightMeter:
    """Weight used per client IP in the current UTC minute (a fixed window, like Binance's)."""

    def __init__(self, clock: Clock, limit: int = REQUEST_WEIGHT_LIMIT) -> None:
        self._clock = clock
        self.limit = limit
        self._minute = -1
        self._used: dict[str, int] = {}

    def charge(self, ip: str, weight: int) -> tuple[int, int]:
        """Add a request's weight: (weight used this minute, seconds to wait or 0 if allowed)."""
        now = self._clock.now_ms()
        minute = now // MINUTE_MS
        if minute != self._minute:  # a new window: every IP starts again (and memory stays small)
            self._minute, self._used = minute, {}
        used = self._used.get(ip, 0) + weight
        self._used[ip] = used
        if used <= self.limit:
            return used, 0
        return used, max(1, -(-((minute + 1) * MINUTE_MS - now) // 1000))

    def used(self, ip: str) -> int:
        """Weight used by `ip` in the current minute."""
        return self._used.get(ip, 0) if self._clock.now_ms() // MINUTE_MS == self._minute else 0


class WeightMiddleware:
    """ASGI middleware: charges each HTTP request, adds the headers, refuses past the limit."""

    def __init__(self, app: ASGIApp, meter: WeightMeter) -> None:
        self.app = app
        self.meter = meter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        ip = client[0] if client else "unknown"
        weight = ENDPOINT_WEIGHTS.get(scope["path"], OTHER_WEIGHT)
        used, retry_after_s = self.meter.charge(ip, weight)
        used_headers = [
            (b"x-mbx-used-weight", str(used).encode()),
            (b"x-mbx-used-weight-1m", str(used).encode()),
        ]
        if retry_after_s:
            body = msgspec.json.encode(
                {
                    "code": -1003,
                    "msg": f"Too much request weight used; current limit is {self.meter.limit} "
                    "request weight per 1 MINUTE. Please use WebSocket Streams for live "
                    "updates to avoid polling the API.",
                }
            )
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(retry_after_s).encode()),
                *used_headers,
            ]
            await send({"type": "http.response.start", "status": 429, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return

        async def send_with_weight(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *used_headers]}
            await send(message)

        await self.app(scope, receive, send_with_weight)
