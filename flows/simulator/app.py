"""The simulator's ASGI application: stream WebSockets, REST, and the ``/_sim/`` controls.

WebSocket paths (BINANCE.md A1): ``/ws/<stream>`` (raw payloads; several streams may be
joined with ``/``), ``/ws`` (raw, no streams yet), ``/stream?streams=<a>/<b>`` (combined
wrapper) and ``/stream`` (combined, no streams yet); ``timeUnit=MICROSECOND`` gives times in
microseconds. The handshake offers no compression.

Controls (not Binance's; for tests and demos):

- ``POST /_sim/drop``: cut every stream connection without a close frame (TCP reset).
- ``POST /_sim/stall?seconds=N`` (5): send nothing for N s; the market moves on, frames
  queue, and are all delivered when the stall ends (see `flows.simulator.hub`).
- ``POST /_sim/garbage?count=N`` (3): send N invalid frames (JSON cut short, ``not json``).
- ``POST /_sim/poison?what=time|id|jump|price`` (time): send one well-formed aggTrade frame
  that no exchange could send (a time in 2286, trade ids of 10^15, ids 5e10 past the last
  trade's, a price of 1e400).
- ``POST /_sim/oversize?bytes=N`` (2 MiB): send one valid JSON text frame of N bytes that is
  no known event (``"e":"simOversize"``).
- ``POST /_sim/shutdown?lead_s=S`` (`SimConfig.shutdown_lead_s`): send ``serverShutdown``
  now and close every connection (code 1001) S seconds later.
- ``POST /_sim/rest429?count=N&retry_after=S`` (1, 1): the next N REST calls answer HTTP 429
  with ``Retry-After: S``.
- ``POST /_sim/rest418?count=N&retry_after=S`` (1, 1): the same with HTTP 418, Binance's
  answer to an IP it has banned for S seconds.
- ``POST /_sim/pause`` / ``POST /_sim/resume``: freeze / restart market time.
- ``GET /_sim/state``: market time, symbols, last agg id per symbol, connections, faults.

The same faults can be scheduled at start (`SimConfig.schedule`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from flows.domain.clock import SYSTEM_CLOCK, Clock
from flows.simulator.config import FAULTS, SimConfig
from flows.simulator.control import handle_control
from flows.simulator.hub import Connection, Hub
from flows.simulator.market import MarketClock, SimMarket
from flows.simulator.rest import rest_routes

logger = logging.getLogger(__name__)

PROTOCOL_KEY = "klineflow.simulator.protocol"  # where the WebSocket protocol puts itself


class FrameCounter(Protocol):
    """What the simulator's uvicorn protocol offers a connection (see `server`)."""

    frame_hook: Callable[[], object] | None

    def abort_connection(self) -> None: ...


def make_market(cfg: SimConfig, wall: Clock = SYSTEM_CLOCK) -> tuple[SimMarket, int]:
    """The market of a config and the market time serving starts at (its history built)."""
    if cfg.recording is not None:
        market = SimMarket.from_recording(
            cfg.recording, cfg.start_ms, cfg.end_ms, cfg.history_limit
        )
        origin = market.start_ms + cfg.history_ms
    else:
        # no start given: market time runs with the wall clock, history_ms of it done already
        start = cfg.start_ms if cfg.start_ms is not None else wall.now_ms() - cfg.history_ms
        market = SimMarket.synthetic(
            cfg.symbols, cfg.seed, cfg.rate, start, cfg.end_ms, cfg.history_limit
        )
        origin = start + cfg.history_ms
    market.after_end_ms = cfg.after_end_ms
    if cfg.end_ms is not None:
        origin = min(origin, cfg.end_ms)
    market.advance(origin)
    return market, origin


def build_app(
    cfg: SimConfig,
    wall: Clock = SYSTEM_CLOCK,
    on_ready: Callable[[asyncio.AbstractEventLoop], None] | None = None,
) -> tuple[Starlette, Hub]:
    """The application and its hub; the market loop runs while the app is served."""
    market, origin = make_market(cfg, wall)
    hub = Hub(cfg, market, MarketClock(wall, origin, cfg.speed, cfg.start_paused), wall)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(hub.run()), asyncio.create_task(_run_schedule(hub))]
        if on_ready is not None:
            on_ready(asyncio.get_running_loop())
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def stream_socket(ws: WebSocket) -> None:
        await _serve_connection(hub, ws)

    async def sim_fault(request: Request) -> Response:
        name = request.path_params["fault"]
        if name not in FAULTS:
            return JSONResponse({"error": f"unknown fault {name!r}"}, 404)
        try:
            return JSONResponse(hub.fault(name, dict(request.query_params)))
        except ValueError as e:
            return JSONResponse({"error": str(e)}, 400)

    async def sim_state(request: Request) -> Response:
        return Response(msgspec.json.encode(hub.state()), media_type="application/json")

    routes: list[Any] = [
        WebSocketRoute("/ws", stream_socket),
        WebSocketRoute("/ws/{streams:path}", stream_socket),
        WebSocketRoute("/stream", stream_socket),
        WebSocketRoute("/stream/", stream_socket),
        *rest_routes(hub, wall),
        Route("/_sim/state", sim_state, methods=["GET"]),
        Route("/_sim/{fault}", sim_fault, methods=["POST"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan), hub


async def _run_schedule(hub: Hub) -> None:
    for item in hub.cfg.schedule:
        wait = hub.started_s + item.after_s - hub.wall.monotonic_s()
        if wait > 0:
            await asyncio.sleep(wait)
        try:
            hub.fault(item.fault, item.params)
        except ValueError as e:
            logger.error("scheduled fault %s failed: %s", item.fault, e)


async def _serve_connection(hub: Hub, ws: WebSocket) -> None:
    path = ws.scope["path"]
    combined = path.startswith("/stream")
    if combined:
        names = ws.query_params.get("streams", "").split("/")
    else:
        names = str(ws.path_params.get("streams", "")).split("/")
    streams = list(dict.fromkeys(n for n in names if n))
    micro = ws.query_params.get("timeUnit", "").upper() == "MICROSECOND"
    await ws.accept()
    proto: FrameCounter | None = ws.scope.get("state", {}).get(PROTOCOL_KEY)
    conn = Connection(hub, ws, combined, micro, proto.abort_connection if proto else None)
    if len(streams) > hub.cfg.max_streams:
        # Binance does not document this answer; an error frame and a close is ours
        conn.push(['{"code":2,"msg":"Invalid request: too many streams"}'])
        conn.close_now(1008, "Too many streams")
        streams = []
    hub.register(conn, streams)
    if proto is not None:
        proto.frame_hook = conn.note_incoming
    writer = asyncio.create_task(conn.run_writer())
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            if conn.closing or not conn.note_incoming():
                continue
            text = message.get("text")
            if text is None:
                text = (message.get("bytes") or b"").decode("utf-8", "replace")
            answer = handle_control(text, conn.subs)
            if answer.added:
                hub.subscribe(conn, answer.added)
            if answer.removed:
                hub.unsubscribe(conn, answer.removed)
            conn.push([answer.text])
    finally:
        if proto is not None:
            proto.frame_hook = None
        hub.unregister(conn)
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
