"""The kline step keyed by shard gives what the step keyed by symbol gives, routes each symbol
to its own worker, and its state survives pickling."""

from __future__ import annotations

import pickle
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from flows.cluster import worker_of
from flows.dataflows.kline_step import KlineLogic, KlineStepConfig, KlineUpdate
from flows.dataflows.shards import ShardLogic, shard_names, shard_of, shard_router
from flows.domain.kline import Trade
from flows.domain.stats import RunStats
from flows.sources.items import SymbolBatch, Watermarks

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


def _content(updates: list[KlineUpdate]) -> dict[str, tuple[list[object], list[object]]]:
    out: dict[str, tuple[list[object], list[object]]] = {}
    for u in updates:
        closed, opened = out.setdefault(u.symbol, ([], []))
        closed.extend(u.closed)
        opened.extend(u.opened)
    return out


def test_one_watermarks_item_per_shard_gives_what_a_watermark_per_symbol_gives() -> None:
    """A live source's second: trades of a few symbols, then one watermark for every symbol.
    Sent as one `Watermarks` item (routed as one item per shard) or as an empty batch per
    symbol, the kline step closes and writes the same klines; a watermark that closes
    nothing and leaves nothing to write gives no update at all."""
    config = KlineStepConfig(("1m", "5m"), open_throttle_ms=0, close_at_eof=False,
                             timer_writes=False)  # fmt: skip
    rng = random.Random(11)
    batches = _batches(3)
    route = shard_router(2)
    alone: dict[str, KlineLogic] = {}
    shards: dict[str, ShardLogic] = {}
    expected: list[KlineUpdate] = []
    got: list[KlineUpdate] = []
    routed_marks = 0
    for k in range(0, len(batches), 5):
        group = batches[k : k + 5]
        watermark = max(t[4] for b in group for t in b.trades) - rng.randint(0, 30_000)
        seen = sorted({b.symbol for b in batches[: k + 5]})
        for b in group:
            logic = alone.setdefault(b.symbol, KlineLogic(config, RunStats(), None))
            expected += logic.on_batch([b])[0]
        for symbol in seen:
            expected += alone[symbol].on_batch([SymbolBatch(symbol, [], watermark)])[0]
        items = [(b.symbol, b) for b in group]
        items.append(("", Watermarks(tuple(seen), watermark)))
        for key, value in (r for item in items for r in route(item)):
            if isinstance(value, Watermarks):
                routed_marks += 1
                assert {shard_of(s, shard_names(2)) for s in value.symbols} == {key}
            shard = shards.setdefault(key, ShardLogic(config, RunStats(), None))
            got += shard.on_batch([value])[0]
    assert routed_marks <= (len(batches) // 5 + 1) * len({shard_of(s, shard_names(2))
                                                            for s in SYMBOLS})  # fmt: skip
    assert _content(got) == _content(expected)
    assert sum(len(c) for c, _ in _content(got).values()) > 20
    assert all(u.carries() for u in got)
    assert not all(u.carries() for u in expected)  # some watermarks changed nothing
