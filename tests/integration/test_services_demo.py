"""Embedded servers (start, reuse, stop) and the demo job against them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest
import redis
from rich.console import Console

from flows.dataflows.demo import DemoJob, run_demo
from flows.domain.keys import KeySpace
from flows.services import EmbeddedPostgres, EmbeddedRedis, Services
from tests.integration.test_live import _wait


def test_embedded_redis_starts_is_reused_keeps_data_and_stops() -> None:
    with tempfile.TemporaryDirectory(prefix="kfs-") as d:
        server = EmbeddedRedis(Path(d) / "redis")
        url = server.start()
        client = redis.Redis.from_url(url)
        client.set("k", "v")
        pid = int(server.pidfile.read_text())
        assert server.start() == url and int(server.pidfile.read_text()) == pid  # reused
        assert server.stop() is True
        assert not server.running()
        server.start()  # data saved on shutdown comes back
        assert redis.Redis.from_url(url).get("k") == b"v"
        assert server.stop() is True
        assert server.stop() is False


def test_services_prefers_configured_urls() -> None:
    services = Services(Path("/nonexistent-should-not-be-created"))
    assert services.redis_url("redis://example:6379/0") == "redis://example:6379/0"
    assert services.database_url("postgresql://u@h/db") == "postgresql://u@h/db"
    assert not Path("/nonexistent-should-not-be-created").exists()


def test_embedded_postgres_answers_sql(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        assert conn.execute("select 1 + 1").fetchone() == (2,)


def test_embedded_postgres_stop_and_restart() -> None:
    with tempfile.TemporaryDirectory(prefix="kfp-") as d:
        pg = EmbeddedPostgres(Path(d) / "postgres")
        url = pg.start()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("create table t (x int)")
            conn.execute("insert into t values (42)")
        assert pg.running()
        assert pg.stop() is True and not pg.running()
        url = pg.start()
        with psycopg.connect(url) as conn:
            assert conn.execute("select x from t").fetchone() == (42,)
        assert pg.stop() is True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_demo_fills_redis_and_serves_the_api(
    redis_url: str, redis_client: redis.Redis, keys: KeySpace
) -> None:
    port = _free_port()
    job = DemoJob(
        redis_url=redis_url,
        keys=keys,
        intervals=("1m", "5m", "1h"),
        symbols=5,
        seed=3,
        history_ms=2 * 3_600_000,
        rate=20.0,
        duration_s=4.0,
        port=port,
    )
    stats = run_demo(job, Console(file=open("/dev/null", "w")))  # noqa: SIM115
    assert stats.trades_read > 1000
    assert stats.klines_closed["1m"] >= 100  # two hours of five symbols
    stored = redis_client.zrange(keys.klines("BTCUSDT", "1m"), 0, -1, withscores=True)
    assert len(stored) >= 100
    opens = [int(score) for _, score in stored]
    assert opens == sorted(opens) and all(t % 60_000 == 0 for t in opens)
    assert redis_client.smembers(keys.symbols) >= {b"BTCUSDT", b"ETHUSDT"}


def test_demo_api_answers_while_running(redis_url: str, keys: KeySpace) -> None:
    """The API thread of the demo serves what the demo writes (checked after the run through
    a fresh app on the same store, as the thread stops with the demo)."""
    from flows.api import create_app
    from flows.storage.kline_store import KlineStore

    job = DemoJob(redis_url=redis_url, keys=keys, intervals=("1m",), symbols=2, seed=5,
                  history_ms=600_000, rate=10.0, duration_s=2.0, port=0)  # fmt: skip
    run_demo(job, Console(file=open("/dev/null", "w")))  # noqa: SIM115
    from starlette.testclient import TestClient

    client = TestClient(create_app(KlineStore(redis.Redis.from_url(redis_url), keys)))
    body = client.get("/api/v3/klines", params={"symbol": "BTCUSDT", "interval": "1m", "limit": 3})
    assert body.status_code == 200
    rows = json.loads(body.text)
    assert len(rows) == 3 and all(len(r) == 12 for r in rows)


def test_embedded_redis_under_a_relative_data_dir(monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The default data dir is relative (.klineflow): its socket URL must still work."""
    with tempfile.TemporaryDirectory(prefix="kfr-") as d:
        monkeypatch.chdir(d)
        server = Services(Path(".klineflow")).redis
        url = server.start()
        assert url == f"unix://{Path(d).resolve()}/.klineflow/redis/redis.sock"
        assert redis.Redis.from_url(url).ping()
        assert server.stop() is True


def _demo_is_live(client: redis.Redis, keys: KeySpace) -> bool:
    """Whether the demo's live flow runs: its heartbeat says so with every feed connected,
    and it has written klines (the history it fetched first)."""
    beat = client.hgetall(keys.heartbeat)
    if not beat or beat.get(b"state") != b"running" or not client.exists(keys.symbols):
        return False
    feeds = json.loads(beat.get(b"feeds", b"[]"))
    return bool(feeds) and all(f["state"] == "connected" for f in feeds)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_stops_the_demo_with_its_summary_not_a_traceback(
    redis_url: str, keys: KeySpace, signals_db: str, tmp_path: Path, sig: int
) -> None:
    """Ctrl-C (or SIGTERM, as a service manager stops it) once the demo runs live: it ends
    with its summary, exit 0, no panic text. Both waits are for a state
    (live; ended), bounded far above an idle machine's seconds: on a loaded 2-core machine,
    starting the demo's Python process and its flow takes tens of seconds."""
    repo = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(repo), KLINEFLOW_DATA_DIR=str(tmp_path),
               KLINEFLOW_DATABASE_URL=signals_db)  # fmt: skip
    args = [sys.executable, "-m", "flows.cli", "demo", "--symbols", "3", "--history-hours",
            "0.05", "--port", "0", "--no-dashboard", "--redis-url", redis_url,
            "--namespace", keys.namespace]  # fmt: skip
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        # started as a shell's background job is: with SIGINT ignored, inherited (the demo
        # must still stop on it); `exec` keeps the pid the signal is sent to
        ignoring = ["sh", "-c", 'trap "" INT; exec "$@"', "sh", *args]
        proc = subprocess.Popen(ignoring, env=env, stdout=out, stderr=subprocess.STDOUT)
    client = redis.Redis.from_url(redis_url)
    try:
        live = _wait(lambda: _demo_is_live(client, keys) or proc.poll() is not None, 240)
        assert live and proc.poll() is None, log.read_text()
        proc.send_signal(sig)
        try:
            proc.wait(timeout=240)
        except subprocess.TimeoutExpired:
            pytest.fail("the demo did not end 240 s after Ctrl-C:\n" + log.read_text())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        client.close()
    output = log.read_text()
    assert proc.returncode == 0, output
    assert "stopped" in output and "klines closed" in output
    assert "notifications: 0 message(s) delivered, 0 failed" in output  # its notifier stopped
    assert "Traceback" not in output and "BytewaxRuntimeError" not in output
    assert "panicked" not in output and "stack backtrace" not in output
