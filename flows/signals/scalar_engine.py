"""The rules of one symbol evaluated by the scalar evaluator: what a shard with few symbols runs.

``ScalarEngine`` keeps one ``Frame`` per interval a trader of its symbol reads and evaluates
each rule with the scalar evaluator (``flows.rules.evaluate``). For one symbol, or a handful,
this costs less than array steps (a numpy operation costs about as much on one element as
a Python one on a float); ``flows.signals.shard_engine`` runs one per symbol until its shard
holds ``ARRAY_MIN_SYMBOLS`` symbols, then moves their state into arrays, losslessly. The
two decide identically, symbol by symbol and fire by fire
(``tests/property/test_shard_engine.py``): this engine is also the reference the array
engine is held to.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping

from flows.domain.kline import Kline
from flows.indicators import Indicator
from flows.rules.frame import Frame, Requirements
from flows.rules.helpers import DEFAULT_REGISTRY
from flows.signals.book import Book, CompiledTrader
from flows.signals.engine import (
    DEFAULT_BUDGET_S,
    SLOW_STRIKES,
    EngineCounters,
    Fire,
    RuleFailure,
    Seeder,
    fire_of,
    over_budget,
    switched_off,
)

log = logging.getLogger(__name__)


class ScalarEngine:
    """The rules state of one symbol (pickles into recovery snapshots)."""

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.frames: dict[str, Frame] = {}
        self.failed: dict[tuple[int, int], str] = {}  # (trader id, version) -> error
        self.slow: dict[tuple[int, int], int] = {}  # evaluations over budget in a row
        self.book_version = -1
        self._traders: list[CompiledTrader] = []  # not pickled: re-derived from the book

    def __getstate__(self) -> dict[str, object]:
        return {"symbol": self.symbol, "frames": self.frames, "failed": self.failed}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.symbol = state["symbol"]  # type: ignore[assignment]
        self.frames = state["frames"]  # type: ignore[assignment]
        self.failed = state["failed"]  # type: ignore[assignment]
        self.slow = {}
        self.book_version = -1
        self._traders = []

    # ------------------------------------------------------------------ book changes

    def sync(
        self,
        book: Book,
        end_ms: int,
        seeder: Seeder | None,
        factories: Mapping[str, Callable[..., Indicator]],
        counters: EngineCounters,
    ) -> None:
        """Adopt ``book``: frames for what its traders need, seeded up to ``end_ms``."""
        self.book_version = book.version
        self._traders = book.for_symbol(self.symbol)
        wanted: dict[str, Requirements] = {}
        for trader in self._traders:
            for interval, req in trader.program.requirements.items():
                wanted.setdefault(interval, Requirements()).merge(req)
        live = {(t.row.id, t.row.version) for t in self._traders}
        self.failed = {k: v for k, v in self.failed.items() if k in live}
        frames: dict[str, Frame] = {}
        for interval, req in wanted.items():
            frame = self.frames.get(interval)
            if frame is not None and req.covered_by(frame.requirements):
                frames[interval] = frame
                continue
            merged = Requirements()
            merged.merge(req)
            frames[interval] = self._seeded(interval, merged, frame, end_ms, seeder, factories)
            counters.seeded_klines += frames[interval].bars
        self.frames = frames

    def _seeded(
        self,
        interval: str,
        req: Requirements,
        old: Frame | None,
        end_ms: int,
        seeder: Seeder | None,
        factories: Mapping[str, Callable[..., Indicator]],
    ) -> Frame:
        fresh = Frame(interval, req, factories)
        held = len(old.series) if old is not None else 0
        if old is not None and held >= fresh.capacity:
            return old.rebuilt(req, factories)
        older: list[Kline] = []
        if seeder is not None:
            # klines closing before the oldest bar held (or before this group's end)
            bound = int(old.series.last("time", held - 1)) if old is not None and held else end_ms
            try:
                older = seeder(self.symbol, interval, bound, fresh.capacity - held)
            except Exception as exc:  # storage unavailable: start from what is held
                log.warning(
                    "seeding symbol=%s interval=%s failed (%s); rules warm up from new bars",
                    self.symbol,
                    interval,
                    exc,
                )
        if old is not None:
            return old.rebuilt(req, factories, older)
        for k in older:
            fresh.on_bar(k)
        return fresh

    def main_intervals(self) -> set[str]:
        """The intervals the symbol's traders are evaluated on."""
        return {t.row.interval for t in self._traders}

    def rewind(
        self,
        first_open: Mapping[str, int],
        factories: Mapping[str, Callable[..., Indicator]] = DEFAULT_REGISTRY.factories,
    ) -> None:
        """Forget the bars of each interval from `first_open[interval]` on: they come again
        (amended klines) and are decided again."""
        for interval, before in first_open.items():
            frame = self.frames.get(interval)
            if frame is not None and frame.last_open >= before:
                self.frames[interval] = frame.truncated(before, factories)

    # ------------------------------------------------------------------ evaluation

    def process(
        self,
        closed: Iterable[tuple[str, Kline]],
        book: Book,
        seeder: Seeder | None,
        now_ms: float,
        counters: EngineCounters,
        factories: Mapping[str, Callable[..., Indicator]] = DEFAULT_REGISTRY.factories,
        budget_s: float = DEFAULT_BUDGET_S,
    ) -> tuple[list[Fire], list[RuleFailure]]:
        """Take closed klines (any intervals, any order) and evaluate the traders."""
        groups: dict[int, list[tuple[str, Kline]]] = {}
        for interval, k in closed:
            groups.setdefault(k.close_ms + 1, []).append((interval, k))
        fires: list[Fire] = []
        failures: list[RuleFailure] = []
        for end in sorted(groups):
            group = groups[end]
            if book.version != self.book_version:
                self.sync(book, end, seeder, factories, counters)
            if not self._traders:
                continue
            closing: dict[str, Kline] = {}
            for interval, k in group:
                frame = self.frames.get(interval)
                if frame is not None:
                    frame.on_bar(k)
                closing[interval] = k
            for trader in self._traders:
                k_closing = closing.get(trader.row.interval)
                if k_closing is None:
                    continue
                started = time.perf_counter()
                self._evaluate(trader, k_closing, now_ms, counters, fires, failures)
                spent = time.perf_counter() - started
                if spent > budget_s:
                    self._over_budget(trader, k_closing, spent, budget_s, counters, failures)
                elif self.slow:
                    self.slow.pop((trader.row.id, trader.row.version), None)
        return fires, failures

    def _over_budget(
        self,
        trader: CompiledTrader,
        k: Kline,
        spent: float,
        budget_s: float,
        counters: EngineCounters,
        failures: list[RuleFailure],
    ) -> None:
        key = (trader.row.id, trader.row.version)
        if key in self.failed:
            return
        strikes = self.slow[key] = self.slow.get(key, 0) + 1
        if strikes < SLOW_STRIKES:
            return
        del self.slow[key]
        counters.over_budget += 1
        self._switch_off(trader, k, over_budget(spent, budget_s), counters, failures)

    def _switch_off(
        self,
        trader: CompiledTrader,
        k: Kline,
        message: str,
        counters: EngineCounters,
        failures: list[RuleFailure],
    ) -> None:
        row = trader.row
        self.failed[(row.id, row.version)] = message
        failures.append(switched_off(row, self.symbol, k, message, counters))

    def _evaluate(
        self,
        trader: CompiledTrader,
        k: Kline,
        now_ms: float,
        counters: EngineCounters,
        fires: list[Fire],
        failures: list[RuleFailure],
    ) -> None:
        row = trader.row
        if (row.id, row.version) in self.failed:
            return
        frames = self.frames
        main = frames.get(row.interval)
        if main is None or main.last_open != k.open_ms:
            return  # this kline was older than the frame's newest (a re-delivery)
        program = trader.program
        counters.evaluations += 1
        try:
            if not program.ready(frames):
                counters.not_ready += 1
                return
            now = program.holds(frames, 0)
            if now is None:
                counters.not_ready += 1
                return
            if not now:
                return
            if row.trigger_mode == "on_change" and program.holds(frames, 1) is not False:
                return
            values = program.values(frames, 0)
        except Exception as exc:  # a helper's own bug, a failed indicator, ...
            self._switch_off(trader, k, f"{type(exc).__name__}: {exc}"[:500], counters, failures)
            return
        counters.fires += 1
        fires.append(fire_of(row, self.symbol, k, values, now_ms))
