"""The rules stage of a job: traders evaluated in the dataflow, signals into PostgreSQL.

``rules_stage`` assembles what a job needs: the book of traders (watched live, or loaded
once for a replay), the per-symbol rules step's configuration, and the signals sink.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from flows.domain.clock import SYSTEM_CLOCK, Clock
from flows.domain.keys import KeySpace
from flows.signals.book import Book, BookHolder
from flows.signals.step import RulesConfig, RulesSince, RulesStage, SignalSink, redis_seeder
from flows.signals.store import BookWatcher, SignalWriter

log = logging.getLogger(__name__)


@dataclass
class RulesRuntime:
    stage: RulesStage
    holder: BookHolder
    watcher: BookWatcher | None

    def stop(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()

    def summary(self) -> dict[str, float]:
        c = self.stage.config.counters
        out = {
            "traders": len(self.holder.book.traders),
            "evaluations": c.evaluations,
            "fires": c.fires,
            "rule_failures": c.failures,
            "rules_over_budget": c.over_budget,
            "evaluation_seconds": c.evaluation_seconds,
            "pending": sum(w.pending for w in self.stage.sink.writers),
            "waiting": int(any(w.waiting for w in self.stage.sink.writers)),
            "caught_up": c.caught_up,
            "amended": c.amended,
        }
        recent = sorted(x for w in self.stage.sink.writers for x in w.counters.latencies_ms)
        if recent:
            out["latency_p99_s"] = recent[int(0.99 * (len(recent) - 1))] / 1000
        for writer in self.stage.sink.writers:
            c_w = writer.counters
            out["signals_new"] = out.get("signals_new", 0) + c_w.new
            out["signals_repeat"] = out.get("signals_repeat", 0) + c_w.repeats
            out["signals_duplicate"] = out.get("signals_duplicate", 0) + c_w.duplicates
        return out


def rules_stage(
    database_url: str,
    redis_url: str | None,
    intervals: Sequence[str],
    keys: KeySpace = KeySpace(),
    watch: bool = True,
    record_latency: bool = True,
    clock: Clock = SYSTEM_CLOCK,
    book: Book | None = None,
    budget_ms: float | None = None,
) -> RulesRuntime:
    """The rules stage of a job. ``watch``: follow trader changes while running (live);
    otherwise the traders are read once (a replay decides with one fixed set). ``book``:
    use these traders instead of PostgreSQL's (tests, ``traders test``)."""
    holder = BookHolder()
    watcher = None
    if book is not None:
        holder.set(book)
    else:
        watcher = BookWatcher(database_url, holder, intervals, progress=watch)
        if watch:
            watcher.start()
            if not watcher.connected.wait(10.0):
                log.warning("traders not loaded yet: PostgreSQL at start-up is unreachable; "
                            "rules run once it answers")  # fmt: skip
        else:
            watcher.load_once()
            watcher = None
    seeder = redis_seeder(redis_url, keys, wait=watch) if redis_url else None
    # live: progress recorded with the signals, and catch-ups from it (see flows.signals.step)
    live = watch and book is None
    since = RulesSince(redis_url, keys) if live and redis_url else None
    config = RulesConfig(holder, seeder, clock, progress=live, since=since)
    if budget_ms is not None:
        config.budget_s = budget_ms / 1000

    def make_writer() -> SignalWriter:
        return SignalWriter(database_url, clock, record_latency=record_latency)

    return RulesRuntime(RulesStage(config, SignalSink(make_writer)), holder, watcher)


__all__ = ["RulesRuntime", "rules_stage"]
