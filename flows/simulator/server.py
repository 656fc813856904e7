"""Serving the simulator with uvicorn: in a background thread (`Simulator`) or blocking (`serve`).

uvicorn's sans-I/O WebSocket protocol does the pings (every `ping_interval_s`; a client whose
pong does not come within `ping_timeout_s` is closed with 1011) and sends frames
uncompressed (permessage-deflate is not offered). The subclass here adds two things an ASGI
app cannot do: count incoming ping and pong frames toward the 5-messages-a-second limit
(Binance counts them), and cut a connection with a TCP reset (fault ``drop``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

import uvicorn
from starlette.applications import Starlette
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame

from flows.domain.clock import SYSTEM_CLOCK, Clock
from flows.simulator.app import PROTOCOL_KEY, build_app
from flows.simulator.config import SimConfig
from flows.simulator.hub import Hub
from flows.simulator.market import SimMarket

logger = logging.getLogger(__name__)

_START_TIMEOUT_S = 15.0
_STOP_TIMEOUT_S = 15.0


class SimWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol, telling the app about control frames, abortable."""

    frame_hook: Callable[[], object] | None = None

    async def run_asgi(self) -> None:
        self.scope.setdefault("state", {})[PROTOCOL_KEY] = self
        await super().run_asgi()

    def handle_ping(self) -> None:
        super().handle_ping()
        self._count_frame()

    def handle_pong(self, event: Frame) -> None:
        super().handle_pong(event)
        self._count_frame()

    def _count_frame(self) -> None:
        hook = self.frame_hook
        if hook is not None:
            hook()

    def abort_connection(self) -> None:
        """Drop the TCP connection at once with a reset: no close frame, no FIN."""
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()


def _uvicorn_config(app: Starlette, cfg: SimConfig, quiet_logging: bool) -> uvicorn.Config:
    extra: dict[str, Any] = {"log_config": None} if quiet_logging else {}
    return uvicorn.Config(
        app,
        ws=SimWebSocketProtocol,
        ws_ping_interval=cfg.ping_interval_s,
        ws_ping_timeout=cfg.ping_timeout_s,
        ws_per_message_deflate=False,
        ws_max_size=1024 * 1024,
        lifespan="on",
        log_level=cfg.log_level,
        access_log=False,
        timeout_graceful_shutdown=2,
        **extra,
    )


def _listen(cfg: SimConfig) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((cfg.host, cfg.port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class Simulator:
    """A simulated Binance on 127.0.0.1, served from a background thread.

    >>> with Simulator(SimConfig(symbols=2, end_ms=None)) as sim:  # doctest: +SKIP
    ...     sim.base_url, sim.ws_url
    ('http://127.0.0.1:40123', 'ws://127.0.0.1:40123')
    """

    def __init__(self, config: SimConfig | None = None, wall: Clock = SYSTEM_CLOCK) -> None:
        self.config = config if config is not None else SimConfig()
        self._wall = wall
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._hub: Hub | None = None
        self.port = 0

    @property
    def hub(self) -> Hub:
        if self._hub is None:
            raise RuntimeError("the simulator is not started")
        return self._hub

    @property
    def market(self) -> SimMarket:
        return self.hub.market

    @property
    def base_url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.config.host}:{self.port}"

    def start(self) -> str:
        """Start serving; the REST base URL (the WebSocket base is `ws_url`)."""
        if self._thread is not None:
            raise RuntimeError("the simulator is already started")
        sock = _listen(self.config)
        self.port = sock.getsockname()[1]

        def ready(loop: asyncio.AbstractEventLoop) -> None:
            self._loop = loop
            self._ready.set()

        app, self._hub = build_app(self.config, self._wall, on_ready=ready)
        self._server = uvicorn.Server(_uvicorn_config(app, self.config, quiet_logging=True))
        server = self._server
        self._thread = threading.Thread(
            target=lambda: server.run(sockets=[sock]), name="binance-simulator", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(_START_TIMEOUT_S):
            self.stop()
            raise RuntimeError("the simulator did not start")
        return self.base_url

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(_STOP_TIMEOUT_S)
            if self._thread.is_alive() and self._server is not None:
                self._server.force_exit = True
                self._thread.join(_STOP_TIMEOUT_S)
        self._thread = None
        self._server = None

    def _call(self, fn: Callable[[], Any]) -> Any:
        if self._loop is None:
            raise RuntimeError("the simulator is not started")

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(_START_TIMEOUT_S)

    def inject(self, fault: str, **params: object) -> dict[str, Any]:
        """Inject a fault now, as ``POST /_sim/<fault>`` does."""
        args = {k: str(v) for k, v in params.items()}
        result: dict[str, Any] = self._call(lambda: self.hub.fault(fault, args))
        return result

    def state(self) -> dict[str, Any]:
        """What ``GET /_sim/state`` answers."""
        result: dict[str, Any] = self._call(self.hub.state)
        return result

    def __enter__(self) -> Simulator:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve(config: SimConfig, on_start: Callable[[str], None] | None = None) -> None:
    """Serve until interrupted (Ctrl-C); `on_start` gets the base URL once listening."""
    sock = _listen(config)
    port = sock.getsockname()[1]
    url = f"http://{config.host}:{port}"

    def ready(loop: asyncio.AbstractEventLoop) -> None:
        if on_start is not None:
            on_start(url)
        else:
            logger.warning("Binance simulator on %s (WebSocket ws://%s:%d)", url, config.host, port)

    app, _ = build_app(config, SYSTEM_CLOCK, on_ready=ready)
    uvicorn.Server(_uvicorn_config(app, config, quiet_logging=False)).run(sockets=[sock])
