"""No trader can stop another (issue: hostile rules).

The ten rules that once passed the checker and then crashed the shared indicator update are
refused at the parameter; behind the checker, an indicator or helper that raises, or a
trader over its time budget, switches off only the traders that depend on it, for that
symbol, and every other trader goes on firing; non-finite values are "not ready"; symbol
patterns are globs matched in linear time.
"""

from __future__ import annotations

import fnmatch
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.domain.kline import Kline
from flows.indicators import Indicator
from flows.indicators.series import BarSeries
from flows.rules.check import parse_rule
from flows.rules.errors import RuleError
from flows.rules.evaluate import compile_rule
from flows.rules.frame import Frame
from flows.rules.helpers import DEFAULT_REGISTRY
from flows.rules.registry import Arg, Registry
from flows.signals.book import Book, CompiledTrader, TraderRow, compile_trader
from flows.signals.engine import SLOW_STRIKES, EngineCounters, Fire, RuleFailure, SymbolEngine
from flows.signals.patterns import PatternError, check_glob, glob_match, glob_of
from flows.signals.shard_engine import ShardEngine

MIN = 60_000


def _klines(n: int, start: int = 0) -> list[Kline]:
    out = []
    for i in range(start, start + n):
        c = 10**10 + (i % 7) * 10**7
        out.append(
            Kline(i * MIN, i * MIN + MIN - 1, c, c + 10**7, c - 10**7, c, 10**8, 10**9, 3, 0, 0)
        )
    return out


# ---------------------------------------------------------------- the checker's ranges

HOSTILE = [
    ("rsi(1) > 50", 4, "argument 1 of rsi must be from 2 to 100000 bars, got 1"),
    ("atr(1) > 0", 4, "argument 1 of atr must be from 2 to 100000 bars, got 1"),
    ("adx(1) > 0", 4, "argument 1 of adx must be from 2 to 100000 bars, got 1"),
    ("cci(1) > 0", 4, "argument 1 of cci must be from 2 to 100000 bars, got 1"),
    ("mfi(1) > 0", 4, "argument 1 of mfi must be from 2 to 100000 bars, got 1"),
    ("macd(1,1,1) > 0", 5, "argument 1 of macd must be from 2 to 100000 bars, got 1"),
    ("macd(12,26,1) > 0", 11, "argument 3 of macd must be from 2 to 100000 bars, got 1"),
    ("stochrsi_k(1,1,1) > 0", 11, "argument 1 of stochrsi_k must be from 2 to 100000 bars, got 1"),
    ("bb_upper(1,2) > close", 9, "argument 1 of bb_upper must be from 2 to 100000 bars, got 1"),
    ("bb_upper(20,4e37) > close", 12, "argument 2 of bb_upper must be at most 100, got 4e+37"),
    ("bb_upper(20,1e308) > close", 12, "argument 2 of bb_upper must be at most 100, got 1e+308"),
    (
        "vwap_upper(20, mult=1e9) > close",
        20,
        "keyword 'mult' of vwap_upper must be at most 100, got 1000000000",
    ),
    ("vwap(5000) > close", 0, "rule needs 5000 bars of history (max 1000)"),
    ("close > 1e400", 8, "number 1e400 is out of range"),
]


@pytest.mark.parametrize(("rule", "position", "message"), HOSTILE)
def test_the_checker_refuses_parameters_outside_each_helpers_range(
    rule: str, position: int, message: str
) -> None:
    with pytest.raises(RuleError) as caught:
        parse_rule(rule)
    assert (caught.value.position, caught.value.message) == (position, message)


def test_every_literal_argument_has_a_range_the_indicator_accepts() -> None:
    """At each declared bound the helper's indicators construct; below it the checker
    refuses. (The property suite evaluates across the whole range.)"""
    for spec in DEFAULT_REGISTRY.helpers():
        for index, arg in enumerate(spec.args):
            if arg.kind != "period":
                continue
            given = [a.lo if a.literal else "close" for a in spec.args]
            rule = f"{spec.name}({', '.join(str(g) for g in given)})"
            rule = rule if spec.returns == "bool" else f"{rule} > 0"
            program = compile_rule(rule, "1m")
            for interval, req in program.requirements.items():
                frame = Frame(interval, req, DEFAULT_REGISTRY.factories)
                for k in _klines(3):
                    frame.on_bar(k)
                for ind_spec in req.specs:
                    frame.value(ind_spec, 0)  # raises IndicatorFailed if it could not be made
            if arg.lo > 1:
                given[index] = arg.lo - 1
                below = f"{spec.name}({', '.join(str(g) for g in given)})"
                with pytest.raises(RuleError, match=f"argument {index + 1} of {spec.name}"):
                    parse_rule(below if spec.returns == "bool" else f"{below} > 0")


def test_infinity_is_not_a_value(arrays: bool) -> None:
    trader = _trader(1, "1e308 * 1e308 > close")
    finite = _trader(2, "close * 1e300 * 1e300 > 0")  # overflows to inf: not ready either
    fires, failures, counters = _run([trader, finite], _klines(20), arrays=arrays)
    assert fires == [] and failures == []
    assert counters.not_ready == 40 and counters.evaluations == 40


# ---------------------------------------------------------------- isolation in the engine


def _trader(tid: int, rule: str, registry: Registry = DEFAULT_REGISTRY) -> CompiledTrader:
    row = TraderRow(tid, f"t{tid}", rule, "1m", trigger_mode="every_close", cooldown_bars=0)
    if registry is DEFAULT_REGISTRY:
        return compile_trader(row)
    return CompiledTrader(row, compile_rule(rule, "1m", registry), None, frozenset())


@pytest.fixture(params=["per symbol", "arrays"])
def arrays(request: pytest.FixtureRequest) -> bool:
    """Each isolation test runs on both forms of the engine: one scalar engine per symbol
    (a shard with few symbols) and every symbol at once as arrays."""
    return bool(request.param == "arrays")


def _run(
    traders: list[CompiledTrader],
    klines: list[Kline],
    registry: Registry = DEFAULT_REGISTRY,
    symbols: tuple[str, ...] = ("AAAUSDT",),
    budget_s: float = 0.25,
    arrays: bool = False,
) -> tuple[list[Fire], list[RuleFailure], EngineCounters]:
    book = Book(tuple(traders), version=1)
    counters = EngineCounters()
    fires: list[Fire] = []
    failures: list[RuleFailure] = []
    if arrays:
        shard = ShardEngine(array_min_symbols=1)
        for k in klines:  # one close of every symbol at a time, as the live flow takes them
            f, e = shard.process([(s, "1m", k) for s in symbols], book, None, 0, counters,
                                 registry.factories, budget_s)  # fmt: skip
            fires += f
            failures += e
        assert shard.scalars is None  # the array form ran
        return fires, failures, counters
    for symbol in symbols:
        engine = SymbolEngine(symbol)
        for k in klines:  # one close at a time, as the live flow takes them
            f, e = engine.process(
                [("1m", k)], book, None, 0, counters, registry.factories, budget_s
            )
            fires += f
            failures += e
    return fires, failures, counters


class _Boom(Indicator):
    """Raises when it is made (after=1), or on its (after - 1)-th bar."""

    def __init__(self, after: int = 1) -> None:
        super().__init__()
        if after == 1:
            raise ValueError("boom: cannot be made")
        self.spec = ("boom", (after,))
        self.after = after - 1

    def update(self, series: BarSeries) -> float:
        self._n += 1
        if self._n >= self.after:
            raise ZeroDivisionError(f"boom at bar {self._n}")
        return 1.0


def _hostile_registry() -> Registry:
    reg = Registry()
    for spec in DEFAULT_REGISTRY.helpers():  # the library, plus the hostile helpers below
        reg.declare(
            spec.name, spec.args, spec.kwargs, spec.returns, spec.lookback, spec.impl,
            spec.binding, spec.reference, spec.reference_output, spec.doc,
        )  # fmt: skip
    reg.indicator("boom", args=[Arg("period", 1)])(_Boom)
    return reg


@pytest.mark.parametrize("after", [1, 2, 6])
def test_an_indicator_that_raises_stops_only_the_traders_that_read_it(
    after: int, arrays: bool
) -> None:
    reg = _hostile_registry()
    hostile = _trader(1, f"boom({after}) > 0 and close > 0", reg)
    shares_frame = _trader(2, "close > 0 or rsi(14) > 0", reg)  # same frame, other indicator
    plain = _trader(3, "close > 0", reg)
    symbols = ("AAAUSDT", "BBBUSDT")
    fires, failures, _ = _run(
        [hostile, shares_frame, plain], _klines(30), reg, symbols, arrays=arrays
    )
    assert sorted({(f.trader_id, f.symbol) for f in fires}) == [
        (t, s) for t in (1, 2, 3) for s in symbols if t != 1 or after > 2
    ]
    by_trader = {
        (t, s): sum(1 for f in fires if (f.trader_id, f.symbol) == (t, s))
        for t in (2, 3)
        for s in symbols
    }
    assert set(by_trader.values()) == {30}  # every kline, every symbol, for the others
    assert [(x.trader_id, x.symbol) for x in failures] == [(1, s) for s in symbols]
    assert all("boom" in x.error and "IndicatorFailed" in x.error for x in failures)
    assert sum(1 for f in fires if f.trader_id == 1) == 2 * max(0, after - 2)


def test_an_array_step_that_raises_for_one_symbol_stops_only_that_symbols_traders(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An indicator's array step raises because of one symbol's bars (a bug in both its
    forms, say): the step goes on per symbol, and only that symbol's traders that read the
    indicator are switched off; every other symbol and trader fires on every close."""
    from flows.indicators import arrays, library

    def poisoned(bars: Any) -> bool:
        return bool((bars.last("close") > 150.0).any())

    array_update, scalar_update = arrays.ArrayEma.update, library.Ema.update

    def array_boom(self: Any, bars: Any, rows: Any, n: Any) -> Any:
        if poisoned(bars):
            raise FloatingPointError("ema went wrong")
        return array_update(self, bars, rows, n)

    def scalar_boom(self: Any, series: BarSeries) -> float:
        if series.last("close") > 150.0:
            raise FloatingPointError("ema went wrong")
        return scalar_update(self, series)

    monkeypatch.setattr(arrays.ArrayEma, "update", array_boom)
    monkeypatch.setattr(library.Ema, "update", scalar_boom)
    symbols = ("AAAUSDT", "BADUSDT", "CCCUSDT")

    def bars(symbol: str, i: int) -> Kline:
        c = (200 if symbol == "BADUSDT" and i >= 10 else 100) * 10**8 + (i % 5) * 10**7
        return Kline(i * MIN, i * MIN + MIN - 1, c, c + 10**7, c - 10**7, c, 10**8, 10**9, 3, 0, 0)

    book = Book((_trader(1, "ema(3) > 0"), _trader(2, "close > 0")), version=1)
    shard, counters = ShardEngine(array_min_symbols=1), EngineCounters()
    fires, failures = [], []
    for i in range(20):
        f, e = shard.process([(s, "1m", bars(s, i)) for s in symbols], book, None, 0, counters)
        fires += f
        failures += e
    assert [(x.trader_id, x.symbol, x.open_ms) for x in failures] == [(1, "BADUSDT", 10 * MIN)]
    assert "ema went wrong" in failures[0].error
    count = {(t, s): sum(1 for f in fires if (f.trader_id, f.symbol) == (t, s))
             for t in (1, 2) for s in symbols}  # fmt: skip
    assert count == {(1, "AAAUSDT"): 18, (1, "BADUSDT"): 8, (1, "CCCUSDT"): 18,
                     (2, "AAAUSDT"): 20, (2, "BADUSDT"): 20, (2, "CCCUSDT"): 20}  # fmt: skip


def test_a_helper_that_raises_stops_only_its_trader(arrays: bool) -> None:
    reg = _hostile_registry()

    @reg.function("explode", args=[Arg("period", 3)])
    def explode(frame: Any, back: int, at: int) -> float:
        if frame.bars >= at:
            raise MemoryError("helper bug")
        return 1.0

    fires, failures, _ = _run(
        [_trader(1, "explode(3) > 0", reg), _trader(2, "close > 0", reg)],
        _klines(10),
        reg,
        arrays=arrays,
    )
    assert [f.trader_id for f in fires].count(2) == 10
    assert [f.trader_id for f in fires].count(1) == 2
    assert [(x.trader_id, x.open_ms) for x in failures] == [(1, 2 * MIN)]
    assert failures[0].error == "MemoryError: helper bug"


def test_a_trader_over_its_time_budget_is_switched_off_with_the_reason(arrays: bool) -> None:
    reg = _hostile_registry()
    budget_s = 0.005

    @reg.function("slow", args=[Arg("period", 1)])
    def slow(frame: Any, back: int, _: int) -> float:
        started = time.perf_counter()
        while time.perf_counter() - started <= 2 * budget_s:  # always over the budget
            pass
        return 1.0

    traders = [_trader(1, "slow(1) > 0", reg), _trader(2, "close > 0", reg)]
    fires, failures, counters = _run(traders, _klines(8), reg, budget_s=budget_s, arrays=arrays)
    assert [f.trader_id for f in fires].count(2) == 8
    assert [f.trader_id for f in fires].count(1) == SLOW_STRIKES  # then switched off
    assert [(x.trader_id, x.open_ms) for x in failures] == [(1, (SLOW_STRIKES - 1) * MIN)]
    assert "over the budget of 5 ms on 3 klines in a row" in failures[0].error
    assert counters.over_budget == 1


# ---------------------------------------------------------------- symbol patterns


def test_a_regular_expression_pattern_is_refused_and_costs_nothing() -> None:
    row = TraderRow(1, "t", "close > 0", "1m", symbols_mode="pattern",
                    symbols_pattern="((((.*)*)*)*)*Z")  # fmt: skip
    with pytest.raises(RuleError, match="character '\\(' is not allowed in a symbols pattern"):
        compile_trader(row)
    for text in ("", "BTC|ETH", "[A-Z]+", "A" * 65, "BTC\\d", "É*"):
        with pytest.raises(PatternError):
            check_glob(text)


@pytest.mark.parametrize(
    ("legacy", "glob"),
    [(".*USDT", "*USDT"), ("^BTC.*", "BTC*"), ("ETH.USDT$", "ETH?USDT"), ("*usdt", "*USDT")],
)
def test_simple_legacy_patterns_read_as_the_same_glob(legacy: str, glob: str) -> None:
    assert glob_of(legacy) == glob


_SYMBOL = st.text(alphabet="ABCU1", min_size=0, max_size=24)
_GLOB = st.text(alphabet="ABCU1*?", min_size=1, max_size=16)


@settings(max_examples=2000, derandomize=True)
@given(pattern=_GLOB, symbol=_SYMBOL)
def test_glob_matching_agrees_with_fnmatch(pattern: str, symbol: str) -> None:
    assert glob_match(pattern, symbol) == fnmatch.fnmatchcase(symbol, pattern)


def test_a_pathological_glob_on_a_long_symbol_is_decided() -> None:
    pattern = "*A" * 30 + "*B"
    assert not glob_match(pattern, "A" * 64)
    assert glob_match(pattern, "A" * 64 + "B")


def test_patterns_are_matched_once_per_book_and_symbol() -> None:
    row = TraderRow(1, "t", "close > 0", "1m", symbols_mode="pattern", symbols_pattern="*USDT")
    trader = compile_trader(row)
    book = Book((trader,), version=1)
    assert [t.id for t in book.for_symbol("BTCUSDT")] == [1]
    assert book.for_symbol("BTCEUR") == []
    assert set(book._watching) == {"BTCUSDT", "BTCEUR"}  # decided once, then read
