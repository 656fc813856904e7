"""The traders a flow evaluates: rows of ``traders`` compiled into programs, swapped whole.

A ``Book`` is immutable: the watcher builds a new one when PostgreSQL says traders changed
(NOTIFY on channel ``traders``, with a slow poll as a safety net) and replaces the current
one in one assignment, so evaluation never sees half an update. ``Book.version`` changes only
when the content does; each symbol's engine compares it with the version it last synced to.

A trader whose rule does not compile (edited by SQL past the command line's checks), or that
needs an interval this flow does not build, stays out of the book and is reported.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from flows.rules.errors import RuleError
from flows.rules.evaluate import TICKER_SERIES, Program, compile_rule
from flows.signals.patterns import PatternError, glob_match, glob_of

log = logging.getLogger(__name__)

TRIGGER_MODES = ("every_close", "on_change")
SYMBOL_MODES = ("all", "list", "pattern")


@dataclass(frozen=True)
class TraderRow:
    """One row of ``traders`` (the columns the flow and the command line use)."""

    id: int
    name: str
    expression: str
    interval: str
    version: int = 1
    owner_id: int = 0
    description: str = ""
    symbols_mode: str = "all"
    symbols: tuple[str, ...] = ()
    symbols_pattern: str | None = None
    trigger_mode: str = "on_change"
    cooldown_bars: int = 50
    enabled: bool = True

    def key(self) -> tuple[Any, ...]:
        """What evaluation depends on (a change of name or description is not one)."""
        return (
            self.id,
            self.version,
            self.expression,
            self.interval,
            self.symbols_mode,
            self.symbols,
            self.symbols_pattern,
            self.trigger_mode,
            self.cooldown_bars,
            self.enabled,
        )


@dataclass(frozen=True)
class CompiledTrader:
    row: TraderRow
    program: Program
    pattern: str | None  # a glob (flows.signals.patterns)
    symbols: frozenset[str]

    @property
    def id(self) -> int:
        return self.row.id

    def watches(self, symbol: str) -> bool:
        mode = self.row.symbols_mode
        if mode == "all":
            return True
        if mode == "list":
            return symbol in self.symbols
        return self.pattern is not None and glob_match(self.pattern, symbol)


@dataclass(frozen=True)
class BookError:
    trader_id: int
    version: int
    message: str


_versions = itertools.count(1)


@dataclass(frozen=True)
class Book:
    traders: tuple[CompiledTrader, ...] = ()
    errors: tuple[BookError, ...] = ()
    version: int = 0
    keys: tuple[tuple[Any, ...], ...] = field(default=(), compare=False)
    # symbol -> its traders: patterns are matched once per book and symbol
    _watching: dict[str, list[CompiledTrader]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def for_symbol(self, symbol: str) -> list[CompiledTrader]:
        found = self._watching.get(symbol)
        if found is None:
            found = self._watching[symbol] = [t for t in self.traders if t.watches(symbol)]
        return list(found)


def compile_trader(row: TraderRow, intervals: Iterable[str] | None = None) -> CompiledTrader:
    """Compile one row; RuleError (with a position, or 0) if it cannot run in this flow."""
    program = compile_rule(row.expression, row.interval)
    if row.trigger_mode not in TRIGGER_MODES:
        raise RuleError(0, f"unknown trigger mode {row.trigger_mode!r}")
    if intervals is not None:
        built = set(intervals)
        needed = set(program.requirements) | {row.interval}
        if program.rule.series & TICKER_SERIES:
            needed.add("1m")
        missing = sorted(needed - built)
        if missing:
            raise RuleError(
                0,
                f"interval {', '.join(missing)} is not built by this flow "
                f"(it builds {', '.join(sorted(built))}; see KLINEFLOW_INTERVALS)",
            )
    pattern = None
    if row.symbols_mode == "pattern":
        try:
            pattern = glob_of(row.symbols_pattern or "")
        except PatternError as exc:
            raise RuleError(0, str(exc)) from None
    return CompiledTrader(row, program, pattern, frozenset(row.symbols))


def build_book(
    rows: Sequence[TraderRow], intervals: Iterable[str] | None = None, previous: Book | None = None
) -> Book:
    """Compile the enabled rows; the previous book is returned as is if nothing changed."""
    enabled = sorted((r for r in rows if r.enabled), key=lambda r: r.id)
    keys = tuple(r.key() for r in enabled)
    if previous is not None and previous.keys == keys:
        return previous
    wanted = list(intervals) if intervals is not None else None
    traders: list[CompiledTrader] = []
    errors: list[BookError] = []
    for row in enabled:
        try:
            traders.append(compile_trader(row, wanted))
        except RuleError as exc:
            errors.append(BookError(row.id, row.version, str(exc)))
            log.warning("trader id=%d name=%r left out: %s", row.id, row.name, exc)
    return Book(tuple(traders), tuple(errors), next(_versions), keys)


class BookHolder:
    """The current book, replaced atomically; readers just read ``.book``."""

    def __init__(self, book: Book | None = None) -> None:
        self.book = book or Book()
        self.changed = threading.Event()
        # (symbol, interval) -> open time of the newest kline whose decisions PostgreSQL
        # held when the flow started (None: not read yet, or not a live flow)
        self.progress: dict[tuple[str, str], int] | None = None

    def set(self, book: Book) -> None:
        if book is not self.book:
            self.book = book
            self.changed.set()
