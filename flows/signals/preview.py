"""Where a rule would have fired over stored klines: ``klineflow traders test`` and the
dashboard's preview of a draft rule, with the same engine the flow runs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from flows.domain.kline import Kline
from flows.signals.book import Book, TraderRow, compile_trader
from flows.signals.engine import EngineCounters, Fire, RuleFailure, SymbolEngine


@dataclass(frozen=True)
class PreviewResult:
    fires: list[Fire]  # every kline where the rule fired (before any cooldown grouping)
    evaluated: int  # klines the rule was evaluated at
    not_ready: int  # ... where it could not be evaluated yet (warm-up)
    klines: int  # closed klines of the rule's interval that were read
    failures: list[RuleFailure]  # the rule raised (it is then off for the rest of the run)


def preview(
    expression: str,
    interval: str,
    symbol: str,
    klines: Callable[[str], Sequence[Kline]],
    trigger_mode: str = "every_close",
) -> PreviewResult:
    """Run ``expression`` over the klines ``klines(interval)`` returns (oldest first) and
    those of every ``tf=`` interval it reads. RuleError if the rule is bad."""
    row = TraderRow(0, "preview", expression, interval, trigger_mode=trigger_mode)
    trader = compile_trader(row)  # RuleError, with the position, for a bad rule
    book = Book((trader,), version=1)
    program = trader.program
    intervals = set(program.requirements) | {interval}
    closed: list[tuple[str, Kline]] = []
    main_count = 0
    for iv in sorted(intervals):
        got = klines(iv)
        closed.extend((iv, k) for k in got)
        if iv == interval:
            main_count = len(got)
    engine = SymbolEngine(symbol)
    counters = EngineCounters()
    fires, failures = engine.process(closed, book, None, 0, counters)
    return PreviewResult(fires, counters.evaluations, counters.not_ready, main_count, failures)
