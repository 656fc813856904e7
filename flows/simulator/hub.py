"""Stream connections and the loop that advances the market and delivers its frames.

Every `SimConfig.step_s` of wall time the hub advances the market to the current market
time and gives each connection the new frames of its streams, merged in event-time order
(trade time for trades, push time for klines), one text frame per event.

Each connection has a queue and a writer task. What happens to the queue:

- A slow client (one whose TCP buffers are full, so the writer waits) lets its queue grow;
  past `max_queue_frames` the connection is dropped abruptly, as Binance drops slow consumers.
- During a stall (fault ``stall``) writers send nothing while the market keeps moving and
  frames keep queueing; when the stall ends the queued frames are all delivered, in order (a
  long stall at a high rate therefore ends in a slow-consumer drop, as it would at Binance).
- Closes (max age, ``shutdown``, too many messages) are urgent: the queue is discarded and
  the close frame goes next. A close due during a stall is not held back by it.
- Abrupt drops (fault ``drop``, slow consumers) abort the TCP connection with a reset: no
  close frame. Only when the server runs without the simulator's WebSocket protocol class
  (no transport to abort) is a close frame with code 1011 sent instead.

Close codes (Binance documents none of them): 1001 at the connection's maximum age and after
``shutdown``, 1008 for more than `max_incoming_per_s` messages (data, ping and pong frames)
within one second or too many streams in the URL; uvicorn closes with 1011 a client that
does not answer a ping in time. Ages and the message limit are on the wall clock; event
times are market time.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from flows.domain.clock import Clock
from flows.simulator.config import SimConfig
from flows.simulator.control import Subscriptions
from flows.simulator.frames import (
    KlineFeed,
    OutEvent,
    StreamKey,
    parse_stream,
    server_shutdown_payload,
    trade_events,
    wrap,
)
from flows.simulator.market import MarketClock, SimMarket

logger = logging.getLogger(__name__)

_YIELD_EVERY = 256  # frames a writer sends before letting other tasks run
_STALL_POLL_S = 0.01


class Sender(Protocol):
    """What a connection needs of its WebSocket (Starlette's `WebSocket` has these)."""

    async def send_text(self, data: str) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


class _Close:
    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


class Connection:
    """One stream connection: its subscriptions, queue, writer and deadlines."""

    def __init__(
        self,
        hub: Hub,
        ws: Sender,
        combined: bool,
        micro: bool,
        abort: Callable[[], None] | None,
    ) -> None:
        self.hub = hub
        self.ws = ws
        self.subs = Subscriptions(combined, max_streams=hub.cfg.max_streams)
        self.micro = micro
        self._abort = abort
        self.queue: deque[str | _Close] = deque()
        self._wake = asyncio.Event()
        now = hub.wall.monotonic_s()
        self.opened_s = now
        cfg = hub.cfg
        self.shutdown_at_s: float | None = now + max(
            0.0, cfg.max_connection_age_s - cfg.shutdown_lead_s
        )
        self.close_at_s = now + cfg.max_connection_age_s
        self._incoming: deque[float] = deque()
        self.closing = False
        self.frames_sent = 0

    # -- incoming ------------------------------------------------------------------------
    def note_incoming(self) -> bool:
        """Count one incoming message (data, ping or pong); False when over the limit."""
        now = self.hub.wall.monotonic_s()
        window = self._incoming
        window.append(now)
        while window and window[0] <= now - 1.0:
            window.popleft()
        if len(window) > self.hub.cfg.max_incoming_per_s:
            self.hub.count("too_many_messages")
            self.close_now(1008, "Too many messages")
            return False
        return True

    # -- outgoing ------------------------------------------------------------------------
    def push(self, frames: Iterable[str]) -> None:
        if self.closing:
            return
        self.queue.extend(frames)
        if len(self.queue) > self.hub.cfg.max_queue_frames:
            logger.info("dropping a slow consumer (%d frames queued)", len(self.queue))
            self.hub.count("slow_consumer")
            self.abort()
            return
        self._wake.set()

    def close_now(self, code: int, reason: str) -> None:
        if self.closing:
            return
        self.closing = True
        self.queue.clear()
        self.queue.append(_Close(code, reason))
        self._wake.set()

    def abort(self) -> None:
        """Cut the connection without a close frame (a TCP reset)."""
        if self._abort is None:
            self.close_now(1011, "dropped")
            return
        self.closing = True
        self.queue.clear()
        self._abort()

    def shutdown_frame(self) -> str:
        payload = server_shutdown_payload(self.hub.market.now_ms, self.micro)
        return wrap("!serverShutdown", payload) if self.subs.combined else payload

    async def run_writer(self) -> None:
        queue, hub, sent = self.queue, self.hub, 0
        try:
            while True:
                if not queue:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                item = queue[0]
                if isinstance(item, _Close):
                    queue.clear()
                    await self.ws.close(item.code, item.reason)
                    return
                if hub.stalled():
                    await asyncio.sleep(_STALL_POLL_S)
                    continue
                queue.popleft()
                await self.ws.send_text(item)
                self.frames_sent += 1
                sent += 1
                if sent % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the client went away mid-send: the reader cleans up
            logger.debug("writer ended: %r", e)


class Hub:
    """All connections, their subscriptions, the market steps and the faults."""

    def __init__(self, cfg: SimConfig, market: SimMarket, clock: MarketClock, wall: Clock) -> None:
        self.cfg = cfg
        self.market = market
        self.clock = clock
        self.wall = wall
        self.connections: set[Connection] = set()
        self._subs: dict[str, set[Connection]] = {}
        self._keys: dict[str, StreamKey | None] = {}
        self._feeds: dict[str, KlineFeed] = {}
        self._symbols = frozenset(market.symbols)
        self._stall_until_s = 0.0
        self.faults: Counter[str] = Counter()
        self.rest429_left = 0
        self.rest429_retry_after = "1"
        self.rest429_status = 429
        self.started_s = wall.monotonic_s()
        self.steps = 0

    def count(self, what: str) -> None:
        self.faults[what] += 1

    def stalled(self) -> bool:
        return self.wall.monotonic_s() < self._stall_until_s

    def stall(self, seconds: float) -> None:
        self._stall_until_s = max(self._stall_until_s, self.wall.monotonic_s() + seconds)

    def stall_left_s(self) -> float:
        return max(0.0, self._stall_until_s - self.wall.monotonic_s())

    # -- subscriptions ---------------------------------------------------------------------
    def register(self, conn: Connection, streams: Iterable[str]) -> None:
        self.connections.add(conn)
        self.subscribe(conn, streams)

    def unregister(self, conn: Connection) -> None:
        self.connections.discard(conn)
        self.unsubscribe(conn, list(conn.subs.streams))

    def _key(self, stream: str) -> StreamKey | None:
        if stream not in self._keys:
            self._keys[stream] = parse_stream(stream, self._symbols)
        return self._keys[stream]

    def subscribe(self, conn: Connection, streams: Iterable[str]) -> None:
        for stream in streams:
            conn.subs.streams.setdefault(stream, None)
            self._subs.setdefault(stream, set()).add(conn)
            key = self._key(stream)
            if key is not None and key.kind == "kline" and stream not in self._feeds:
                self._feeds[stream] = KlineFeed(
                    key.symbol, key.interval, self.market, self.market.now_ms
                )

    def unsubscribe(self, conn: Connection, streams: Iterable[str]) -> None:
        for stream in streams:
            conn.subs.streams.pop(stream, None)
            subscribers = self._subs.get(stream)
            if subscribers is None:
                continue
            subscribers.discard(conn)
            if not subscribers:
                del self._subs[stream]
                self._feeds.pop(stream, None)

    # -- the market loop -------------------------------------------------------------------
    async def run(self) -> None:
        while True:
            try:
                self.step()
            except Exception:
                logger.exception("market step failed")
            await asyncio.sleep(self.cfg.step_s)

    def step(self) -> None:
        """Advance the market to now, deliver the new frames, enforce connection ages."""
        self.steps += 1
        now = self.clock.now_ms()
        new = self.market.advance(now)
        now = self.market.now_ms
        events: dict[str, list[OutEvent]] = {}
        for stream in self._subs:
            key = self._key(stream)
            if key is None:
                continue
            rows = new.get(key.symbol, [])
            if key.kind == "kline":
                evs = self._feeds[stream].step(rows, now)
            elif rows:
                evs = trade_events(key, rows)
            else:
                continue
            if evs:
                events[stream] = evs
        if events:
            self._deliver(events)
        self._enforce_ages()

    def _deliver(self, events: Mapping[str, list[OutEvent]]) -> None:
        cache: dict[tuple[str, bool, bool], list[tuple[int, str]]] = {}

        def framed(stream: str, combined: bool, micro: bool) -> list[tuple[int, str]]:
            got = cache.get((stream, combined, micro))
            if got is None:
                if combined:
                    got = [(e.key, wrap(stream, e.encode(micro))) for e in events[stream]]
                else:
                    got = [(e.key, e.encode(micro)) for e in events[stream]]
                cache[(stream, combined, micro)] = got
            return got

        for conn in list(self.connections):
            lists = [
                framed(s, conn.subs.combined, conn.micro) for s in conn.subs.streams if s in events
            ]
            if not lists:
                continue
            if len(lists) == 1:
                conn.push(f for _, f in lists[0])
            else:
                conn.push(f for _, f in heapq.merge(*lists, key=lambda kf: kf[0]))

    def _enforce_ages(self) -> None:
        now = self.wall.monotonic_s()
        for conn in list(self.connections):
            if conn.closing:
                continue
            if conn.shutdown_at_s is not None and now >= conn.shutdown_at_s:
                conn.shutdown_at_s = None
                conn.push([conn.shutdown_frame()])
            if now >= conn.close_at_s:
                conn.close_now(1001, "Connection lifetime over")

    # -- faults ----------------------------------------------------------------------------
    def fault(self, name: str, params: Mapping[str, str]) -> dict[str, Any]:
        """Inject a fault now (`flows.simulator.app` says what each does)."""
        conns = [c for c in self.connections if not c.closing]
        if name == "drop":
            for c in conns:
                c.abort()
        elif name == "stall":
            self.stall(_number(params, "seconds", 5.0))
        elif name == "garbage":
            count = int(_number(params, "count", 3.0))
            for c in conns:
                c.push(_garbage(c, count))
        elif name == "poison":
            what = params.get("what", "time")
            for c in conns:
                c.push([_poisoned(c, what, self.market)])
        elif name == "oversize":
            size = int(_number(params, "bytes", 2 * 1024 * 1024))
            for c in conns:
                c.push([_oversize(c, size, self.market.now_ms)])
        elif name == "shutdown":
            lead = _number(params, "lead_s", self.cfg.shutdown_lead_s)
            now = self.wall.monotonic_s()
            for c in conns:
                c.shutdown_at_s = None
                c.push([c.shutdown_frame()])
                c.close_at_s = min(c.close_at_s, now + lead)
        elif name in ("rest429", "rest418"):
            self.rest429_left = int(_number(params, "count", 1.0))
            self.rest429_retry_after = str(int(_number(params, "retry_after", 1.0)))
            self.rest429_status = 418 if name == "rest418" else 429
        elif name == "pause":
            self.clock.pause()
        elif name == "resume":
            self.clock.resume()
        else:
            raise ValueError(f"unknown fault {name!r}")
        self.count(name)
        return {"fault": name, "connections": len(conns)}

    def take_rest429(self) -> tuple[int, str] | None:
        """(status, Retry-After) of an injected 429 or 418 for this REST call, or None."""
        if self.rest429_left <= 0:
            return None
        self.rest429_left -= 1
        return self.rest429_status, self.rest429_retry_after

    def state(self) -> dict[str, Any]:
        m = self.market
        return {
            "marketTimeMs": m.now_ms,
            "startMs": m.start_ms,
            "endMs": m.end_ms,
            "finished": m.finished,
            "paused": self.clock.paused,
            "speed": self.clock.speed,
            "symbols": len(m.symbols),
            "lastAggIds": m.last_agg_ids(),
            "connections": len(self.connections),
            "subscriptions": {s: len(c) for s, c in self._subs.items()},
            "stalledForS": round(self.stall_left_s(), 3),
            "faults": dict(self.faults),
            "framesSent": sum(c.frames_sent for c in self.connections),
            "steps": self.steps,
        }


def _number(params: Mapping[str, str], name: str, default: float) -> float:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"parameter {name!r} must be a number, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"parameter {name!r} must not be negative")
    return value


def _garbage(conn: Connection, count: int) -> list[str]:
    stream = next(iter(conn.subs.streams), "btcusdt@aggTrade")
    variants = (
        f'{{"stream":"{stream}","data":{{"e":"aggTrade"',  # cut short
        "not json",
        '{"e":"aggTrade","E":',  # a raw payload cut short
    )
    return [variants[i % len(variants)] for i in range(count)]


def _poisoned(conn: Connection, what: str, market: SimMarket) -> str:
    """A well-formed aggTrade frame of the connection's first trade stream that no exchange
    could send: a time in the year 2286, ids of 10^15, ids far past the last trade's, or a
    price of 1e400."""
    stream = next((s for s in conn.subs.streams if s.endswith("@aggTrade")), "btcusdt@aggTrade")
    symbol = stream.split("@", 1)[0].upper()
    t, agg, f, price = market.now_ms, 9_000_000_000, 5_000_000_000, "1.00000000"
    if what == "time":
        t = 9_999_999_999_999
    elif what == "id":
        f = 10**15
    elif what == "price":
        price = "1e400"
    elif what == "jump":
        f = 50_000_000_000  # plausible on its own, not 5e10 ids after the last trade
    else:
        raise ValueError(f"unknown poison {what!r}: time, id, jump or price")
    payload = (
        f'{{"e":"aggTrade","E":{t + 1},"s":"{symbol}","a":{agg},"p":"{price}",'
        f'"q":"1.00000000","f":{f},"l":{f},"T":{t},"m":true,"M":true}}'
    )
    return wrap(stream, payload) if conn.subs.combined else payload


def _oversize(conn: Connection, size: int, now_ms: int) -> str:
    """A valid JSON frame of exactly `size` bytes (when size allows) of no known event."""
    head = f'{{"e":"simOversize","E":{now_ms},"pad":"'
    if conn.subs.combined:
        head = '{"stream":"!simOversize","data":' + head
        tail = '"}}'
    else:
        tail = '"}'
    return head + "x" * max(0, size - len(head) - len(tail)) + tail
