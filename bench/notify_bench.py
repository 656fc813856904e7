"""Signals to people: from a signal's commit to its webhook receiving it, and how many
deliveries the notifier sustains.

The notifier runs as its own process (`klineflow notify`), as `up` would run it, on an
embedded PostgreSQL (or KLINEFLOW_DATABASE_URL); the receivers are HTTP servers in this
process that check each message's HMAC signature.

1. Latency: signals written one at a time (one transaction each, as the flow writes a close
   with one signal), `--gap` seconds apart; each one's time from its commit returning to its
   receiver having it. p50 / p99 / max.
2. Throughput: `--channels` webhook channels subscribed to one trader, `--burst` signals
   written in transactions of `--batch`; messages per second (each channel's digests) and
   signal deliveries per second (signals x channels) until the last one arrived.

    python bench/notify_bench.py [--signals 300] [--gap 0.02] [--channels 20] [--burst 5000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flows.notify import channels
from flows.notify.settings import NotifySettings
from flows.signals.book import TraderRow
from flows.signals.engine import Fire
from flows.signals.store import SignalWriter, TraderStore
from flows.signals.trader_rows import ensure_user
from flows.storage.migrations import apply_migrations
from tests.notify.servers import WebhookReceiver

KEY = "bench-signing-key-0123456789abcdef"


def _fires(trader_id: int, start: int, count: int) -> list[Fire]:
    base = 1_764_892_800_000
    return [
        Fire(f"{trader_id}-B-1m-{base + i * 60_000}", trader_id, 1, "BENCHUSDT", "1m",
             base + i * 60_000, base + i * 60_000 + 59_999, base + i * 60_000, "1.00000000",
             {"close": 1.0}, -1)
        for i in range(start, start + count)
    ]  # fmt: skip


def _setup(url: str, name: str, receivers: list[WebhookReceiver]) -> int:
    row = TraderStore(url).add(
        TraderRow(0, name, "close > 0", "1m", trigger_mode="every_close", cooldown_bars=0),
        owner=name,
    )
    with psycopg.connect(url, autocommit=True) as conn:
        owner = ensure_user(conn, name)
        for i, r in enumerate(receivers):
            new = channels.NewChannel(f"{name}-{i}", "webhook", url=r.url, signing_key=KEY)
            channels.add(conn, owner, new, NotifySettings())
            channels.subscribe(conn, owner, name, new.name)
    return row.id


def _seen(r: WebhookReceiver) -> set[str]:
    with r.received.lock:
        return {s["id"] for b in r.received.bodies for s in b["signals"]}


def latency(url: str, n: int, gap: float) -> None:
    receiver = WebhookReceiver(KEY)
    trader = _setup(url, "latency", [receiver])
    writer = SignalWriter(url, record_latency=False)
    arrived: dict[str, float] = {}
    committed: dict[str, float] = {}
    warm_up = _fires(trader, n, 1)  # the notifier is up and listening once this arrives
    assert writer.write(warm_up)
    while warm_up[0].id not in _seen(receiver):
        time.sleep(0.05)
    for f in _fires(trader, 0, n):
        assert writer.write([f])
        committed[f.id] = time.perf_counter()
        time.sleep(gap)
    writer.close()
    # arrival times: the receiver notes them as each message is accepted
    while len(arrived) < n + 1:
        with receiver.received.lock:
            arrived = dict(receiver.received.arrivals)
        time.sleep(0.05)
    waits = sorted((arrived[i] - committed[i]) * 1000 for i in committed)
    p99 = waits[min(len(waits) - 1, int(len(waits) * 0.99))]
    print(f"latency, commit -> webhook received, {n} signals {gap * 1000:.0f} ms apart: "
          f"p50 {statistics.median(waits):.1f} ms, p99 {p99:.1f} ms, "
          f"max {waits[-1]:.1f} ms")  # fmt: skip
    receiver.close()


def throughput(url: str, n_channels: int, burst: int, batch: int) -> None:
    receivers = [WebhookReceiver(KEY) for _ in range(n_channels)]
    trader = _setup(url, "burst", receivers)
    writer = SignalWriter(url, record_latency=False)
    start = time.perf_counter()
    for s in range(0, burst, batch):
        assert writer.write(_fires(trader, s, min(batch, burst - s)))
    written = time.perf_counter() - start
    writer.close()
    while any(len(_seen(r)) < burst for r in receivers):
        time.sleep(0.02)
    total = time.perf_counter() - start
    messages = sum(len(r.received.bodies) for r in receivers)
    bad = sum(r.received.bad_signatures for r in receivers)
    print(f"throughput: {burst} signals x {n_channels} channels written in {written:.2f} s, "
          f"all received after {total:.2f} s: {messages / total:.0f} messages/s, "
          f"{burst * n_channels / total:,.0f} signal deliveries/s "
          f"({burst * n_channels / messages:.1f} signals per message; "
          f"bad signatures: {bad})")  # fmt: skip
    for r in receivers:
        r.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--signals", type=int, default=300)
    ap.add_argument("--gap", type=float, default=0.02)
    ap.add_argument("--channels", type=int, default=20)
    ap.add_argument("--burst", type=int, default=5000)
    ap.add_argument("--batch", type=int, default=100)
    args = ap.parse_args()
    from flows.services import EmbeddedPostgres

    tmp = tempfile.TemporaryDirectory(prefix="kf-bench-")
    server = None
    base = os.environ.get("KLINEFLOW_DATABASE_URL")
    if not base:
        server = EmbeddedPostgres(Path(tmp.name) / "pg")
        base = server.start()
    db = f"kf_notify_bench_{os.getpid()}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {db}")
    url = psycopg.conninfo.make_conninfo(base, dbname=db)
    apply_migrations(url)
    log = Path(tmp.name) / "notifier.log"
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "notify", "--database-url", url],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)  # fmt: skip
    try:
        latency(url, args.signals, args.gap)
        throughput(url, args.channels, args.burst, args.batch)
    finally:
        proc.terminate()
        proc.wait(30)
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {db} WITH (FORCE)")
        if server is not None:
            server.stop()
        tmp.cleanup()


if __name__ == "__main__":
    main()
