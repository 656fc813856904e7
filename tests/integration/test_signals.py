"""Traders evaluated in the dataflow, against real Redis and PostgreSQL and real trades.

The replay test checks every signal the flow wrote against an independent evaluation: the
klines are read back from Redis, the indicators computed with TA-Lib's batch functions over
the whole history, the trigger and cooldown rules applied in plain Python, and the two sets
of rows must be identical (ids, klines, repeat counts, recorded values). Then the same data
again: no new row, no changed count, no NOTIFY.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
import redis
import talib

from flows.dataflows.replay import ReplayJob, run_replay
from flows.domain.keys import KeySpace
from flows.domain.kline import Kline, kline_of_row
from flows.rules.frame import Frame
from flows.rules.helpers import DEFAULT_REGISTRY
from flows.signals.book import BookHolder, TraderRow, build_book
from flows.signals.engine import EngineCounters, Fire, SymbolEngine
from flows.signals.step import redis_seeder
from flows.signals.store import BookWatcher, SignalWriter, TraderStore
from flows.storage.redis_klines import KlineWriter, RetentionPolicy

NO_TRIM = RetentionPolicy(default=100_000, by_interval={})
XRPETH = "XRPETH-aggTrades-20191011-20191013.csv"


class Listener:
    """A connection LISTENing on `signals`, collecting payloads in a thread."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.conn.execute("LISTEN signals")
        self.payloads: list[str] = []

    def drain(self, quiet_s: float = 1.0) -> list[str]:
        """Collect until nothing arrives for `quiet_s` seconds."""
        while True:
            got = [n.payload for n in self.conn.notifies(timeout=quiet_s)]
            if not got:
                return self.payloads
            self.payloads.extend(got)

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def listener(signals_db: str) -> Iterator[Listener]:
    lis = Listener(signals_db)
    yield lis
    lis.close()


def stored(client: redis.Redis, keys: KeySpace, symbol: str, interval: str) -> list[Kline]:
    members = client.zrange(keys.klines(symbol, interval), 0, -1)
    return [kline_of_row(json.loads(m)) for m in members]


def signal_rows(url: str) -> dict[str, dict[str, Any]]:
    with psycopg.connect(url) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(
            'SELECT id, trader_id, symbol, interval, kline_open_ms, price, repeat_count, "values" '
            "FROM signals"
        )
        return {r["id"]: r for r in cur.fetchall()}


def group_by_cooldown(opens: list[int], cooldown_ms: int) -> dict[int, int]:
    """Independent cooldown: fire open times -> {open of each row: repeat count}."""
    rows: dict[int, int] = {}
    anchor: int | None = None
    for t in opens:
        if anchor is not None and t - anchor <= cooldown_ms:
            rows[anchor] += 1
        else:
            anchor = t
            rows[t] = 1
    return rows


def floats(klines: list[Kline], field: str) -> np.ndarray:
    return np.array([getattr(k, field) / 1e8 for k in klines])


def test_replay_signals_equal_an_independent_evaluation_and_replaying_again_changes_nothing(
    shared_data: Path, redis_url: str, redis_client: redis.Redis, keys: KeySpace,
    signals_db: str, listener: Listener,
) -> None:  # fmt: skip
    store = TraderStore(signals_db)
    up = store.add(TraderRow(0, "up bars", "close > open", "1m", trigger_mode="every_close",
                             cooldown_bars=0))  # fmt: skip
    dip = store.add(TraderRow(0, "rsi dip", "rsi(14) < 30", "5m", trigger_mode="on_change",
                              cooldown_bars=6))  # fmt: skip
    mtf = store.add(TraderRow(0, "above 5m ema", 'close > ema(20, tf="5m")', "1m",
                              trigger_mode="on_change", cooldown_bars=3))  # fmt: skip
    job = ReplayJob(
        paths=[shared_data / XRPETH],
        redis_url=redis_url,
        intervals=("1m", "5m"),
        keys=keys,
        retention=NO_TRIM,
        database_url=signals_db,
    )
    stats = run_replay(job)
    assert stats.rules["traders"] == 3

    # the klines the rules saw; the last of each interval closed only at end of input
    k1 = stored(redis_client, keys, "XRPETH", "1m")[:-1]
    k5 = stored(redis_client, keys, "XRPETH", "5m")[:-1]
    assert len(k1) > 3000 and len(k5) > 600

    expected: dict[str, tuple[int, int]] = {}  # id -> (trader, repeat count)

    # up bars: every 1m kline closing above its open, each its own row
    for k in k1:
        if k.close > k.open:
            expected[f"{up.id}-XRPETH-1m-{k.open_ms}"] = (up.id, 1)

    # rsi dip: RSI(14) of the 5m closes crosses below 30; repeats within 6 bars bump
    rsi = talib.RSI(floats(k5, "close"), 14)
    dip_opens = [
        k5[i].open_ms
        for i in range(1, len(k5))
        if not math.isnan(rsi[i - 1]) and rsi[i] < 30 <= rsi[i - 1]
    ]
    for open_ms, count in group_by_cooldown(dip_opens, 6 * 300_000).items():
        expected[f"{dip.id}-XRPETH-5m-{open_ms}"] = (dip.id, count)

    # above 5m ema: each 1m close against the EMA(20) of the 5m bars closed by then
    ema5 = talib.EMA(floats(k5, "close"), 20)
    ends5 = [k.close_ms + 1 for k in k5]
    state: list[bool | None] = []
    j = -1
    for k in k1:
        while j + 1 < len(k5) and ends5[j + 1] <= k.close_ms + 1:
            j += 1
        state.append(None if j < 0 or math.isnan(ema5[j]) else bool(k.close / 1e8 > ema5[j]))
    mtf_opens = [
        k1[i].open_ms for i in range(1, len(k1)) if state[i] is True and state[i - 1] is False
    ]
    for open_ms, count in group_by_cooldown(mtf_opens, 3 * 60_000).items():
        expected[f"{mtf.id}-XRPETH-1m-{open_ms}"] = (mtf.id, count)

    rows = signal_rows(signals_db)
    assert {i: (r["trader_id"], r["repeat_count"]) for i, r in rows.items()} == expected
    assert any(count > 1 for _, count in expected.values())  # the cooldown was exercised
    by_open = {k.open_ms: k for k in k5}
    for row in rows.values():
        if row["trader_id"] == dip.id:
            i = k5.index(by_open[row["kline_open_ms"]])
            assert row["values"]["rsi(14)"] == pytest.approx(rsi[i], rel=1e-9)
            assert row["price"] == Decimal(k5[i].close) / 100_000_000
    assert sorted(listener.drain()) == sorted(rows)  # one NOTIFY per new row, its id

    # the same data again, from scratch: the same decisions, nothing new in PostgreSQL
    again = run_replay(
        ReplayJob(**{**job.__dict__, "fresh": True})  # type: ignore[arg-type]
    )
    assert again.rules["fires"] == stats.rules["fires"]
    assert again.rules.get("signals_new", 0) == 0
    assert signal_rows(signals_db) == rows
    listener.payloads.clear()
    assert listener.drain() == []


# ------------------------------------------------------------------------ engine behaviour


def synthetic_klines(n: int, seed: int = 5, interval_ms: int = 60_000) -> list[Kline]:
    rng = np.random.default_rng(seed)
    price = 10_000_000_000
    out = []
    t0 = 1_700_000_040_000 - 1_700_000_040_000 % interval_ms
    for i in range(n):
        o = price
        price = max(1_000_000, int(price * (1 + rng.normal(0, 0.01))))
        hi, lo = max(o, price) + 1_000_000, min(o, price) - 1_000_000
        vol = int(rng.integers(1, 10**9))
        t = t0 + i * interval_ms
        out.append(Kline(t, t + interval_ms - 1, o, hi, lo, price, vol, vol, 3, 0, 0))
    return out


def run_engine(
    klines: list[Kline], books: dict[int, Any], symbol: str = "TESTUSDT"
) -> tuple[list[Fire], list[Any], EngineCounters]:
    """Feed klines one close at a time; books[i] replaces the book from kline i on."""
    engine = SymbolEngine(symbol)
    counters = EngineCounters()
    fires, failures = [], []
    book = books[0]
    for i, k in enumerate(klines):
        book = books.get(i, book)
        f, e = engine.process([("1m", k)], book, None, 0, counters)
        fires += f
        failures += e
    return fires, failures, counters


def test_a_failing_trader_is_switched_off_for_that_symbol_and_the_others_run_on() -> None:
    calls = {"n": 0}

    @DEFAULT_REGISTRY.function("explode_after", args=[("period")], reference=None)
    def explode_after(frame: Frame, back: int, n: int) -> float:
        calls["n"] += 1
        if frame.bars > n:
            raise ZeroDivisionError("helper bug")
        return 1.0

    try:
        good = TraderRow(1, "good", "close > open", "1m", trigger_mode="every_close")
        bad = TraderRow(2, "bad", "explode_after(30) > 0", "1m", trigger_mode="every_close")
        klines = synthetic_klines(80)
        book = build_book([good, bad])
        fires, failures, counters = run_engine(klines, {0: book})
        alone, _, _ = run_engine(klines, {0: build_book([good])})
    finally:
        DEFAULT_REGISTRY.remove("explode_after")
    assert [f for f in fires if f.trader_id == 1] == alone  # untouched by its neighbour
    assert len(alone) > 10
    assert len(failures) == 1 and failures[0].trader_id == 2
    assert "ZeroDivisionError: helper bug" in failures[0].error
    assert failures[0].open_ms == klines[30].open_ms
    assert counters.failures == 1
    assert calls["n"] == 31 + 30  # never called again for this symbol after failing
    assert {f.trader_id for f in fires} == {1, 2}  # it fired while it worked


def test_adding_a_trader_does_not_disturb_the_others_decisions() -> None:
    a = TraderRow(1, "a", "rsi(14) > 55", "1m", trigger_mode="every_close")
    b = TraderRow(2, "b", "crosses_above(ema(5), sma(50)) or macd_hist() > 0", "1m",
                  trigger_mode="every_close")  # fmt: skip
    klines = synthetic_klines(400)
    book_a = build_book([a])
    fires_alone, _, _ = run_engine(klines, {0: book_a})
    fires_both, _, _ = run_engine(klines, {0: book_a, 200: build_book([a, b], previous=book_a)})
    assert [f for f in fires_both if f.trader_id == 1] == fires_alone
    # b, added at kline 200, decides from there exactly as if it had been there all along
    # (its frame is rebuilt from the bars held): compare with b alone over the same bars
    fires_b_alone, _, _ = run_engine(klines, {0: build_book([b])})
    late = [f for f in fires_both if f.trader_id == 2]
    assert late
    assert late == [f for f in fires_b_alone if f.open_ms >= klines[200].open_ms]


def test_a_seeded_engine_is_ready_at_once_and_agrees_with_ta_lib(
    redis_url: str, keys: KeySpace, redis_client: redis.Redis
) -> None:
    klines = synthetic_klines(201)
    writer = KlineWriter(redis_client, keys=keys, retention=NO_TRIM)
    writer.add_many("SEEDUSDT", [("1m", k) for k in klines[:200]], closed=True)
    writer.flush()
    trader = TraderRow(1, "rsi", "rsi(14) > 0", "1m", trigger_mode="every_close")
    engine = SymbolEngine("SEEDUSDT")
    counters = EngineCounters()
    fires, _ = engine.process(
        [("1m", klines[200])], build_book([trader]), redis_seeder(redis_url, keys), 0, counters
    )
    assert counters.seeded_klines == 200 and counters.not_ready == 0
    want = talib.RSI(floats(klines, "close"), 14)[-1]
    assert len(fires) == 1
    assert fires[0].values["rsi(14)"] == pytest.approx(want, rel=1e-12)


# ------------------------------------------------------------------------ PostgreSQL side


def fire(trader_id: int, open_ms: int, cooldown: int = 50) -> Fire:
    return Fire(
        f"{trader_id}-BTCUSDT-1m-{open_ms}", trader_id, 1, "BTCUSDT", "1m", open_ms,
        open_ms + 59_999, open_ms - cooldown * 60_000, "100.5", {"rsi(14)": 25.0}, 0,
    )  # fmt: skip


def test_cooldown_repeats_and_redelivery_in_postgresql(signals_db: str, listener: Listener) -> None:
    trader = TraderStore(signals_db).add(TraderRow(0, "t", "close > 0", "1m"))
    writer = SignalWriter(signals_db, record_latency=False)
    minute = 60_000
    fires = [fire(trader.id, i * minute) for i in (10, 15, 20, 70, 71)]
    assert writer.write(fires)
    assert (writer.counters.new, writer.counters.repeats) == (2, 3)
    rows = signal_rows(signals_db)
    assert {r["kline_open_ms"] // minute: r["repeat_count"] for r in rows.values()} == {
        10: 3, 70: 2
    }  # fmt: skip
    assert sorted(listener.drain()) == sorted(rows)
    # delivered again, in one batch or one by one, in any order: nothing changes
    assert writer.write(fires[::-1])
    for f in fires:
        assert writer.write([f])
    assert writer.counters.new == 2 and writer.counters.repeats == 3
    assert signal_rows(signals_db) == rows
    listener.payloads.clear()
    assert listener.drain() == []


def test_the_writer_keeps_signals_while_postgresql_is_away_and_writes_them_after(
    signals_db: str,
) -> None:
    trader = TraderStore(signals_db).add(TraderRow(0, "t", "close > 0", "1m"))
    writer = SignalWriter(signals_db, record_latency=False)
    assert writer.write([fire(trader.id, 0, cooldown=0)])
    with psycopg.connect(signals_db, autocommit=True) as admin:  # the server drops us
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    assert not writer.write([fire(trader.id, 60_000, cooldown=0)])  # kept, not lost
    assert writer.pending == 1 and writer.counters.retries == 1
    assert writer.write([fire(trader.id, 120_000, cooldown=0)])  # reconnects, writes both
    assert writer.pending == 0
    assert len(signal_rows(signals_db)) == 3


def test_trader_changes_reach_the_running_book(signals_db: str) -> None:
    holder = BookHolder()
    watcher = BookWatcher(signals_db, holder, intervals=("1m", "5m"), poll_s=60.0)
    watcher.start()
    try:
        assert watcher.connected.wait(10)
        assert holder.book.traders == ()
        store = TraderStore(signals_db)

        def wait_for(predicate: Any) -> None:
            holder.changed.clear()
            deadline = threading.Event()
            for _ in range(100):
                if predicate(holder.book):
                    return
                holder.changed.wait(0.1)
            assert deadline.is_set(), "the book did not follow the change"

        t = store.add(TraderRow(0, "x", "close > open", "1m"))
        wait_for(lambda b: [tr.row.id for tr in b.traders] == [t.id])
        store.update(t.id, expression="close < open")
        wait_for(lambda b: b.traders and b.traders[0].row.version == 2)
        assert holder.book.traders[0].program.text == "close < open"
        store.update(t.id, enabled=False)
        wait_for(lambda b: b.traders == ())
        # a trader this flow cannot run (1h is not built) is left out and reported
        store.add(TraderRow(0, "y", 'rsi(14, tf="1h") > 50', "1m"))
        wait_for(lambda b: len(b.errors) == 1)
        assert "1h is not built by this flow" in holder.book.errors[0].message
    finally:
        watcher.stop()
