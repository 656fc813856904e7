"""Resource limits of compiled rules: what cannot be compiled, and what is bounded when run.

Wall-clock times of the same list are printed by bench/rules_bench.py; here each attempt is
either rejected with a RuleError (before anything runs) or compiled with a cost under the
limit and evaluated to an answer on a full frame."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.domain.kline import Kline
from flows.rules.errors import RuleError
from flows.rules.evaluate import MAX_COST, compile_rule
from flows.rules.frame import Frame
from flows.rules.helpers import DEFAULT_REGISTRY

REJECTED = [
    "highest(highest(highest(close, 100), 100), 100) > 1",  # cost explodes with nesting
    "highest(highest(close, 200), 200) > 1",
    "lowest(sma(10) + sma(20) + sma(30) + sma(40), 1000) > 1",
    "close[1001] > 1",  # lookback
    "highest(close, 1002) > 1",
    "sma(5000) > 1",
    'rsi(14, tf="2m") > 1',  # not an interval
    '__import__("os") > 1',
    "close.__class__ > 1",
    "(" * 500 + "close" + ")" * 500 + " > 1",
    "close > " + " + ".join(["1"] * 300),  # node count
    "x" * 3000,
]

BOUNDED = [
    "highest(close, 1000) > lowest(close, 1000)",
    "highest(sma(5) - sma(10), 100) > 0",
    "close / 0 > 1",  # undefined: not ready, never an exception
    "close % 0 > 1",
    "1e308 * 1e308 > close",
    "-1e308 * 1e308 < close",
    "close[1000] > 0",
    "crosses_above(highest(close, 50), lowest(close, 50)[1]) or pct_change(close, 999) > 0",
]


def full_frame(rule_text: str) -> tuple[object, dict[str, Frame]]:
    program = compile_rule(rule_text, "1m")
    frames = {
        iv: Frame(iv, req, DEFAULT_REGISTRY.factories) for iv, req in program.requirements.items()
    }
    price = 10**9
    for i in range(1_200):
        price += (i * 7919) % 201 - 100
        k = Kline(i * 60_000, i * 60_000 + 59_999, price, price + 50, price - 50, price, 10**8,
                  price, 1, 0, 0)  # fmt: skip
        for frame in frames.values():
            frame.on_bar(k)
    return program, frames


@pytest.mark.parametrize("text", REJECTED)
def test_hostile_rules_are_rejected_before_anything_runs(text: str) -> None:
    with pytest.raises(RuleError):
        compile_rule(text, "1m")


@pytest.mark.parametrize("text", BOUNDED)
def test_heavy_rules_have_a_bounded_cost_and_an_answer(text: str) -> None:
    program, frames = full_frame(text)
    assert program.cost <= MAX_COST  # type: ignore[attr-defined]
    result = program.holds(frames)  # type: ignore[attr-defined]
    assert result in (True, False, None)


def test_division_by_zero_is_not_ready_rather_than_an_error() -> None:
    program, frames = full_frame("close / 0 > 1")
    assert program.holds(frames) is None  # type: ignore[attr-defined]


TOKENS = st.sampled_from(
    [
        "close",
        "open",
        "1",
        "0",
        "2.5",
        "+",
        "-",
        "*",
        "/",
        "%",
        "(",
        ")",
        "[1]",
        ">",
        "<",
        "and",
        "or",
        "not",
        "rsi(14)",
        "sma(",
        ",",
        "3",
        ")",
        "highest(",
        "crosses_above(",
        'tf="5m"',
        "ema(9)",
        "vwap()",
        "engulfing()",
        "hvn_near()",
        "change(",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(TOKENS, min_size=1, max_size=25))
def test_any_rule_that_compiles_evaluates_to_an_answer(tokens: list[str]) -> None:
    text = " ".join(tokens)
    try:
        program = compile_rule(text, "1m")
    except RuleError:
        return
    frames = {
        iv: Frame(iv, req, DEFAULT_REGISTRY.factories) for iv, req in program.requirements.items()
    }
    price = 10**9
    for i in range(300):
        price += (i * 7919) % 201 - 100
        k = Kline(i * 300_000, i * 300_000 + 299_999, price, price + 50, price - 50, price,
                  10**8, price, 1, 0, 0)  # fmt: skip
        for iv, frame in frames.items():
            if iv == "5m":
                frame.on_bar(k)
            else:
                frame.on_bar(Kline(i * 300_000, i * 300_000 + 59_999, *k[2:]))
        assert program.holds(frames) in (True, False, None)
