"""The contract between the rule checker and the evaluator: every rule the checker accepts
evaluates without raising, over any klines, wherever rules run.

Rules are generated from every helper of the library, with literal arguments drawn across
and beyond each declared range (periods from -3 to 1,200 and past TA-Lib's 100,000; factors
from 1e-300 to 1e40, zero and negatives) and expression arguments from a pool that includes
overflowing arithmetic. The checker must either refuse the rule with a RuleError (and
nothing else) or accept it; an accepted rule then runs over random and degenerate klines
(flat, zero volume, one-unit prices, prices near the largest Binance shows) in the live
engine, in ``traders test``'s preview and, for a deterministic sample, in a real backtest
through the dataflow, and must never be switched off for an error.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows.backtest.run import run_backtest
from flows.domain.kline import Kline
from flows.rules.check import parse_rule
from flows.rules.errors import RuleError
from flows.rules.helpers import DEFAULT_REGISTRY
from flows.rules.registry import HelperSpec
from flows.signals.book import Book, TraderRow, build_book, compile_trader
from flows.signals.engine import EngineCounters, SymbolEngine
from flows.signals.preview import preview

MIN = 60_000
HELPERS = DEFAULT_REGISTRY.helpers()
EXPRESSIONS = ["close", "volume", "trades", "close * 1e300 * 1e300", "rsi(14)", "-close",
               "close / (high - low)", "1e308 * 10", "ema(2)[3]"]  # fmt: skip
KINDS = ("random", "flat", "zero_volume", "tiny", "huge", "mixed")

periods = st.one_of(
    st.integers(-3, 40), st.integers(40, 1200), st.sampled_from([99_999, 100_000, 100_001])
)
factors = st.one_of(
    st.sampled_from([0, -1, 1e-300, 1e-9, 0.5, 2, 99.999, 100, 100.5, 3e37, 4e37, 1e40]),
    st.floats(1e-6, 200, allow_nan=False, allow_infinity=False),
)


def _literal(value: float | int) -> str:
    text = repr(value) if isinstance(value, float) else str(value)
    return text if not text.startswith("-") else f"({text})"


@st.composite
def rules(draw: st.DrawFn) -> str:
    spec: HelperSpec = draw(st.sampled_from(HELPERS))
    args = []
    for arg in spec.args:
        if arg.kind == "period":
            args.append(_literal(draw(periods)))
        elif arg.kind == "factor":
            args.append(_literal(draw(factors)))
        else:
            args.append(draw(st.sampled_from(EXPRESSIONS)))
    if spec.args and draw(st.booleans()):  # sometimes leave the optional ones out
        args = args[: max(spec.min_args, draw(st.integers(0, len(args))))]
    for key in sorted(spec.kwargs):
        if draw(st.booleans()):
            args.append(f"{key}={_literal(draw(factors))}")
    if draw(st.booleans()):
        args.append(f'tf="{draw(st.sampled_from(["1m", "5m"]))}"')
    call = f"{spec.name}({', '.join(args)})"
    if spec.returns == "bool":
        return call if draw(st.booleans()) else f"not {call}"
    other = draw(st.sampled_from(["0", "close", "1e308 * 1e308", "-1e308", "ema(3)"]))
    return f"{call} {draw(st.sampled_from(['>', '<', '>=', '!=']))} {other}"


def make_klines(kind: str, seed: int, n: int = 140, step: int = 1) -> list[Kline]:
    rng = random.Random(seed)
    out = []
    price = 10**10
    for i in range(n):
        shape = kind if kind != "mixed" else rng.choice(KINDS[:-1])
        if shape == "flat":
            o = h = lo = c = price
            vol = rng.choice([0, 10**8])
        elif shape == "tiny":
            o = h = lo = c = 1
            vol = 1
        elif shape == "huge":
            c = 10**18 * 9 + rng.randint(0, 10**17)
            o, h, lo, vol = c, c + 10**16, c - 10**16, 10**17
        else:
            price = max(1, price + rng.randint(-(10**9), 10**9))
            c = price
            o = max(1, c + rng.randint(-(10**7), 10**7))
            h, lo = max(o, c) + rng.randint(0, 10**7), max(1, min(o, c) - rng.randint(0, 10**7))
            vol = 0 if shape == "zero_volume" else rng.randint(1, 10**12)
        t = i * MIN * step
        trades = 0 if vol == 0 else rng.randint(1, 50)
        out.append(Kline(t, t + MIN * step - 1, o, h, lo, c, vol, vol * 3, trades, 0, 0))
    return out


def _five_minutes(minutes: list[Kline]) -> list[Kline]:
    out = []
    for i in range(0, len(minutes) - 4, 5):
        group = minutes[i : i + 5]
        out.append(
            Kline(group[0].open_ms, group[-1].close_ms, group[0].open,
                  max(k.high for k in group), min(k.low for k in group), group[-1].close,
                  sum(k.volume for k in group), sum(k.quote_volume for k in group),
                  sum(k.trades for k in group), 0, 0)
        )  # fmt: skip
    return out


def _accepted(rule: str) -> bool:
    try:
        parse_rule(rule)
    except RuleError:
        return False
    return True  # any other exception fails the test: the checker raises only RuleError


@settings(max_examples=400, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(rule=rules(), kind=st.sampled_from(KINDS), seed=st.integers(0, 2**32))
def test_every_accepted_rule_evaluates_without_raising(rule: str, kind: str, seed: int) -> None:
    if not _accepted(rule):
        return
    minutes = make_klines(kind, seed)
    fives = _five_minutes(minutes)
    for mode in ("every_close", "on_change"):
        row = TraderRow(1, "p", rule, "1m", trigger_mode=mode, cooldown_bars=0)
        book = Book((compile_trader(row),), version=1)
        engine, counters = SymbolEngine("EDGEUSDT"), EngineCounters()
        closed = [("1m", k) for k in minutes] + [("5m", k) for k in fives]
        _, failures = engine.process(closed, book, None, 0, counters)
        assert failures == [], (rule, kind, failures)
        assert counters.evaluations == len(minutes)
    by_interval = {"1m": minutes, "5m": fives}
    result = preview(rule, "1m", "EDGEUSDT", lambda iv: by_interval.get(iv, []))
    assert result.failures == [], (rule, kind, result.failures)


def _edge_rules() -> list[str]:
    """Each helper at the low and high ends of its literal ranges (lookback permitting)."""
    out = []
    for spec in HELPERS:
        for pick in ("lo", "hi"):
            args = []
            for arg in spec.args:
                if arg.kind == "period":
                    args.append(str(arg.lo if pick == "lo" else min(int(arg.upper), 40)))
                elif arg.kind == "factor":
                    args.append("1e-300" if pick == "lo" else repr(arg.upper))
                else:
                    args.append("close * 1e300 * 1e300" if pick == "hi" else "volume")
            call = f"{spec.name}({', '.join(args)})"
            rule = call if spec.returns == "bool" else f"{call} > 0 or {call} <= 0"
            if _accepted(rule):
                out.append(rule)
    return out


def _dump(path: Path, seed: int) -> None:
    """An aggTrades dump with flat stretches, gaps (zero-volume klines), one-unit and huge
    prices."""
    rng = random.Random(seed)
    lines = []
    t = 1_704_067_200_000
    agg = 1
    for minute in range(240):
        phase = (minute // 30) % 4
        if phase == 1 and minute % 3:
            continue  # a gap: the klines between are flat fills with zero volume
        for _ in range(rng.randint(1, 4)):
            if phase == 0:
                price = "0.00000001"
            elif phase == 2:
                price = f"{rng.randint(90_000_000, 92_233_720)}.00000000"
            else:
                price = f"{rng.randint(100, 102)}.00000000"
            qty = rng.choice(["0.00000001", "1.00000000", "5000.00000000"])
            at = t + minute * MIN + rng.randint(0, MIN - 1)
            lines.append((at, price, qty))
    lines.sort()
    with path.open("w") as f:
        for at, price, qty in lines:
            f.write(f"{agg},{price},{qty},{agg},{agg},{at},true,true\n")
            agg += 1


def test_every_edge_rule_runs_through_a_backtest_without_raising(
    redis_url: str, tmp_path: Path
) -> None:
    edge = _edge_rules()
    assert len(edge) > 2 * len(HELPERS) // 2  # most helpers at both ends
    path = tmp_path / "EDGEUSDT-aggTrades-2024-01-01.csv"
    _dump(path, seed=7)
    rows = [TraderRow(i + 1, f"edge {i}", rule, "1m", trigger_mode="every_close",
                      cooldown_bars=0) for i, rule in enumerate(edge)]  # fmt: skip
    result = run_backtest([path], build_book(rows), ("1m", "5m"), redis_url)
    assert result.failures == []
    assert result.stats.trades_read > 200
    assert {s.fire.trader_id for s in result.signals}  # the run evaluated and fired


@settings(
    max_examples=10,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(drawn=st.lists(rules().filter(_accepted), min_size=30, max_size=30),
       seed=st.integers(0, 1000))  # fmt: skip
def test_generated_rules_run_through_a_backtest_without_raising(
    redis_url: str, tmp_path_factory: pytest.TempPathFactory, drawn: list[str], seed: int
) -> None:
    """Rules the checker accepts, generated as above, as traders of one real backtest through the
    dataflow over a dump with flat stretches, gaps, one-unit and huge prices."""
    accepted = list(dict.fromkeys(drawn))
    path = tmp_path_factory.mktemp("dump") / "EDGEUSDT-aggTrades-2024-01-01.csv"
    _dump(path, seed=seed)
    rows = [TraderRow(i + 1, f"drawn {i}", rule, "1m", trigger_mode="on_change",
                      cooldown_bars=0) for i, rule in enumerate(accepted)]  # fmt: skip
    book = build_book(rows)
    assert len(book.traders) == len(accepted) > 5 and not book.errors
    result = run_backtest([path], book, ("1m", "5m"), redis_url)
    assert result.failures == [], (accepted, result.failures)
    assert result.stats.trades_read > 200
    assert sum(result.stats.klines_closed.values()) > 200  # the rules' klines closed
