"""Trader rules: evaluation cost at one kline close, and kline close -> NOTIFY latency.

1. Evaluation: 1,000 symbols warmed with 300 1m bars, 10 traders of typical shapes (RSI,
   EMA/SMA crosses, MACD, Bollinger, volume, ATR, stochastic, a tf= rule, a pattern). One
   new 1m kline closes for every symbol and the engine the flow runs (one ShardEngine, every
   symbol at once) takes them: the time of that whole close (indicator updates + every rule)
   is the figure; the target is 30 ms and 3 us per (trader, symbol). The per-symbol engine it
   replaced (flows/signals/scalar_engine.py) takes the next closes from the same state, and the
   array engine takes them again, for a ratio in the same run. `--scale` adds 1,600 symbols
   x 100 traders (variations of the ten) and 5,000 symbols x 10 traders.
2. Latency: a real PostgreSQL (embedded, or KLINEFLOW_DATABASE_URL) with a listener on
   channel `signals`. Each round closes a kline for 20 symbols whose rule fires, records the
   fires in one transaction, and times each NOTIFY from the moment the close was handed to
   the engines to its arrival at the listening connection. Target: p99 <= 20 ms.

The figures are for this machine; `calibration` relates its CPython speed to the reference
machine of PERFORMANCE.md (json.loads of one aggTrade frame: 2.3 us there).

    python bench/rules_bench.py [--symbols 1000] [--traders 10] [--rounds 20] [--scale]
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # flows, tests

from flows.domain.kline import Kline
from flows.signals.book import TraderRow, build_book
from flows.signals.engine import EngineCounters
from flows.signals.shard_engine import ShardEngine

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


def traders(count: int) -> list[TraderRow]:
    """`count` traders: the ten shapes above, then variations of them (other thresholds and
    periods), as a team screening the market with many rules would have."""
    rows = []
    for i in range(count):
        name, expr, mode = TRADERS[i % len(TRADERS)]
        v = i // len(TRADERS)
        if v:
            expr = (expr.replace("rsi(14) < 30", f"rsi(14) < {30 + v % 15}")
                    .replace("rsi(14) > 55", f"rsi({10 + v % 8}) > 55")
                    .replace("1.5 * atr", f"{1.2 + v % 5 / 10} * atr")
                    .replace("stoch_k() < 20", f"stoch_k() < {15 + v % 10}")
                    .replace("pct_change(close, 10) > 1", f"pct_change(close, {5 + v % 10}) > 1")
                    .replace("2 * avg_volume(20)", f"{1.5 + v % 4 / 2} * avg_volume(20)")
                    .replace("sma(20)", f"sma({20 + v % 3 * 10})")
                    .replace("mfi(14) < 80", f"mfi(14) < {70 + v % 20}")
                    .replace("sma(50), sma(200)", f"sma({50 + v % 2 * 50}), sma(200)"))  # fmt: skip
        rows.append(TraderRow(i + 1, f"{name} {v}", expr, "1m", trigger_mode=mode,
                              cooldown_bars=0))  # fmt: skip
    return rows


def evaluation(symbols: int, trader_count: int, rounds: int, reference_rounds: int) -> None:
    """One 1m close for every symbol, `rounds` times: the array engine the flow runs
    (every symbol at once) and, over `reference_rounds`, the per-symbol engine it replaced
    (`flows/signals/scalar_engine.py`), on the same warmed state and the same klines."""
    from flows.signals.scalar_engine import ScalarEngine

    book = build_book(traders(trader_count))
    assert not book.errors, book.errors
    warm = 300
    history: list[tuple[str, str, Kline]] = []
    futures = []
    for s in range(symbols):
        symbol = f"S{s:04d}USDT"
        bars = klines_for(s, warm + (rounds + 5) * 5)
        m5 = five_minute(bars)
        history += [(symbol, "1m", k) for k in bars[:warm]]
        history += [(symbol, "5m", k) for k in m5 if k.close_ms < bars[warm - 1].close_ms + 1]
        futures.append((symbol, bars[warm:], {k.close_ms: k for k in m5}))
    shard = ShardEngine()
    shard.process(history, book, None, 0, EngineCounters())
    distinct = {spec for tr in book.traders for r in tr.program.requirements.values()
                for spec in r.specs}  # fmt: skip
    print(f"{symbols:,} symbols x {len(book.traders)} traders ({len(distinct)} distinct "
          f"indicators per symbol), warmed with {warm} bars")  # fmt: skip

    def closes(r: int) -> list[tuple[str, str, Kline]]:
        batch = []
        for symbol, bars, m5 in futures:
            k = bars[r]
            batch.append((symbol, "1m", k))
            if k.close_ms in m5:
                batch.append((symbol, "5m", m5[k.close_ms]))
        return batch

    timings = []
    fires_total = 0
    for r in range(rounds):
        batch = closes(r)
        started = time.perf_counter()
        fires, _ = shard.process(batch, book, None, 0, EngineCounters())
        timings.append((time.perf_counter() - started) * 1000)
        fires_total += len(fires)
    p50 = statistics.median(timings)
    p99 = sorted(timings)[int(0.99 * (len(timings) - 1))]
    evals = len(book.traders) * symbols
    print(f"  array engine: one 1m close, {evals:,} rule evaluations: median {p50:.1f} ms, "
          f"p99 {p99:.1f} ms; {p50 * 1000 / evals:.2f} us per (trader, symbol) incl. "
          f"indicators; fires over {rounds} rounds: {fires_total:,}")  # fmt: skip
    if not reference_rounds:
        return
    engines = []
    by_symbol: dict[str, list[tuple[str, Kline]]] = {}
    for r in range(-1, rounds):  # the same history and closes the array engine took
        for sym, iv, k in history if r < 0 else closes(r):
            by_symbol.setdefault(sym, []).append((iv, k))
    for s in range(symbols):
        engine = ScalarEngine(f"S{s:04d}USDT")
        engine.process(by_symbol[engine.symbol], book, None, 0, EngineCounters())
        engines.append(engine)
    ref, ref_fires = [], 0
    for r in range(reference_rounds):
        per: dict[str, list[tuple[str, Kline]]] = {}
        for symbol, iv, k in closes(rounds + r):
            per.setdefault(symbol, []).append((iv, k))
        started = time.perf_counter()
        for engine in engines:
            fires, _ = engine.process(per[engine.symbol], book, None, 0, EngineCounters())
            ref_fires += len(fires)
        ref.append((time.perf_counter() - started) * 1000)
    # the array engine over the very closes the reference just took, for a paired ratio
    paired = []
    for r in range(reference_rounds):
        batch = closes(rounds + r)
        started = time.perf_counter()
        fires, _ = shard.process(batch, book, None, 0, EngineCounters())
        paired.append((time.perf_counter() - started) * 1000)
        ref_fires -= len(fires)
    ref50, arr50 = statistics.median(ref), statistics.median(paired)
    print(f"  per-symbol engine (before): median {ref50:.1f} ms per close, "
          f"{ref50 * 1000 / evals:.2f} us per (trader, symbol); the array engine on the same "
          f"{reference_rounds} closes {arr50:.1f} ms: x{ref50 / arr50:.1f}; fires differ by "
          f"{ref_fires}")  # fmt: skip


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
        engine = ShardEngine()  # the flow's engine: a round's symbols at once
        bars = klines_for(1, rounds + 2)
        symbols = [f"L{s:03d}USDT" for s in range(per_round)]
        engine.process([(s, "1m", bars[0]) for s in symbols], book, None, 0, EngineCounters())
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
            closing = [(s, "1m", bars[r]) for s in symbols]
            fires, _ = engine.process(closing, book, None, 0, EngineCounters())
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
    ap.add_argument("--traders", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument(
        "--reference-rounds",
        type=int,
        default=5,
        help="closes also timed with the per-symbol engine (0: none)",
    )
    ap.add_argument(
        "--scale",
        action="store_true",
        help="also 1,600 symbols x 100 traders and 5,000 symbols x 10 traders",
    )
    ap.add_argument("--latency-rounds", type=int, default=200)
    args = ap.parse_args()
    cal = calibrate()
    print(f"calibration: json.loads of one aggTrade frame {cal:.2f} us here, 2.3 us on the "
          f"reference machine (x{cal / 2.3:.2f})")  # fmt: skip
    limits()
    evaluation(args.symbols, args.traders, args.rounds, args.reference_rounds)
    if args.scale:
        evaluation(1600, 100, args.rounds, min(args.reference_rounds, 3))
        evaluation(5000, 10, args.rounds, min(args.reference_rounds, 3))
    latency(args.latency_rounds, 20)


if __name__ == "__main__":
    main()
