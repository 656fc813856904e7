"""Unbalanced brackets in a rule are named as such: which one is open (and where), or which
')' closes nothing, with the error's position where the fix goes."""

from __future__ import annotations

import contextlib

import pytest

from flows.rules import RuleError, parse, parse_rule
from flows.rules.errors import line_column, place


def error_of(text: str) -> RuleError:
    with pytest.raises(RuleError) as info:
        parse_rule(text)
    return info.value


@pytest.mark.parametrize(
    ("text", "opener_at", "message"),
    [
        # a call left open after its arguments: not "expected ','"
        ("rsi(14 > 30", 3, "missing ')' to close '(' at column 4 (the call of rsi)"),
        ("close > ema(close, 20", 11, "missing ')' to close '(' at column 12 (the call of ema)"),
        ("rsi(", 3, "missing ')' to close '(' at column 4 (the call of rsi)"),
        ('rsi(14, tf="1h"', 3, "missing ')' to close '(' at column 4 (the call of rsi)"),
        # the innermost open bracket is the one reported
        ("crosses_above(ema(12), ema(26)", 13,
         "missing ')' to close '(' at column 14 (the call of crosses_above)"),
        ("(close > open and (rsi(14) < 30)", 0, "missing ')' to close '(' at column 1"),
        ("(close > open and (rsi(14) < 30", 18, "missing ')' to close '(' at column 19"),
        ("close[1", 5, "missing ']' to close '[' at column 6"),
        # several lines: the line too
        ("close > open\nand (rsi(14) < 30", 17, "missing ')' to close '(' at line 2, column 5"),
    ],
)  # fmt: skip
def test_an_open_bracket_is_named_with_its_column(text: str, opener_at: int, message: str) -> None:
    err = error_of(text)
    assert err.message == message
    assert err.position == len(text)  # where the missing ')' goes: the end of the rule
    assert text[opener_at] in "([" and place(text, opener_at) in message
    # once that bracket is closed, the parser has no more to say about it
    closed = text + ("]" if text[opener_at] == "[" else ")")
    with contextlib.suppress(RuleError):
        parse(closed)
        return
    assert error_of(closed).message != message


@pytest.mark.parametrize(
    ("text", "extra_at"),
    [
        ("rsi(14)) < 30", 7),
        ("close > open)", 12),
        ("(close > open)) and rsi(14) < 30", 14),
        ("max_of_two > 1)".replace("max_of_two", "highest(high, 20)"), 21),
    ],
)
def test_an_extra_close_is_named_at_its_own_position(text: str, extra_at: int) -> None:
    err = error_of(text)
    assert text[extra_at] == ")"
    assert err.position == extra_at
    assert err.message == f"unmatched ')' at column {extra_at + 1}: no '(' is open there"
    parse(text[:extra_at] + text[extra_at + 1 :])  # without it, the rule parses


def test_other_argument_mistakes_keep_their_messages() -> None:
    assert error_of("rsi(14 15) > 1").message == "expected ',' between arguments, found '15'"
    assert error_of("rsi(14,").message == "expected a value, found end of rule"


def test_line_and_column_count_from_one() -> None:
    assert line_column("abc", 0) == (1, 1)
    assert line_column("ab\ncd", 4) == (2, 2)
    assert line_column("ab", 99) == (1, 3)  # past the end: just after the last character
    assert place("ab\ncd", 3) == "line 2, column 1"
    assert place("abcd", 3) == "column 4"
