"""Replay benchmark: N synthetic trades over M symbols, written as a klineflow recording,
replayed through the full dataflow into Redis (default intervals 1m 5m 15m 1h 4h 1d).

Prints trades/s end to end and the ratio to a bare msgspec decode of the same file,
measured in the same run. Uses the embedded Redis unless KLINEFLOW_REDIS_URL is set.

    .venv/bin/python bench/replay_bench.py --trades 2000000 --symbols 100
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flows.binance.decode import Combined
from flows.dataflows.replay import ReplayJob, run_replay
from flows.domain.intervals import DEFAULT_INTERVALS
from flows.domain.keys import KeySpace
from flows.services import EmbeddedRedis
from flows.sources.readers import iter_lines
from flows.sources.recording import RecordingWriter
from flows.sources.synthetic import SyntheticMarket, agg_trade_frame

START_MS = 1_700_000_000_000


def write_recording(path: Path, trades: int, symbols: int, span_hours: float, seed: int) -> int:
    span_ms = int(span_hours * 3_600_000)
    market = SyntheticMarket(symbols, seed, START_MS, rate=trades / (span_ms / 1000))
    written = 0
    with RecordingWriter(path, START_MS, "synthetic") as writer:
        step = 600_000
        t = START_MS
        while t < START_MS + span_ms:
            t = min(t + step, START_MS + span_ms)
            batch = market.advance_to(t)
            merged = sorted(
                ((tr[4], sym, tr) for sym, trs in batch.items() for tr in trs), key=lambda x: x[0]
            )
            frames = [(ts + 5, agg_trade_frame(sym, tr[0], tr)) for ts, sym, tr in merged]
            writer.write_many(frames)
            written += len(frames)
    return written


class _Line(msgspec.Struct):
    r: int
    d: Combined


def bare_decode(path: Path) -> tuple[int, float]:
    """Gunzip, split lines and decode each into the typed frame: nothing else."""
    decoder = msgspec.json.Decoder(_Line)
    started = time.perf_counter()
    n = 0
    with gzip.open(path, "rb") as f:
        lines = iter_lines(f)  # type: ignore[arg-type]
        next(lines)  # the header
        for line in lines:
            decoder.decode(line)
            n += 1
    return n, time.perf_counter() - started


def calibrate() -> float:
    """Microseconds for json.loads of one aggTrade frame: PERFORMANCE.md's reference machine
    took 2.3 us, so this relates the absolute figures here to the targets set there."""
    import json
    import timeit

    frame = agg_trade_frame("BTCUSDT", 1, (1, 1, 5_800_103_000_000, 8_620_500, START_MS, True))
    frame = msgspec.json.encode(msgspec.json.decode(frame)["data"])
    runs = [timeit.timeit(lambda: json.loads(frame), number=100_000) * 10 for _ in range(3)]
    return min(runs)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--trades", type=int, default=2_000_000)
    ap.add_argument("--symbols", type=int, default=100)
    ap.add_argument(
        "--span-hours",
        type=float,
        default=0.28,
        help="event-time span; 2M trades in 0.28 h is about 2,000 trades/s, Binance's whole-market "
        "average (a longer span at the same N means sparser symbols and more klines per trade)",
    )
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()

    import os

    with tempfile.TemporaryDirectory(prefix="kfb-") as tmp:
        tmpdir = Path(tmp)
        url = os.environ.get("KLINEFLOW_REDIS_URL")
        server = None
        if not url:
            server = EmbeddedRedis(tmpdir / "redis")
            url = server.start()
        path = tmpdir / "bench.jsonl.gz"
        t0 = time.perf_counter()
        n = write_recording(path, args.trades, args.symbols, args.span_hours, args.seed)
        print(
            f"generated {n:,} trades over {args.symbols} symbols, {args.span_hours:g} h, "
            f"{path.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - t0:.1f} s"
        )
        client = redis.Redis.from_url(url)
        decode_rates, flow_rates = [], []
        for i in range(args.repeat):
            dn, dt = bare_decode(path)
            decode_rates.append(dn / dt)
            keys = KeySpace(f"bench{i}")
            job = ReplayJob(
                paths=[path], redis_url=url, intervals=DEFAULT_INTERVALS, keys=keys, fresh=True
            )
            started = time.perf_counter()
            stats = run_replay(job)
            elapsed = time.perf_counter() - started
            flow_rates.append(stats.trades_read / elapsed)
            closed = sum(stats.klines_closed.values())
            print(
                f"run {i + 1}: bare decode {dn / dt:,.0f} trades/s; full flow "
                f"{stats.trades_read:,} trades in {elapsed:.2f} s = "
                f"{stats.trades_read / elapsed:,.0f} trades/s, {closed:,} klines closed"
            )
            names = list(client.scan_iter(match=f"{keys.namespace}:*", count=1000))
            if names:
                client.delete(*names)
        flow = statistics.median(flow_rates)
        base = statistics.median(decode_rates)
        cal = calibrate()
        print(
            f"calibration: json.loads of one aggTrade frame {cal:.2f} us here, 2.3 us on the "
            f"reference machine of PERFORMANCE.md: {flow * cal / 2.3:,.0f} trades/s there, scaled"
        )
        print(
            f"median: full flow {flow:,.0f} trades/s; bare msgspec decode {base:,.0f} trades/s; "
            f"ratio {flow / base:.2f} (target >= 500,000 trades/s, ratio >= 0.25)"
        )
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
