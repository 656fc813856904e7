"""Trader rule language, front end only: text -> tokens -> AST -> checked rule.

User text is never handed to Python's own compiler: a small tokenizer and a
precedence-climbing parser build frozen AST nodes, and ``check`` validates them against a
registry of declared helpers; ``flows.rules.evaluate`` compiles a checked rule into closures.

>>> rule = parse_rule('rsi(14) < 30 and close > highest(high, 20)[1]')
>>> rule.helper_calls, rule.lookback
(('rsi(14)', 'highest(high, 20)'), 20)
"""

from flows.rules.check import CheckedRule, check, parse_rule
from flows.rules.errors import RuleError
from flows.rules.helpers import DEFAULT_REGISTRY
from flows.rules.registry import Arg, HelperSpec, Registry
from flows.rules.syntax import (
    Binary,
    Bool,
    Call,
    Compare,
    Expr,
    Index,
    Keyword,
    Name,
    Number,
    String,
    Unary,
    parse,
    tokenize,
)

__all__ = [
    "DEFAULT_REGISTRY",
    "Arg",
    "Binary",
    "Bool",
    "Call",
    "CheckedRule",
    "Compare",
    "Expr",
    "HelperSpec",
    "Index",
    "Keyword",
    "Name",
    "Number",
    "Registry",
    "RuleError",
    "String",
    "Unary",
    "check",
    "parse",
    "parse_rule",
    "tokenize",
]
