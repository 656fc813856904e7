"""The rules engine's vocabulary, and what every engine promises.

The engine itself is ``flows.signals.shard_engine.ShardEngine`` (every symbol of a shard at
once, as arrays); ``SymbolEngine`` here is that engine holding one symbol. Both keep, per
symbol, the bars of each interval a trader reads (its own and every ``tf=``) with the shared
indicators, and the traders switched off for that symbol. Everything else is derived:

* whether a rule holds is a function of the bars and indicators only, and ``on_change``
  compares the rule at this bar with the rule at the previous bar (both from the same
  state), so a restart, a replay or a late-added trader decides exactly as an engine that
  ran all along;
* the cooldown (a repeat within N bars bumps the earlier signal's repeat count) is applied
  where the signals are, in PostgreSQL (``klineflow_record_signal``), so it survives
  restarts and replays without state here.

Closed klines are taken in groups of the same end time, oldest first. Within a group every
interval takes its bar before any rule is evaluated, so a 5m rule that reads ``tf="1h"`` at
10:00 sees the 1h bar that closed at 10:00, and never a bar that closed later.

No trader can stop another: whatever its evaluation raises for a symbol (a helper's bug, an
indicator that failed for that symbol, see ``flows.rules.block``) switches off that trader
for that symbol only, recorded as a ``RuleFailure`` (a row of ``trader_errors`` the user
sees). Evaluations are timed; a trader over its budget (``budget_s``,
KLINEFLOW_RULE_BUDGET_MS) on ``SLOW_STRIKES`` klines in a row is switched off the same way,
with the time in the reason. The checker bounds what one evaluation can cost
(``flows.rules.evaluate.MAX_COST``), so the budget catches what the bound cannot foresee: a
slow helper a data engineer added.

Bars are seeded when first needed (and rebuilt when the rules need more of them) from the
klines already stored, through ``Seeder``: rules are valid at once after a start, a new
trader or an edit, instead of waiting for their lookback to pass.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from flows.domain import defaults
from flows.domain.intervals import INTERVALS
from flows.domain.kline import Kline
from flows.domain.money import format_units
from flows.indicators import Indicator
from flows.rules.helpers import DEFAULT_REGISTRY
from flows.signals.book import Book, TraderRow

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
    closed_at_ms: float  # wall clock when the engine took the kline (latency); -1: catch-up


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
    """The rules of one symbol: a ``ShardEngine`` holding that symbol alone, for callers
    that decide one symbol at a time (a rule's preview, tests). Same decisions, same
    snapshots; ``process`` takes (interval, kline) pairs of this symbol."""

    def __init__(self, symbol: str) -> None:
        from flows.signals.shard_engine import ShardEngine

        self.symbol = symbol
        self.shard = ShardEngine()

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
        items = [(self.symbol, interval, k) for interval, k in closed]
        return self.shard.process(items, book, seeder, now_ms, counters, factories, budget_s)

    def rewind(self, first_open: Mapping[str, int]) -> None:
        self.shard.rewind(self.symbol, first_open)


def fire_of(row: TraderRow, symbol: str, k: Kline, values: dict[str, float | bool | None],
            now_ms: float) -> Fire:  # fmt: skip
    """The fire of trader ``row`` on ``symbol``'s kline ``k``, its cooldown window included."""
    interval = INTERVALS[row.interval]
    window_start = k.open_ms
    if row.cooldown_bars:
        window_start = k.open_ms - row.cooldown_bars * interval.length_ms
        if interval.calendar_month:
            window_start = _months_before(k.open_ms, row.cooldown_bars)
    return Fire(signal_id(row.id, symbol, row.interval, k.open_ms), row.id, row.version, symbol,
                row.interval, k.open_ms, k.close_ms, window_start, format_units(k.close),
                values, now_ms)  # fmt: skip


def over_budget(spent: float, budget_s: float) -> str:
    """Why a trader was switched off for its evaluation time."""
    return (
        f"evaluation took {spent * 1000:.0f} ms, over the budget of {budget_s * 1000:g} ms "
        f"on {SLOW_STRIKES} klines in a row: switched off for this symbol"
    )


def switched_off(row: TraderRow, symbol: str, k: Kline, message: str, counters: EngineCounters
                 ) -> RuleFailure:  # fmt: skip
    """Count, log and describe a trader switched off for a symbol."""
    counters.failures += 1
    log.warning("trader id=%d switched off for symbol=%s: %s", row.id, symbol, message)
    return RuleFailure(row.id, row.version, symbol, k.open_ms, message)


def _months_before(open_ms: int, months: int) -> int:
    from datetime import UTC, datetime

    d = datetime.fromtimestamp(open_ms / 1000, tz=UTC)
    total = d.year * 12 + (d.month - 1) - months
    return int(datetime(total // 12, total % 12 + 1, 1, tzinfo=UTC).timestamp()) * 1000
