"""Whole-process replay of a single-symbol aggTrades day into Redis, against pandas.

Generates a day of --trades aggTrades in Binance's CSV form (seeded), then runs, alternately
and --runs times each: `klineflow replay FILE` (6 intervals, exact, into Redis) and
bench/pandas_resample.py (read_csv + resample to 4 intervals, floats, no store). Prints the
median wall time and trades/s of each, their ratio, and each one's peak memory (RSS), all
measured in this run; then the peak memory of a replay of --days days in one file, to show
that it does not grow with the file. Uses the embedded Redis unless KLINEFLOW_REDIS_URL is set.

    .venv/bin/python bench/replay_vs_pandas.py --trades 2000000 --runs 5
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

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flows.domain.keys import KeySpace
from flows.services import EmbeddedRedis
from tests.reference_rules import write_day

ROOT = Path(__file__).resolve().parent.parent


# Both tools run as installed programs do: with their compiled modules cached. (A machine that
# sets PYTHONDONTWRITEBYTECODE, as some sandboxes do, would compile klineflow's own modules
# from source at every start, 0.1 s, while pandas' were compiled at install.)
_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(command: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one whole process; it must succeed."""
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_ENV)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        err = child.stderr.read().decode() if child.stderr else ""
        raise SystemExit(f"{command[0]} failed ({child.returncode}): {err[-2000:]}")
    return seconds, usage.ru_maxrss / 1024


def compare_many(folder: Path, klineflow: str, url: str, args: argparse.Namespace) -> None:
    """The same number of trades over --symbols symbols, one dump per symbol."""
    files = []
    for i in range(args.symbols):
        path = folder / f"S{i:03d}USDT-aggTrades-2019-10-11.csv"
        write_day(path, args.trades // args.symbols, seed=100 + i)
        files.append(str(path))
    replay = [klineflow, "replay", *files, "--redis-url", url, "--namespace", "rvp-many",
              "--fresh", "--no-progress"]  # fmt: skip
    pandas = [sys.executable, str(ROOT / "bench" / "pandas_resample.py"), *files]
    ours, theirs = [], []
    for _ in range(args.runs):
        ours.append(timed(replay))
        theirs.append(timed(pandas))
    a = statistics.median(s for s, _ in ours)
    b = statistics.median(s for s, _ in theirs)
    n = args.trades // args.symbols * args.symbols
    print(
        f"{args.symbols} symbols, one dump each, {n:,} trades: klineflow {a:.2f} s = "
        f"{n / a:,.0f} trades/s (peak RSS {max(m for _, m in ours):.0f} MB); pandas "
        f"groupby + resample {b:.2f} s = {n / b:,.0f} trades/s (peak RSS "
        f"{max(m for _, m in theirs):.0f} MB); ratio {b / a:.2f}"
    )
    for path in files:
        Path(path).unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trades", type=int, default=2_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--symbols", type=int, default=100)
    args = parser.parse_args()
    klineflow = str(Path(sys.executable).with_name("klineflow"))
    with tempfile.TemporaryDirectory(prefix="kfb-") as tmp:
        folder = Path(tmp)
        url = os.environ.get("KLINEFLOW_REDIS_URL")
        server = None
        if not url:
            server = EmbeddedRedis(folder / "redis")
            url = server.start()
        day = folder / "XRPETH-aggTrades-2019-10-11.csv"
        n = write_day(day, args.trades, seed=17)
        replay = [klineflow, "replay", str(day), "--redis-url", url, "--namespace", "rvp",
                  "--fresh", "--no-progress"]  # fmt: skip
        pandas = [sys.executable, str(ROOT / "bench" / "pandas_resample.py"), str(day)]
        ours: list[tuple[float, float]] = []
        theirs: list[tuple[float, float]] = []
        timed(replay), timed(pandas)  # once first, unmeasured: caches as after an install
        for _ in range(args.runs):  # alternate, so the machine's noise hits both alike
            ours.append(timed(replay))
            theirs.append(timed(pandas))
        client = redis.Redis.from_url(url)
        minutes = client.zcard(KeySpace("rvp").klines("XRPETH", "1m"))
        a = statistics.median(s for s, _ in ours)
        b = statistics.median(s for s, _ in theirs)
        print(
            f"{n:,} trades, one symbol-day; klineflow wrote {minutes} 1m klines (exact, "
            "6 intervals, Redis); median of",
            args.runs,
        )
        print(
            f"klineflow replay: {a:.2f} s = {n / a:,.0f} trades/s, peak RSS "
            f"{max(m for _, m in ours):.0f} MB"
        )
        print(
            f"pandas read_csv + resample (4 intervals): {b:.2f} s = {n / b:,.0f} trades/s, "
            f"peak RSS {max(m for _, m in theirs):.0f} MB"
        )
        print(f"ratio klineflow / pandas: {b / a:.2f}")
        if args.symbols > 1:
            compare_many(folder, klineflow, url, args)
        if args.days > 1:
            day.unlink()
            many = folder / f"XRPETH-aggTrades-{args.days}-days.csv"
            write_day(many, args.trades, seed=18, days=args.days)
            seconds, peak = timed([klineflow, "replay", str(many), "--symbol", "XRPETH",
                                   "--redis-url", url, "--namespace", "rvp-days", "--fresh",
                                   "--no-progress"])  # fmt: skip
            print(
                f"{args.days} days ({args.trades * args.days:,} trades, "
                f"{many.stat().st_size / 1e6:.0f} MB) in one file: {seconds:.2f} s, "
                f"peak RSS {peak:.0f} MB"
            )
        client.close()
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
