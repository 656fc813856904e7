"""Run the kline dataflow over recorded files to the end (the `klineflow replay` job).

A replay continues from where the previous replay into the same Redis (and namespace) left
each symbol: the builder state is stored at the end of a run, trades with ids already seen
count as duplicates, and the klines left open at the end are continued, not restarted. So
replaying a file twice, or two overlapping files in any number of runs, leaves Redis as one
clean replay would. `fresh=True` forgets the stored state first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import redis
from bytewax.testing import run_main

from flows.dataflows.endpoints import TradeSourceInput
from flows.dataflows.kline_step import KlineStepConfig
from flows.dataflows.klines_flow import build_kline_flow
from flows.domain import defaults
from flows.domain.clock import SYSTEM_CLOCK, Clock
from flows.domain.keys import KeySpace
from flows.domain.stats import RunStats
from flows.sinks.redis_sink import RedisKlineSink, writer_factory
from flows.sources.inputs import expand_inputs
from flows.sources.readers import ReadOptions
from flows.sources.replay_source import ReplaySource
from flows.storage.redis_klines import RetentionPolicy, clear_replay_states, load_replay_states

if TYPE_CHECKING:  # the rules stage is imported only when a replay evaluates rules
    from bytewax.inputs import Source

    from flows.dataflows.endpoints import Endpoint
    from flows.io.contracts import TradeSource
    from flows.signals.book import Book
    from flows.signals.step import RulesStage
    from flows.sources.items import SourceItem
    from flows.sources.read_ahead import FileChunk, ReadAhead


@dataclass(frozen=True)
class ReplayJob:
    paths: list[Path]
    redis_url: str
    intervals: tuple[str, ...]
    keys: KeySpace = KeySpace()
    read: ReadOptions = ReadOptions()
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)
    open_throttle_ms: int = defaults.OPEN_KLINE_THROTTLE_MS
    max_fill: int = defaults.MAX_FLAT_FILL
    dead_letter_maxlen: int = defaults.DEAD_LETTER_MAXLEN
    fresh: bool = False
    clock: Clock = SYSTEM_CLOCK
    database_url: str | None = None  # set: evaluate the traders stored there, write signals
    book: Book | None = None  # these traders instead of the database's (tests, traders test)
    stage: RulesStage | None = None  # a ready rules stage (backtests collect fires in memory)
    # the files' chunks already being read (`flows.sources.read_ahead`): the replay takes
    # them instead of opening the files again (`paths` must be the files it reads)
    ahead: ReadAhead[FileChunk] | None = None
    # `flows.io` endpoints: sinks given an output each beside Redis (and PostgreSQL), and a
    # trade source read instead of `paths` (`flows.dataflows.endpoints`)
    sinks: Sequence[Endpoint] = ()
    source: TradeSource | None = None


def run_replay(job: ReplayJob, stats: RunStats | None = None) -> RunStats:
    stats = stats if stats is not None else RunStats()
    paths = expand_inputs(job.paths)  # a folder of the trade archive: its files
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {path}")
    client = redis.Redis.from_url(job.redis_url)
    if job.fresh:
        clear_replay_states(client, job.keys)
        initial = {}
    else:
        initial = load_replay_states(client, job.keys)
    client.close()
    step = KlineStepConfig(
        intervals=job.intervals,
        open_throttle_ms=job.open_throttle_ms,
        max_fill=job.max_fill,
        close_at_eof=True,
        timer_writes=False,  # event time only: a replay writes open klines as batches pass
        initial_states=initial,
        clock=job.clock,
    )
    sink = RedisKlineSink(
        writer_factory(
            job.redis_url,
            keys=job.keys,
            retention=job.retention,
            dead_letter_maxlen=job.dead_letter_maxlen,
        ),
        stats,
        overlap=True,  # a batch goes to Redis while the next one is built
    )
    rules = None
    if job.database_url is not None:
        from flows.signals.runtime import rules_stage

        rules = rules_stage(
            job.database_url,
            job.redis_url,
            job.intervals,
            job.keys,
            watch=False,
            record_latency=False,  # event time is not now: a latency would mean nothing
            clock=job.clock,
            book=job.book,
        )
    ahead = job.ahead if paths == list(job.paths) else None
    source: Source[SourceItem] = (
        ReplaySource(paths, job.read, stats, ahead)
        if job.source is None
        else TradeSourceInput(job.source, stats)
    )
    stage = job.stage or (rules.stage if rules is not None else None)
    flow = build_kline_flow("replay", source, step, sink, stats, stage, job.sinks)
    run_main(flow)  # type: ignore[no-untyped-call]
    if rules is not None:
        stats.rules = rules.summary()
    elif job.stage is not None:
        c = job.stage.config.counters
        stats.rules = {"evaluations": c.evaluations, "fires": c.fires,
                       "rule_failures": c.failures}  # fmt: skip
    return stats
