"""The `klineflow` command end to end against a real Redis: replay, klines, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

from flows.cli import app
from flows.dataflows.replay import ReplayJob, run_replay
from flows.domain.keys import KeySpace
from flows.sources.recording import RecordingWriter
from flows.storage.redis_klines import RetentionPolicy

runner = CliRunner()
T0 = 1_700_000_040_000  # a minute boundary


def _agg(
    sym: str, a: int, price: str, qty: str, first: int, last: int, t: int, maker: bool = False
) -> bytes:
    return (
        f'{{"stream":"{sym.lower()}@aggTrade","data":{{"e":"aggTrade","E":{t},"s":"{sym}","a":{a},'
        f'"p":"{price}","q":"{qty}","f":{first},"l":{last},"T":{t},"m":{str(maker).lower()},"M":true}}}}'
    ).encode()


def _write_capture(path: Path, frames: list[bytes]) -> None:
    lines = [b"wss://stream.binance.com:9443/stream?streams=btcusdt@aggTrade <-> 1700000000.0"]
    lines += [b"%d.0: %s" % (T0 // 1000, f) for f in frames]
    path.write_bytes(b"\n".join(lines) + b"\n")


def test_replay_command_prints_summary_and_klines_command_reads_back(
    shared_data: Path, redis_url: str, redis_client: redis.Redis, keys: KeySpace
) -> None:
    path = shared_data / "XRPETH-aggTrades-20191011-20191013.csv"
    args = ["--redis-url", redis_url, "--namespace", keys.namespace]
    result = runner.invoke(
        app, ["replay", str(path), "--intervals", "1m,1h", "--no-progress", *args]
    )
    assert result.exit_code == 0, result.output
    assert "12,477" in result.output  # trades read
    assert "3,560" in result.output  # 1m klines written
    assert "trades/s" in result.output

    result = runner.invoke(app, ["klines", "XRPETH", "1m", "--limit", "3", *args])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    stored = [json.loads(m) for m in redis_client.zrange(keys.klines("XRPETH", "1m"), -3, -1)]
    assert rows == stored and len(rows) == 3

    result = runner.invoke(app, ["klines", "XRPETH", "7m", *args])
    assert result.exit_code == 2 and "'7m' is not one of" in result.output
    result = runner.invoke(app, ["klines", "NOSUCH", "1m", *args])
    assert result.exit_code == 1 and "no klines stored" in result.output


def test_replay_of_missing_file_is_a_clear_error(
    redis_url: str, keys: KeySpace, tmp_path: Path
) -> None:
    missing = tmp_path / "nope.csv"
    result = runner.invoke(app, ["replay", str(missing), "--redis-url", redis_url, "--no-progress"])
    assert result.exit_code == 2 and "no such file" in result.output


def test_bad_input_is_dead_lettered_counted_and_the_flow_goes_on(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, keys: KeySpace
) -> None:
    frames = [
        _agg("BTCUSDT", 1, "100.00000000", "1.00000000", 10, 10, T0 + 1_000),
        b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","s":"BTCUSDT"',  # torn JSON
        b'{"stream":"btcusdt@weird","data":{"e":"weirdEvent","E":1}}',  # unknown event
        _agg("BTCUSDT", 2, "0", "0", -1, -1, T0 + 2_000),  # Binance's invalid marker
        _agg("BTCUSDT", 3, "101.00000000", "2.00000000", 11, 12, T0 + 61_000),  # next minute
        _agg("BTCUSDT", 4, "99.00000000", "1.00000000", 13, 13, T0 + 5_000),  # late
        _agg("BTCUSDT", 1, "100.00000000", "1.00000000", 10, 10, T0 + 1_000),  # duplicate
        # a stream klines do not use: counted as ignored
        b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT"}}',
    ]
    path = tmp_path / "capture.txt"
    _write_capture(path, frames)
    stats = run_replay(ReplayJob(paths=[path], redis_url=redis_url, intervals=("1m",), keys=keys))
    assert stats.trades_read == 4
    assert stats.duplicates == 1
    assert dict(stats.dead_letters) == {"malformed": 1, "unknown": 1, "invalid": 1, "late": 1}
    assert stats.frames_ignored == 1

    entries = redis_client.xrange(keys.dead_letters)
    reasons = sorted(fields[b"reason"].decode() for _, fields in entries)
    assert reasons == ["invalid", "late", "malformed", "unknown"]
    positions = {fields[b"reason"]: fields[b"position"].decode() for _, fields in entries}
    assert positions[b"malformed"] == f"{path}:3"
    assert positions[b"unknown"] == f"{path}:4"

    rows = [json.loads(m) for m in redis_client.zrange(keys.klines("BTCUSDT", "1m"), 0, -1)]
    assert rows == [
        [T0, "100.00000000", "100.00000000", "100.00000000", "100.00000000", "1.00000000",
         T0 + 59_999, "100.00000000", 1, "1.00000000", "100.00000000", "0"],
        [T0 + 60_000, "101.00000000", "101.00000000", "101.00000000", "101.00000000", "2.00000000",
         T0 + 119_999, "202.00000000", 2, "2.00000000", "202.00000000", "0"],
    ]  # fmt: skip


def test_closed_klines_are_published_and_last_closed_is_set(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, keys: KeySpace
) -> None:
    frames = [
        _agg("ETHUSDT", i, "10.00000000", "1.00000000", i, i, T0 + i * 30_000) for i in range(1, 8)
    ]
    path = tmp_path / "eth.txt"
    _write_capture(path, frames)
    pubsub = redis_client.pubsub()
    pubsub.subscribe(keys.closed_channel)
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"
    stats = run_replay(
        ReplayJob(paths=[path], redis_url=redis_url, intervals=("1m", "5m"), keys=keys)
    )
    messages = []
    while (msg := pubsub.get_message(timeout=1)) is not None:
        messages.append(json.loads(msg["data"]))
    pubsub.close()
    # trades at +30 s .. +210 s: 1m klines open at T0 .. T0+180 s (4), all closed at end of input
    assert stats.klines_closed["1m"] == 4
    assert sorted((m["i"], m["t"]) for m in messages if m["i"] == "1m") == [
        ("1m", T0 + k * 60_000) for k in range(4)
    ]
    assert all(m["s"] == "ETHUSDT" for m in messages)
    assert int(redis_client.get(keys.last_closed("ETHUSDT", "1m"))) == T0 + 180_000
    assert redis_client.smembers(keys.symbols) == {b"ETHUSDT"}


def test_retention_keeps_the_newest_members(
    shared_data: Path, redis_url: str, redis_client: redis.Redis, keys: KeySpace
) -> None:
    path = shared_data / "XRPETH-aggTrades-20191011-20191013.csv"
    retention = RetentionPolicy(default=50, by_interval={"1m": 120})
    run_replay(
        ReplayJob(
            paths=[path],
            redis_url=redis_url,
            intervals=("1m", "5m"),
            keys=keys,
            retention=retention,
        )
    )
    one_minute = redis_client.zrange(keys.klines("XRPETH", "1m"), 0, -1, withscores=True)
    assert len(one_minute) == 120 and one_minute[-1][1] == 1570965540000
    assert redis_client.zcard(keys.klines("XRPETH", "5m")) == 50


def test_a_later_replay_continues_the_klines_an_earlier_one_left_open(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, keys: KeySpace
) -> None:
    """Two recordings split inside one minute give the same kline as one recording."""
    frames = [
        _agg("BTCUSDT", i, f"{100 + i}.00000000", "1.00000000", i, i, T0 + i * 7_000)
        for i in range(1, 13)
    ]
    whole, first, second = (
        tmp_path / "whole.jsonl.gz",
        tmp_path / "a.jsonl.gz",
        tmp_path / "b.jsonl.gz",
    )
    for path, part in ((whole, frames), (first, frames[:5]), (second, frames[3:])):
        with RecordingWriter(path, T0, "test") as writer:
            for f in part:
                writer.write(T0, f)
    clean = KeySpace(keys.namespace + ":clean")
    run_replay(ReplayJob(paths=[whole], redis_url=redis_url, intervals=("1m",), keys=clean))
    run_replay(ReplayJob(paths=[first], redis_url=redis_url, intervals=("1m",), keys=keys))
    stats = run_replay(ReplayJob(paths=[second], redis_url=redis_url, intervals=("1m",), keys=keys))
    assert stats.duplicates == 2  # frames 4 and 5 were in both files
    want = redis_client.zrange(clean.klines("BTCUSDT", "1m"), 0, -1, withscores=True)
    assert redis_client.zrange(keys.klines("BTCUSDT", "1m"), 0, -1, withscores=True) == want
    assert len(want) == 2
    # --fresh forgets: the second file alone then restarts the minute from its first trade
    run_replay(
        ReplayJob(paths=[second], redis_url=redis_url, intervals=("1m",), keys=keys, fresh=True)
    )
    assert redis_client.zrange(keys.klines("BTCUSDT", "1m"), 0, -1, withscores=True) != want


def test_an_unverified_interval_is_warned_about(
    tmp_path: Path, redis_url: str, keys: KeySpace, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "one.txt"
    _write_capture(path, [_agg("BTCUSDT", 1, "1.00000000", "1.00000000", 1, 1, T0)])
    with caplog.at_level("WARNING"):
        run_replay(ReplayJob(paths=[path], redis_url=redis_url, intervals=("1h", "3d"), keys=keys))
    assert [r for r in caplog.records if "interval=3d" in r.getMessage()]
    caplog.clear()
    with caplog.at_level("WARNING"):
        run_replay(
            ReplayJob(paths=[path], redis_url=redis_url, intervals=("1h",), keys=keys, fresh=True)
        )
    assert not [r for r in caplog.records if "not verified" in r.getMessage()]


def test_up_says_clearly_when_the_exchange_cannot_be_reached(redis_url: str) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [
        "up",
        "--exchange-url",
        f"http://127.0.0.1:{port}",
        "--symbols",
        "BTCUSDT",
        "--redis-url",
        redis_url,
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert f"cannot reach http://127.0.0.1:{port}" in result.output
    result = runner.invoke(app, ["up", "--redis-url", redis_url])
    assert result.exit_code == 2 and "--symbols" in result.output
