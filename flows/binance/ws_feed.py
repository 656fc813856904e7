"""Keep a Binance combined-stream connection alive for days (asyncio, no engine).

- Reconnects with exponential backoff and full jitter, capped (default 60 s), and never
  more than 300 connection attempts per 5 minutes across all connections of the process
  (Binance's limit per IP).
- Liveness: the client pings every 20 s and drops a connection whose pong does not come
  (the `websockets` keepalive), which catches a dead link whatever the traffic; and a
  connection goes dead when it is silent for longer than `idle_timeout_s` and ten times its
  usual gap between frames (a moving average over at least `min_gaps_learned` gaps; until
  then ten times `idle_timeout_s`). So a busy connection that stalls is replaced quickly,
  and quiet symbols cannot cause false restarts, right after a start neither.
- Bounded: while the consumer's queue is full (`full()`), reading stops, so frames wait in
  the network rather than in memory (a long wait ends in the exchange dropping the
  connection; the consumer's backfill then fetches what it missed).
- Rotation with overlap: before Binance's 24-hour limit (`max_age_s`) or on `serverShutdown`,
  a new connection to the same streams is opened, and the old one closes only once the new
  one delivers (or after `overlap_timeout_s`). Frames from both arrive meanwhile; the
  consumer drops duplicates by trade id, so rotation leaves no gap.
- Compression is off (permessage-deflate cost 2-3x in our measurements).
- Streams can be added and removed while running (`update_streams`): one SUBSCRIBE and one
  UNSUBSCRIBE message per change, spaced so that fewer than 5 control messages a second go
  out (Binance's limit); the answers (`{"result":null,"id":..}`, or `{"code","msg"}` errors)
  are counted and logged, never handed on as frames. Reconnects use the new stream list.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from flows.domain.clock import SYSTEM_CLOCK, Clock

log = logging.getLogger(__name__)

OnFrame = Callable[[bytes, int], None]  # (raw frame, receive time ms)


@dataclass(frozen=True)
class FeedConfig:
    ws_base_url: str  # e.g. wss://stream.binance.com:9443 or ws://127.0.0.1:PORT
    idle_timeout_s: float = 30.0
    idle_gap_factor: float = 10.0
    max_age_s: float = 23.5 * 3600  # Binance closes connections at 24 h
    overlap_timeout_s: float = 10.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 60.0
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0
    open_timeout_s: float = 10.0
    max_frame_bytes: int = 1 << 20  # larger frames close the connection (reconnect follows)
    min_gaps_learned: int = 20  # gaps between frames seen before the usual gap is trusted


class AttemptLimiter:
    """At most `limit` connection attempts per `window_s` (Binance: 300 per 5 minutes)."""

    def __init__(
        self, limit: int = 300, window_s: float = 300.0, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self._limit = limit
        self._window_s = window_s
        self._clock = clock
        self._times: collections.deque[float] = collections.deque()

    def wait_s(self) -> float:
        """Seconds to wait before the next attempt is allowed (0: now); records the attempt
        when it is allowed."""
        now = self._clock.monotonic_s()
        while self._times and now - self._times[0] >= self._window_s:
            self._times.popleft()
        if len(self._times) >= self._limit:
            return self._window_s - (now - self._times[0])
        self._times.append(now)
        return 0.0


@dataclass
class FeedStats:
    connects: int = 0
    reconnects: int = 0
    rotations: int = 0
    shutdown_notices: int = 0
    idle_drops: int = 0
    frames: int = 0
    control_sent: int = 0
    control_answers: int = 0
    control_errors: int = 0
    full_waits: int = 0  # times reading stopped because the consumer's queue was full
    errors: collections.Counter[str] = field(default_factory=collections.Counter)


class _Session:
    def __init__(self, ws: ClientConnection, opened_s: float) -> None:
        self.ws = ws
        self.opened_s = opened_s
        self.first_frame = asyncio.Event()
        self.shutdown_seen = asyncio.Event()
        self.last_frame_s = opened_s
        self.gap_ema_s = 0.0
        self.gaps_seen = 0
        self.held = False  # reading stopped: the consumer's queue is full
        self.task: asyncio.Task[None] | None = None


class StreamFeed:
    """One logical connection to a fixed set of streams (it may be two during a rotation)."""

    def state(self) -> tuple[str, float | None]:
        """("connecting" | "connected" | "reconnecting", seconds since the last frame)."""
        now = self._clock.monotonic_s()
        last = max((s.last_frame_s for s in list(self._sessions)), default=None)
        age = None if last is None else max(0.0, now - last)
        if self.connected:
            return "connected", age
        return ("reconnecting" if self.stats.connects else "connecting"), age

    def __init__(
        self,
        streams: list[str],
        config: FeedConfig,
        on_frame: OnFrame,
        *,
        clock: Clock = SYSTEM_CLOCK,
        limiter: AttemptLimiter | None = None,
        rng: random.Random | None = None,
        on_state: Callable[[bool, int], None] | None = None,
        full: Callable[[], bool] | None = None,
    ) -> None:
        if not streams:
            raise ValueError("a feed needs at least one stream")
        if len(streams) > 1024:
            raise ValueError(
                f"Binance allows at most 1024 streams per connection, got {len(streams)}"
            )
        self.streams = list(streams)
        self.config = config
        self._on_frame = on_frame
        self._clock = clock
        self._limiter = limiter or AttemptLimiter(clock=clock)
        self._rng = rng or random.Random()
        self._on_state = on_state or (lambda connected, generation: None)
        self._full = full
        self.stats = FeedStats()
        self.generation = 0  # increments with every new connection that replaces a lost one
        self.connected = False
        self._sessions: list[_Session] = []  # open now (two during a rotation)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._control_id = 0
        self._control_lock: asyncio.Lock | None = None

    def _url(self) -> str:
        return f"{self.config.ws_base_url.rstrip('/')}/stream?streams={'/'.join(self.streams)}"

    def update_streams(self, add: list[str], remove: list[str]) -> None:
        """Subscribe to `add` and unsubscribe from `remove`; safe to call from any thread."""
        if self._loop is None:
            self.streams = [s for s in self.streams if s not in set(remove)] + [
                s for s in add if s not in self.streams
            ]
            return
        self._loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._apply(add, remove)))

    async def _apply(self, add: list[str], remove: list[str]) -> None:
        gone = set(remove)
        new = [s for s in add if s not in self.streams]
        self.streams = [s for s in self.streams if s not in gone] + new
        if len(self.streams) > 1024:
            log.error("more than 1024 streams on one connection; Binance would refuse them")
        if self._control_lock is None:
            self._control_lock = asyncio.Lock()
        async with self._control_lock:
            for method, params in (("UNSUBSCRIBE", sorted(gone)), ("SUBSCRIBE", new)):
                if not params:
                    continue
                for s in list(self._sessions):
                    self._control_id += 1
                    message = json.dumps(
                        {"method": method, "params": params, "id": self._control_id}
                    )
                    with contextlib.suppress(WebSocketException, OSError):
                        await s.ws.send(message)
                        self.stats.control_sent += 1
                    await asyncio.sleep(0.25)  # at most 4 control messages a second

    async def _open(self, stop: asyncio.Event) -> _Session | None:
        """Connect with backoff; None when stopped first."""
        delay = self.config.backoff_initial_s
        while not stop.is_set():
            wait = self._limiter.wait_s()
            if wait > 0:
                log.warning("connection attempts at the limit; waiting wait_s=%.1f", wait)
                await _sleep_or_stop(stop, wait)
                continue
            try:
                ws = await connect(
                    self._url(),
                    compression=None,
                    max_size=self.config.max_frame_bytes,
                    ping_interval=self.config.ping_interval_s,
                    ping_timeout=self.config.ping_timeout_s,
                    open_timeout=self.config.open_timeout_s,
                    close_timeout=2,
                )
            except (OSError, WebSocketException, TimeoutError) as e:
                self.stats.errors[type(e).__name__] += 1
                pause = self._rng.uniform(0, delay)  # full jitter
                log.warning(
                    "connect failed url=%s error=%s retry_in_s=%.2f", self._url()[:80], e, pause
                )
                await _sleep_or_stop(stop, pause)
                delay = min(delay * 2, self.config.backoff_max_s)
                continue
            self.stats.connects += 1
            session = _Session(ws, self._clock.monotonic_s())
            session.task = asyncio.create_task(self._read(session))
            self._sessions.append(session)
            return session
        return None

    async def _read(self, s: _Session) -> None:
        on_frame = self._on_frame
        clock = self._clock
        full = self._full
        try:
            async for message in s.ws:
                raw = message.encode() if isinstance(message, str) else bytes(message)
                now_s = clock.monotonic_s()
                if s.gaps_seen:
                    s.gap_ema_s += 0.05 * ((now_s - s.last_frame_s) - s.gap_ema_s)
                else:
                    s.gap_ema_s = now_s - s.last_frame_s
                s.gaps_seen += 1
                s.last_frame_s = now_s
                self.stats.frames += 1
                if not s.first_frame.is_set():
                    s.first_frame.set()
                if b"serverShutdown" in raw[:80]:
                    self.stats.shutdown_notices += 1
                    s.shutdown_seen.set()
                elif raw[:9] in (b'{"result"', b'{"id":') or raw[:8] == b'{"code":':
                    self._control_answer(raw)
                    continue
                on_frame(raw, clock.now_ms())
                if full is not None and full():
                    self.stats.full_waits += 1
                    s.held = True
                    while full():
                        await asyncio.sleep(0.05)
                    s.held = False
                    s.last_frame_s = clock.monotonic_s()  # the wait was ours, not a silence
        except (WebSocketException, OSError) as e:
            self.stats.errors[type(e).__name__] += 1
            log.warning("connection lost url=%s error=%s", self._url()[:80], e)

    def _control_answer(self, raw: bytes) -> None:
        if raw.startswith(b'{"code":'):
            self.stats.control_errors += 1
            log.warning("control message refused: %s", raw[:200].decode("utf-8", "replace"))
        else:
            self.stats.control_answers += 1

    async def run(self, stop: asyncio.Event) -> None:
        """Keep the streams flowing until `stop` is set."""
        self._loop = asyncio.get_running_loop()
        current: _Session | None = None
        try:
            while not stop.is_set():
                if current is None:
                    current = await self._open(stop)
                    if current is None:
                        break
                    self.generation += 1
                    self.connected = True
                    self._on_state(True, self.generation)
                reason = await self._watch(current, stop)
                if reason == "stop":
                    break
                if reason in ("closed", "idle"):
                    self.connected = False
                    self._on_state(False, self.generation)
                    self.stats.reconnects += 1
                    await _close(current, self._sessions)
                    current = None
                    continue
                # rotation: open the replacement, let it deliver, then close the old one
                replacement = await self._open(stop)
                if replacement is None:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        replacement.first_frame.wait(), self.config.overlap_timeout_s
                    )
                await _close(current, self._sessions)
                current = replacement
                self.stats.rotations += 1
        finally:
            if current is not None:
                await _close(current, self._sessions)
            self.connected = False

    async def _watch(self, s: _Session, stop: asyncio.Event) -> str:
        """Wait until the session needs attention: stop, closed, idle, age or shutdown."""
        cfg = self.config
        while True:
            if stop.is_set():
                return "stop"
            if s.task is not None and s.task.done():
                return "closed"
            if s.shutdown_seen.is_set():
                return "shutdown"
            now = self._clock.monotonic_s()
            if now - s.opened_s >= cfg.max_age_s:
                return "age"
            silent = now - s.last_frame_s
            usual = s.gap_ema_s if s.gaps_seen >= cfg.min_gaps_learned else cfg.idle_timeout_s
            limit = max(cfg.idle_timeout_s, cfg.idle_gap_factor * usual)
            if s.first_frame.is_set() and not s.held and silent > limit:
                self.stats.idle_drops += 1
                log.warning("no message for %.1f s on an active connection; reconnecting", silent)
                return "idle"
            await _sleep_or_stop(stop, 0.05)


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), max(seconds, 0.0))


async def _close(s: _Session, sessions: list[_Session] | None = None) -> None:
    if sessions is not None and s in sessions:
        sessions.remove(s)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(s.ws.close(), 3)
    if s.task is not None:
        s.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await s.task
