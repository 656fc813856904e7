"""Backtest and live give the same signals, by construction and by this test.

A recording of a synthetic market is played by the exchange simulator (faster than real
time) to the live flow (`run_live` with a database: klines to Redis, traders evaluated,
signals to PostgreSQL); the same file is then backtested. The two signal sets must be
identical: same ids, same repeat counts, same recorded values."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import psycopg
import redis

from flows.backtest.run import run_backtest
from flows.dataflows.live import LiveJob, run_live
from flows.domain.keys import KeySpace
from flows.domain.stats import RunStats
from flows.signals.book import TraderRow, build_book
from flows.signals.store import TraderStore
from flows.simulator import SimConfig, Simulator
from flows.sources.recording import RecordingWriter
from flows.sources.synthetic import SyntheticMarket, agg_trade_frame
from tests.integration.test_live import _post, _wait

START = 1_704_067_200_000  # 2024-01-01, a day boundary
MINUTES = 14
SYMBOLS = 3
RULES = [
    ("up bars", "close > open", "1m", "every_close", 2),
    ("strong", "rsi(5) > 55 and close > sma(3)", "1m", "on_change", 0),
    ("mtf", 'close > ema(3, tf="3m")', "1m", "every_close", 4),
    ("3m dip", "change(close, 1) < 0", "3m", "on_change", 1),
]


def write_market(path: Path) -> list[str]:
    market = SyntheticMarket(SYMBOLS, 3, START, rate=12.0)
    with RecordingWriter(path, START, "synthetic") as writer:
        batch = market.advance_to(START + MINUTES * 60_000)
        merged = sorted(
            ((tr[4], sym, tr) for sym, trs in batch.items() for tr in trs), key=lambda x: x[0]
        )
        writer.write_many([(ts + 5, agg_trade_frame(sym, tr[0], tr)) for ts, sym, tr in merged])
    return sorted(batch)


def test_live_and_backtest_give_identical_signals(
    redis_url: str, redis_client: redis.Redis, keys: KeySpace, signals_db: str, tmp_path: Path
) -> None:
    path = tmp_path / "market.jsonl.gz"
    symbols = write_market(path)
    store = TraderStore(signals_db)
    rows = [
        store.add(TraderRow(0, n, e, iv, trigger_mode=m, cooldown_bars=c))
        for n, e, iv, m, c in RULES
    ]
    cfg = SimConfig(recording=path, speed=40.0, start_paused=True)
    stop = threading.Event()
    stats = RunStats()
    with Simulator(cfg) as sim:
        job = LiveJob(
            ws_url=sim.ws_url,
            rest_url=sim.base_url,
            symbols=tuple(symbols),
            redis_url=redis_url,
            intervals=("1m", "3m"),
            keys=keys,
            grace_ms=300,
            open_throttle_ms=200,
            stop=stop,
            database_url=signals_db,
        )
        thread = threading.Thread(target=run_live, args=(job, stats), daemon=True)
        thread.start()
        assert _wait(lambda: stats.trades_read == 0 and stats.feed_reconnects == 0, 5)
        threading.Event().wait(2.0)  # connected before the market starts: it sees every trade
        _post(sim.base_url, "/_sim/resume")
        last_full = START + (MINUTES - 1) * 60_000  # the last minute never closes in live

        def closed_all() -> bool:
            return all(
                int(redis_client.get(keys.last_closed(s, "1m")) or 0) >= last_full - 60_000
                for s in symbols
            )

        assert _wait(closed_all, 120), stats
        threading.Event().wait(2.0)  # the last closes' signals on their way to PostgreSQL
        stop.set()
        thread.join(timeout=30)

    with psycopg.connect(signals_db) as conn:
        live = {
            (sid, count, json.dumps(values, sort_keys=True))
            for sid, count, values, open_ms in conn.execute(
                'SELECT id, repeat_count, "values", kline_open_ms FROM signals'
            ).fetchall()
            if open_ms < last_full - 60_000
        }
    result = run_backtest([path], build_book(rows), ("1m", "3m"), redis_url)
    backtest = {
        (s.fire.id, s.repeat_count, json.dumps(s.fire.values, sort_keys=True))
        for s in result.signals
        if s.fire.open_ms < last_full - 60_000
    }
    assert len(live) >= 15
    assert {t for t in (int(i.split("-")[0]) for i, _, _ in live)} == {r.id for r in rows}
    assert live == backtest
