"""The array engine decides exactly as the per-symbol reference, symbol by symbol.

``ShardEngine`` (every symbol of a shard at once, as arrays) against ``ScalarEngine``
(``flows/signals/scalar_engine.py``: one symbol at a time, the scalar evaluator over ``Frame``s,
the engine the flow ran before): the same klines, the same book, the same seeder, and every
fire must be equal in every field (id, trader, symbol, kline, cooldown window, price and
every provenance value) and every failure the same. The rules call every helper of the
library, with ``on_change`` and ``every_close``, ``x[n]`` and ``tf=``; the symbols differ
in price scale (1e-8 to 1e5), in how often they trade (flat klines) and in when they are
listed; the book changes midway (a trader added: every block rebuilt from the bars held and
the seeder); klines are amended (rewound and decided again) and symbols join late.
"""

from __future__ import annotations

import pickle
import random
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest

from flows.domain.kline import Kline
from flows.rules.helpers import DEFAULT_REGISTRY
from flows.rules.vector import vectorize
from flows.signals.book import Book, TraderRow, build_book
from flows.signals.engine import EngineCounters, Fire
from flows.signals.scalar_engine import ScalarEngine
from flows.signals.shard_engine import ShardEngine

MINUTE = 60_000
T0 = 1_700_000_000_000 - 1_700_000_000_000 % 3_600_000


def _call(name: str) -> str:
    spec = DEFAULT_REGISTRY.get(name)
    assert spec is not None
    args = []
    for arg in spec.args[: spec.min_args]:
        args.append(str(arg.default or 5) if arg.literal else "close")
    return f"{name}({', '.join(args)})"


def _rules() -> list[tuple[str, str]]:
    """(expression, trigger) pairs: every helper, and the shapes rules take."""
    out = []
    for spec in DEFAULT_REGISTRY.helpers():
        call = _call(spec.name)
        if spec.returns == "bool":
            out.append((f"{call} or close < open", "every_close"))
        else:
            out.append((f"{call} > {call}[1]", "on_change"))
    out += [
        ("rsi(14) < 45 and crosses_above(ema(9), ema(21))", "every_close"),
        ('rsi(14) > 50 and rsi(7, tf="5m") > 50 and ema(3, tf="5m")[1] < close', "on_change"),
        ("pct_change(close, 3) > 0.2 or lowest(low, 5) > close * 0.995", "every_close"),
        ("highest(ema(3), 4) > sma(10) and not (obv() < obv()[1])", "every_close"),
        ("close % 2 > 1 and volume / avg_volume(5) > 1.2 and -close < 0", "on_change"),
        ("price_change_pct_24h > 0 or quote_volume_24h > 1e9", "every_close"),
        ("false and rsi(14) > 50 or true and close / (high - high) > 0", "every_close"),
        ("change(macd_hist(), 2) * 1000 > 1 or trades > 10 and quote_volume > 0", "on_change"),
        # values that depend on where their history starts, and on a frame's own depth
        ("close > sma(10) * 1.001 and pvi() > 1000 and obv() > 0", "every_close"),
        ("hvn_count(100, 5) == 0 and close > open", "every_close"),
        ('change(rsi(3, tf="5m"), 2) > -1000 and ema(20) > close', "every_close"),
    ]
    return out


def _klines(seed: int, n: int) -> list[Kline]:
    rng = np.random.default_rng(seed)
    scale = 10.0 ** rng.uniform(0, 13)  # prices of 1e-8 to 1e5 coins, in 1e-8 units
    price = np.maximum(1, np.round(scale * np.exp(np.cumsum(rng.normal(0, 0.004, n)))))
    quiet = seed % 3 == 0  # a thin market: many klines without a trade (flat, no volume)
    out, prev = [], int(price[0])
    for i in range(n):
        t = T0 + i * MINUTE
        if quiet and rng.random() < 0.4:
            out.append(Kline(t, t + MINUTE - 1, prev, prev, prev, prev, 0, 0, 0, 0, 0))
            continue
        close = int(price[i])
        hi = max(prev, close) + int(abs(rng.normal(0, scale * 1e-3)))
        lo = max(1, min(prev, close) - int(abs(rng.normal(0, scale * 1e-3))))
        vol = int(rng.lognormal(20, 1))
        out.append(Kline(t, t + MINUTE - 1, prev, hi, lo, close, vol, vol * 3, 1 + i % 20, 0, 0))
        prev = close
    return out


def _five(bars: list[Kline]) -> list[Kline]:
    out = []
    for i in range(0, len(bars) - 4, 5):
        g = bars[i : i + 5]
        high, low = max(k.high for k in g), min(k.low for k in g)
        volume, quote = sum(k.volume for k in g), sum(k.quote_volume for k in g)
        trades = sum(k.trades for k in g)
        out.append(Kline(g[0].open_ms, g[-1].close_ms, g[0].open, high, low, g[-1].close,
                         volume, quote, trades, 0, 0))  # fmt: skip
    return out


# traders that need more of a few symbols than the others: deeper bars, deeper history
NARROW = [
    TraderRow(800, "deep", "sma(400) < close", "1m", cooldown_bars=0, symbols_mode="list",
              symbols=("S001", "S003")),
    TraderRow(801, "far back", 'rsi(3, tf="5m")[8] > 0', "1m", cooldown_bars=0,
              symbols_mode="list", symbols=("S002", "S004")),
]  # fmt: skip


def _book(rules: list[tuple[str, str]], first_id: int = 1) -> list[TraderRow]:
    rows = []
    for i, (expr, mode) in enumerate(rules):
        watch = ("all", ()) if i % 4 else ("list", ("S000", "S002", "S005"))
        row = TraderRow(first_id + i, f"t{i}", expr, "1m", trigger_mode=mode, cooldown_bars=i % 3)
        rows.append(replace(row, symbols_mode=watch[0], symbols=watch[1]))
    return rows


def _key(f: Fire) -> tuple:
    values = tuple(sorted((k, repr(v)) for k, v in f.values.items()))
    return (f.id, f.trader_id, f.trader_version, f.symbol, f.interval, f.open_ms, f.close_ms,
            f.window_start_ms, f.price, values, f.closed_at_ms)  # fmt: skip


def _batches(stored: dict[str, dict[str, list[Kline]]], start: int, stop: int, rng: random.Random,
             listed: dict[str, int]) -> Iterator[list[tuple[str, str, Kline]]]:  # fmt: skip
    """The klines closing in (start, stop] minutes, in batches of a few minutes, each symbol
    from the minute it is ``listed`` at."""
    items = []
    for symbol, by_iv in stored.items():
        for iv, ks in by_iv.items():
            for k in ks:
                minute = (k.close_ms + 1 - T0) // MINUTE
                if start < minute <= stop and minute > listed[symbol]:
                    items.append((symbol, iv, k))
    items.sort(key=lambda x: (x[2].close_ms, x[0], x[1]))
    i = 0
    while i < len(items):
        size = rng.randint(1, 4) * len(stored)
        yield items[i : i + size]
        i += size


@pytest.mark.parametrize(("seed", "array_min"), [(1, 1), (2, 1), (3, 6)])
def test_the_array_engine_decides_as_the_per_symbol_reference(seed: int, array_min: int) -> None:
    """``array_min`` 1: arrays from the first close; 6: scalar engines for the first symbols
    listed, their state moved into arrays when the sixth one comes (nothing may change)."""
    rng = random.Random(seed)
    symbols = [f"S{i:03d}" for i in range(12)]
    stored: dict[str, dict[str, list[Kline]]] = {}
    for i, s in enumerate(symbols):
        bars = _klines(seed * 100 + i, 1730)
        stored[s] = {"1m": bars, "5m": _five(bars)}
    # a gap: S005 has no 1m kline for 30 minutes (its 5m ones go on)
    stored["S005"]["1m"] = [k for k in stored["S005"]["1m"]
                            if not 1500 <= (k.close_ms + 1 - T0) // MINUTE < 1530]  # fmt: skip

    def seeder(symbol: str, interval: str, end_ms: int, count: int) -> list[Kline]:
        return [k for k in stored[symbol][interval] if k.close_ms < end_ms][-count:]

    listed = {s: 1440 + rng.randint(0, 40) for s in symbols}  # listed one after another
    rules = _rules()
    first = build_book(_book(rules[: len(rules) // 2]) + NARROW + _book(rules[-3:], 700))
    second = build_book(_book(rules[: len(rules) // 2]) + _book(rules[len(rules) // 2 :], 500))
    assert not first.errors and not second.errors, (first.errors, second.errors)
    vectorised = [t for t in second.traders if vectorize(t.program) is not None]
    assert len(vectorised) > 0.8 * len(second.traders)  # the array path is what is tested

    shard, c_shard = ShardEngine(array_min_symbols=array_min), EngineCounters()
    reference: dict[str, ScalarEngine] = {}
    c_ref = EngineCounters()
    got: list[Fire] = []
    want: list[Fire] = []
    failures_got, failures_want = [], []

    def run(items: list[tuple[str, str, Kline]], book: Book) -> None:
        fires, failures = shard.process(items, book, seeder, 7, c_shard)
        got.extend(fires)
        failures_got.extend(failures)
        per: dict[str, list[tuple[str, Kline]]] = {}
        for symbol, iv, k in items:
            per.setdefault(symbol, []).append((iv, k))
        for symbol, closed in per.items():
            engine = reference.setdefault(symbol, ScalarEngine(symbol))
            fires, failures = engine.process(closed, book, seeder, 7, c_ref)
            want.extend(fires)
            failures_want.extend(failures)

    for items in _batches(stored, 1440, 1560, rng, listed):  # seeded from the day before
        run(items, first)
    assert shard.scalars is None  # the array form took over
    for items in _batches(stored, 1560, 1640, rng, listed):  # a book change: blocks rebuilt
        run(items, second)
    # amended klines: the last 3 minutes of two symbols closed again, decided again, the
    # last one given twice in one batch (as it was, then amended)
    for symbol in ("S001", "S002"):
        again = [k for k in stored[symbol]["1m"] if 1637 < (k.close_ms + 1 - T0) // MINUTE <= 1640]
        shard.rewind(symbol, {"1m": again[0].open_ms})
        reference[symbol].rewind({"1m": again[0].open_ms})
        amended = again[-1]._replace(close=again[-1].close + 1, volume=again[-1].volume + 5)
        run([(symbol, "1m", k) for k in again] + [(symbol, "1m", amended)], second)
    shard = pickle.loads(pickle.dumps(shard))  # a recovery snapshot, resumed
    for items in _batches(stored, 1640, 1690, rng, listed):
        run(items, second)
    # traders removed (what is held stays), one added for two symbols with an indicator no
    # one computed: only those two symbols' bars are rebuilt, the others go on as they are
    narrow = TraderRow(900, "narrow", "ema(33) > close and atr(21) > 0", "1m",
                       cooldown_bars=0, symbols_mode="list", symbols=("S001", "S004"))  # fmt: skip
    third = build_book([r for r in _book(rules[: len(rules) // 2]) if r.id % 3] + [narrow])
    for items in _batches(stored, 1690, 1720, rng, listed):
        run(items, third)
    assert any(f.trader_id == 900 for f in got)

    assert len(want) > 500
    assert sorted(map(_key, got)) == sorted(map(_key, want))
    assert sorted(failures_got) == sorted(failures_want)
    assert (c_shard.evaluations, c_shard.not_ready, c_shard.fires, c_shard.seeded_klines) == (
        c_ref.evaluations, c_ref.not_ready, c_ref.fires, c_ref.seeded_klines)  # fmt: skip
