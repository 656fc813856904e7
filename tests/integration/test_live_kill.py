"""`kill -9` of the live flow at five random moments, with restarts: Redis ends equal to the
reference (0 missing, 0 extra, 0 duplicate klines): each restart resumes every symbol from
its newest closed kline in Redis and fetches the trades after it; and PostgreSQL holds
exactly the signals an independent evaluation of those klines gives (each restart decides
again the stored klines after the progress committed with the signals)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import numpy as np
import psycopg
import redis
import talib

from flows.domain.keys import KeySpace
from flows.signals.book import TraderRow
from flows.signals.store import TraderStore
from flows.simulator import Simulator
from tests.integration.test_live import M, _check_equal, _complete, _market, _reference, _wait

REPO = Path(__file__).resolve().parents[2]


def start_flow(
    base: str, symbols: list[str], redis_url: str, keys: KeySpace, data_dir: Path, log: Path,
    database_url: str, *extra: str,
) -> subprocess.Popen[bytes]:  # fmt: skip
    """`klineflow up` in a subprocess on the simulator at `base` (`extra`: more options),
    started as a shell's background job is: with SIGINT ignored, inherited, which the
    command must override (the tests stop it with SIGINT). `exec` keeps the pid."""
    env = dict(os.environ, PYTHONPATH=str(REPO), KLINEFLOW_DATA_DIR=str(data_dir))
    args = [sys.executable, "-m", "flows.cli", "up", "--exchange-url", base]
    args += ["--symbols", ",".join(symbols), "--intervals", "1m,3m", "--grace-ms", "500"]
    args += ["--redis-url", redis_url, "--namespace", keys.namespace]
    args += ["--database-url", database_url, "--no-dashboard", "--metrics-port", "0", *extra]
    ignoring = ["sh", "-c", 'trap "" INT; exec "$@"', "sh", *args]
    return subprocess.Popen(
        ignoring, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, cwd=REPO
    )


def kill_at(
    moments: list[float],
    running: list[subprocess.Popen[bytes]],
    start: Callable[[], subprocess.Popen[bytes]],
    log: Path,
) -> int:
    """SIGKILL the flow (`running[0]`) at each of `moments` (seconds from now) and start it
    again at once; `running[0]` is always the process to stop at the end. The kills made."""
    pause = threading.Event()
    elapsed = 0.0
    for at in moments:
        pause.wait(at - elapsed)
        elapsed = at
        assert running[0].poll() is None, log.read_text()[-3000:]
        running[0].send_signal(signal.SIGKILL)
        running[0].wait(timeout=10)
        running[0] = start()
    return len(moments)


def test_kill_9_at_five_random_moments(
    redis_url: str, redis_client: redis.Redis, keys: KeySpace, tmp_path: Path, signals_db: str
) -> None:
    cfg = _market(end_ms=_market().start_ms + 6 * M, speed=15.0)  # 24 s of wall time
    want = _reference(cfg)
    symbols = sorted(want)
    rng = random.Random(20261124)
    moments = sorted(rng.uniform(1.0, 20.0) for _ in range(5))
    log = tmp_path / "flow.log"
    store = TraderStore(signals_db)
    up = store.add(TraderRow(0, "up", "close > open", "1m", trigger_mode="every_close",
                             cooldown_bars=0))  # fmt: skip
    strong = store.add(TraderRow(0, "strong", "rsi(5) > 50", "1m", trigger_mode="every_close",
                                 cooldown_bars=0))  # fmt: skip
    with Simulator(cfg) as sim:
        base = sim.base_url

        def start() -> subprocess.Popen[bytes]:
            return start_flow(base, symbols, redis_url, keys, tmp_path, log, signals_db)

        running = [start()]
        try:
            kills = kill_at(moments, running, start, log)
            assert _wait(lambda: _complete(redis_client, keys, want), 90), log.read_text()[-3000:]
        finally:
            running[0].send_signal(signal.SIGKILL)
            running[0].wait(timeout=10)
    assert kills == 5
    assert _check_equal(redis_client, keys, want) >= 4 * (6 + 2)

    # the signals: exactly those an independent evaluation of the final klines gives
    expected, written = expected_signals(redis_client, keys, want, signals_db, up.id, strong.id)
    _wait(lambda: written() >= expected, 30)  # the last closes' signals may still be on the way
    got = written()
    assert got == expected, sorted(got ^ expected)
    assert len(expected) >= 10  # 6 minutes of 4 symbols: both traders fired several times


def expected_signals(
    client: redis.Redis,
    keys: KeySpace,
    want: dict[str, dict[str, list[list[object]]]],
    db: str,
    up_id: int,
    strong_id: int,
    up: Callable[[Decimal, Decimal], bool] = lambda open_, close: close > open_,
) -> tuple[set[str], Callable[[], set[str]]]:
    """The signal ids "close > open" (`up_id`; or another rule of open and close, `up`) and
    "rsi(5) > 50" (`strong_id`), both 1m every_close, must give on the klines stored in Redis,
    computed with TA-Lib; and a function reading the ids written to PostgreSQL for those
    klines."""
    expected: set[str] = set()
    last_open = {s: int(want[s]["1m"][-1][0]) for s in want}  # type: ignore[call-overload]
    for symbol in sorted(want):
        rows = [json.loads(m) for m in client.zrange(keys.klines(symbol, "1m"), 0, -1)]
        rows = [r for r in rows if int(r[0]) <= last_open[symbol]]
        rsi = talib.RSI(np.array([float(r[4]) for r in rows]), 5)
        for i, r in enumerate(rows):
            if up(Decimal(r[1]), Decimal(r[4])):
                expected.add(f"{up_id}-{symbol}-1m-{r[0]}")
            if not np.isnan(rsi[i]) and rsi[i] > 50:
                expected.add(f"{strong_id}-{symbol}-1m-{r[0]}")

    def written() -> set[str]:
        with psycopg.connect(db) as conn:
            rows = conn.execute("SELECT id, symbol, kline_open_ms FROM signals").fetchall()
        return {sid for sid, symbol, open_ms in rows if open_ms <= last_open[symbol]}

    return expected, written
