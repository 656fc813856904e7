"""The recorder against a real local WebSocket server sending real Binance frames.

The server (`websockets.asyncio.server.serve`, same event loop) replays frames from the
2021-04-04 capture, drops the first connection half-way, and moves the test's `ManualClock`
across an hour boundary. The files are then read with `flows.sources.readers.read_all` and
compared with the sent frames decoded here with plain `json` and `Decimal`.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import random
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from flows.domain.clock import ManualClock
from flows.domain.kline import Trade
from flows.recorder import RecorderStats, record
from flows.sources.readers import read_all, sniff_format

CAPTURE = "ws-capture-2021-04-04-btc-eth-dot.txt"
STREAMS = ["btcusdt@aggTrade", "ethusdt@aggTrade", "dotusdt@aggTrade", "btcusdt@depth@100ms"]
HOUR_21_MS = 1_617_570_000_000  # 2021-04-04 21:00:00 UTC
FAST = {"flush_every_s": 0.02, "reconnect_base_s": 0.01, "reconnect_max_s": 0.05}


def capture_frames(shared_data: Path, trades: int, depth: int) -> list[str]:
    """The first `trades` aggTrade frames and `depth` depth frames of the capture, in order."""
    out: list[str] = []
    n_trades = n_depth = 0
    with (shared_data / CAPTURE).open() as f:
        next(f)  # the URL line
        for line in f:
            head, sep, frame = line.rstrip("\n").partition(": ")
            if not sep or " -> " in head:
                continue  # a REST call recorded beside the stream
            if '@aggTrade"' in frame[:40] and n_trades < trades:
                n_trades += 1
                out.append(frame)
            elif '@depth@100ms"' in frame[:40] and n_depth < depth:
                n_depth += 1
                out.append(frame)
            if n_trades == trades and n_depth == depth:
                return out
    raise AssertionError("the capture is shorter than the test needs")


def expected_trades(frames: list[str]) -> dict[str, list[Trade]]:
    """The trades in `frames`, decoded independently of the project's decoders."""
    out: dict[str, list[Trade]] = {}
    for frame in frames:
        data = json.loads(frame)["data"]
        if data.get("e") != "aggTrade":
            continue
        units = Decimal(10) ** 8
        out.setdefault(data["s"], []).append(
            (
                data["f"],
                data["l"],
                int(Decimal(data["p"]) * units),
                int(Decimal(data["q"]) * units),
                data["T"],
                data["m"],
            )
        )
    return out


def merged(*parts: dict[str, list[Trade]]) -> dict[str, list[Trade]]:
    out: dict[str, list[Trade]] = {}
    for part in parts:
        for sym, trades in part.items():
            out.setdefault(sym, []).extend(trades)
    return out


async def until(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    async def poll() -> None:
        while not check():
            await asyncio.sleep(0.002)

    await asyncio.wait_for(poll(), timeout_s)


Handler = Callable[[ServerConnection], Awaitable[None]]


async def run_with_server(
    handler: Handler,
    body: Callable[[str], Awaitable[None]],
) -> None:
    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        await body(f"ws://127.0.0.1:{port}")


def test_records_across_a_reconnect_and_an_hour_boundary(shared_data: Path, tmp_path: Path) -> None:
    frames = capture_frames(shared_data, trades=54, depth=6)
    first_conn, second_conn, next_hour = frames[:20], frames[20:40], frames[40:]
    clock = ManualClock(HOUR_21_MS - 5_000)
    stats = RecorderStats()
    stop = asyncio.Event()
    paths_seen: list[str] = []
    all_sent = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        paths_seen.append(ws.request.path)
        if len(paths_seen) == 1:
            for f in first_conn:
                await ws.send(f)
            await until(lambda: stats.frames == 20)
            return  # the server ends the connection: the recorder must come back
        for f in second_conn:
            await ws.send(f)
        await until(lambda: stats.frames == 40)
        clock.advance(10_000)  # 21:00:05: the next frames belong to the next hour
        for f in next_hour:
            await ws.send(f)
        await until(lambda: stats.frames == len(frames))
        all_sent.set()
        await ws.wait_closed()

    result: dict[str, Any] = {}

    async def body(url: str) -> None:
        task = asyncio.create_task(
            record(
                url,
                STREAMS,
                tmp_path,
                clock=clock,
                stop=stop,
                stats=stats,
                rng=random.Random(3),
                **FAST,
            )
        )
        try:
            await asyncio.wait_for(all_sent.wait(), 10)
            first = tmp_path / "klineflow-20210404-20.jsonl.gz"
            second = tmp_path / "klineflow-20210404-21.jsonl.gz"
            await until(second.exists)
            await asyncio.sleep(0.1)  # several flush periods
            # read while the recorder runs: the open file already shows every frame
            live = read_all(second)
            result["live"] = (live.trades, live.torn, live.dead)
            result["first_live"] = read_all(first).trades
        finally:
            stop.set()
            result["stats"] = await asyncio.wait_for(task, 10)

    asyncio.run(run_with_server(handler, body))

    assert paths_seen == [f"/stream?streams={'/'.join(STREAMS)}"] * 2
    final: RecorderStats = result["stats"]
    assert final is stats
    assert (final.frames, final.files, final.reconnects, final.connections) == (60, 2, 1, 2)
    assert [p.name for p in final.paths] == [
        "klineflow-20210404-20.jsonl.gz",
        "klineflow-20210404-21.jsonl.gz",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in final.paths]

    want_first = expected_trades(first_conn + second_conn)
    want_second = expected_trades(next_hour)
    assert sum(len(v) for v in want_second.values()) > 0
    live_trades, live_torn, live_dead = result["live"]
    assert live_trades == want_second and live_torn == 0 and live_dead == []
    assert result["first_live"] == want_first  # closed at the rotation, whole

    a, b = (read_all(p) for p in final.paths)
    assert a.trades == want_first and b.trades == want_second
    assert merged(a.trades, b.trades) == expected_trades(frames)
    assert a.ignored + b.ignored == 6  # the depth frames are recorded too
    assert a.dead == b.dead == [] and a.torn == b.torn == 0
    # every frame is stored as sent, with its receive time from the clock
    lines = []
    for p in final.paths:
        with gzip.open(p) as f:
            lines += [json.loads(x) for x in f.read().splitlines()]
    headers = [x for x in lines if "format" in x]
    assert [h["created_ms"] for h in headers] == [HOUR_21_MS - 5_000, HOUR_21_MS + 5_000]
    assert headers[0]["source"].endswith("/stream?streams=" + "/".join(STREAMS))
    recorded = [x for x in lines if "r" in x]
    assert [json.dumps(x["d"], separators=(",", ":")) for x in recorded] == [
        json.dumps(json.loads(f), separators=(",", ":")) for f in frames
    ]
    assert [x["r"] for x in recorded] == [HOUR_21_MS - 5_000] * 40 + [HOUR_21_MS + 5_000] * 20


def test_a_restart_within_the_hour_starts_a_new_file(shared_data: Path, tmp_path: Path) -> None:
    frames = capture_frames(shared_data, trades=10, depth=0)
    clock = ManualClock(HOUR_21_MS + 60_000)

    async def run_once(part: list[str]) -> RecorderStats:
        stats = RecorderStats()
        stop = asyncio.Event()

        async def handler(ws: ServerConnection) -> None:
            for f in part:
                await ws.send(f)
            await ws.wait_closed()

        async def body(url: str) -> None:
            task = asyncio.create_task(
                record(url, STREAMS[:3], tmp_path, clock=clock, stop=stop, stats=stats, **FAST)
            )
            try:
                await until(lambda: stats.frames == len(part))
            finally:
                stop.set()
                await asyncio.wait_for(task, 10)

        await run_with_server(handler, body)
        return stats

    one = asyncio.run(run_once(frames[:4]))
    clock.advance(60_000)
    two = asyncio.run(run_once(frames[4:]))
    assert [p.name for p in one.paths] == ["klineflow-20210404-21.jsonl.gz"]
    assert [p.name for p in two.paths] == ["klineflow-20210404-21.1.jsonl.gz"]
    assert read_all(one.paths[0]).trades == expected_trades(frames[:4])
    assert read_all(two.paths[0]).trades == expected_trades(frames[4:])


def test_many_streams_are_split_across_connections(tmp_path: Path) -> None:
    symbols = [f"AAA{i:02d}USDT" for i in range(40)]
    streams = [f"{s.lower()}@aggTrade" for s in symbols]
    stats = RecorderStats()
    stop = asyncio.Event()
    seen: list[list[str]] = []

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        names = ws.request.path.split("streams=", 1)[1].split("/")
        seen.append(names)
        sym = names[0].split("@")[0].upper()
        frame = {
            "stream": names[0],
            "data": {"e": "aggTrade", "E": HOUR_21_MS, "s": sym, "a": len(seen), "p": "1.00000000",
                     "q": "2.00000000", "f": 7, "l": 7, "T": HOUR_21_MS, "m": False, "M": True},
        }  # fmt: skip
        await ws.send(json.dumps(frame))
        await ws.wait_closed()

    async def body(url: str) -> None:
        task = asyncio.create_task(
            record(
                url,
                streams,
                tmp_path,
                clock=ManualClock(HOUR_21_MS),
                stop=stop,
                stats=stats,
                per_connection=16,
                **FAST,
            )
        )
        try:
            await until(lambda: stats.frames == 3)
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)

    asyncio.run(run_with_server(handler, body))
    assert sorted(len(s) for s in seen) == [8, 16, 16]
    assert sorted(s for names in seen for s in names) == sorted(streams)
    (path,) = stats.paths
    # the header stays short enough for readers to recognise the file
    assert sniff_format(path) == "recording"
    assert sorted(read_all(path).trades) == sorted(symbols[i] for i in (0, 16, 32))


def test_an_unreachable_server_is_retried_until_stopped(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    stats = RecorderStats()

    async def main() -> RecorderStats:
        stop = asyncio.Event()
        task = asyncio.create_task(
            record(f"ws://127.0.0.1:{port}", STREAMS, tmp_path, stop=stop, stats=stats, **FAST)
        )
        await until(lambda: stats.reconnects >= 3)
        stop.set()
        return await asyncio.wait_for(task, 10)

    final = asyncio.run(main())
    assert final.frames == final.files == final.connections == 0
    assert "refused" in final.last_error.lower() or "connect" in final.last_error.lower()
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="rotate_every_ms"):
        asyncio.run(record("ws://x", STREAMS, Path("."), rotate_every_ms=1000))
    with pytest.raises(ValueError, match="no streams"):
        asyncio.run(record("ws://x", [], Path(".")))
    with pytest.raises(ValueError, match="per_connection"):
        asyncio.run(record("ws://x", STREAMS, Path("."), per_connection=2000))
