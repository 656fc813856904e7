"""The Binance simulator over real sockets on 127.0.0.1: streams, control messages, limits,
lifetime, faults and REST, each checked against the market's own history."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import socket
import struct
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Coroutine
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError

from flows.domain.clock import ManualClock
from flows.domain.intervals import INTERVALS
from flows.domain.kline import Kline
from flows.domain.money import format_units, parse_units
from flows.klines.builder import build_klines
from flows.simulator import (
    MarketClock,
    ScheduledFault,
    SimConfig,
    SimMarket,
    Simulator,
    parse_schedule,
    split_fills,
)
from flows.simulator.answers import agg_trade_json
from flows.simulator.control import Subscriptions, handle_control
from flows.simulator.market import split_symbol, trade_count
from flows.sources.synthetic import agg_trade_frame

T0 = 1_700_000_040_000  # a minute boundary
SYMS = ("BTCUSDT", "ETHUSDT", "BNBUSDT")


def config(**overrides: Any) -> SimConfig:
    base: dict[str, Any] = {
        "symbols": 3,
        "seed": 11,
        "rate": 20.0,
        "speed": 60.0,
        "start_ms": T0,
        "end_ms": T0 + 60_000,
        "start_paused": True,
    }
    base.update(overrides)
    return SimConfig(**base)


def run(body: Callable[[], Coroutine[Any, Any, None]], timeout: float = 20.0) -> None:
    asyncio.run(asyncio.wait_for(body(), timeout))


def http(method: str, url: str, headers: dict[str, str] | None = None) -> tuple[int, Message, Any]:
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.headers, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, e.headers, json.loads(e.read())


def get(sim: Simulator, path: str, **params: Any) -> tuple[int, Message, Any]:
    query = urllib.parse.urlencode(params)
    return http("GET", f"{sim.base_url}{path}{'?' + query if query else ''}")


def body_of(sim: Simulator, path: str, **params: Any) -> Any:
    status, _, body = get(sim, path, **params)
    assert status == 200, body
    return body


async def post(sim: Simulator, fault: str, **params: Any) -> Any:
    query = urllib.parse.urlencode(params)
    url = f"{sim.base_url}/_sim/{fault}{'?' + query if query else ''}"
    status, _, body = await asyncio.to_thread(http, "POST", url)
    assert status == 200, body
    return body


def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def finished_market(sim: Simulator) -> SimMarket:
    wait_until(lambda: sim.market.finished)
    return sim.market


class Collector:
    """Receives every frame of a connection in the background."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[str] = []
        self.times: list[float] = []
        self.closed: ConnectionClosed | None = None
        self.closed_at = 0.0
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            while True:
                frame = await self.ws.recv()
                self.frames.append(frame if isinstance(frame, str) else frame.decode())
                self.times.append(time.monotonic())
        except ConnectionClosed as e:
            self.closed = e
            self.closed_at = time.monotonic()

    async def until(self, check: Callable[[list[str]], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not check(self.frames):
            assert time.monotonic() < deadline, f"only {len(self.frames)} frames arrived"
            await asyncio.sleep(0.01)

    async def count(self, n: int, timeout: float = 10.0) -> list[str]:
        await self.until(lambda f: len(f) >= n, timeout)
        return self.frames

    async def close_event(self, timeout: float = 10.0) -> ConnectionClosed:
        await asyncio.wait_for(asyncio.shield(self.task), timeout)
        assert self.closed is not None
        return self.closed


async def answer(ws: ClientConnection, request: Any) -> Any:
    await ws.send(request if isinstance(request, str) else json.dumps(request))
    return json.loads(await asyncio.wait_for(ws.recv(), 5))


# -- streams ---------------------------------------------------------------------------------


def test_combined_stream_delivers_the_market_exactly_in_order() -> None:
    with Simulator(config()) as sim:

        async def body() -> None:
            url = f"{sim.ws_url}/stream?streams=btcusdt@aggTrade/ethusdt@aggTrade/bnbusdt@aggTrade"
            async with connect(url, compression=None) as ws:
                assert ws.response is not None
                assert "Sec-WebSocket-Extensions" not in ws.response.headers  # no deflate
                got = Collector(ws)
                await post(sim, "resume")
                market = await asyncio.to_thread(finished_market, sim)
                history = {s: market.trades(s) for s in SYMS}
                frames = await got.count(sum(len(h) for h in history.values()))
            decoded = [json.loads(f) for f in frames]
            times = [d["data"]["T"] for d in decoded]
            assert times == sorted(times)
            for symbol in SYMS:
                mine = [f for f, d in zip(frames, decoded, strict=True) if d["data"]["s"] == symbol]
                expected = [agg_trade_frame(symbol, a, t).decode() for a, t in history[symbol]]
                assert mine == expected
                assert len(mine) > 10

        run(body)


def test_raw_stream_in_microseconds_and_the_trade_split() -> None:
    with Simulator(config()) as sim:

        async def body() -> None:
            raw = f"{sim.ws_url}/ws/ethusdt@aggTrade?timeUnit=MICROSECOND"
            trades = f"{sim.ws_url}/ws/btcusdt@trade"
            async with connect(raw) as ws_raw, connect(trades) as ws_trades:
                got_raw, got_trades = Collector(ws_raw), Collector(ws_trades)
                await post(sim, "resume")
                market = await asyncio.to_thread(finished_market, sim)
                eth, btc = market.trades("ETHUSDT"), market.trades("BTCUSDT")
                raw_frames = await got_raw.count(len(eth))
                fills = [json.loads(f) for f in await got_trades.count(trade_count(btc))]
            for frame, (a, t) in zip(raw_frames, eth, strict=True):
                d = json.loads(frame)
                assert (d["e"], d["s"], d["a"], d["f"], d["l"]) == (
                    "aggTrade",
                    "ETHUSDT",
                    a,
                    *t[:2],
                )
                assert (d["T"], d["E"], d["m"]) == (t[4] * 1000, (t[4] + 1) * 1000, t[5])
                assert (parse_units(d["p"]), parse_units(d["q"])) == (t[2], t[3])
            pos = 0
            for _, (f, last, price, qty, t_ms, maker) in btc:
                mine = fills[pos : pos + last - f + 1]
                pos += last - f + 1
                assert [x["t"] for x in mine] == list(range(f, last + 1))
                assert {(x["e"], x["p"], x["T"], x["E"], x["m"]) for x in mine} == {
                    ("trade", format_units(price), t_ms, t_ms + 1, maker)
                }
                assert sum(parse_units(x["q"]) for x in mine) == qty
                assert all(parse_units(x["q"]) > 0 for x in mine)
            assert pos == len(fills)
            assert any(t[1] > t[0] for _, t in btc)  # some aggTrades really were split

        run(body)


def test_kline_stream_pushes_every_two_seconds_and_closes_as_build_klines() -> None:
    with Simulator(config(end_ms=T0 + 150_000)) as sim:

        async def body() -> None:
            async with connect(f"{sim.ws_url}/stream?streams=btcusdt@kline_1m") as ws:
                got = Collector(ws)
                await post(sim, "resume")
                await got.until(
                    lambda fs: any('"x":true' in f and f'"t":{T0 + 60_000}' in f for f in fs)
                )
            market = sim.market
            events = [json.loads(f)["data"] for f in got.frames]
            by_open: dict[int, list[dict[str, Any]]] = {}
            for ev in events:
                assert ev["e"] == "kline" and ev["s"] == "BTCUSDT" and ev["k"]["i"] == "1m"
                assert (ev["E"] - 100) % 2000 == 0
                by_open.setdefault(ev["k"]["t"], []).append(ev)
            assert {T0, T0 + 60_000} <= set(by_open)
            for open_ms, pushes in by_open.items():
                stamps = [p["E"] for p in pushes]
                assert all(b - a >= 2000 for a, b in itertools.pairwise(stamps))
                counts = [p["k"]["n"] for p in pushes]
                assert len(set(counts)) == len(counts)  # an unchanged kline is not re-sent
                for p in pushes:
                    k = p["k"]
                    closed = k["x"]
                    assert k["T"] == open_ms + 59_999
                    upto = k["T"] if closed else p["E"] - 1
                    rows = market.trades("BTCUSDT", open_ms, upto)
                    want = build_klines([t for _, t in rows], ("1m",))["1m"][-1]
                    assert _ws_kline(k) == want
                if open_ms < T0 + 120_000:
                    assert pushes[-1]["k"]["x"] and pushes[-1]["E"] == open_ms + 60_100
                    assert [p["k"]["x"] for p in pushes].count(True) == 1
            assert len(by_open[T0]) >= 25  # BTCUSDT trades all the time: a push every 2 s

        run(body)


def _ws_kline(k: dict[str, Any]) -> Kline:
    p = parse_units
    return Kline(k["t"], k["T"], p(k["o"]), p(k["h"]), p(k["l"]), p(k["c"]), p(k["v"]),
                 p(k["q"]), k["n"], p(k["V"]), p(k["Q"]), k["f"], k["L"])  # fmt: skip


def test_determinism_the_trades_do_not_depend_on_speed_or_steps() -> None:
    def play(speed: float, step_wall_ms: int) -> dict[str, list[Any]]:
        wall = ManualClock(0)
        market = SimMarket.synthetic(4, 5, 30.0, T0, T0 + 300_000)
        clock = MarketClock(wall, T0, speed)
        got: dict[str, list[Any]] = {}
        while not market.finished:
            wall.advance(step_wall_ms)
            for symbol, rows in market.advance(clock.now_ms()).items():
                got.setdefault(symbol, []).extend(rows)
        return got

    slow, fast = play(60.0, 25), play(600.0, 40)
    assert slow == fast and sum(map(len, slow.values())) > 1000

    # and over the wire: the frames of a run at speed 60 equal those of one at 600
    def frames(speed: float) -> list[str]:
        with Simulator(config(speed=speed, end_ms=T0 + 30_000)) as sim:
            out: list[str] = []

            async def body() -> None:
                streams = "/".join(f"{s.lower()}@aggTrade" for s in SYMS)
                async with connect(f"{sim.ws_url}/stream?streams={streams}") as ws:
                    got = Collector(ws)
                    await post(sim, "resume")
                    market = await asyncio.to_thread(finished_market, sim)
                    out.extend(await got.count(sum(len(market.trades(s)) for s in SYMS)))

            run(body)
            return out

    assert frames(60.0) == frames(600.0)


def test_a_recording_is_replayed_in_order(tmp_path: Path) -> None:
    source = SimMarket.synthetic(2, 3, 10.0, T0, T0 + 120_000)
    source.advance(T0 + 120_000)
    rows = source.trades("ETHUSDT")
    path = tmp_path / "ETHUSDT-aggTrades-2023-11-14.json"
    path.write_text(json.dumps(agg_trade_json(rows, 1)))
    replay = SimMarket.from_recording(path, end_ms=rows[-1][1][4])
    assert replay.symbols == ["ETHUSDT"] and replay.start_ms == rows[0][1][4] - 1
    replay.advance(rows[40][1][4])
    replay.advance(rows[-1][1][4] + 10_000)
    assert [t for _, t in replay.trades("ETHUSDT")] == [t for _, t in rows]
    assert replay.finished and replay.last_agg_id("ETHUSDT") == 100_000 + len(rows) - 1
    with Simulator(SimConfig(recording=path, speed=120.0, start_paused=True)) as sim:

        async def body() -> None:
            async with connect(f"{sim.ws_url}/ws/ethusdt@aggTrade") as ws:
                got = Collector(ws)
                await post(sim, "resume")
                frames = await got.count(len(rows))
            assert [json.loads(f)["T"] for f in frames] == [t[4] for _, t in rows]

        run(body)


# -- control messages and limits -------------------------------------------------------------


def test_control_messages_and_every_error_code() -> None:
    with Simulator(config(max_incoming_per_s=1000)) as sim:

        async def body() -> None:
            async with connect(f"{sim.ws_url}/ws") as ws:
                sub = {"method": "SUBSCRIBE", "params": ["btcusdt@aggTrade", "nosuch@x"], "id": 1}
                assert await answer(ws, sub) == {"result": None, "id": 1}
                listed = await answer(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 2})
                assert listed == {"result": ["btcusdt@aggTrade", "nosuch@x"], "id": 2}
                unsub = {"method": "UNSUBSCRIBE", "params": ["nosuch@x"], "id": "u-1"}
                assert await answer(ws, unsub) == {"result": None, "id": "u-1"}
                listed = await answer(ws, {"method": "LIST_SUBSCRIPTIONS", "id": None})
                assert listed == {"result": ["btcusdt@aggTrade"], "id": None}
                get_combined = {"method": "GET_PROPERTY", "params": ["combined"], "id": 3}
                assert await answer(ws, get_combined) == {"result": False, "id": 3}
                set_combined = {"method": "SET_PROPERTY", "params": ["combined", True], "id": 4}
                assert await answer(ws, set_combined) == {"result": None, "id": 4}
                assert await answer(ws, get_combined) == {"result": True, "id": 3}

                async def code(request: Any) -> int:
                    reply = await answer(ws, request)
                    assert set(reply) <= {"code", "msg", "id"} and isinstance(reply["msg"], str)
                    return int(reply["code"])

                assert await code({"method": "GET_PROPERTY", "params": ["nope"], "id": 5}) == 0
                assert await code({"method": "SET_PROPERTY", "params": ["x", True], "id": 5}) == 0
                assert await code({"method": "SET_PROPERTY", "params": ["combined", "yes"],
                                   "id": 6}) == 1  # fmt: skip
                assert await code({"method": "SET_PROPERTY", "params": ["combined"], "id": 6}) == 1
                for bad_id in (1.5, True, {"x": 1}, [1], "x" * 37, "bad id", 2**63):
                    assert await code({"method": "LIST_SUBSCRIPTIONS", "id": bad_id}) == 2
                assert await code({"method": "LIST_SUBSCRIPTIONS"}) == 2  # no id
                assert await code({"method": "PUBLISH", "id": 7}) == 2
                assert await code({"params": [], "id": 7}) == 2
                assert await code({"method": "LIST_SUBSCRIPTIONS", "params": ["x"], "id": 8}) == 2
                assert await code({"method": "GET_PROPERTY", "params": ["combined", 1],
                                   "id": 8}) == 2  # fmt: skip
                assert await code({"method": "GET_PROPERTY", "params": [3], "id": 8}) == 2
                assert await code({"method": "SUBSCRIBE", "params": "btcusdt@trade", "id": 9}) == 2
                assert await code({"method": "SUBSCRIBE", "params": [1], "id": 9}) == 2
                assert await code([1, 2]) == 2
                assert await code("not json") == 3
                assert await code('{"method": "SUBSCRIBE", ') == 3
                too_many = [f"s{i}@aggTrade" for i in range(1024)]
                reply = await answer(ws, {"method": "SUBSCRIBE", "params": too_many, "id": 10})
                assert reply["code"] == 2 and reply["id"] == 10
                listed = await answer(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 11})
                assert listed["result"] == ["btcusdt@aggTrade"]  # nothing of it was applied
                # combined was switched on: data now comes wrapped
                await post(sim, "resume")
                frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
                assert frame["stream"] == "btcusdt@aggTrade" and frame["data"]["e"] == "aggTrade"
                Collector(ws)  # keep reading, so the close handshake is not stuck behind frames

        run(body)


def test_control_handler_unit() -> None:
    subs = Subscriptions(combined=True, max_streams=2)
    reply = handle_control('{"method":"SUBSCRIBE","params":["a@trade","a@trade"],"id":1}', subs)
    assert (reply.text, reply.added) == ('{"result":null,"id":1}', ("a@trade",))
    assert handle_control('{"method":"SUBSCRIBE","params":["b","c"],"id":2}', subs).added == ()
    assert json.loads(handle_control("{", subs).text)["code"] == 3


def test_more_than_five_messages_a_second_closes_the_connection() -> None:
    with Simulator(config()) as sim:

        async def body() -> None:
            listing = json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 1})
            async with connect(f"{sim.ws_url}/ws") as ws:
                for _ in range(5):
                    assert (await answer(ws, listing))["result"] == []
                await asyncio.sleep(1.05)  # a new second: five more are fine
                for _ in range(5):
                    await ws.send(listing)
                for _ in range(5):
                    await asyncio.wait_for(ws.recv(), 5)
                await ws.send(listing)  # the sixth within a second
                with pytest.raises(ConnectionClosed):
                    while True:
                        await asyncio.wait_for(ws.recv(), 5)
                assert ws.close_code == 1008
            assert sim.state()["faults"]["too_many_messages"] == 1

        run(body)


def test_connections_get_server_shutdown_then_close_at_max_age() -> None:
    with Simulator(config(max_connection_age_s=1.5, shutdown_lead_s=0.6)) as sim:

        async def body() -> None:
            started = time.monotonic()
            async with (
                connect(f"{sim.ws_url}/stream?streams=btcusdt@aggTrade") as combined,
                connect(f"{sim.ws_url}/ws/btcusdt@aggTrade") as raw,
            ):
                got_c, got_r = Collector(combined), Collector(raw)
                closed_c, closed_r = await got_c.close_event(), await got_r.close_event()
            elapsed = time.monotonic() - started
            assert elapsed > 1.3  # not closed before its age limit (load only adds time)
            assert closed_c.rcvd is not None and closed_c.rcvd.code == 1001
            assert closed_r.rcvd is not None and closed_r.rcvd.code == 1001
            wrapped, bare = json.loads(got_c.frames[0]), json.loads(got_r.frames[0])
            assert len(got_c.frames) == len(got_r.frames) == 1
            assert wrapped == {"stream": "!serverShutdown", "data": bare}
            assert bare == {"e": "serverShutdown", "E": T0}
            assert got_c.closed_at - got_c.times[0] > 0.3  # the warning came ahead of the close

        run(body)


def test_unanswered_pings_disconnect_and_answered_ones_keep_the_connection() -> None:
    # pings every 0.2 s: under load the answers bunch up; the 5-a-second limit is not under test
    cfg = config(ping_interval_s=0.2, ping_timeout_s=0.5, speed=1.0, start_paused=False,
                 end_ms=None, max_incoming_per_s=100)  # fmt: skip
    with Simulator(cfg) as sim:
        sock = socket.create_connection(("127.0.0.1", sim.port), timeout=5)
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            (
                f"GET /ws/btcusdt@aggTrade HTTP/1.1\r\nHost: 127.0.0.1:{sim.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
            ).encode()
        )
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += sock.recv(4096)
        head, buf = buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101")
        assert b"sec-websocket-extensions" not in head.lower()  # permessage-deflate is off

        def read(n: int) -> bytes:
            nonlocal buf
            while len(buf) < n:
                chunk = sock.recv(65536)
                if not chunk:
                    raise EOFError
                buf += chunk
            out, buf = buf[:n], buf[n:]
            return out

        ping_at = close_at = None
        close_code = None
        try:
            while close_at is None:
                b0, b1 = read(2)
                size = b1 & 0x7F
                if size == 126:
                    size = struct.unpack("!H", read(2))[0]
                elif size == 127:
                    size = struct.unpack("!Q", read(8))[0]
                payload = read(size)
                if b0 & 0x0F == 0x9 and ping_at is None:
                    ping_at = time.monotonic()  # and never answer it
                elif b0 & 0x0F == 0x8:
                    close_at, close_code = time.monotonic(), struct.unpack("!H", payload[:2])[0]
        except EOFError:
            close_at = time.monotonic()
        sock.close()
        assert ping_at is not None and close_at >= ping_at  # closed after the unanswered ping
        assert close_code in (None, 1011)

        async def body() -> None:  # the websockets client answers pings: it stays connected
            async with connect(f"{sim.ws_url}/ws/btcusdt@aggTrade", ping_interval=None) as ws:
                got = Collector(ws)
                await asyncio.sleep(1.5)
                assert got.closed is None and got.frames

        run(body)


# -- faults ----------------------------------------------------------------------------------


def test_drop_cuts_connections_without_a_close_frame() -> None:
    with Simulator(config()) as sim:

        async def body() -> None:
            async with connect(f"{sim.ws_url}/ws/btcusdt@aggTrade") as ws:
                got = Collector(ws)
                await asyncio.to_thread(wait_until, lambda: sim.state()["connections"] == 1)
                assert (await post(sim, "drop"))["connections"] == 1
                closed = await got.close_event()
                assert isinstance(closed, ConnectionClosedError) and closed.rcvd is None
            state = await asyncio.to_thread(sim.state)
            assert state["faults"]["drop"] == 1

        run(body)


def test_stall_holds_frames_then_delivers_all_of_them_in_order() -> None:
    with Simulator(config(end_ms=None, rate=60.0, start_paused=False)) as sim:

        async def body() -> None:
            async with connect(f"{sim.ws_url}/ws/btcusdt@aggTrade") as ws:
                got = Collector(ws)
                await got.count(5)
                before = (await asyncio.to_thread(sim.state))["marketTimeMs"]
                await post(sim, "stall", seconds=1.2)
                stalled = await asyncio.to_thread(sim.state)
                assert stalled["stalledForS"] > 0.5
                stall_end = time.monotonic() + 1.2
                await got.until(lambda fs: got.times[-1] > stall_end, timeout=10)
                after = (await asyncio.to_thread(sim.state))["marketTimeMs"]
            assert after - before > 60_000  # the market kept moving (speed 60)
            gaps = [b - a for a, b in itertools.pairwise(got.times)]
            assert max(gaps) > 0.8
            ids = [json.loads(f)["a"] for f in got.frames]
            assert ids == list(range(ids[0], ids[0] + len(ids)))  # nothing lost

        run(body)


def test_garbage_and_oversize_frames() -> None:
    with Simulator(config()) as sim:

        async def body() -> None:
            async with (
                connect(f"{sim.ws_url}/stream?streams=btcusdt@aggTrade") as ws,
                connect(f"{sim.ws_url}/ws", max_size=None) as big,
                connect(f"{sim.ws_url}/ws") as small,
            ):
                got, got_big, got_small = Collector(ws), Collector(big), Collector(small)
                await asyncio.to_thread(wait_until, lambda: sim.state()["connections"] == 3)
                await post(sim, "garbage", count=4)
                for frame in await got.count(4):
                    with pytest.raises(ValueError):
                        json.loads(frame)
                assert got.frames[0].startswith('{"stream":"btcusdt@aggTrade","data":{')
                assert "not json" in got.frames
                await post(sim, "oversize", bytes=300_000)
                [big_frame] = (await got_big.count(5))[4:]
                assert len(big_frame.encode()) == 300_000
                assert json.loads(big_frame)["e"] == "simOversize"
                wrapped = (await got.count(5))[4]
                assert len(wrapped) == 300_000
                assert json.loads(wrapped)["stream"] == "!simOversize"
                await post(sim, "oversize")  # 2 MiB: over the 1 MiB default of the client
                closed = await got_small.close_event()
                assert closed.sent is not None and closed.sent.code == 1009
                [huge] = (await got_big.count(6))[5:]
                assert len(huge) == 2 * 1024 * 1024

        run(body)


def test_shutdown_fault_warns_then_closes() -> None:
    with Simulator(config()) as sim:

        async def body() -> None:
            async with connect(f"{sim.ws_url}/stream") as ws:
                got = Collector(ws)
                await asyncio.to_thread(wait_until, lambda: sim.state()["connections"] == 1)
                sent = time.monotonic()
                await post(sim, "shutdown", lead_s=0.4)
                closed = await got.close_event()
                assert time.monotonic() - sent > 0.3
            assert json.loads(got.frames[0])["stream"] == "!serverShutdown"
            assert closed.rcvd is not None and closed.rcvd.code == 1001

        run(body)


def test_scheduled_faults_and_slow_consumers() -> None:
    assert parse_schedule("2:stall?seconds=3, 1:drop") == (
        ScheduledFault.of(1.0, "drop"),
        ScheduledFault.of(2.0, "stall", seconds=3),
    )
    with pytest.raises(ValueError):
        parse_schedule("1:explode")
    schedule = (ScheduledFault.of(0.2, "stall", seconds=30),)
    cfg = config(schedule=schedule, max_queue_frames=40, start_paused=False, end_ms=None)
    with Simulator(cfg) as sim:

        async def body() -> None:
            async with connect(f"{sim.ws_url}/ws/btcusdt@aggTrade") as ws:
                closed = await Collector(ws).close_event()  # stalled, queue overflows: dropped
                assert closed.rcvd is None
            state = await asyncio.to_thread(sim.state)
            assert state["faults"] == {"stall": 1, "slow_consumer": 1}

        run(body)


def test_rest429_fault_and_the_weight_limit() -> None:
    with Simulator(config(rest_weight_limit=30)) as sim:

        async def body() -> None:
            await post(sim, "rest429", count=2, retry_after=7)
            for _ in range(2):
                status, headers, reply = get(sim, "/api/v3/ping")
                assert (status, headers["Retry-After"], reply["code"]) == (429, "7", -1003)
            assert get(sim, "/api/v3/ping")[0] == 200

        run(body)
        for _ in range(3):  # a new minute may start between two calls: then try again
            first = get(sim, "/api/v3/exchangeInfo")
            second = get(sim, "/api/v3/exchangeInfo")
            if first[1]["X-MBX-USED-WEIGHT-1M"] in ("20", "21"):
                break
        assert first[0] == 200
        assert second[0] == 429 and 1 <= int(second[1]["Retry-After"]) <= 60
        assert int(second[1]["X-MBX-USED-WEIGHT-1M"]) > 30


# -- REST ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def done() -> Any:
    """A finished 10-minute market, for the REST tests."""
    with Simulator(config(speed=6000.0, end_ms=T0 + 600_000, start_paused=False)) as sim:
        finished_market(sim)
        yield sim


def _agg(rows: list[Any]) -> list[dict[str, Any]]:
    return [
        {"a": a, "p": format_units(t[2]), "q": format_units(t[3]), "f": t[0], "l": t[1],
         "T": t[4], "m": t[5], "M": True}
        for a, t in rows
    ]  # fmt: skip


def test_rest_agg_trades_windows_limits_and_errors(done: Simulator) -> None:
    sim, market = done, done.market
    hist = market.trades("BTCUSDT")
    assert len(hist) > 1500
    path = "/api/v3/aggTrades"
    status, headers, latest = get(sim, path, symbol="BTCUSDT")
    assert status == 200 and latest == _agg(hist[-500:])
    used = int(headers["X-MBX-USED-WEIGHT-1M"])
    assert get(sim, path, symbol="BTCUSDT", limit=3)[2] == _agg(hist[-3:])
    a0 = hist[100][0]
    assert body_of(sim, path, symbol="BTCUSDT", fromId=a0, limit=7) == _agg(hist[100:107])
    assert body_of(sim, path, symbol="BTCUSDT", fromId=hist[-1][0] + 1) == []
    t_a, t_b = hist[200][1][4], hist[260][1][4]
    inside = [r for r in hist if t_a <= r[1][4] <= t_b]
    both = body_of(sim, path, symbol="BTCUSDT", startTime=t_a, endTime=t_b, limit=1000)
    assert both == _agg(inside)
    assert body_of(sim, path, symbol="BTCUSDT", startTime=t_a, endTime=t_b, limit=5) == _agg(
        inside[:5]
    )
    from_start = [r for r in hist if r[1][4] >= t_a][:1000]
    assert body_of(sim, path, symbol="BTCUSDT", startTime=t_a, limit=1000) == _agg(from_start)
    upto = [r for r in hist if r[1][4] <= t_b][-10:]
    assert body_of(sim, path, symbol="BTCUSDT", endTime=t_b, limit=10) == _agg(upto)
    micros = body_of(sim, path, symbol="BTCUSDT", startTime=t_a * 1000, endTime=t_b * 1000)
    assert micros == _agg(inside)
    _, _, in_us = http(
        "GET", f"{sim.base_url}{path}?symbol=BTCUSDT&limit=1", {"X-MBX-TIME-UNIT": "MICROSECOND"}
    )
    assert in_us[0]["T"] == hist[-1][1][4] * 1000
    errors = [
        ({"symbol": "XYZUSDT"}, -1121),
        ({"symbol": "btcusdt"}, -1100),
        ({}, -1102),
        ({"symbol": "BTCUSDT", "limit": 1001}, -1130),
        ({"symbol": "BTCUSDT", "limit": 0}, -1130),
        ({"symbol": "BTCUSDT", "limit": "ten"}, -1100),
        ({"symbol": "BTCUSDT", "fromId": -5}, -1100),
        ({"symbol": "BTCUSDT", "fromId": a0, "startTime": t_a}, -1128),
    ]
    for params, code in errors:
        status, headers, reply = get(sim, path, **params)
        assert (status, reply["code"]) == (400, code), params
        assert isinstance(reply["msg"], str)
    last_used = int(get(sim, path, symbol="BTCUSDT", limit=1)[1]["X-MBX-USED-WEIGHT-1M"])
    assert last_used > used or last_used == 4  # running weight (or a new minute began)


def test_rest_klines_equal_build_klines(done: Simulator) -> None:
    sim, market = done, done.market
    for symbol in ("BTCUSDT", "BNBUSDT"):
        trades = [t for _, t in market.trades(symbol)]
        for interval in ("1s", "1m", "5m", "1h"):
            want = [k.to_rest() for k in build_klines(trades, (interval,))[interval]]
            start = INTERVALS[interval].open_time(T0)
            got = body_of(sim, "/api/v3/klines", symbol=symbol, interval=interval,
                          startTime=start, limit=1000)  # fmt: skip
            assert got[: len(want)] == want[:1000], (symbol, interval)
            for extra in got[len(want) :]:  # flat klines up to market now
                assert extra[8] == 0 and set(extra[1:5]) == {want[-1][4]}
            assert got[-1][0] <= T0 + 600_000 <= got[-1][6]
    want = [k.to_rest() for k in build_klines(trades, ("1m",))["1m"]]
    end = want[5][0] + 30_000
    assert body_of(sim, "/api/v3/klines", symbol="BNBUSDT", interval="1m", endTime=end,
                   limit=3) == want[3:6]  # fmt: skip
    assert body_of(sim, "/api/v3/klines", symbol="BNBUSDT", interval="1m",
                   startTime=want[2][0] + 1, endTime=end) == want[3:6]  # fmt: skip
    latest = body_of(sim, "/api/v3/klines", symbol="BNBUSDT", interval="1m", limit=2)
    assert latest[-1][0] == T0 + 600_000 and len(latest) == 2
    for params, code in [
        ({"symbol": "BNBUSDT", "interval": "2m"}, -1120),
        ({"symbol": "BNBUSDT"}, -1102),
        ({"symbol": "NOPE", "interval": "1m"}, -1121),
        ({"symbol": "BNBUSDT", "interval": "1m", "limit": 1001}, -1130),
        ({"symbol": "BNBUSDT", "interval": "1m", "timeZone": "8"}, -1130),
    ]:
        status, _, reply = get(sim, "/api/v3/klines", **params)
        assert (status, reply["code"]) == (400, code)


def test_rest_ticker_24hr(done: Simulator) -> None:
    sim, market = done, done.market
    every = body_of(sim, "/api/v3/ticker/24hr")
    assert [t["symbol"] for t in every] == list(SYMS)
    status, headers, one = get(sim, "/api/v3/ticker/24hr", symbol="ETHUSDT")
    assert status == 200 and headers["X-MBX-USED-WEIGHT-1M"]
    assert list(one) == [
        "symbol", "priceChange", "priceChangePercent", "weightedAvgPrice", "prevClosePrice",
        "lastPrice", "lastQty", "bidPrice", "bidQty", "askPrice", "askQty", "openPrice",
        "highPrice", "lowPrice", "volume", "quoteVolume", "openTime", "closeTime", "firstId",
        "lastId", "count",
    ]  # fmt: skip
    rows = market.trades("ETHUSDT")
    trades = [t for _, t in rows]
    volume = sum(t[3] for t in trades)
    quote = sum(t[2] * t[3] // 100_000_000 for t in trades)
    change = trades[-1][2] - trades[0][2]
    assert one["volume"] == format_units(volume) and one["quoteVolume"] == format_units(quote)
    assert one["openPrice"] == format_units(trades[0][2])
    assert one["lastPrice"] == format_units(trades[-1][2])
    assert one["highPrice"] == format_units(max(t[2] for t in trades))
    assert one["lowPrice"] == format_units(min(t[2] for t in trades))
    assert one["priceChange"] == ("-" if change < 0 else "") + format_units(abs(change))
    pct = float(one["priceChangePercent"])
    assert abs(pct - change / trades[0][2] * 100) < 0.0006
    assert one["weightedAvgPrice"] == format_units(quote * 100_000_000 // volume)
    assert (one["firstId"], one["lastId"]) == (trades[0][0], trades[-1][1])
    assert one["count"] == trade_count(rows) == one["lastId"] - one["firstId"] + 1
    assert one["lastQty"] == format_units(split_fills(trades[-1])[-1][1])
    assert (one["openTime"], one["closeTime"]) == (T0 + 600_000 - 86_400_000, T0 + 600_000)
    assert one["prevClosePrice"] == "0.00000000"  # nothing before the window
    assert one in every
    pair = body_of(sim, "/api/v3/ticker/24hr", symbols='["BTCUSDT","ETHUSDT"]')
    assert [t["symbol"] for t in pair] == ["BTCUSDT", "ETHUSDT"] and pair[1] == one
    mini = body_of(sim, "/api/v3/ticker/24hr", symbol="ETHUSDT", type="MINI")
    assert "priceChange" not in mini and mini["volume"] == one["volume"]
    assert get(sim, "/api/v3/ticker/24hr", symbol="NOPEUSDT")[2]["code"] == -1121
    assert get(sim, "/api/v3/ticker/24hr", symbols="BTCUSDT")[2]["code"] == -1100


def test_rest_exchange_info_ping_and_time(done: Simulator) -> None:
    sim, market = done, done.market
    assert body_of(sim, "/api/v3/ping") == {}
    assert body_of(sim, "/api/v3/time") == {"serverTime": T0 + 600_000}
    status, headers, info = get(sim, "/api/v3/exchangeInfo")
    assert status == 200 and int(headers["X-MBX-USED-WEIGHT-1M"]) >= 20
    assert info["timezone"] == "UTC" and info["serverTime"] == T0 + 600_000
    assert {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
            "limit": 6000} in info["rateLimits"]  # fmt: skip
    assert [s["symbol"] for s in info["symbols"]] == list(SYMS)
    for s in info["symbols"]:
        assert s["status"] == "TRADING" and s["quoteAsset"] == "USDT"
        assert s["baseAsset"] + s["quoteAsset"] == s["symbol"]
        assert s["baseAssetPrecision"] == s["quotePrecision"] == s["quoteAssetPrecision"] == 8
        filters = {f["filterType"]: f for f in s["filters"]}
        tick = parse_units(filters["PRICE_FILTER"]["tickSize"])
        step = parse_units(filters["LOT_SIZE"]["stepSize"])
        trades = [t for _, t in market.trades(s["symbol"])]
        assert all(t[2] % tick == 0 and t[3] % step == 0 for t in trades)
        assert tick > 1 and step > 1
    one = body_of(sim, "/api/v3/exchangeInfo", symbol="ETHUSDT")
    assert [s["symbol"] for s in one["symbols"]] == ["ETHUSDT"]
    assert split_symbol("XRPETH") == ("XRP", "ETH") and split_symbol("SYN0042USDT")[1] == "USDT"


def test_sim_state(done: Simulator) -> None:
    state = body_of(done, "/_sim/state")
    assert state["finished"] and state["symbols"] == 3 and state["marketTimeMs"] == T0 + 600_000
    assert state["lastAggIds"] == {s: done.market.trades(s)[-1][0] for s in SYMS}
    status, _, _ = http("POST", f"{done.base_url}/_sim/explode")
    assert status == 404
