"""Record from the simulator while the live flow runs, then replay the recording: the replayed
klines are the reference klines, the same the live flow stored."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from pathlib import Path
from typing import Any

import redis

from flows.binance.universe import stream_names
from flows.dataflows.replay import ReplayJob, run_replay
from flows.domain.keys import KeySpace
from flows.recorder import RecorderStats, RecordingTap, record
from flows.storage.redis_klines import RetentionPolicy
from tests.integration.test_live import (
    INTERVALS_UNDER_TEST,
    _check_equal,
    _complete,
    _live,
    _market,
    _post,
    _reference,
    _wait,
)


def test_recording_replays_to_the_klines_the_live_flow_built(
    redis_url: str, redis_client: redis.Redis, keys: KeySpace, tmp_path: Path
) -> None:
    cfg = _market(start_paused=True)
    want = _reference(cfg)
    symbols = sorted(want)
    out_dir = tmp_path / "rec"
    rec_stats = RecorderStats()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    with _live(cfg, redis_url, keys) as (base, stats, _):
        ws = base.replace("http://", "ws://")
        thread = threading.Thread(
            target=lambda: loop.run_until_complete(
                record(ws, stream_names(symbols), out_dir, stop=stop, stats=rec_stats)
            ),
            daemon=True,
        )
        thread.start()
        # both connected before the market starts: both see every trade
        assert _wait(lambda: rec_stats.connections >= 1 and stats.feed_reconnects == 0, 10)
        assert _wait(lambda: redis_client.exists(keys.symbols) == 0, 1)
        _post(base, "/_sim/resume")
        assert _wait(lambda: _complete(redis_client, keys, want), 60)
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)
    assert _check_equal(redis_client, keys, want) >= 20  # the live flow
    files = sorted(out_dir.glob("*.jsonl.gz"))
    assert files and rec_stats.frames > 1000
    replayed = _replayed(redis_url, keys, files)
    assert _check_equal(redis_client, replayed, want) >= 20  # the replay of the recording


def test_up_records_alongside(
    redis_url: str, redis_client: redis.Redis, keys: KeySpace, tmp_path: Path
) -> None:
    """`klineflow up --record DIR` records the frames the flow reads; its files replay."""
    from typer.testing import CliRunner

    from flows.cli import app
    from flows.simulator import Simulator
    from flows.sources.readers import read_all

    cfg = _market()
    with Simulator(cfg) as sim:
        args = [
            "up",
            "--exchange-url",
            sim.base_url,
            "--top",
            "3",
            "--intervals",
            "1m",
            "--no-dashboard",
            "--no-rules",
            "--metrics-port",
            "0",
        ]
        args += ["--record", str(tmp_path / "rec"), "--duration", "4", "--redis-url", redis_url]
        args += ["--namespace", keys.namespace]
        result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    files = sorted((tmp_path / "rec").glob("*.jsonl.gz"))
    assert files
    recorded = read_all(files[0])
    assert sum(len(t) for t in recorded.trades.values()) > 100 and not recorded.dead
    assert set(recorded.trades) == {s.decode() for s in redis_client.smembers(keys.symbols)}


def _sim_state(base: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base}/_sim/state", timeout=5) as answer:
        state: dict[str, Any] = json.load(answer)
    return state


def _replayed(redis_url: str, keys: KeySpace, files: list[Path]) -> KeySpace:
    replayed = KeySpace(keys.namespace + ":replayed")
    run_replay(
        ReplayJob(
            paths=files,
            redis_url=redis_url,
            intervals=INTERVALS_UNDER_TEST,
            keys=replayed,
            retention=RetentionPolicy(default=100_000, by_interval={}),
        )
    )
    return replayed


def test_the_tee_records_what_the_flow_reads_and_it_replays_to_the_same_klines(
    redis_url: str, redis_client: redis.Redis, keys: KeySpace, tmp_path: Path
) -> None:
    """The recorder as a tee on the live feed (no connection of its own): every frame the
    flow read is in the recording, and replaying it gives the reference klines, 0 missing,
    0 extra, 0 different, as the live flow stored them."""
    cfg = _market(start_paused=True)
    want = _reference(cfg)
    tap = RecordingTap(tmp_path / "rec", "test", flush_every_s=0.2)
    with _live(cfg, redis_url, keys, tap=tap) as (base, stats, _):
        assert _wait(lambda: _sim_state(base)["connections"] >= 1, 10)
        _post(base, "/_sim/resume")
        assert _wait(lambda: _complete(redis_client, keys, want), 60)
        # the market over, every frame the exchange sent is in the recording, no more
        assert _wait(lambda: _sim_state(base)["finished"], 60)
        assert _wait(lambda: _sim_state(base)["framesSent"] == tap.stats.frames, 10)
    tap.close()
    assert _check_equal(redis_client, keys, want) >= 20  # the live flow
    files = sorted((tmp_path / "rec").glob("*.jsonl.gz"))
    assert files and tap.stats.frames > 1000 and tap.stats.write_failures == 0
    assert stats.feed_reconnects == 0 and tap.stats.connections == 0  # the flow's own feed
    replayed = _replayed(redis_url, keys, files)
    assert _check_equal(redis_client, replayed, want) >= 20


def test_a_recording_that_cannot_be_written_does_not_stop_the_flow(
    redis_url: str, redis_client: redis.Redis, keys: KeySpace, tmp_path: Path
) -> None:
    """The tee's files cannot be made (its folder is a file): every frame is counted as not
    written, said in the log, and the live flow's klines are whole all the same."""
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    cfg = _market(start_paused=True)
    want = _reference(cfg)
    tap = RecordingTap(blocked / "rec", "test")
    with _live(cfg, redis_url, keys, tap=tap) as (base, _, _):
        assert _wait(lambda: _sim_state(base)["connections"] >= 1, 10)
        _post(base, "/_sim/resume")
        assert _wait(lambda: _complete(redis_client, keys, want), 60)
    tap.close()
    assert _check_equal(redis_client, keys, want) >= 20
    assert tap.stats.frames == 0 and tap.stats.write_failures > 1000
    assert "Error" in tap.stats.last_error
