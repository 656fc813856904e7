"""Evaluate every trader watching one symbol on each of its closed klines.

``SymbolEngine`` is the per-symbol state of the rules step: one ``Frame`` per interval any
of the symbol's traders reads (its own interval and every ``tf=``), and the traders switched
off for this symbol because their evaluation raised. Everything else is derived:

* whether a rule holds is a function of the frames only, and ``on_change`` compares the
  rule at this bar with the rule at the previous bar (both from the frames), so a restart,
  a replay or a late-added trader decides exactly as an engine that ran all along;
* the cooldown (a repeat within N bars bumps the earlier signal's repeat count) is applied
  where the signals are, in PostgreSQL (``klineflow_record_signal``), so it survives
  restarts and replays without state here.

Closed klines are taken in groups of the same end time, oldest first. Within a group every
frame takes its bar before any rule is evaluated, so a 5m rule that reads ``tf="1h"`` at
10:00 sees the 1h bar that closed at 10:00, and never a bar that closed later.

No trader can stop another: whatever its evaluation raises (a helper's bug, an indicator
that failed in the shared frame, see ``flows.rules.frame``) switches off that trader for this
symbol only, recorded as a ``RuleFailure`` (a row of ``trader_errors`` the user sees). Each
evaluation is timed; a trader over its budget (``budget_s``, KLINEFLOW_RULE_BUDGET_MS) on
``SLOW_STRIKES`` klines in a row is switched off the same way, with the time in the reason.
The checker bounds what one evaluation can cost (``flows.rules.evaluate.MAX_COST``), so
the budget catches what the bound cannot foresee: a slow helper a data engineer added.

Frames are seeded when first needed (and rebuilt when the rules need more of them) from the
klines already stored, through ``Seeder``: rules are valid at once after a start, a new
trader or an edit, instead of waiting for their lookback to pass.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from flows.domain import defaults
from flows.domain.intervals import INTERVALS
from flows.domain.kline import Kline
from flows.domain.money import format_units
from flows.indicators import Indicator
from flows.rules.frame import Frame, Requirements
from flows.rules.helpers import DEFAULT_REGISTRY
from flows.signals.book import Book, CompiledTrader

log = logging.getLogger(__name__)

DEFAULT_BUDGET_S = defaults.RULE_BUDGET_MS / 1000  # one trader's evaluation on one kline
SLOW_STRIKES = 3  # evaluations over budget in a row before the trader is switched off

# (symbol, interval, end_ms, count) -> up to `count` closed klines with close_ms < end_ms,
# the newest ones, oldest first
Seeder = Callable[[str, str, int, int], list[Kline]]


class Fire(NamedTuple):
    """A rule held (for on_change: started to hold) at a closed kline."""

    id: str
    trader_id: int
    trader_version: int
    symbol: str
    interval: str
    open_ms: int
    close_ms: int
    window_start_ms: int  # signals of this trader+symbol opening since then are "the same"
    price: str  # the kline's close, exact decimal text
    values: dict[str, float | bool | None]
    closed_at_ms: int  # wall clock when the engine took the kline (latency); -1: a catch-up


class Progress(NamedTuple):
    """Every trader of `symbol` on `interval` was evaluated up to the kline opening at
    `open_ms` (committed with the signals, so a restart knows where to continue)."""

    symbol: str
    interval: str
    open_ms: int


class RuleFailure(NamedTuple):
    trader_id: int
    trader_version: int
    symbol: str
    open_ms: int
    error: str


def signal_id(trader_id: int, symbol: str, interval: str, open_ms: int) -> str:
    """Deterministic: the same trader, symbol and kline always give the same id."""
    return f"{trader_id}-{symbol}-{interval}-{open_ms}"


@dataclass
class EngineCounters:
    evaluations: int = 0
    fires: int = 0
    not_ready: int = 0
    failures: int = 0
    over_budget: int = 0  # traders switched off for a symbol for their evaluation time
    seeded_klines: int = 0
    caught_up: int = 0  # stored klines decided again after a restart (see flows.signals.step)
    amended: int = 0  # klines decided again because a late trade amended them
    evaluation_seconds: float = 0.0  # in the rules step (indicators, rules, seeding)


class SymbolEngine:
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
        now_ms: int,
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
        message = (
            f"evaluation took {spent * 1000:.0f} ms, over the budget of {budget_s * 1000:g} ms "
            f"on {SLOW_STRIKES} klines in a row: switched off for this symbol"
        )
        counters.over_budget += 1
        self._switch_off(trader, k, message, counters, failures)

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
        counters.failures += 1
        failures.append(RuleFailure(row.id, row.version, self.symbol, k.open_ms, message))
        log.warning("trader id=%d switched off for symbol=%s: %s", row.id, self.symbol, message)

    def _evaluate(
        self,
        trader: CompiledTrader,
        k: Kline,
        now_ms: int,
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
        interval = INTERVALS[row.interval]
        window_start = k.open_ms
        if row.cooldown_bars:
            window_start = k.open_ms - row.cooldown_bars * interval.length_ms
            if interval.calendar_month:
                window_start = _months_before(k.open_ms, row.cooldown_bars)
        counters.fires += 1
        fires.append(
            Fire(
                signal_id(row.id, self.symbol, row.interval, k.open_ms),
                row.id,
                row.version,
                self.symbol,
                row.interval,
                k.open_ms,
                k.close_ms,
                window_start,
                format_units(k.close),
                values,
                now_ms,
            )
        )


def _months_before(open_ms: int, months: int) -> int:
    from datetime import UTC, datetime

    d = datetime.fromtimestamp(open_ms / 1000, tz=UTC)
    total = d.year * 12 + (d.month - 1) - months
    return int(datetime(total // 12, total % 12 + 1, 1, tzinfo=UTC).timestamp()) * 1000
