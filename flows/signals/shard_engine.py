"""Evaluate every trader over every symbol of a shard at once, at each close.

``ShardEngine`` is the rules state of many symbols: one ``Block`` per interval any trader
reads (``flows.rules.block``: every symbol's bars and the shared indicators, as arrays), the
traders switched off per symbol, and the strikes of slow ones. Closed klines of any symbols
are taken in groups of the same end time, oldest first; within a group every block takes
the bars of all its symbols in one array step per indicator before any rule is evaluated
(so a ``tf=`` read sees what it would see one symbol at a time), then each trader is
evaluated once over all the symbols it watches that closed on its interval
(``flows.rules.vector``), not once per symbol.

Decisions are exactly those of the per-symbol engine (``flows.signals.engine.SymbolEngine``,
the reference ``tests/property/test_shard_engine.py`` holds this engine to, symbol by symbol,
fire by fire): the same bars reach the same indicators with the same arithmetic, each rule
node has the scalar meaning per row, and a rule the array evaluator does not cover (a data
engineer's helper, the 24h ticker, a calendar-month ``tf=``) is evaluated per symbol by the
scalar evaluator through a view of its row. So are the rows where the scalar evaluator
would raise (an indicator failed for that symbol, say): each is decided alone, and a failure
switches off that trader for that symbol only, as ever.

Every symbol with a trader has the same row in every block (``index``), so one array of
rows serves all the intervals a rule reads. A block's indicators are the union of what the
shard's traders need on its interval: an indicator one trader needs is computed for every
symbol of the shard (one array step either way), and a book change that needs more rebuilds
the blocks from the bars held plus older ones from storage, as a frame is rebuilt.

The budget (``budget_s``): a rule evaluated per symbol is timed per symbol, as before; an
array evaluation is timed whole and each symbol is charged its share.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from flows.domain.kline import Kline
from flows.indicators import Indicator
from flows.rules.block import Block, RowFrame
from flows.rules.frame import Frame, Requirements
from flows.rules.helpers import DEFAULT_REGISTRY
from flows.rules.vector import Lanes, VectorRule, vectorize
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
from flows.signals.scalar_engine import ScalarEngine
from flows.signals.seeding import RowSeeding

log = logging.getLogger(__name__)

Closed3 = tuple[str, str, Kline]  # (symbol, interval, closed kline)
# below this many symbols with traders a shard runs one scalar engine per symbol: a numpy
# step costs about as much for one row as the scalar code, so arrays pay from about a dozen
ARRAY_MIN_SYMBOLS = 16
TraderKey = tuple[int, int]  # (trader id, version)


class ShardEngine(RowSeeding):
    """The rules state of the symbols of one shard (pickles into recovery snapshots)."""

    def __init__(self, array_min_symbols: int = ARRAY_MIN_SYMBOLS) -> None:
        self.blocks: dict[str, Block] = {}
        self.index: dict[str, int] = {}  # symbol -> its row in every block
        self.seen: set[str] = set()  # every symbol given, with traders or not
        self.failed: dict[TraderKey, dict[str, str]] = {}  # trader -> symbol -> error
        self._pending: dict[str, set[str]] = {}  # symbol -> intervals whose row awaits seeds
        # symbol -> interval -> what its bars and indicators there hold (its frame's needs)
        self.row_req: dict[str, dict[str, Requirements]] = {}
        # while the shard has few symbols: one scalar engine each (None once in arrays)
        self.scalars: dict[str, ScalarEngine] | None = {}
        self.array_min_symbols = array_min_symbols
        self._reset_derived()

    def _reset_derived(self) -> None:
        self.book_version = -1
        self.slow: dict[tuple[TraderKey, str], int] = {}
        self._traders: list[CompiledTrader] = []
        self._watch: dict[TraderKey, np.ndarray] = {}  # rows each trader watches
        self._off: dict[TraderKey, np.ndarray] = {}  # rows each trader is switched off for
        self._symbols: list[str] = []  # row -> symbol
        self._adopt: dict[str, ScalarEngine] = {}  # scalar state being moved into arrays
        self._watched: tuple[int, int, int] = (-1, -1, 0)  # (book, symbols seen, watched)

    def __getstate__(self) -> dict[str, Any]:
        return {"blocks": self.blocks, "index": self.index, "seen": self.seen,
                "failed": self.failed, "scalars": self.scalars, "_pending": self._pending,
                "row_req": self.row_req,
                "array_min_symbols": self.array_min_symbols}  # fmt: skip

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset_derived()

    # ------------------------------------------------------------------ book and symbols

    def main_intervals(self, book: Book, symbol: str) -> set[str]:
        """The intervals the symbol's traders are evaluated on."""
        return {t.row.interval for t in book.for_symbol(symbol)}

    def sync(self, book: Book, seeder: Seeder | None,
             factories: Mapping[str, Callable[..., Indicator]], counters: EngineCounters,
             ) -> None:  # fmt: skip
        """Adopt ``book``: a row for every symbol with a trader, and for each symbol and
        interval the bars and indicators its own frame would have (``row_req``): kept as
        they are while they cover what its traders need, else rebuilt from the bars held
        after older ones from storage, exactly when and as a frame is rebuilt. A block
        holds the union of its rows' needs, rebuilt (rows moved as they are) when that
        grows."""
        self.book_version = book.version
        watched = {s: book.for_symbol(s) for s in sorted(self.seen)}
        ids = {id(t) for ts in watched.values() for t in ts}
        self._traders = [t for t in book.traders if id(t) in ids]
        live = {(t.row.id, t.row.version) for t in self._traders}
        self.failed = {k: v for k, v in self.failed.items() if k in live}
        for symbol, traders in watched.items():
            if traders and symbol not in self.index:
                self.index[symbol] = len(self.index)
        order = sorted(self.index, key=self.index.__getitem__)
        rebuild: set[tuple[str, str]] = set()
        for symbol in order:
            wanted: dict[str, Requirements] = {}
            for trader in watched.get(symbol, ()):
                for interval, req in trader.program.requirements.items():
                    wanted.setdefault(interval, Requirements()).merge(req)
            mine = self.row_req.setdefault(symbol, {})
            for interval in [iv for iv in mine if iv not in wanted]:
                del mine[interval]  # a frame no longer wanted is dropped
                self._pending.get(symbol, set()).discard(interval)
            for interval, req in wanted.items():
                kept = mine.get(interval)
                if kept is None or not req.covered_by(kept):
                    mine[interval] = req
                    rebuild.add((symbol, interval))
        union: dict[str, Requirements] = {}
        for symbol in order:
            for interval, req in self.row_req[symbol].items():
                union.setdefault(interval, Requirements()).merge(req)
        blocks: dict[str, Block] = {}
        for interval, req in union.items():
            old = self.blocks.get(interval)
            block = old if old is not None and req.covered_by(old.requirements) else None
            if block is None:
                block = Block(interval, req, factories)
            todo = []
            for symbol in order:
                row = block.row(symbol)
                own = self.row_req[symbol].get(interval)
                source = self._source(symbol, interval, old)
                if own is None:  # nothing of this interval for this symbol
                    if block is old and source is not None:
                        block.reset(np.array([row], dtype=np.int64))
                    continue
                block.set_needs(row, own)
                if (symbol, interval) in rebuild or source is None:
                    held = source.held_klines() if source is not None else []
                    if block is old:
                        block.reset(np.array([row], dtype=np.int64))
                    todo.append((row, self._history(block, symbol, held, seeder, counters)))
                elif block is not old:
                    block.adopt(row, source)
            block.feed(todo)
            blocks[interval] = block
        self.blocks = blocks
        self._derive()

    def _source(self, symbol: str, interval: str, old: Block | None) -> Frame | RowFrame | None:
        """Where a symbol's bars of ``interval`` are now: its scalar frame (while moving
        into arrays), its row of the block being replaced; None if it holds none."""
        scalar = self._adopt.get(symbol)
        if scalar is not None:
            return scalar.frames.get(interval)
        if old is not None and symbol in old.rows and old.total[old.rows[symbol]] > 0:
            return old.frame(old.rows[symbol])
        return None

    def _derive(self) -> None:
        self._symbols = sorted(self.index, key=self.index.__getitem__)
        size = len(self._symbols)
        self._watch = {}
        self._off = {}
        for trader in self._traders:
            key = (trader.row.id, trader.row.version)
            interval = trader.row.interval  # a symbol's frame of it must exist, as before
            self._watch[key] = np.array(
                [trader.watches(s) and interval in self.row_req.get(s, {}) for s in self._symbols],
                dtype=bool,
            )
            off = np.zeros(size, dtype=bool)
            for symbol in self.failed.get(key, {}):
                if symbol in self.index:
                    off[self.index[symbol]] = True
            self._off[key] = off

    def rewind(self, symbol: str, first_open: Mapping[str, int]) -> None:
        """Forget the symbol's bars of each interval from `first_open[interval]` on: they
        come again (amended klines) and are decided again."""
        if self.scalars is not None:
            if symbol in self.scalars:
                self.scalars[symbol].rewind(first_open)
            return
        for interval, before in first_open.items():
            block = self.blocks.get(interval)
            row = block.rows.get(symbol) if block is not None else None
            if block is None or row is None or block.last_open[row] < before:
                continue
            keep = [k for k in block.held_klines(row) if k.open_ms < before]
            rows = np.array([row], dtype=np.int64)
            block.reset(rows)
            block.feed([(row, keep)])

    # ------------------------------------------------------------------ evaluation

    def process(
        self,
        closed: Iterable[Closed3],
        book: Book,
        seeder: Seeder | None,
        now_ms: float,
        counters: EngineCounters,
        factories: Mapping[str, Callable[..., Indicator]] = DEFAULT_REGISTRY.factories,
        budget_s: float = DEFAULT_BUDGET_S,
    ) -> tuple[list[Fire], list[RuleFailure]]:
        """Take closed klines (any symbols, any intervals, any order); evaluate the traders."""
        items = list(closed)
        if not items:
            return [], []
        if self.scalars is not None:
            self.seen |= {s for s, _, _ in items}
            if self._watched_count(book) < self.array_min_symbols:
                return self._per_symbol(items, book, seeder, now_ms, counters, factories,
                                        budget_s)  # fmt: skip
            self._to_arrays(book, seeder, factories, counters)
        groups: dict[int, list[Closed3]] = {}
        for item in items:
            groups.setdefault(item[2].close_ms + 1, []).append(item)
        fires: list[Fire] = []
        failures: list[RuleFailure] = []
        for end in sorted(groups):
            group = groups[end]
            fresh = {s for s, _, _ in group if s not in self.seen}
            if fresh:
                self.seen |= fresh
            joined = fresh and any(book.for_symbol(s) for s in fresh)
            if book.version != self.book_version or joined:
                self.sync(book, seeder, factories, counters)
            if not self._traders:
                continue
            if self._pending:
                self._seed_pending({s for s, _, _ in group}, end, seeder, counters)
            closing = self._take(group)
            for trader in self._traders:
                got = closing.get(trader.row.interval)
                if got is not None:
                    self._evaluate(trader, got, now_ms, counters, fires, failures, budget_s)
        return fires, failures

    def _watched_count(self, book: Book) -> int:
        """How many of the symbols seen have a trader (counted once per book and symbols)."""
        version, seen, count = self._watched
        if (version, seen) != (book.version, len(self.seen)):
            count = sum(1 for s in self.seen if book.for_symbol(s))
            self._watched = (book.version, len(self.seen), count)
        return count

    def _per_symbol(self, items: list[Closed3], book: Book, seeder: Seeder | None, now_ms: float,
                    counters: EngineCounters, factories: Mapping[str, Callable[..., Indicator]],
                    budget_s: float) -> tuple[list[Fire], list[RuleFailure]]:  # fmt: skip
        """Few symbols: each decided by its own scalar engine."""
        assert self.scalars is not None
        per: dict[str, list[tuple[str, Kline]]] = {}
        for symbol, interval, k in items:
            per.setdefault(symbol, []).append((interval, k))
        fires: list[Fire] = []
        failures: list[RuleFailure] = []
        for symbol, closed in per.items():
            engine = self.scalars.get(symbol)
            if engine is None:
                engine = self.scalars[symbol] = ScalarEngine(symbol)
            f, x = engine.process(closed, book, seeder, now_ms, counters, factories, budget_s)
            fires += f
            failures += x
        return fires, failures

    def _to_arrays(self, book: Book, seeder: Seeder | None,
                   factories: Mapping[str, Callable[..., Indicator]], counters: EngineCounters,
                   ) -> None:  # fmt: skip
        """The shard has grown past a handful of symbols: move each scalar engine's state
        into rows of blocks (as is, see ``_add``) and go on as arrays."""
        assert self.scalars is not None
        self._adopt, self.scalars = self.scalars, None
        self.book_version = -1
        for symbol, engine in self._adopt.items():
            if engine.frames:
                self.index[symbol] = len(self.index)
                self.row_req[symbol] = {iv: f.requirements for iv, f in engine.frames.items()}
        try:
            self.sync(book, seeder, factories, counters)
        finally:
            scalars, self._adopt = self._adopt, {}
        for symbol, engine in scalars.items():
            for key, message in engine.failed.items():
                self.failed.setdefault(key, {})[symbol] = message
            for key, strikes in engine.slow.items():
                self.slow[(key, symbol)] = strikes
        self._derive()
        log.info("rules of %d symbols now evaluated as arrays", len(self.index))

    def _take(self, group: list[Closed3]) -> dict[str, tuple[np.ndarray, list[Kline]]]:
        """Every block takes its bars of the group; per interval, the rows whose newest bar
        is the group's kline (rows to evaluate) and those klines."""
        by_interval: dict[str, dict[int, Kline]] = {}
        firsts: dict[str, dict[int, Kline]] = {}
        index = self.index
        for symbol, interval, k in group:
            row = index.get(symbol)
            if row is not None:
                # a kline twice in a group (an original and its amendment): the bars take the
                # first (the second is a re-delivery to them), the decision the last, as a
                # frame and the per-symbol engine do
                firsts.setdefault(interval, {}).setdefault(row, k)
                by_interval.setdefault(interval, {})[row] = k
        closing: dict[str, tuple[np.ndarray, list[Kline]]] = {}
        for interval, items in by_interval.items():
            block = self.blocks.get(interval)
            if block is None:
                continue
            block.take_klines(list(firsts[interval].items()))
            rows = np.fromiter(items, dtype=np.int64, count=len(items))
            opens = np.fromiter((k.open_ms for k in items.values()), dtype=np.int64,
                                count=len(items))  # fmt: skip
            current = block.last_open[rows] == opens  # not a kline older than one held
            klines = list(items.values())
            if not current.all():
                klines = [k for k, c in zip(klines, current.tolist(), strict=True) if c]
                rows = rows[current]
            closing[interval] = (rows, klines)
        return closing

    def _evaluate(self, trader: CompiledTrader, closing: tuple[np.ndarray, list[Kline]],
                  now_ms: float, counters: EngineCounters, fires: list[Fire],
                  failures: list[RuleFailure], budget_s: float) -> None:  # fmt: skip
        rows, klines = closing
        key = (trader.row.id, trader.row.version)
        mine = self._watch[key][rows] & ~self._off[key][rows]
        if not mine.any():
            return
        if not mine.all():
            rows = rows[mine]
            klines = [k for k, m in zip(klines, mine.tolist(), strict=True) if m]
        vector = vectorize(trader.program)
        scalar_rows: list[int] = []
        if vector is None:
            scalar_rows = list(range(len(rows)))
        else:
            started = time.perf_counter()
            blocks = {iv: self.blocks[iv] for iv in vector.intervals}
            lanes = Lanes(blocks, dict.fromkeys(vector.intervals, rows), len(rows))
            truth, bad = vector.holds(lanes, 0)
            fire = truth & ~bad
            if trader.row.trigger_mode == "on_change" and fire.any():
                at = np.flatnonzero(fire)
                before = Lanes(blocks, dict.fromkeys(vector.intervals, rows[at]), len(at))
                t1, b1 = vector.holds(before, 1)
                fire[at] = ~b1 & ~t1
                fire[at[before.suspect]] = False
                lanes.suspect[at[before.suspect]] = True
            suspect = lanes.suspect
            fire &= ~suspect
            decided = len(rows) - int(suspect.sum())
            counters.evaluations += decided
            counters.not_ready += int((bad & ~suspect).sum())
            self._fires(trader, vector, blocks, rows, klines, fire, now_ms, counters, fires,
                        failures)  # fmt: skip
            scalar_rows = np.flatnonzero(suspect).tolist()
            share = (time.perf_counter() - started) / max(1, len(rows))
            for i in np.flatnonzero(~suspect).tolist():  # the rest are timed one by one
                if share > budget_s:
                    self._over_budget(trader, int(rows[i]), klines[i], share, budget_s,
                                      counters, failures)  # fmt: skip
                elif self.slow:
                    self.slow.pop((key, self._symbols[int(rows[i])]), None)
        for i in scalar_rows:
            row, k = int(rows[i]), klines[i]
            started = time.perf_counter()
            self._decide(trader, row, k, now_ms, counters, fires, failures)
            spent = time.perf_counter() - started
            if spent > budget_s:
                self._over_budget(trader, row, k, spent, budget_s, counters, failures)
            elif self.slow:
                self.slow.pop((key, self._symbols[row]), None)

    def _frames(self, row: int) -> dict[str, RowFrame]:
        return {iv: block.frame(row) for iv, block in self.blocks.items()}

    def _decide(self, trader: CompiledTrader, row: int, k: Kline, now_ms: float,
                counters: EngineCounters, fires: list[Fire], failures: list[RuleFailure],
                ) -> None:  # fmt: skip
        """One symbol, with the scalar evaluator (as ``SymbolEngine._evaluate``)."""
        program = trader.program
        frames = self._frames(row)
        counters.evaluations += 1
        try:
            now = program.holds(frames, 0)  # type: ignore[arg-type]
            if now is None:
                counters.not_ready += 1
                return
            if not now:
                return
            if trader.row.trigger_mode == "on_change" and program.holds(frames, 1) is not False:  # type: ignore[arg-type]
                return
        except Exception as exc:  # a helper's own bug, a failed indicator, ...
            self._switch_off(trader, row, k, f"{type(exc).__name__}: {exc}"[:500], counters,
                             failures)  # fmt: skip
            return
        self._fire(trader, row, k, now_ms, counters, fires, failures)

    def _fires(self, trader: CompiledTrader, vector: VectorRule, blocks: dict[str, Block],
               rows: np.ndarray, klines: list[Kline], fire: np.ndarray, now_ms: float,
               counters: EngineCounters, fires: list[Fire], failures: list[RuleFailure],
               ) -> None:  # fmt: skip
        """The fires of an array evaluation, their provenance computed as arrays too (a row
        where the scalar evaluator would raise takes it per row, as ``_fire``)."""
        at = np.flatnonzero(fire)
        if not len(at):
            return
        lanes = Lanes(blocks, dict.fromkeys(vector.intervals, rows[at]), len(at))
        values = vector.values(lanes)
        for j, i in enumerate(at.tolist()):
            row, k = int(rows[i]), klines[i]
            if lanes.suspect[j]:
                self._fire(trader, row, k, now_ms, counters, fires, failures)
            else:
                self._record(trader, row, k, values[j], now_ms, counters, fires)

    def _fire(self, trader: CompiledTrader, row: int, k: Kline, now_ms: float,
              counters: EngineCounters, fires: list[Fire], failures: list[RuleFailure],
              ) -> None:  # fmt: skip
        try:
            values = trader.program.values(self._frames(row), 0)  # type: ignore[arg-type]
        except Exception as exc:
            self._switch_off(trader, row, k, f"{type(exc).__name__}: {exc}"[:500], counters,
                             failures)  # fmt: skip
            return
        self._record(trader, row, k, values, now_ms, counters, fires)

    def _record(self, trader: CompiledTrader, row: int, k: Kline,
                values: dict[str, float | bool | None], now_ms: float, counters: EngineCounters,
                fires: list[Fire]) -> None:  # fmt: skip
        counters.fires += 1
        fires.append(fire_of(trader.row, self._symbols[row], k, values, now_ms))

    def _over_budget(self, trader: CompiledTrader, row: int, k: Kline, spent: float,
                     budget_s: float, counters: EngineCounters, failures: list[RuleFailure],
                     ) -> None:  # fmt: skip
        key = (trader.row.id, trader.row.version)
        symbol = self._symbols[row]
        if self._off[key][row]:
            return
        strikes = self.slow[(key, symbol)] = self.slow.get((key, symbol), 0) + 1
        if strikes < SLOW_STRIKES:
            return
        del self.slow[(key, symbol)]
        counters.over_budget += 1
        self._switch_off(trader, row, k, over_budget(spent, budget_s), counters, failures)

    def _switch_off(self, trader: CompiledTrader, row: int, k: Kline, message: str,
                    counters: EngineCounters, failures: list[RuleFailure]) -> None:  # fmt: skip
        r = trader.row
        symbol = self._symbols[row]
        self.failed.setdefault((r.id, r.version), {})[symbol] = message
        self._off[(r.id, r.version)][row] = True
        failures.append(switched_off(r, symbol, k, message, counters))
