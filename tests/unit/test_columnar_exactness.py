"""The columnar kline builder against the per-trade builder on the real Binance recordings.

Every file the exactness tests use (the XRPETH aggTrades dump and its REST/ccxt twin, the four
WebSocket captures, the REST historical trades) is read with the project's readers, turned
into columns, and fed in seeded random batch splits; every batch must close the very klines
`SymbolKlines` closes for the same batch, and the whole run must equal `build_klines`.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from flows.domain.intervals import DEFAULT_INTERVALS, INTERVAL_NAMES
from flows.domain.kline import Kline, Trade
from flows.klines.builder import SymbolKlines, build_klines
from flows.klines.columnar import Batch, ColumnarKlines
from flows.sources.readers import read_all

FILES = (
    "XRPETH-aggTrades-20191011-20191013.csv",
    "XRPETH-aggTrades-ccxt.json.gz",
    "ws-capture-2021-04-04-btc-eth-dot.txt",
    "ws-capture-2021-04-17-illiquid10.txt",
    "ws-capture-2021-08-14-ftm-sxp-badger-xmr.txt",
    "ws-capture-2021-10-12-nkn-blz-lrc-rune.txt",
    "rest-historicalTrades-BTCUSDT-2021-10-22.json",
)
INTERVAL_SETS = (
    INTERVAL_NAMES,  # 1s base, every interval
    DEFAULT_INTERVALS,  # 1m base
    ("5m", "1h", "1w", "1M"),  # 1m base, not emitted
)

Columns = list[np.ndarray]


def columns(trades: list[Trade]) -> Columns:
    """(time_ms, price, qty, first_id, last_id, is_buyer_maker) as arrays."""
    first, last, price, qty, ts, maker = (list(c) for c in zip(*trades, strict=True))
    return [
        np.array(ts, dtype=np.int64),
        np.array(price, dtype=np.int64),
        np.array(qty, dtype=np.int64),
        np.array(first, dtype=np.int64),
        np.array(last, dtype=np.int64),
        np.array(maker, dtype=np.bool_),
    ]


def splits(count: int, rng: random.Random) -> list[tuple[int, int]]:
    """Random batch bounds covering 0..count: single trades, small and large batches."""
    out, i = [], 0
    while i < count:
        size = rng.choice((1, 1, 2, 3, 10, 64, 500, 4000, count))
        out.append((i, min(count, i + size)))
        i += size
    return out


def grouped(intervals: tuple[str, ...], pairs: list[tuple[str, Kline]]) -> dict[str, list[Kline]]:
    out: dict[str, list[Kline]] = {name: [] for name in intervals}
    for name, k in pairs:
        out[name].append(k)
    return out


def same_as_builder(
    trades: list[Trade], cols: Columns, bounds: list[tuple[int, int]], intervals: tuple[str, ...]
) -> dict[str, list[Kline]]:
    """Feed both builders the same batches; check each batch; return all columnar klines."""
    sk = SymbolKlines(intervals)
    ck = ColumnarKlines(intervals)
    everything: dict[str, list[Kline]] = {name: [] for name in intervals}
    for lo, hi in bounds:
        closed: list[tuple[str, Kline]] = []
        late, dups = sk.process(trades[lo:hi], closed)
        batch: Batch = ck.process(*(c[lo:hi] for c in cols))
        assert batch.closed == grouped(intervals, closed), (lo, hi)
        assert (batch.late, batch.duplicates, batch.refused) == (late, dups, sk.refused)
        for name, ks in batch.closed.items():
            everything[name].extend(ks)
    final = ck.final_klines()
    assert final == grouped(intervals, sk.open_klines())
    for name, ks in final.items():
        everything[name].extend(ks)
    return everything


def symbols_of(path: Path) -> dict[str, list[Trade]]:
    return {sym: ts for sym, ts in read_all(path).trades.items() if ts}


@pytest.mark.parametrize("name", FILES)
def test_every_recording_in_random_batches_equals_the_builder(shared_data: Path, name: str) -> None:
    rng = random.Random(name)
    found = symbols_of(shared_data / name)
    assert found
    for trades in found.values():
        cols = columns(trades)
        for intervals in INTERVAL_SETS:
            expected = build_klines(trades, intervals)
            for _ in range(3):
                got = same_as_builder(trades, cols, splits(len(trades), rng), intervals)
                assert got == expected


def test_an_overlapping_replay_drops_the_same_duplicates(shared_data: Path) -> None:
    """The dump fed twice over, in overlapping pieces: the second sight of every trade is a
    duplicate, dropped as the builder drops it."""
    (trades,) = symbols_of(shared_data / FILES[0]).values()
    rng = random.Random(7)
    replayed: list[Trade] = []
    i = 0
    while i < len(trades):
        j = min(len(trades), i + rng.randint(1, 3000))
        replayed.extend(trades[max(0, i - rng.randint(0, 500)) : j])
        i = j
    got = same_as_builder(replayed, columns(replayed), splits(len(replayed), rng), INTERVAL_NAMES)
    assert got == build_klines(trades, INTERVAL_NAMES)


def test_watermarks_then_late_trades_amend_as_the_builder_does(shared_data: Path) -> None:
    """Watermarks between batches close quiet klines early; a trade that still comes for
    them goes through the builder's rewind: the same klines, amendments and late trades."""
    (trades,) = symbols_of(shared_data / FILES[0]).values()
    cols = columns(trades)
    rng = random.Random(11)
    intervals = ("1s", "1m", "5m", "1h")
    sk = SymbolKlines(intervals)
    ck = ColumnarKlines(intervals)
    for lo, hi in splits(len(trades), rng):
        closed: list[tuple[str, Kline]] = []
        late, dups = sk.process(trades[lo:hi], closed)
        batch = ck.process(*(c[lo:hi] for c in cols))
        assert batch.closed == grouped(intervals, closed)
        assert (batch.late, batch.duplicates) == (late, dups)
        assert batch.amended_before == sk.amended_before
        if hi < len(trades):
            # a watermark somewhere up to 90 s past the next trade: sometimes too early
            watermark = trades[hi][4] + rng.randint(-5_000, 90_000)
            closed = []
            sk.advance(watermark, closed)
            assert ck.advance(watermark) == grouped(intervals, closed)
    assert ck.final_klines() == grouped(intervals, sk.open_klines())
