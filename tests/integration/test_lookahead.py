"""Rules see only closed bars: a decision at a kline does not change when every later trade is
removed (what freqtrade calls lookahead analysis), for single- and multi-timeframe rules.

The klines come from a replay of real XRPETH trades. For several cut points the engine is run
again over only the klines that had closed by then; every decision it makes must equal the
decision the full run made at the same kline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from flows.dataflows.replay import ReplayJob, run_replay
from flows.domain.keys import KeySpace
from flows.domain.kline import Kline, kline_of_row
from flows.signals.book import TraderRow, build_book
from flows.signals.engine import EngineCounters, SymbolEngine

RULES = [
    "rsi(14) < 45",
    'close > ema(20, tf="5m")',
    'rsi(14, tf="5m")[1] < rsi(14, tf="5m") and macd_hist() > 0',
    'crosses_above(close, sma(10, tf="15m")) or close < bb_lower(20, 2)',
    'pct_change(close, 5) > 0.1 and highest(high, 10, tf="5m") > close',
]


def decisions(klines: dict[str, list[Kline]], rule: str) -> dict[int, bool]:
    """Open time of each 1m kline where the rule fired (every close)."""
    book = build_book([TraderRow(1, "r", rule, "1m", trigger_mode="every_close", cooldown_bars=0)])
    closed = [(iv, k) for iv, ks in klines.items() for k in ks]
    engine = SymbolEngine("XRPETH")
    counters = EngineCounters()
    fires, failures = engine.process(closed, book, None, 0, counters)
    assert not failures
    fired = {f.open_ms for f in fires}
    evaluated = sorted(k.open_ms for k in klines["1m"])
    return {t: t in fired for t in evaluated}


@pytest.fixture(scope="module")
def klines(shared_data: Path, redis_url: str) -> dict[str, list[Kline]]:
    keys = KeySpace("lookahead")
    client = redis.Redis.from_url(redis_url)
    run_replay(ReplayJob(paths=[shared_data / "XRPETH-aggTrades-20191011-20191013.csv"],
                         redis_url=redis_url, intervals=("1m", "5m", "15m"), keys=keys,
                         fresh=True))  # fmt: skip
    out = {
        iv: [kline_of_row(json.loads(m)) for m in client.zrange(keys.klines("XRPETH", iv), 0, -1)]
        for iv in ("1m", "5m", "15m")
    }
    for name in client.scan_iter(match="lookahead:*"):
        client.delete(name)
    # the 1,200 first minutes are plenty and keep the test quick
    end = out["1m"][1200].open_ms
    return {iv: [k for k in ks if k.close_ms < end] for iv, ks in out.items()}


@pytest.mark.parametrize("rule", RULES)
def test_a_decision_does_not_change_when_later_data_is_removed(
    klines: dict[str, list[Kline]], rule: str
) -> None:
    full = decisions(klines, rule)
    assert 5 < sum(full.values()) < len(full) - 5  # the rule does decide both ways
    minutes = klines["1m"]
    for cut in (minutes[300].close_ms + 1, minutes[301].close_ms + 1 + 30_000,
                minutes[777].close_ms + 1, minutes[1001].close_ms + 1):  # fmt: skip
        # only what had closed by the cut: the 5m and 15m bars still open then are gone too
        past = {iv: [k for k in ks if k.close_ms < cut] for iv, ks in klines.items()}
        partial = decisions(past, rule)
        assert partial == {t: full[t] for t in partial}
