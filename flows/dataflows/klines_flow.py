"""The kline dataflow: a trade source -> klines per symbol -> Redis, and optionally
closed klines -> trader rules per symbol -> signals in PostgreSQL.

The same wiring serves replays, the demo and (later) the live feed; only the source differs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source

from flows.dataflows.endpoints import Endpoint, check_sinks
from flows.dataflows.kline_step import KlineStepConfig, KlineUpdate
from flows.dataflows.shards import by_symbol, shard_logic_builder, shard_router
from flows.domain.intervals import UNVERIFIED_INTERVALS
from flows.domain.stats import RunStats
from flows.io.contracts import SignalSink
from flows.sinks.redis_sink import RedisKlineSink, SinkItem
from flows.sources.items import SourceItem, SourceReport, SymbolBatch

if TYPE_CHECKING:  # the rules stage (TA-Lib, PostgreSQL) is imported only by flows with rules
    from flows.signals.step import RulesStage

log = logging.getLogger(__name__)


def _is_trades(item: SourceItem) -> bool:
    return not isinstance(item, SourceReport)


def build_kline_flow(
    flow_id: str,
    source: Source[SourceItem],
    step: KlineStepConfig,
    sink: RedisKlineSink,
    stats: RunStats,
    rules: RulesStage | None = None,
    sinks: Sequence[Endpoint] = (),
) -> Dataflow:
    """`sinks`: `flows.io` sinks, each handed its kind (klines, reports, signals) before the
    flow's own stores commit the same batch (`flows.dataflows.endpoints`)."""
    for name in sorted(UNVERIFIED_INTERVALS & set(step.intervals)):
        log.warning(
            "interval=%s alignment is not verified against Binance's own klines "
            "(epoch-aligned is assumed); compare with GET /api/v3/klines before relying on it",
            name,
        )
    flow = Dataflow(flow_id)
    items = op.input("trades_in", flow, source)
    split = op.branch("split_reports", items, _is_trades)
    keyed: Any = split.trues  # (symbol, SymbolBatch) items, keyed by symbol
    # the kline state is keyed by shard (many symbols per activation), its output by symbol
    sharded = op.flat_map("to_shards", keyed, shard_router(step.workers))
    by_shard = op.stateful_batch("klines", sharded, shard_logic_builder(step, stats))
    updates: Any = op.map("by_symbol", by_shard, by_symbol)
    out: Any = op.merge("to_redis", updates, split.falses)
    check_sinks(sinks, rules is not None)
    # each added sink is written before the store commits the same batch (endpoints.deliver)
    sink.added = [s for s in sinks if not isinstance(s, SignalSink)]
    op.output("redis_out", out, sink)
    if rules is not None:
        from flows.signals.step import closed_router, rules_builder

        closed: Any = op.filter_map("closed_klines", updates, closed_router(step.workers))
        outcomes = op.stateful_batch("rules", closed, rules_builder(rules.config))
        rules.sink.added = [s for s in sinks if isinstance(s, SignalSink)]
        op.output("signals_out", outcomes, rules.sink)
    return flow


__all__ = ["KlineUpdate", "SinkItem", "SymbolBatch", "build_kline_flow"]
