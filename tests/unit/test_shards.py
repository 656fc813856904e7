"""The kline step keyed by shard gives what the step keyed by symbol gives, routes each symbol
to its own worker, and its state survives pickling."""

from __future__ import annotations

import pickle
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from flows.cluster import worker_of
from flows.dataflows.kline_step import KlineLogic, KlineStepConfig, KlineUpdate
from flows.dataflows.shards import ShardLogic, shard_names, shard_of
from flows.domain.kline import Trade
from flows.domain.stats import RunStats
from flows.sources.items import SymbolBatch

CONFIG = KlineStepConfig(("1m", "5m"), timer_writes=False)
SYMBOLS = ["BTCUSDT", "ETHUSDT", "XRPETH", "DOGEUSDT", "SOLUSDT"]


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 6), st.lists(st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=3,
                                           max_size=12), min_size=1, max_size=40))  # fmt: skip
def test_a_symbols_shard_goes_to_the_symbols_own_worker(workers: int, symbols: list[str]) -> None:
    names = shard_names(workers)
    assert [{worker_of(n, workers) for n in row} for row in names] == [{w} for w in
                                                                       range(workers)]  # fmt: skip
    for symbol in symbols:
        assert worker_of(shard_of(symbol, names), workers) == worker_of(symbol, workers)


def _batches(seed: int) -> list[SymbolBatch]:
    rng = random.Random(seed)
    t = 1_700_000_000_000
    ids = dict.fromkeys(SYMBOLS, 1)
    out = []
    for _ in range(60):
        symbol = rng.choice(SYMBOLS)
        trades: list[Trade] = []
        for _ in range(rng.randint(1, 5)):
            t += rng.randint(0, 40_000)
            i = ids[symbol]
            trades.append(
                (i, i, rng.randint(1, 10**9), rng.randint(1, 10**9), t, rng.random() < 0.5)
            )
            ids[symbol] = i + 1
        out.append(SymbolBatch(symbol, trades))
    return out


def _closed(updates: list[KlineUpdate]) -> dict[str, list[object]]:
    out: dict[str, list[object]] = {}
    for u in updates:
        out.setdefault(u.symbol, []).extend(u.closed)
    return out


def test_a_shard_gives_what_the_symbols_give_alone_and_resumes_from_pickled_state() -> None:
    batches = _batches(7)
    alone: dict[str, KlineLogic] = {}
    expected: list[KlineUpdate] = []
    for b in batches:
        logic = alone.setdefault(b.symbol, KlineLogic(CONFIG, RunStats(), None))
        expected += logic.on_batch([b])[0]
    for s in alone.values():
        expected += s.on_eof()[0]
    # one shard holding every symbol, fed in groups, stopped and resumed half way
    half = len(batches) // 2
    shard = ShardLogic(CONFIG, RunStats(), None)
    got: list[KlineUpdate] = []
    for k in range(0, half, 4):
        got += shard.on_batch(batches[k : min(k + 4, half)])[0]
    state = pickle.loads(pickle.dumps(shard.snapshot()))
    assert set(state) == {b.symbol for b in batches[:half]}
    resumed = ShardLogic(CONFIG, RunStats(), state)
    for k in range(half, len(batches), 3):
        got += resumed.on_batch(batches[k : k + 3])[0]
    got += resumed.on_eof()[0]
    assert _closed(got) == _closed(expected)
    assert sum(len(v) for v in _closed(got).values()) > 20
