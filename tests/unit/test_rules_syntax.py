"""Rule language front end: tokenizer, parser, checker, limits and hostile input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.rules import (
    Arg,
    Binary,
    Bool,
    Call,
    Compare,
    Index,
    Keyword,
    Name,
    Number,
    Registry,
    RuleError,
    String,
    Unary,
    parse,
    parse_rule,
)
from flows.rules.check import to_text
from flows.rules.helpers import DEFAULT_REGISTRY

ISSUE_HELPERS = [
    "sma",
    "ema",
    "wma",
    "rsi",
    "macd",
    "macd_signal",
    "macd_hist",
    "bb_upper",
    "bb_middle",
    "bb_lower",
    "stoch_k",
    "stoch_d",
    "stochrsi_k",
    "stochrsi_d",
    "adx",
    "atr",
    "cci",
    "mfi",
    "obv",
    "highest",
    "lowest",
    "avg_volume",
    "vwap",
    "vwap_upper",
    "vwap_lower",
    "pvi",
    "hvn_near",
    "hvn_above",
    "hvn_below",
    "hvn_count",
    "rsi_bullish_divergence",
    "rsi_bearish_divergence",
    "engulfing",
    "crosses_above",
    "crosses_below",
    "change",
    "pct_change",
]


def error_of(text: str) -> RuleError:
    with pytest.raises(RuleError) as info:
        parse_rule(text)
    return info.value


# ---------------------------------------------------------------------------- happy path


@pytest.mark.parametrize(
    "text",
    [
        "rsi(14) < 30 and crosses_above(ema(9), ema(21))",
        "close > highest(high, 20)[1]",
        'rsi(14, tf="1h") > 50',
        "not (volume > 2 * avg_volume(20))",
        "price_change_pct_24h > 5 or -close < -3.5e2",
        "true",
        "engulfing() > 0 and hvn_near()",
        "(close > open) == (close[1] > open[1])",
        'bb_upper(20, 2.5) > close and vwap_upper(mult=1.5, tf="4h") > vwap()',
        "change(close, 3) % 2 != 0 or pct_change(quote_volume_24h) >= 1e-3",
    ],
)
def test_issue_examples_parse(text: str) -> None:
    parse_rule(text)


def test_checked_rule_summary() -> None:
    rule = parse_rule('rsi(14) < 30 and crosses_above(ema(9), ema(21)) and rsi(14, tf="1h") > 50')
    assert rule.helper_calls == (
        "rsi(14)",
        "ema(9)",
        "ema(21)",
        "crosses_above(ema(9), ema(21))",
        'rsi(14, tf="1h")',
    )
    assert rule.lookback == 22  # ema(21) plus one bar for the cross
    assert rule.intervals == frozenset({"1h"})
    assert rule.series == frozenset()


def test_defaults_are_filled_in_normalized_calls() -> None:
    rule = parse_rule("rsi() > 50 and macd() > macd(12, 26, 9) and vwap_upper() > close")
    assert rule.helper_calls == ("rsi(14)", "macd(12, 26, 9)", "vwap_upper(0, mult=1)")
    assert rule.series == frozenset({"close"})


def test_lookback_adds_index_and_nested_helpers() -> None:
    assert parse_rule("close > highest(high, 20)[1]").lookback == 20
    assert parse_rule("highest(rsi(14), 20)[5] > 70").lookback == 15 + 19 + 5
    assert parse_rule("close[1000] > 0").lookback == 1000


def test_all_issue_helpers_are_declared() -> None:
    assert set(ISSUE_HELPERS) <= DEFAULT_REGISTRY.helper_names
    spec = DEFAULT_REGISTRY.get("highest")
    assert spec is not None
    assert (spec.min_args, spec.max_args, spec.returns) == (2, 2, "number")
    assert spec.keywords == {"tf"}


def test_registry_decorator_adds_a_helper() -> None:
    registry = Registry()

    @registry.helper(
        name="zscore",
        args=("number", Arg("period", 20)),
        kwargs={"clip": Arg("factor", 3)},
        returns="number",
        lookback=lambda a: int(a[1] or 0),
    )
    def zscore() -> float:
        return 0.0

    spec = registry.get("zscore")
    assert spec is not None and spec.impl is zscore
    rule = parse_rule("zscore(close, clip=2) > 1", registry)
    assert rule.helper_calls == ("zscore(close, 20, clip=2)",)
    assert rule.lookback == 20
    with pytest.raises(RuleError, match="unknown name 'rsi'"):
        parse_rule("rsi(14) > 1", registry)
    with pytest.raises(ValueError, match="already declared"):
        registry.declare("zscore")
    with pytest.raises(ValueError, match="invalid helper name"):
        registry.declare("__import__")


# ---------------------------------------------------------------------------- AST shapes


def test_precedence_of_arithmetic() -> None:
    assert parse("1 + 2 * 3") == Binary(
        "+", Number(1, 0), Binary("*", Number(2, 4), Number(3, 8), 6), 2
    )
    assert to_text(parse("1 * 2 + 3 % 4 - 5 / 6")) == "(((1 * 2) + (3 % 4)) - (5 / 6))"


def test_left_associativity() -> None:
    assert to_text(parse("1 - 2 - 3")) == "((1 - 2) - 3)"
    assert to_text(parse("8 / 4 / 2")) == "((8 / 4) / 2)"
    assert to_text(parse("a or b or c")) == "((a or b) or c)"


def test_boolean_precedence() -> None:
    tree = parse("a or b and not c < 1")
    assert tree == Binary(
        "or",
        Name("a", 0),
        Binary(
            "and",
            Name("b", 5),
            Unary("not", Compare("<", Name("c", 15), Number(1, 19), 17), 11),
            7,
        ),
        2,
    )


def test_unary_minus_binds_tighter_than_product_and_index_tighter_than_minus() -> None:
    assert to_text(parse("-a * b")) == "(-a * b)"
    assert parse("-close[2]") == Unary("-", Index(Name("close", 1), 2, 6), 0)
    assert parse("--1") == Unary("-", Unary("-", Number(1, 2), 1), 0)


def test_parentheses_override_precedence() -> None:
    assert to_text(parse("(1 + 2) * 3")) == "((1 + 2) * 3)"
    assert to_text(parse("not (a and b)")) == "not (a and b)"


def test_calls_indexes_keywords_and_literals() -> None:
    tree = parse('rsi(14, tf="1h")[2] > 1.5e1')
    assert tree == Compare(
        ">",
        Index(Call("rsi", (Number(14, 4),), (Keyword("tf", String("1h", 11), 8),), 0), 2, 16),
        Number(15.0, 22),
        20,
    )
    assert parse("true != false") == Compare("!=", Bool(True, 0), Bool(False, 8), 5)
    assert parse("f()") == Call("f", (), (), 0)
    assert isinstance(parse("1").pos, int)


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("text", "position", "message"),
    [
        ("", 0, "empty rule"),
        ("   ", 0, "empty rule"),
        ("close > 1 $", 10, "unexpected character '$'"),
        ("close > 1.", 8, "malformed number: digits must follow '.'"),
        ("close > 1e", 8, "malformed number: digits must follow the exponent"),
        ("close > 12abc", 8, "malformed number"),
        ("close > 1.2.3", 8, "malformed number"),
        ('rsi(14, tf="1h) > 1', 11, "unterminated string"),
        ('rsi(14, tf="abcdefghijklmnopq")', 11, "string is too long (max 16 characters)"),
        ('rsi(14, tf="a\\n")', 13, "character '\\\\' is not allowed in a string"),
        ("close >", 7, "expected a value, found end of rule"),
        ("close > )", 8, "expected a value, found ')'"),
        ("(close > 1", 10, "missing ')' to close '(' at column 1"),
        ("rsi(14 15) > 1", 7, "expected ',' between arguments, found '15'"),
        ("rsi(14", 6, "missing ')' to close '(' at column 4 (the call of rsi)"),
        ("close > 1 close", 10, "expected end of rule, found 'close'"),
        ("close = 1", 6, "expected end of rule, found '='; use '==' to compare"),
        ("1 < 2 < 3", 6, "comparisons cannot be chained; combine them with 'and'"),
        ("close[x] > 1", 6, "a bar index must be a non-negative integer literal, like close[1]"),
        ("close[1 > 1", 8, "expected ']' after the bar index, found '>'"),
        ('rsi(tf="1h", 14) > 1', 13, "positional argument after a keyword argument"),
        ('rsi(tf="1h", tf="4h") > 1', 13, "keyword 'tf' is given twice"),
        ('close > "x"', 8, 'strings are only allowed as keyword values, like tf="1h"'),
        ("close ** 2 > 1", 7, "expected a value, found '*'"),
        ("close && open", 6, "unexpected character '&'"),
        ("!close", 0, "unexpected character '!'"),
        ("_x > 1", 0, "names cannot start with '_'"),
        ("a" * 65 + " > 1", 0, "name is too long (max 64 characters)"),
        # checker
        ("rsii(14) < 30", 0, "unknown name 'rsii'; did you mean 'rsi'?"),
        ("close > 1 and emaa(9) > 1", 14, "unknown name 'emaa'; did you mean 'ema'?"),
        ("clsoe > 1", 0, "unknown name 'clsoe'; did you mean 'close'?"),
        ("zzz > 1", 0, "unknown name 'zzz'"),
        ("rsi > 1", 0, "'rsi' is a helper; call it like rsi(...)"),
        ("close(1) > 1", 0, "'close' is a series, not a helper; use close or close[1]"),
        ("rsi(14, 15) > 1", 0, "rsi takes at most 1 argument, got 2"),
        ("highest(high) > 1", 0, "highest takes 2 arguments, got 1"),
        ("change() > 1", 0, "change takes 1 to 2 arguments, got 0"),
        ("obv(1) > 1", 0, "obv takes 0 arguments, got 1"),
        ("rsi(14, length=3) > 1", 8, "rsi has no keyword 'length' (allowed: tf)"),
        (
            'rsi(14, tf="2m") > 1',
            11,
            'tf must be a Binance interval in quotes, like tf="1h" '
            "(one of 1s, 1m, 3m, 5m, 15m, 30m, 1h, 2h, 4h, 6h, 8h, 12h, 1d, 3d, 1w, 1M)",
        ),
        (
            "rsi(14, tf=1) > 1",
            11,
            'tf must be a Binance interval in quotes, like tf="1h" '
            "(one of 1s, 1m, 3m, 5m, 15m, 30m, 1h, 2h, 4h, 6h, 8h, 12h, 1d, 3d, 1w, 1M)",
        ),
        ("rsi(0) > 1", 4, "argument 1 of rsi must be a positive whole number of bars, like 14"),
        ("rsi(14.0) > 1", 4, "argument 1 of rsi must be a positive whole number of bars, like 14"),
        ("rsi(close) > 1", 4, "argument 1 of rsi must be a positive whole number of bars, like 14"),
        ("rsi(-3) > 1", 4, "argument 1 of rsi must be a positive whole number of bars, like 14"),
        ("bb_upper(20, 0) > 1", 13, "argument 2 of bb_upper must be a positive number, like 2"),
        ('vwap_upper(mult="2") > 1', 16, "keyword 'mult' of vwap_upper must not be a string"),
        (
            "vwap_upper(mult=close) > 1",
            16,
            "keyword 'mult' of vwap_upper must be a positive number, like 2",
        ),
        ("1[1] > 0", 1, "only series and helper values can be indexed"),
    ],
)
def test_error_positions_and_messages(text: str, position: int, message: str) -> None:
    err = error_of(text)
    assert (err.position, err.message) == (position, message)
    assert str(err) == f"rule error at {position}: {message}"
    assert isinstance(err, ValueError)


def test_error_str_format() -> None:
    err = error_of("close > 1 and rsii(14) < 3")
    assert str(err) == "rule error at 14: unknown name 'rsii'; did you mean 'rsi'?"


@pytest.mark.parametrize(
    ("text", "position", "message"),
    [
        ("rsi(14) + (close > 1) > 1", 8, "'+' needs a number on the right, found a condition"),
        ("(close > 1) * 2 > 1", 12, "'*' needs a number on the left, found a condition"),
        ("close and true", 6, "'and' needs a condition on the left, found a number"),
        ("true or 1", 5, "'or' needs a condition on the right, found a number"),
        ("not close", 0, "'not' needs a condition, found a number"),
        ("-(close > 1)", 0, "'-' needs a number, found a condition"),
        ("true < false", 5, "'<' needs a number on the left, found a condition"),
        (
            "close == true",
            6,
            ("'==' needs two values of the same kind, found a number and a condition"),
        ),
        ("close + 1", 6, "a rule must be a condition, found a number"),
        ("rsi(14)", 0, "a rule must be a condition, found a number"),
        (
            "crosses_above(close > 1, close)",
            20,
            "argument 1 of crosses_above must be a number, found a condition",
        ),
        (
            "highest(hvn_near(), 3) > 1",
            8,
            "argument 1 of highest must be a number, found a condition",
        ),
        ("crosses_above(close, open) > 1", 27, "'>' needs a number on the left, found a condition"),
    ],
)
def test_type_errors(text: str, position: int, message: str) -> None:
    err = error_of(text)
    assert (err.position, err.message) == (position, message)


# ---------------------------------------------------------------------------- limits


def test_text_length_limit() -> None:
    ok = "close > 1 and " * 10 + "true"
    parse_rule(ok)
    err = error_of("close > 1" + " " * 2000)
    assert (err.position, err.message) == (2000, "rule is too long (max 2000 characters)")


def test_ten_thousand_parentheses_is_a_clean_error() -> None:
    err = error_of("(" * 10_000 + "true" + ")" * 10_000)
    assert err.message == "rule is too long (max 2000 characters)"


@pytest.mark.parametrize(
    "text",
    [
        "(" * 990 + "true" + ")" * 990,
        "not " * 400 + "true",
        "-" * 1990 + "1 > 0",
        "abs(" * 390 + "1" + ")" * 390,
        "(" * 1990,
    ],
)
def test_deep_nesting_within_text_limit(text: str) -> None:
    err = error_of(text)
    assert err.message == "rule is nested too deeply (max depth 32)"


def test_depth_limit_boundary() -> None:
    parse_rule("(" * 32 + "true" + ")" * 32)
    err = error_of("(" * 33 + "true" + ")" * 33)
    assert (err.position, err.message) == (32, "rule is nested too deeply (max depth 32)")
    # a left-leaning operator chain is parsed in a loop but the tree is still deep
    err = error_of(" + ".join(["1"] * 40) + " > 0")
    assert err.message == "rule is nested too deeply (max depth 32)"


def balanced_and(terms: list[str]) -> str:
    if len(terms) == 1:
        return terms[0]
    half = len(terms) // 2
    return f"({balanced_and(terms[:half])} and {balanced_and(terms[half:])})"


def test_node_count_limit() -> None:
    parse_rule(balanced_and(["close < 2"] * 50))  # 50 * 3 + 49 = 199 nodes, depth 8
    err = error_of(balanced_and(["close < 2"] * 51))  # 202 nodes
    assert err.message == "rule is too large (max 200 nodes)"


@pytest.mark.parametrize(
    ("text", "position", "message"),
    [
        ("close > 1e999", 8, "number 1e999 is out of range"),
        ("close > " + "9" * 5000, 2000, "rule is too long (max 2000 characters)"),
        ("close > " + "9" * 33, 8, "number is too long (max 32 characters)"),
        ("close > 1." + "0" * 40, 8, "number is too long (max 32 characters)"),
    ],
)
def test_huge_numbers(text: str, position: int, message: str) -> None:
    err = error_of(text)
    assert (err.position, err.message) == (position, message)


def test_big_but_bounded_numbers_are_fine() -> None:
    parse_rule("close > " + "9" * 32)
    parse_rule("close > 1e308 and close < 1e-320")


def test_lookback_limit() -> None:
    err = error_of("close[1001] > 1")
    assert (err.position, err.message) == (5, "rule needs 1001 bars of history (max 1000)")
    err = error_of("sma(1001) > 1")
    assert (err.position, err.message) == (0, "rule needs 1001 bars of history (max 1000)")
    err = error_of("sma(990)[11] > 1")
    assert (err.position, err.message) == (8, "rule needs 1001 bars of history (max 1000)")
    err = error_of("close > 1 and rsi(" + "9" * 31 + ") > 1")
    assert (err.position, err.message) == (
        18,
        f"argument 1 of rsi must be from 2 to 100000 bars, got {10**31 - 1}",
    )


# ---------------------------------------------------------------------------- escapes


@pytest.mark.parametrize(
    "text",
    [
        '__import__("os")',
        '__import__("os").system("ls")',
        "().__class__",
        "close.__class__",
        "close.__class__.__mro__",
        "open[-1] > 1",
        "close[1.5] > 1",
        "close[1e3] > 1",
        '"a" * 1000000',
        "lambda: 1",
        "lambda x: x",
        "close > 1; import os",
        "close > 1\nimport os",
        "close > 1\n__import__('os')",
        "`ls`",
        "close > 1 if true else 0",
        "[c for c in ()]",
        "exec('1')",
        "eval",
        "getattr(close, 'x')",
        "сlose > 1",  # Cyrillic es
        "clоse > 1",  # Cyrillic o
        "ｃlose > 1",  # fullwidth c
        "rsi(14) ＞ 30",  # fullwidth greater-than
        "close > 1 and\u00a0true",  # no-break space
        "close\u200b > 1",  # zero-width space
        "close > 1 # comment",
        "close > 'x'",
        'rsi(14, tf="1h\\"") > 1',
        "{}.keys()",
        "close @ close",
        "close > 1 and True",
        "None",
    ],
)
def test_escape_attempts_are_rejected(text: str) -> None:
    with pytest.raises(RuleError):
        parse_rule(text)


# ---------------------------------------------------------------------------- fuzzing

GRAMMARISH = st.lists(
    st.sampled_from(
        [
            "close",
            "open",
            "volume",
            "rsi",
            "ema",
            "highest",
            "crosses_above",
            "rsii",
            "tf",
            "and",
            "or",
            "not",
            "true",
            "false",
            "(",
            ")",
            "[",
            "]",
            ",",
            "=",
            "<",
            "<=",
            ">",
            ">=",
            "==",
            "!=",
            "+",
            "-",
            "*",
            "/",
            "%",
            "0",
            "1",
            "14",
            "1.5",
            "2e3",
            "1e999",
            '"1h"',
            '"',
            " ",
            "_",
            ".",
            "9" * 40,
        ]
    ),
    max_size=60,
).map("".join)


def _only_rule_errors(text: str) -> None:
    try:
        parse_rule(text)
    except RuleError as err:
        assert 0 <= err.position <= min(len(text), 2000)
        assert str(err).startswith(f"rule error at {err.position}: ")


@settings(max_examples=500, derandomize=True, deadline=None)
@given(GRAMMARISH)
def test_fuzz_grammarish_text(text: str) -> None:
    _only_rule_errors(text)


@settings(max_examples=500, derandomize=True, deadline=None)
@given(st.text(max_size=300))
def test_fuzz_random_text(text: str) -> None:
    _only_rule_errors(text)


@settings(max_examples=500, derandomize=True, deadline=None)
@given(st.text(alphabet="()-not 1+[]", max_size=2100))
def test_fuzz_nesting_text(text: str) -> None:
    _only_rule_errors(text)
