"""Backtest speed: recorded trades through the live dataflow with 10 traders.

1. One symbol, a synthetic day of 3,000,000 trades, 10 traders (target: at most 10 s).
2. 100 symbols, the same number of trades spread over them, 10 traders: trades/s.

Recordings are generated first (not timed), then `run_backtest` is timed end to end
(decode, klines into a scratch Redis namespace, rules, signal grouping). The calibration line
relates this machine's CPython speed to PERFORMANCE.md's reference machine.

    python bench/backtest_bench.py [--trades 3000000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from replay_bench import calibrate, write_recording

from flows.backtest.run import run_backtest
from flows.services import EmbeddedRedis
from flows.signals.book import TraderRow, build_book

TRADERS = [
    ("rsi oversold", "rsi(14) < 30 and crosses_above(ema(9), ema(21))", "1m"),
    ("golden cross", "crosses_above(sma(50), sma(200))", "5m"),
    ("macd cross", "crosses_above(macd(), macd_signal())", "15m"),
    ("bb break", "close > bb_upper(20, 2) and volume > 2 * avg_volume(20)", "1m"),
    ("atr expansion", "atr(14) > 1.5 * atr(14)[5]", "5m"),
    ("stoch", "stoch_k() < 20 and crosses_above(stoch_k(), stoch_d())", "1m"),
    ("mtf", 'rsi(14) > 55 and rsi(14, tf="1h") > 50', "5m"),
    ("pattern", "engulfing() > 0 and close > sma(20)", "15m"),
    ("momentum", "pct_change(close, 10) > 1 and adx(14) > 25", "1h"),
    ("breakout", "close > highest(high, 20)[1] and mfi(14) < 80", "1m"),
]
INTERVALS = ("1m", "5m", "15m", "1h")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--trades", type=int, default=3_000_000)
    args = ap.parse_args()
    cal = calibrate()
    print(f"calibration: json.loads of one aggTrade frame {cal:.2f} us here, 2.3 us on the "
          f"reference machine (x{cal / 2.3:.2f})")  # fmt: skip
    book = build_book([TraderRow(i + 1, n, e, iv, trigger_mode="on_change", cooldown_bars=10)
                       for i, (n, e, iv) in enumerate(TRADERS)])  # fmt: skip
    assert not book.errors, book.errors
    with tempfile.TemporaryDirectory(prefix="kf-bt-") as tmp:
        redis_server = EmbeddedRedis(Path(tmp) / "redis")
        url = redis_server.start()
        try:
            for symbols in (1, 100):
                path = Path(tmp) / f"day-{symbols}.jsonl.gz"
                n = write_recording(path, args.trades, symbols, 24.0, seed=symbols)
                started = time.perf_counter()
                result = run_backtest([path], book, INTERVALS, url)
                seconds = time.perf_counter() - started
                print(f"{symbols} symbol(s), {n:,} trades over 24 h, 10 traders: {seconds:.1f} s, "
                      f"{n / seconds:,.0f} trades/s, {len(result.signals):,} signals, "
                      f"{result.stats.rules.get('evaluations', 0):,} evaluations"
                      + (" (target 10 s)" if symbols == 1 else ""))  # fmt: skip
        finally:
            redis_server.stop()


if __name__ == "__main__":
    main()
