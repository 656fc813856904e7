"""`klineflow demo` runs the notifier: the example traders' signals reach a webhook the user
subscribed them to, and Ctrl-C stops it cleanly with its summary (`up` starts it the same
way: flows.cli.live)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from flows.notify import channels
from flows.signals.book import TraderRow
from flows.signals.examples import seed_examples
from flows.signals.store import TraderStore
from flows.signals.trader_rows import ensure_user
from tests.notify.conftest import eventually, settings, webhook
from tests.notify.servers import WebhookReceiver


@pytest.mark.timeout(600)
def test_the_demo_delivers_its_signals_and_stops_cleanly(
    signals_db: str, redis_url: str, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    names = seed_examples(TraderStore(signals_db))
    assert names
    # and one trader that fires on every 1m close: the first signal comes with the first
    # closed kline, whatever the synthetic market does (the examples may wait for minutes)
    every = TraderRow(0, "Every close", "close > 0", "1m", trigger_mode="every_close",
                      cooldown_bars=0)  # fmt: skip
    names.append(TraderStore(signals_db).add(every, owner="local").name)
    with psycopg.connect(signals_db, autocommit=True) as conn:
        local = ensure_user(conn, "local")
        channels.add(conn, local, webhook("desk", receiver), settings())
        for name in names:
            channels.subscribe(conn, local, name, "desk")
    repo = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(repo), KLINEFLOW_DATA_DIR=str(tmp_path),
               KLINEFLOW_DATABASE_URL=signals_db)  # fmt: skip
    args = [sys.executable, "-m", "flows.cli", "demo", "--symbols", "6", "--history-hours",
            "0.5", "--port", "0", "--no-dashboard", "--no-record", "--redis-url", redis_url,
            "--namespace", f"notify{os.getpid()}"]  # fmt: skip
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        got = receiver.wait_until(lambda r: len(r.bodies) >= 1 or proc.poll() is not None, 300)
        assert got and proc.poll() is None, log.read_text()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = log.read_text()
    assert proc.returncode == 0, output
    assert "Traceback" not in output
    delivered = int(output.split("notifications: ", 1)[1].split(" ", 1)[0])
    assert delivered >= 1
    # what the receiver got are the demo's signals, each once, signed with the channel's key
    with psycopg.connect(signals_db) as conn:
        stored = {r[0] for r in conn.execute("SELECT id FROM signals")}
    assert eventually(lambda: len(receiver.received.bodies) >= delivered, 30)
    ids = receiver.signal_ids()
    assert set(ids) <= stored and len(ids) == len(set(ids))
    assert receiver.received.bad_signatures == 0
