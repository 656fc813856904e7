"""Trader rules: evaluation cost at one kline close, and kline close -> NOTIFY latency.

1. Evaluation: 1,000 symbols, each with a warmed engine (300 seeded 1m bars), 10 traders of
   typical shapes (RSI, EMA/SMA crosses, MACD, Bollinger, volume, ATR, stochastic, a tf= rule,
   a pattern). One new 1m kline closes for every symbol and every engine takes it: the time
   of that whole round (indicator updates + every rule) is the figure; the target is 30 ms.
   Also the same round with the rules' indicators only (no rules evaluated) and the number
   of distinct indicators, to show each is computed once per symbol.
2. Latency: a real PostgreSQL (embedded, or KLINEFLOW_DATABASE_URL) with a listener on
   channel `signals`. Each round closes a kline for 20 symbols whose rule fires, records the
   fires in one transaction, and times each NOTIFY from the moment the close was handed to
   the engines to its arrival at the listening connection. Target: p99 <= 20 ms.

The figures are for this machine; `calibration` relates its CPython speed to the reference
machine of PERFORMANCE.md (json.loads of one aggTrade frame: 2.3 us there).

    python bench/rules_bench.py [--symbols 1000] [--rounds 200]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import threading
import time
import timeit
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flows.domain.kline import Kline
from flows.signals.book import TraderRow, build_book
from flows.signals.engine import EngineCounters, SymbolEngine

MINUTE = 60_000
T0 = 1_700_000_000_000 - 1_700_000_000_000 % 3_600_000

TRADERS = [
    ("rsi oversold", "rsi(14) < 30 and crosses_above(ema(9), ema(21))", "every_close"),
    ("golden cross", "crosses_above(sma(50), sma(200))", "on_change"),
    ("macd cross", "crosses_above(macd(), macd_signal())", "on_change"),
    ("bb break", "close > bb_upper(20, 2) and volume > 2 * avg_volume(20)", "every_close"),
    ("atr expansion", "atr(14) > 1.5 * atr(14)[5] and close > ema(50)", "on_change"),
    ("stoch", "stoch_k() < 20 and crosses_above(stoch_k(), stoch_d())", "on_change"),
    ("mtf", 'rsi(14) > 55 and rsi(14, tf="5m") > 50', "on_change"),
    ("pattern", "engulfing() > 0 and close > sma(20)", "every_close"),
    ("momentum", "pct_change(close, 10) > 1 and adx(14) > 25", "on_change"),
    ("breakout", "close > highest(high, 20)[1] and mfi(14) < 80", "every_close"),
]


def klines_for(seed: int, n: int, interval_ms: int = MINUTE) -> list[Kline]:
    rng = np.random.default_rng(seed)
    steps = rng.normal(0, 0.004, n)
    price = 10_000_000_000 * np.exp(np.cumsum(steps))
    out = []
    prev = int(price[0])
    for i in range(n):
        close = int(price[i])
        hi = max(prev, close) + int(abs(rng.normal(0, 2e6)))
        lo = min(prev, close) - int(abs(rng.normal(0, 2e6)))
        vol = int(rng.lognormal(20, 1))
        t = T0 + i * interval_ms
        out.append(Kline(t, t + interval_ms - 1, prev, hi, lo, close, vol, vol, 10, 0, 0))
        prev = close
    return out


def five_minute(bars: list[Kline]) -> list[Kline]:
    out = []
    for i in range(0, len(bars) - 4, 5):
        g = bars[i : i + 5]
        out.append(
            Kline(g[0].open_ms, g[-1].close_ms, g[0].open, max(k.high for k in g),
                  min(k.low for k in g), g[-1].close, sum(k.volume for k in g),
                  sum(k.quote_volume for k in g), 50, 0, 0)
        )  # fmt: skip
    return out


def calibrate() -> float:
    frame = json.dumps({"e": "aggTrade", "E": 1, "s": "BTCUSDT", "a": 1, "p": "58001.03",
                        "q": "0.086205", "f": 1, "l": 1, "T": 1, "m": True, "M": True})  # fmt: skip
    return min(timeit.timeit(lambda: json.loads(frame), number=100_000) * 10 for _ in range(3))


def evaluation(symbols: int, rounds: int) -> None:
    rows = [TraderRow(i + 1, name, expr, "1m", trigger_mode=mode, cooldown_bars=0)
            for i, (name, expr, mode) in enumerate(TRADERS)]  # fmt: skip
    book = build_book(rows)
    assert not book.errors, book.errors
    warm, extra = 300, rounds + 5
    engines, futures = [], []
    counters = EngineCounters()
    for s in range(symbols):
        bars = klines_for(s, warm + extra * 5)
        m5 = five_minute(bars)
        engine = SymbolEngine(f"S{s:04d}USDT")
        history = [("1m", k) for k in bars[:warm]] + [
            ("5m", k) for k in m5 if k.close_ms < bars[warm - 1].close_ms + 1
        ]
        engine.process(history, book, None, 0, counters)
        engines.append(engine)
        futures.append((bars[warm:], {k.close_ms: k for k in m5}))
    distinct = {spec for tr in book.traders for r in tr.program.requirements.values()
                for spec in r.specs}  # fmt: skip
    print(f"{len(book.traders)} traders, {len(distinct)} distinct indicators per symbol, "
          f"{symbols} symbols warmed with {warm} bars")  # fmt: skip

    timings, bare = [], []
    fires_total = 0
    for r in range(rounds):
        batch = []
        for engine, (bars, m5) in zip(engines, futures, strict=True):
            k = bars[r]
            closing = [("1m", k)]
            if k.close_ms in m5:
                closing.append(("5m", m5[k.close_ms]))
            batch.append((engine, closing))
        c = EngineCounters()
        started = time.perf_counter()
        for engine, closing in batch:
            fires, _ = engine.process(closing, book, None, 0, c)
            fires_total += len(fires)
        timings.append((time.perf_counter() - started) * 1000)
    # indicators only: the same frames fed one more bar each, with no rule evaluated
    for engine, (bars, _) in zip(engines, futures, strict=True):
        for frame in engine.frames.values():
            if frame.interval == "1m":
                started = time.perf_counter()
                frame.on_bar(bars[rounds])
                bare.append(time.perf_counter() - started)
    p50 = statistics.median(timings)
    p99 = sorted(timings)[int(0.99 * (len(timings) - 1))]
    indicators_ms = sum(bare) * 1000
    evals = len(book.traders) * symbols
    per_eval = p50 * 1000 / evals
    print(f"one 1m close, {evals:,} rule evaluations: median {p50:.1f} ms, p99 {p99:.1f} ms "
          f"(target 30 ms); {per_eval:.2f} us per evaluation incl. indicators")  # fmt: skip
    print(f"  of which indicator updates for {symbols} symbols: {indicators_ms:.1f} ms; "
          f"fires over {rounds} rounds: {fires_total:,}")  # fmt: skip


def latency(rounds: int, per_round: int) -> None:
    import os

    import psycopg

    from flows.services import EmbeddedPostgres
    from flows.signals.store import SignalWriter, TraderStore
    from flows.storage.migrations import apply_migrations

    tmp = tempfile.TemporaryDirectory(prefix="kf-bench-")
    url = os.environ.get("KLINEFLOW_DATABASE_URL")
    server = None
    if not url:
        server = EmbeddedPostgres(Path(tmp.name) / "pg")
        url = server.start()
    db = f"kf_bench_{int(time.time())}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {db}")
    dburl = psycopg.conninfo.make_conninfo(url, dbname=db)
    try:
        apply_migrations(dburl)
        trader = TraderStore(dburl).add(
            TraderRow(0, "always", "close > 0", "1m", trigger_mode="every_close", cooldown_bars=0)
        )
        book = build_book([TraderRow(trader.id, "always", "close > 0", "1m",
                                     trigger_mode="every_close", cooldown_bars=0)])  # fmt: skip
        engines = [SymbolEngine(f"L{s:03d}USDT") for s in range(per_round)]
        bars = klines_for(1, rounds + 2)
        for engine in engines:
            engine.process([("1m", bars[0])], book, None, 0, EngineCounters())
        listen = psycopg.connect(dburl, autocommit=True)
        listen.execute("LISTEN signals")
        arrived: dict[str, float] = {}
        done = threading.Event()

        def listener() -> None:
            while not done.is_set():
                for note in listen.notifies(timeout=0.2):
                    arrived[note.payload] = time.perf_counter()

        thread = threading.Thread(target=listener, daemon=True)
        thread.start()
        writer = SignalWriter(dburl)
        writer.write([])
        started_at: dict[str, float] = {}
        for r in range(1, rounds + 1):
            t0 = time.perf_counter()
            fires = []
            for engine in engines:
                f, _ = engine.process([("1m", bars[r])], book, None, 0, EngineCounters())
                fires += f
            writer.write(fires)
            for f in fires:
                started_at[f.id] = t0
            time.sleep(0.005)
        deadline = time.perf_counter() + 5
        while len(arrived) < len(started_at) and time.perf_counter() < deadline:
            time.sleep(0.05)
        done.set()
        thread.join()
        listen.close()
        writer.close()
        lat = sorted((arrived[i] - t) * 1000 for i, t in started_at.items() if i in arrived)
        print(f"close -> NOTIFY at a listener, {len(lat):,} signals ({per_round} per round, "
              f"{rounds} rounds, one transaction each): p50 {statistics.median(lat):.2f} ms, "
              f"p99 {lat[int(0.99 * (len(lat) - 1))]:.2f} ms, max {lat[-1]:.2f} ms "
              f"(target p99 20 ms); {len(started_at) - len(lat)} missing")  # fmt: skip
        hot_reload(dburl, trader.id)
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        if server is not None:
            server.stop()
        tmp.cleanup()


def hot_reload(dburl: str, trader_id: int, edits: int = 20) -> None:
    """An edit committed in PostgreSQL -> the running flow's book holds the new version."""
    from flows.signals.book import BookHolder
    from flows.signals.store import BookWatcher, TraderStore

    holder = BookHolder()
    watcher = BookWatcher(dburl, holder, poll_s=60.0)
    watcher.start()
    assert watcher.connected.wait(10)
    store = TraderStore(dburl)
    took = []
    for i in range(edits):
        started = time.perf_counter()
        version = store.update(trader_id, expression=f"close > {i}").version
        while not any(t.row.version == version for t in holder.book.traders):
            time.sleep(0.001)
        took.append((time.perf_counter() - started) * 1000)
    watcher.stop()
    took.sort()
    print(f"trader edit -> new rule in the running book, {edits} edits: median "
          f"{statistics.median(took):.1f} ms, max {took[-1]:.1f} ms (target 2 s)")  # fmt: skip


def limits() -> None:
    """Time each hostile or heavy rule of the limits test: compile (or reject) + evaluate."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "unit"))
    from test_rules_evaluation_limits import BOUNDED, REJECTED, full_frame

    from flows.rules.errors import RuleError
    from flows.rules.evaluate import compile_rule

    worst: tuple[float, str] = (0.0, "")
    for text in REJECTED:
        started = time.perf_counter()
        with contextlib.suppress(RuleError):
            compile_rule(text, "1m")
        worst = max(worst, ((time.perf_counter() - started) * 1000, text[:40]))
    for text in BOUNDED:
        program, frames = full_frame(text)
        started = time.perf_counter()
        program.holds(frames)  # type: ignore[attr-defined]
        worst = max(worst, ((time.perf_counter() - started) * 1000, text[:40]))
    print(f"{len(REJECTED)} hostile rules rejected, {len(BOUNDED)} heavy ones evaluated: "
          f"slowest {worst[0]:.2f} ms ({worst[1]!r}; target 50 ms each)")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--symbols", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--latency-rounds", type=int, default=200)
    args = ap.parse_args()
    cal = calibrate()
    print(f"calibration: json.loads of one aggTrade frame {cal:.2f} us here, 2.3 us on the "
          f"reference machine (x{cal / 2.3:.2f})")  # fmt: skip
    limits()
    evaluation(args.symbols, args.rounds)
    latency(args.latency_rounds, 20)


if __name__ == "__main__":
    main()
