"""`kill -9` of the live flow at five random moments, with restarts: Redis ends equal to the
reference (0 missing, 0 extra, 0 duplicate klines), thanks to Bytewax recovery snapshots, the
source's per-symbol positions and the REST backfill."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

import redis

from flows.domain.keys import KeySpace
from flows.simulator import Simulator
from tests.integration.test_live import M, _check_equal, _complete, _market, _reference, _wait

REPO = Path(__file__).resolve().parents[2]


def _start_flow(
    base: str, symbols: list[str], redis_url: str, keys: KeySpace, data_dir: Path, log: Path
) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(REPO), KLINEFLOW_DATA_DIR=str(data_dir))
    args = [sys.executable, "-m", "flows.cli", "up", "--exchange-url", base]
    args += ["--symbols", ",".join(symbols), "--intervals", "1m,3m", "--grace-ms", "500"]
    args += ["--redis-url", redis_url, "--namespace", keys.namespace]
    return subprocess.Popen(
        args, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, cwd=REPO
    )


def test_kill_9_at_five_random_moments(
    redis_url: str, redis_client: redis.Redis, keys: KeySpace, tmp_path: Path
) -> None:
    cfg = _market(end_ms=_market().start_ms + 6 * M, speed=15.0)  # 24 s of wall time
    want = _reference(cfg)
    symbols = sorted(want)
    rng = random.Random(20261124)
    moments = sorted(rng.uniform(1.0, 20.0) for _ in range(5))
    log = tmp_path / "flow.log"
    pause = threading.Event()
    with Simulator(cfg) as sim:
        base = sim.base_url
        proc = _start_flow(base, symbols, redis_url, keys, tmp_path, log)
        elapsed = 0.0
        kills = 0
        try:
            for at in moments:
                pause.wait(at - elapsed)
                elapsed = at
                assert proc.poll() is None, log.read_text()[-3000:]
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=10)
                kills += 1
                proc = _start_flow(base, symbols, redis_url, keys, tmp_path, log)
            assert _wait(lambda: _complete(redis_client, keys, want), 90), log.read_text()[-3000:]
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
    assert kills == 5
    assert _check_equal(redis_client, keys, want) >= 4 * (6 + 2)
    assert (tmp_path / "recovery").is_dir()  # the snapshots the restarts resumed from
