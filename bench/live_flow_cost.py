"""The live flow's own CPU per second of market, without sockets, feeds or a simulator.

`bench/cluster_bench.py` measures `klineflow up` against the simulator: a whole process with
its WebSocket threads, next to a simulator and Redis on the same two cores, so one run varies
by several points. This one runs the live kline flow (the kline step keyed by shard, the Redis
sink with its journal, as `run_live` builds them) in this process on a pre-drawn synthetic
market shaped as the live source hands it over: every 10 ms the trades of that poll, one batch
per symbol, and at each minute the watermark of every symbol (as the live source sends it);
open klines written at most once a second of market time per symbol, as live. It prints the
process CPU seconds per second of market, that is the share of one core the flow itself needs
at that rate, so two versions of the code can be compared run by run (`farm-bench --vs`).

`--real-time`: the market is handed over at its own pace on the wall clock, with the open
klines' timers and 2 s epochs as `run_live` has them (the run takes --minutes); without it,
as fast as the flow takes it, on a clock the source moves (no timers: open klines are
written with the next batch of their symbol).

    .venv/bin/python bench/live_flow_cost.py --symbols 1600 --rate 2000 --minutes 3
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.testing import run_main

from flows.dataflows.kline_step import KlineStepConfig
from flows.dataflows.klines_flow import build_kline_flow
from flows.domain.clock import SYSTEM_CLOCK, Clock, ManualClock
from flows.domain.intervals import DEFAULT_INTERVALS
from flows.domain.keys import KeySpace
from flows.domain.stats import RunStats
from flows.services import EmbeddedRedis
from flows.sinks.redis_sink import RedisKlineSink, writer_factory
from flows.sources import items as source_items
from flows.sources.items import SourceItem, SymbolBatch
from flows.sources.synthetic import SyntheticMarket
from flows.storage.redis_klines import KlineWriter

T0 = 1_704_067_200_000
POLL_MS = 10
GRACE_MS = 2_000


def polls(symbols: int, rate: float, minutes: int, t0: int) -> list[tuple[int, list[SourceItem]]]:
    """(time, items) of each 10 ms poll, drawn before anything is timed."""
    market = SyntheticMarket(symbols, seed=5, start_ms=t0, rate=rate)
    marks = getattr(source_items, "Watermarks", None)  # (older code: one batch per symbol)
    out: list[tuple[int, list[SourceItem]]] = []
    last_minute = -1
    names = tuple(sorted(market.symbols))
    for t in range(t0 + POLL_MS, t0 + minutes * 60_000 + GRACE_MS + POLL_MS, POLL_MS):
        items: list[SourceItem] = [
            (s, SymbolBatch(s, trades)) for s, trades in market.advance_to(t).items()
        ]
        minute = (t - GRACE_MS) // 60_000
        if minute != last_minute and t - GRACE_MS > t0:
            last_minute = minute
            watermark = t - GRACE_MS
            if marks is not None:
                items.append(("", marks(names, watermark)))
            else:
                items.extend((s, SymbolBatch(s, [], watermark)) for s in names)
        out.append((t, items))
    return out


class _Part(StatefulSourcePartition[SourceItem, None]):
    def __init__(self, polls: list[tuple[int, list[SourceItem]]], clock: Clock) -> None:
        self._polls = iter(polls)
        self._clock = clock
        self._next: tuple[int, list[SourceItem]] | None = None

    def next_batch(self) -> list[SourceItem]:
        if isinstance(self._clock, ManualClock):
            t, items = next(self._polls)  # StopIteration ends the flow
            self._clock.advance(t - self._clock.now_ms())
            return items
        if self._next is None:
            self._next = next(self._polls)
        if self._next[0] > self._clock.now_ms():
            return []
        items = self._next[1]
        self._next = None
        return items

    def next_awake(self) -> datetime | None:
        if self._next is None:
            return None
        return datetime.fromtimestamp(self._next[0] / 1000, tz=UTC)

    def snapshot(self) -> None:
        return None


class _Source(FixedPartitionedSource[SourceItem, None]):
    def __init__(self, polls: list[tuple[int, list[SourceItem]]], clock: Clock) -> None:
        self._polls = polls
        self._clock = clock

    def list_parts(self) -> list[str]:
        return ["polls"]

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _Part:
        return _Part(self._polls, self._clock)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--symbols", type=int, default=1600)
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--minutes", type=int, default=3)
    parser.add_argument("--real-time", action="store_true")
    args = parser.parse_args()
    # real time: the market starts a few seconds after its trades are drawn
    t0 = T0 if not args.real_time else (time.time_ns() // 1_000_000 // 1000 + 60) * 1000
    made = polls(args.symbols, args.rate, args.minutes, t0)
    trades = sum(len(item[1].trades) for _, items in made for item in items
                 if isinstance(item, tuple) and isinstance(item[1], SymbolBatch))  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        url = os.environ.get("KLINEFLOW_REDIS_URL")
        server = None
        if url is None:
            server = EmbeddedRedis(Path(tmp) / "redis")
            url = server.start()
        try:
            clock: Clock = SYSTEM_CLOCK if args.real_time else ManualClock(t0)
            stats = RunStats()
            step = KlineStepConfig(DEFAULT_INTERVALS, close_at_eof=False, clock=clock,
                                   timer_writes=args.real_time)  # fmt: skip
            sink = RedisKlineSink(writer_factory(url, keys=KeySpace("lfc"), journal=16), stats)
            flow = build_kline_flow("live_cost", _Source(made, clock), step, sink, stats)
            sent = [0]
            flush = KlineWriter.flush

            def counted(self: KlineWriter) -> None:
                sent[0] += 1 if self.pending else 0
                flush(self)

            KlineWriter.flush = counted  # type: ignore[method-assign]
            if args.real_time:
                time.sleep(max(0.0, (t0 - time.time_ns() // 1_000_000) / 1000))
            cpu, wall = time.process_time(), time.perf_counter()
            run_main(flow, epoch_interval=timedelta(seconds=2))  # type: ignore[no-untyped-call]
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        finally:
            if server is not None:
                server.stop()
    market_s = args.minutes * 60 + GRACE_MS / 1000
    print(f"{args.symbols} symbols, {trades:,} trades over {market_s:.0f} s of market "
          f"({trades / market_s:,.0f}/s): flow CPU {cpu:.2f} s in {wall:.2f} s = "
          f"{100 * cpu / market_s:.1f}% of one core at this rate; "
          f"{stats.open_kline_writes:,} open kline writes, "
          f"{sent[0] / market_s:,.0f} Redis transactions/s")  # fmt: skip


if __name__ == "__main__":
    main()
