"""Name, arity and type checks over a parsed rule, plus its history needs.

Two value types exist: numbers and conditions (bool). Arithmetic and ordering
comparisons take numbers, ``and``/``or``/``not`` take conditions, ``==``/``!=`` take two
values of the same type, and a whole rule must be a condition.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

from flows.domain.intervals import INTERVAL_NAMES
from flows.rules.errors import RuleError
from flows.rules.helpers import DEFAULT_REGISTRY
from flows.rules.registry import Arg, HelperSpec, Registry, ValueType
from flows.rules.syntax import (
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
)

MAX_LOOKBACK = 1000

_KIND_WORDS: dict[ValueType, str] = {"number": "a number", "bool": "a condition"}


@dataclass(frozen=True, slots=True)
class CallInfo:
    """A checked helper call: its canonical text and what computing it needs."""

    text: str  # e.g. 'rsi(14, tf="1h")', defaults filled in
    spec: HelperSpec
    literals: tuple[int | float | None, ...]  # positional values, defaults filled in
    keywords: dict[str, int | float | None]  # declared keywords' literal values
    tf: str | None


@dataclass(frozen=True, slots=True)
class CheckedRule:
    ast: Expr
    lookback: int  # earlier bars the rule needs (max over the tree)
    helper_calls: tuple[str, ...]  # distinct normalized calls, inner calls first
    series: frozenset[str]  # bare series names used
    intervals: frozenset[str]  # tf= values used
    calls: dict[Call, CallInfo]  # every call node of the tree


def parse_rule(
    text: str, registry: Registry = DEFAULT_REGISTRY, condition: bool = True
) -> CheckedRule:
    """Parse and check rule text; raises RuleError (and only RuleError) on bad input.

    ``condition=False`` accepts any value (a number to plot, say) instead of a condition."""
    return check(parse(text), registry, condition)


def check(ast: Expr, registry: Registry, condition: bool = True) -> CheckedRule:
    checker = _Checker(registry)
    kind, lookback = checker.visit(ast)
    if condition and kind != "bool":
        raise RuleError(ast.pos, f"a rule must be a condition, found {_KIND_WORDS[kind]}")
    return CheckedRule(
        ast=ast,
        lookback=lookback,
        helper_calls=tuple(checker.calls),
        series=frozenset(checker.series),
        intervals=frozenset(checker.intervals),
        calls=checker.call_info,
    )


def to_text(node: Expr) -> str:
    """Canonical text of an expression (binary operations fully parenthesized)."""
    if isinstance(node, Number):
        return _number_text(node.value)
    if isinstance(node, Bool):
        return "true" if node.value else "false"
    if isinstance(node, String):
        return f'"{node.value}"'
    if isinstance(node, Name):
        return node.name
    if isinstance(node, Call):
        parts = [to_text(a) for a in node.args]
        parts += [f"{k.name}={to_text(k.value)}" for k in node.kwargs]
        return f"{node.name}({', '.join(parts)})"
    if isinstance(node, Index):
        return f"{to_text(node.target)}[{node.bars}]"
    if isinstance(node, Unary):
        return f"-{to_text(node.operand)}" if node.op == "-" else f"not {to_text(node.operand)}"
    return f"({to_text(node.left)} {node.op} {to_text(node.right)})"


def _number_text(value: int | float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


def _suggest(name: str, pool: Iterable[str]) -> str:
    matches = difflib.get_close_matches(name, sorted(pool), n=1, cutoff=0.6)
    return f"; did you mean '{matches[0]}'?" if matches else ""


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _arity(spec: HelperSpec) -> str:
    if spec.min_args == spec.max_args:
        return _plural(spec.max_args, "argument")
    if spec.min_args == 0:
        return f"at most {_plural(spec.max_args, 'argument')}"
    return f"{spec.min_args} to {spec.max_args} arguments"


class _Checker:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.calls: dict[str, None] = {}  # ordered set
        self.series: set[str] = set()
        self.intervals: set[str] = set()
        self.call_info: dict[Call, CallInfo] = {}

    def visit(self, node: Expr) -> tuple[ValueType, int]:
        """Type and lookback of a node (recursion is bounded by the parser's depth cap)."""
        kind, lookback = self._visit(node)
        if lookback > MAX_LOOKBACK:
            raise RuleError(node.pos, f"rule needs {lookback} bars of history (max {MAX_LOOKBACK})")
        return kind, lookback

    def _visit(self, node: Expr) -> tuple[ValueType, int]:
        if isinstance(node, Number):
            return "number", 0
        if isinstance(node, Bool):
            return "bool", 0
        if isinstance(node, String):
            raise RuleError(node.pos, 'strings are only allowed as keyword values, like tf="1h"')
        if isinstance(node, Name):
            return self.name(node)
        if isinstance(node, Call):
            return self.call(node)
        if isinstance(node, Index):
            if isinstance(node.target, Number | Bool | String):
                raise RuleError(node.pos, "only series and helper values can be indexed")
            kind, lookback = self.visit(node.target)
            return kind, lookback + node.bars
        if isinstance(node, Unary):
            want: ValueType = "number" if node.op == "-" else "bool"
            kind, lookback = self.visit(node.operand)
            if kind != want:
                raise RuleError(
                    node.pos,
                    f"'{node.op}' needs {_KIND_WORDS[want]}, found {_KIND_WORDS[kind]}",
                )
            return want, lookback
        left, left_lb = self.visit(node.left)
        right, right_lb = self.visit(node.right)
        lookback = max(left_lb, right_lb)
        if isinstance(node, Compare):
            if node.op in ("==", "!="):
                if left != right:
                    raise RuleError(
                        node.pos,
                        f"'{node.op}' needs two values of the same kind, found "
                        f"{_KIND_WORDS[left]} and {_KIND_WORDS[right]}",
                    )
                return "bool", lookback
            want = "number"
        else:
            want = "bool" if node.op in ("and", "or") else "number"
        for side, kind in (("left", left), ("right", right)):
            if kind != want:
                raise RuleError(
                    node.pos,
                    f"'{node.op}' needs {_KIND_WORDS[want]} on the {side}, "
                    f"found {_KIND_WORDS[kind]}",
                )
        return ("bool" if isinstance(node, Compare) else want), lookback

    def name(self, node: Name) -> tuple[ValueType, int]:
        if node.name in self.registry.series:
            self.series.add(node.name)
            return "number", 0
        if self.registry.get(node.name) is not None:
            raise RuleError(node.pos, f"'{node.name}' is a helper; call it like {node.name}(...)")
        raise RuleError(
            node.pos,
            f"unknown name '{node.name}'{_suggest(node.name, self.registry.names)}",
        )

    def call(self, node: Call) -> tuple[ValueType, int]:
        if node.name in self.registry.series:
            raise RuleError(
                node.pos,
                f"'{node.name}' is a series, not a helper; use {node.name} or {node.name}[1]",
            )
        spec = self.registry.get(node.name)
        if spec is None:
            pool = self.registry.helper_names or self.registry.names
            raise RuleError(node.pos, f"unknown name '{node.name}'{_suggest(node.name, pool)}")
        given = len(node.args)
        if not spec.min_args <= given <= spec.max_args:
            raise RuleError(node.pos, f"{node.name} takes {_arity(spec)}, got {given}")
        lookback = 0
        literals: list[int | float | None] = []
        parts: list[str] = []
        for index, declared in enumerate(spec.args):
            label = f"argument {index + 1} of {node.name}"
            if index < given:
                value, arg_lb = self.argument(node.args[index], declared, label)
                lookback = max(lookback, arg_lb)
                parts.append(to_text(node.args[index]))
            else:
                value = declared.default
                parts.append(_number_text(value if value is not None else 0))
            literals.append(value)
        keywords = {k.name: k for k in node.kwargs}
        keyword_values: dict[str, int | float | None] = {}
        for keyword in node.kwargs:
            if keyword.name not in spec.keywords:
                allowed = ", ".join(sorted(spec.keywords))
                raise RuleError(
                    keyword.pos,
                    f"{node.name} has no keyword '{keyword.name}' (allowed: {allowed})",
                )
        for key in sorted(spec.kwargs):
            declared = spec.kwargs[key]
            if key in keywords:
                label = f"keyword '{key}' of {node.name}"
                self.not_a_string(keywords[key], label)
                value, arg_lb = self.argument(keywords[key].value, declared, label)
                lookback = max(lookback, arg_lb)
                keyword_values[key] = value
                parts.append(f"{key}={to_text(keywords[key].value)}")
            elif declared.default is not None:
                keyword_values[key] = declared.default
                parts.append(f"{key}={_number_text(declared.default)}")
        tf = None
        if "tf" in keywords:
            tf = self.interval(keywords["tf"])
            parts.append(f'tf="{tf}"')
        lookback += spec.lookback(literals)
        text = f"{node.name}({', '.join(parts)})"
        self.calls[text] = None
        self.call_info[node] = CallInfo(text, spec, tuple(literals), keyword_values, tf)
        return spec.returns, lookback

    def not_a_string(self, keyword: Keyword, label: str) -> None:
        if isinstance(keyword.value, String):
            raise RuleError(keyword.value.pos, f"{label} must not be a string")

    def interval(self, keyword: Keyword) -> str:
        value = keyword.value
        if not isinstance(value, String) or value.value not in INTERVAL_NAMES:
            raise RuleError(
                value.pos,
                'tf must be a Binance interval in quotes, like tf="1h" '
                f"(one of {', '.join(INTERVAL_NAMES)})",
            )
        self.intervals.add(value.value)
        return value.value

    def argument(self, node: Expr, declared: Arg, label: str) -> tuple[int | float | None, int]:
        """(literal value or None, lookback) of one argument, checked against its kind."""
        if declared.kind == "period":
            if not isinstance(node, Number) or not isinstance(node.value, int) or node.value < 1:
                raise RuleError(
                    node.pos, f"{label} must be a positive whole number of bars, like 14"
                )
            if not declared.lo <= node.value <= declared.upper:
                raise RuleError(
                    node.pos,
                    f"{label} must be from {declared.lo} to {_number_text(declared.upper)} "
                    f"bars, got {node.value}",
                )
            return node.value, 0
        if declared.kind == "factor":
            if not isinstance(node, Number) or node.value <= 0:
                raise RuleError(node.pos, f"{label} must be a positive number, like 2")
            if node.value > declared.upper:
                raise RuleError(
                    node.pos,
                    f"{label} must be at most {_number_text(declared.upper)}, "
                    f"got {_number_text(node.value)}",
                )
            return node.value, 0
        kind, lookback = self.visit(node)
        if kind != declared.kind:
            raise RuleError(
                node.pos,
                f"{label} must be {_KIND_WORDS[declared.kind]}, found {_KIND_WORDS[kind]}",
            )
        return None, lookback
