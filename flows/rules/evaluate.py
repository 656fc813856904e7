"""Compile a checked rule into the project's own evaluator: a tree of small Python closures.

Nothing of the user's text reaches Python's compiler: each AST node becomes a closure
``fn(frames, back)`` that computes the node's value at the bar ``back`` bars before the newest
one of the rule's interval, reading only the frames passed in. Closures for helper calls read
the shared indicators' recent values; ``x[n]`` evaluates ``x`` at ``back + n``.

Undefined values: a value that does not exist yet (an indicator warming up, an earlier bar
not held, a division by zero, a NaN) or is not finite (``1e308 * 1e308``, an indicator that
overflowed) raises ``Undefined``; the rule is then "not ready" at that bar and fires nothing.
Infinities may arise inside arithmetic, but every value a comparison, a helper or the
provenance reads is checked, so none decides anything. ``and``/``or`` short-circuit left
to right, so ``false and x`` is false whatever ``x`` is.

Cost: each node's cost is the number of closure calls it makes per evaluation (an argument
of ``highest(x, 20)`` counts 20 times); a rule whose cost exceeds ``MAX_COST`` is rejected
when compiled, so no rule text can make one evaluation expensive.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from math import isfinite
from typing import Any

from flows.domain.intervals import INTERVALS
from flows.rules.check import CheckedRule, parse_rule
from flows.rules.errors import RuleError
from flows.rules.frame import (
    UNDEFINED,
    Frame,
    Requirements,
    SeriesRef,
    Undefined,
    ticker_24h,
)
from flows.rules.helpers import DEFAULT_REGISTRY
from flows.rules.registry import FunctionBinding, IndicatorBinding, Registry
from flows.rules.syntax import Binary, Bool, Call, Compare, Expr, Index, Name, Number, Unary

MAX_COST = 20_000
TICKER_SERIES = frozenset({"price_change_pct_24h", "quote_volume_24h"})
PLAIN_SERIES = frozenset({"open", "high", "low", "close", "volume", "quote_volume", "trades"})
DAY_BARS_1M = 1440

Frames = Mapping[str, Frame]
Fn = Callable[[Frames, int], Any]

_ARITH: dict[str, Callable[[float, float], float]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
}
_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}


@dataclass(frozen=True)
class Program:
    """A compiled rule for one interval: evaluate it, read its calls, size its frames."""

    text: str
    interval: str
    rule: CheckedRule
    condition: Fn
    calls: tuple[tuple[str, Fn], ...]  # (canonical call text, its value at a bar)
    requirements: dict[str, Requirements]  # interval -> what its frame must hold
    cost: int
    lookback: int

    def holds(self, frames: Frames, back: int = 0) -> bool | None:
        """The rule at the bar ``back`` bars ago: True/False, or None when not ready."""
        try:
            return bool(self.condition(frames, back))
        except Undefined:
            return None

    def values(self, frames: Frames, back: int = 0) -> dict[str, float | bool | None]:
        """Every helper call's value (and close) at that bar, for a signal's provenance."""
        out: dict[str, float | bool | None] = {}
        for text, fn in self.calls:
            try:
                value = fn(frames, back)
            except Undefined:
                value = None
            if isinstance(value, float) and not math.isfinite(value):
                value = None
            out[text] = value
        try:
            out["close"] = frames[self.interval].series.last("close", back)
        except (IndexError, KeyError):
            out["close"] = None
        return out

    def ready(self, frames: Frames) -> bool:
        """Whether the rule's own interval has a bar. Warm-up is decided value by value:
        every helper is undefined until its full lookback has passed (exactly where TA-Lib's
        batch function starts giving values), and an undefined value makes the rule not
        ready, so no signal comes from an indicator still warming up."""
        main = frames.get(self.interval)
        return main is not None and main.bars > 0


def compile_rule(
    text: str, interval: str, registry: Registry = DEFAULT_REGISTRY, condition: bool = True
) -> Program:
    """Parse, check and compile ``text`` for klines of ``interval``; RuleError if bad.

    With ``condition=False`` any expression compiles (``Program.condition`` then computes a
    number or a condition): the dashboard plots expressions this way, the contract tests
    probe helpers."""
    if interval not in INTERVALS:
        raise RuleError(0, f"unknown interval {interval!r}")
    rule = parse_rule(text, registry, condition)
    compiler = _Compiler(rule, interval, registry)
    main = compiler.compile(rule.ast, 1)  # depth 1: on_change reads the previous bar
    cost = compiler.cost_of(rule.ast)
    if cost > MAX_COST:
        raise RuleError(
            rule.ast.pos,
            f"rule is too costly to evaluate ({cost} steps per bar, max {MAX_COST}); "
            "use shorter windows or fewer nested helpers",
        )
    calls = tuple((info.text, compiler.compile(node, 0)) for node, info in rule.calls.items())
    seen: dict[str, Fn] = {}
    for call_text, fn in calls:
        seen.setdefault(call_text, fn)
    return Program(
        text=text,
        interval=interval,
        rule=rule,
        condition=main,
        calls=tuple(seen.items()),
        requirements=compiler.requirements,
        cost=cost,
        lookback=rule.lookback,
    )


def _finite(value: float) -> float:
    if not isfinite(value):
        raise UNDEFINED
    return value


@dataclass
class _Compiler:
    rule: CheckedRule
    interval: str
    registry: Registry
    requirements: dict[str, Requirements] = field(default_factory=dict)

    def need(self, interval: str) -> Requirements:
        return self.requirements.setdefault(interval, Requirements())

    def cost_of(self, node: Expr) -> int:
        if isinstance(node, Number | Bool | Name):
            return 1
        if isinstance(node, Index):
            return 1 + self.cost_of(node.target)
        if isinstance(node, Unary):
            return 1 + self.cost_of(node.operand)
        if isinstance(node, Binary | Compare):
            return 1 + self.cost_of(node.left) + self.cost_of(node.right)
        assert isinstance(node, Call)
        info = self.rule.calls[node]
        inner = sum(self.cost_of(a) for a in node.args)
        if isinstance(info.spec.binding, FunctionBinding) and inner:
            return 1 + inner * (info.spec.lookback(info.literals) + 1)
        return 1 + inner

    def compile(self, node: Expr, depth: int) -> Fn:
        """The closure for ``node``; ``depth`` is the furthest bar back it may be asked for."""
        if isinstance(node, Number):
            value = float(node.value)
            return lambda frames, back: value
        if isinstance(node, Bool):
            flag: bool = node.value
            return lambda frames, back: flag
        if isinstance(node, Name):
            return self.series(node.name, depth)
        if isinstance(node, Index):
            bars, inner = node.bars, node.target
            while isinstance(inner, Index):
                bars, inner = bars + inner.bars, inner.target
            if isinstance(inner, Call) and self.rule.calls[inner].tf not in (None, self.interval):
                return self.call(inner, depth, offset=bars)  # bars of the call's own interval
            target = self.compile(inner, depth + bars)
            return lambda frames, back: target(frames, back + bars)
        if isinstance(node, Unary):
            operand = self.compile(node.operand, depth)
            if node.op == "-":
                return lambda frames, back: -operand(frames, back)
            return lambda frames, back: not operand(frames, back)
        if isinstance(node, Call):
            return self.call(node, depth)
        assert isinstance(node, Binary | Compare)  # strings were rejected by the checker
        left = self.compile(node.left, depth)
        right = self.compile(node.right, depth)
        return self.binary(node, left, right)

    def binary(self, node: Binary | Compare, left: Fn, right: Fn) -> Fn:
        op = node.op
        if op == "and":
            return lambda frames, back: left(frames, back) and right(frames, back)
        if op == "or":
            return lambda frames, back: left(frames, back) or right(frames, back)
        if isinstance(node, Compare):
            compare = _ORDER[op]

            def comparison(frames: Frames, back: int) -> bool:
                a = left(frames, back)
                b = right(frames, back)
                if not (isfinite(a) and isfinite(b)):  # NaN or infinite
                    raise UNDEFINED
                return compare(a, b)

            return comparison
        if op in ("/", "%"):
            divide = operator.truediv if op == "/" else math.fmod

            def division(frames: Frames, back: int) -> float:
                b = right(frames, back)
                if b == 0:
                    raise UNDEFINED
                return divide(left(frames, back), b)

            return division
        arith = _ARITH[op]
        return lambda frames, back: arith(left(frames, back), right(frames, back))

    def series(self, name: str, depth: int) -> Fn:
        interval = self.interval
        if name in TICKER_SERIES:
            self.need(interval).series_depth = max(self.need(interval).series_depth, depth)
            minute = self.need("1m")
            minute.series_depth = max(minute.series_depth, DAY_BARS_1M + depth * _bars_1m(interval))
            index = 0 if name == "price_change_pct_24h" else 1

            def ticker(frames: Frames, back: int) -> float:
                return _finite(ticker_24h(frames, interval, back)[index])

            return ticker
        req = self.need(interval)
        req.series_depth = max(req.series_depth, depth)

        def read(frames: Frames, back: int) -> float:
            try:
                return _finite(frames[interval].series.last(name, back))
            except IndexError:
                raise UNDEFINED from None

        return read

    def call(self, node: Call, depth: int, offset: int = 0) -> Fn:
        """A call at ``back`` bars of this compiler's interval. A call with another
        ``tf=`` reads the bar of its interval that was the newest closed one at that time,
        then ``offset`` bars of its own interval before it."""
        tf = self.rule.calls[node].tf
        if tf is None or tf == self.interval:
            here = self.call_here(node, depth + offset)
            if not offset:
                return here
            return lambda frames, back: here(frames, back + offset)
        home, length = self.interval, INTERVALS[self.interval].length_ms
        reach = -(-depth * length // INTERVALS[tf].length_ms) + 1 + offset
        sub = _Compiler(self.rule, tf, self.registry, self.requirements)
        inner = sub.call_here(node, reach)
        self.need(home).series_depth = max(self.need(home).series_depth, depth)

        def other_interval(frames: Frames, back: int) -> Any:
            return inner(frames, _bars_since(frames, home, tf, back) + offset)

        return other_interval

    def call_here(self, node: Call, depth: int) -> Fn:
        info = self.rule.calls[node]
        spec = info.spec
        interval = self.interval
        binding = spec.binding
        if binding is None:
            raise RuleError(node.pos, f"helper '{spec.name}' has no implementation")
        if isinstance(binding, IndicatorBinding):
            ind_spec = binding.spec_of(info.literals)
            self.need(interval).need(ind_spec, depth)
            output = binding.output
            as_bool = spec.returns == "bool"

            def indicator(frames: Frames, back: int) -> Any:
                value = frames[interval].value(ind_spec, back)
                if output is not None:
                    value = value[output]  # type: ignore[index]
                if not isfinite(value):  # type: ignore[arg-type]
                    raise UNDEFINED
                return value != 0 if as_bool else value

            return indicator
        reach = depth + spec.lookback(info.literals)
        for needed in binding.needs(info.literals):
            self.need(interval).need(needed, reach)
        self.need(interval).series_depth = max(self.need(interval).series_depth, reach)
        args: list[Any] = []
        thunks: list[int] = []
        series_refs: dict[int, str] = {}
        for index, declared in enumerate(spec.args):
            if declared.literal:
                args.append(info.literals[index])
                continue
            arg = node.args[index]
            args.append(self.compile(arg, reach))
            if isinstance(arg, Name) and arg.name in PLAIN_SERIES:
                series_refs[index] = arg.name  # helpers may slice the series directly
            else:
                thunks.append(index)
        kwargs = {k: v for k, v in info.keywords.items()}
        func = binding.func
        as_number = spec.returns == "number"

        def function(frames: Frames, back: int) -> Any:
            values = list(args)
            for i in thunks:
                values[i] = partial(_thunk, args[i], frames)
            for i, field_name in series_refs.items():
                values[i] = SeriesRef(frames[interval], field_name)
            result = func(frames[interval], back, *values, **kwargs)
            if as_number and not isfinite(result):  # type: ignore[arg-type]
                raise UNDEFINED
            return result

        return function


def _bars_since(frames: Frames, home: str, other: str, back: int) -> int:
    """How many bars of ``other`` closed after the ``home`` bar ``back`` bars ago closed:
    the offset in ``other`` of the bar that was its newest closed one then."""
    try:
        home_open = int(frames[home].series.last("time", back))
        newest = int(frames[other].series.last("time", 0))
    except IndexError:
        raise UNDEFINED from None
    home_end = INTERVALS[home].next_open(home_open)
    iv = INTERVALS[other]
    if iv.next_open(newest) <= home_end:
        return 0
    if not iv.calendar_month:
        return -(-(iv.next_open(newest) - home_end) // iv.length_ms)
    count, open_ms = 0, newest
    while iv.next_open(open_ms) > home_end:
        count += 1
        open_ms = iv.open_time(open_ms - 1)
    return count


def _thunk(fn: Fn, frames: Frames, back: int) -> Any:
    value = fn(frames, back)
    if not isfinite(value):
        raise UNDEFINED
    return value


def _bars_1m(interval: str) -> int:
    """How many minutes one bar of ``interval`` spans (a month counts 31 days)."""
    length = INTERVALS[interval]
    minutes = 31 * DAY_BARS_1M if interval == "1M" else length.length_ms // 60_000
    return max(1, minutes)
