"""The columnar trade archive: what it holds is exactly what the raw files give, a replay of it
leaves Redis exactly as a replay of the raw files, and the recorder fills it as each
recording closes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import redis
from websockets.asyncio.server import ServerConnection

from flows.dataflows.replay import ReplayJob, run_replay
from flows.domain.clock import ManualClock
from flows.domain.keys import KeySpace
from flows.domain.kline import Trade
from flows.io.files import FileTrades
from flows.recorder import RecorderStats, record
from flows.sources.chunks import ReadOptions
from flows.sources.inputs import expand_inputs
from flows.sources.readers import read_all
from flows.sources.trade_archive import archive_file, read_parquet
from flows.storage.redis_klines import RetentionPolicy
from tests.integration.redis_contents import contents
from tests.integration.test_recorder import (
    FAST,
    STREAMS,
    capture_frames,
    expected_trades,
    run_with_server,
    until,
)

DUMP = "XRPETH-aggTrades-20191011-20191013.csv"
CAPTURE = "ws-capture-2021-04-17-illiquid10.txt"
KEEP_ALL = RetentionPolicy(default=10**9, by_interval={})


def _by_symbol(path: Path, options: ReadOptions = ReadOptions()) -> dict[str, list[Trade]]:
    out: dict[str, list[Trade]] = {}
    for cols, _ in FileTrades([path], options).read():
        if len(cols):
            out.setdefault(cols.symbol, []).extend(cols.trades())
    return out


def test_the_archive_holds_exactly_the_trades_of_the_raw_files(
    shared_data: Path, tmp_path: Path
) -> None:
    root = tmp_path / "archive"
    written = archive_file(shared_data / DUMP, root, ReadOptions(symbol="XRPETH"))
    written += archive_file(shared_data / CAPTURE, root)
    assert len(written) >= 3 + 2  # three days of the dump, the capture's symbols
    assert all(p.parent.parent.name.startswith("symbol=") for p in written)
    raw = _by_symbol(shared_data / DUMP, ReadOptions(symbol="XRPETH"))
    for sym, trades in _by_symbol(shared_data / CAPTURE).items():
        raw.setdefault(sym, []).extend(trades)
    archived: dict[str, list[Trade]] = {}
    for path in expand_inputs([root]):
        archived.setdefault(path.parent.parent.name[len("symbol=") :], []).extend(
            t for cols in read_parquet(path) for t in cols.trades()
        )
    assert archived == raw
    # resuming inside a file gives exactly the rest
    first = written[0]
    whole = [t for c in read_parquet(first, ReadOptions(column_rows=1000)) for t in c.trades()]
    for skip in (0, 1, 999, 1000, 1001, len(whole) - 1, len(whole)):
        rest = [t for c in read_parquet(first, ReadOptions(column_rows=1000), skip)
                for t in c.trades()]  # fmt: skip
        assert rest == whole[skip:], skip
    # archiving again writes the same files again, nothing beside them
    again = archive_file(shared_data / CAPTURE, root)
    assert set(again) <= set(written)
    assert sorted(expand_inputs([root])) == sorted(written)


def test_a_replay_of_the_archive_leaves_redis_as_a_replay_of_the_raw_files(
    shared_data: Path, tmp_path: Path, redis_url: str, redis_client: redis.Redis
) -> None:
    root = tmp_path / "archive"
    archive_file(shared_data / DUMP, root, ReadOptions(symbol="XRPETH"))
    spaces = KeySpace(f"{tmp_path.name}raw"), KeySpace(f"{tmp_path.name}arch")
    try:
        for keys, paths in zip(spaces, ([shared_data / DUMP], [root]), strict=True):
            stats = run_replay(ReplayJob(paths, redis_url, ("1m", "5m", "1h", "1d"), keys,
                                         read=ReadOptions(symbol="XRPETH"), retention=KEEP_ALL,
                                         fresh=True))  # fmt: skip
            assert stats.trades_read > 10_000
        raw = contents(redis_client, f"{spaces[0].namespace}:klines*")
        arch = contents(redis_client, f"{spaces[1].namespace}:klines*")
        assert len(raw) >= 8
        strip = len(spaces[0].namespace), len(spaces[1].namespace)
        assert {k[strip[0] :]: v for k, v in raw.items()} == {
            k[strip[1] :]: v for k, v in arch.items()
        }
    finally:
        for keys in spaces:
            names = list(redis_client.scan_iter(match=f"{keys.namespace}:*", count=1000))
            if names:
                redis_client.delete(*names)


def test_the_command_line_archives_and_replays_the_archive(
    shared_data: Path, tmp_path: Path, redis_url: str
) -> None:
    root = tmp_path / "archive"
    klineflow = [sys.executable, "-m", "flows.cli"]
    made = subprocess.run([*klineflow, "archive", str(shared_data / CAPTURE), "--out", str(root)],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert made.returncode == 0, made.stderr
    files = [line for line in made.stdout.splitlines() if line.endswith(".parquet")]
    assert files and all(Path(f).is_file() for f in files)
    replayed = subprocess.run(
        [*klineflow, "replay", str(root), "--redis-url", redis_url, "--namespace",
         f"{tmp_path.name}cli", "--no-progress"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert replayed.returncode == 0, replayed.stderr
    trades = sum(len(v) for v in read_all(shared_data / CAPTURE).trades.values())
    assert f"{trades:,}" in replayed.stdout
    refused = subprocess.run([*klineflow, "up", "--archive", str(root), "--symbols", "BTCUSDT"],
                             capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert refused.returncode == 2 and "--record" in refused.stdout + refused.stderr


HOUR_MS = 3_600_000


def test_the_recorder_archives_each_recording_as_it_closes(
    shared_data: Path, tmp_path: Path
) -> None:
    frames = capture_frames(shared_data, trades=40, depth=2)
    start = 1_617_566_400_000 - 5_000  # 2021-04-04 19:59:55 UTC
    clock = ManualClock(start)
    stats = RecorderStats()
    stop = asyncio.Event()
    sent = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        for f in frames[:20]:
            await ws.send(f)
        await until(lambda: stats.frames == 20)
        clock.advance(10_000)  # the next hour: the first recording closes and is archived
        for f in frames[20:]:
            await ws.send(f)
        await until(lambda: stats.frames == len(frames))
        sent.set()
        await ws.wait_closed()

    async def body(url: str) -> None:
        recording = record(url, STREAMS, tmp_path / "rec", clock=clock, stop=stop, stats=stats,
                           archive=tmp_path / "arch", **FAST)  # fmt: skip
        task = asyncio.create_task(recording)
        try:
            await asyncio.wait_for(sent.wait(), 10)
            await until(lambda: len(stats.archived) > 0)  # the first hour, while recording
        finally:
            stop.set()
            await asyncio.wait_for(task, 20)

    asyncio.run(run_with_server(handler, body))
    assert stats.files == 2 and stats.archive_failures == 0
    archived: dict[str, list[Trade]] = {}
    for path in expand_inputs([tmp_path / "arch"]):
        archived.setdefault(path.parent.parent.name[len("symbol=") :], []).extend(
            t for cols in read_parquet(path) for t in cols.trades()
        )
    want = expected_trades(frames)
    assert sum(len(v) for v in want.values()) == 40
    assert {s: sorted(v) for s, v in archived.items()} == {s: sorted(v) for s, v in want.items()}
    assert {p.stem for p in expand_inputs([tmp_path / "arch"])} == {
        p.name.split(".", 1)[0] for p in stats.paths
    }


def test_two_recordings_of_the_same_hour_are_both_archived(tmp_path: Path) -> None:
    """A restart within an hour records into `...-HH.1.jsonl.gz` beside `...-HH.jsonl.gz`: each
    is archived under its own name, neither over the other."""
    from flows.sources.recording import RecordingWriter

    t0 = 1_796_488_110_000
    paths = []
    for k, name in enumerate(
        ("klineflow-20261205-16.jsonl.gz", "klineflow-20261205-16.1.jsonl.gz")
    ):
        path = tmp_path / name
        with RecordingWriter(path, t0) as writer:
            for i in range(5):
                a = 10 * k + i
                frame = (b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":%d,'
                         b'"s":"BTCUSDT","a":%d,"p":"1.5","q":"2","f":%d,"l":%d,"T":%d,'
                         b'"m":true,"M":true}}' % (t0 + a, a, a, a, t0 + a))  # fmt: skip
                writer.write(t0 + a + 5, frame)
        paths.append(path)
    root = tmp_path / "archive"
    written = archive_file(paths[0], root) + archive_file(paths[1], root)
    assert len(set(written)) == 2 and sorted(expand_inputs([root])) == sorted(written)
    archived = sorted(t for p in written for c in read_parquet(p) for t in c.trades())
    raw = sorted(t for p in paths for t in read_all(p).trades["BTCUSDT"])
    assert archived == raw and len(raw) == 10
