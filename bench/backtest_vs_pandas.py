"""Backtest of one symbol-day with 10 traders against the same rules computed in batch by
pandas + TA-Lib + numpy (tests/reference_rules.py), in one process, alternately.

Generates a day of --trades aggTrades (a random walk, Binance's CSV form), then times
`run_backtest` (the dataflow: CSV read as columns, klines into a scratch Redis namespace, the
rules at each close, signals collected) and the batch reference (read_csv, resample, TA-Lib,
numpy crosses), checks their fires identical, and prints both times and the ratio, measured in
this run. Uses the embedded Redis unless KLINEFLOW_REDIS_URL is set.

    .venv/bin/python bench/backtest_vs_pandas.py --trades 2000000 --runs 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flows.allocator import keep_freed_memory
from flows.backtest.run import run_backtest
from flows.services import EmbeddedRedis
from flows.signals.book import TraderRow, build_book
from tests.reference_rules import TEN, all_fires, write_day


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trades", type=int, default=2_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rows = [TraderRow(i + 1, f"rule {i}", rule.expression(), "1m", trigger_mode="every_close",
                      cooldown_bars=0) for i, rule in enumerate(TEN)]  # fmt: skip
    book = build_book(rows)
    keep_freed_memory()  # as `klineflow backtest` does (both sides run in this process)
    with tempfile.TemporaryDirectory(prefix="kf-btp-") as tmp:
        url = os.environ.get("KLINEFLOW_REDIS_URL")
        server = None
        if not url:
            server = EmbeddedRedis(Path(tmp) / "redis")
            url = server.start()
        day = Path(tmp) / "XRPETH-aggTrades-2019-10-11.csv"
        write_day(day, args.trades, seed=11)
        ours_s: list[float] = []
        theirs_s: list[float] = []
        same = True
        fires = 0
        for _ in range(args.runs):
            started = time.perf_counter()
            result = run_backtest([day], book, ("1m",), url)
            ours_s.append(time.perf_counter() - started)
            started = time.perf_counter()
            reference = all_fires(day, TEN)
            theirs_s.append(time.perf_counter() - started)
            ours = {row.id: [] for row in rows}
            for signal in result.signals:
                ours[signal.fire.trader_id].append(signal.fire.open_ms)
            expected = {i + 1: reference[rule] for i, rule in enumerate(TEN)}
            same = same and {k: sorted(v) for k, v in ours.items()} == expected
            fires = sum(len(v) for v in expected.values())
        a, b = statistics.median(ours_s), statistics.median(theirs_s)
        print(
            f"{args.trades:,} trades, one symbol-day, 10 traders on 1m: {fires} fires, "
            f"identical to the batch computation: {same}; median of {args.runs}"
        )
        print(f"klineflow backtest: {a:.2f} s = {args.trades / a:,.0f} trades/s")
        print(f"pandas + TA-Lib + numpy batch: {b:.2f} s = {args.trades / b:,.0f} trades/s")
        print(f"klineflow / batch time: {a / b:.2f}x (target: at most 2x)")
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
