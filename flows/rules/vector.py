"""Evaluate a compiled rule over many symbols at once: each node once per close, over arrays.

``vectorize(program)`` turns a ``Program`` (``flows.rules.evaluate``) into a tree of array
closures ``fn(lanes, back) -> (values, undefined)``: ``lanes`` names, for each interval the
rule reads, the block (``flows.rules.block``) and the row of every symbol being evaluated;
``back`` is a number of bars, one for all rows or one per row (a ``tf=`` call reads, per row,
the bar of its interval that was the newest then). ``undefined`` marks per row what the
scalar evaluator signals with ``Undefined``: a value not held or not finite, a division by
zero, a comparison with NaN or an infinity. ``and``/``or`` keep their meaning per row: the
right side decides only rows where the left one lets it, so ``false and x`` is false
wherever ``x`` is undefined.

Rows where the scalar evaluator would raise something else (an indicator that failed for that
row, ``inf % x``) are marked in ``lanes.suspect``; the engine evaluates exactly those rows
with the scalar evaluator, so they fail (and are switched off) alone, with the scalar error.

Only what is known to mean the same as the scalar evaluator is vectorised: the operators,
the plain series, indicator helpers, ``tf=`` between fixed-length intervals, and the
function helpers of the default library named in ``_FUNCTIONS``. A rule using anything else
(a helper a data engineer added, the 24h ticker, a calendar-month interval) gets None and is
evaluated per row by the scalar evaluator, as before; nothing about its meaning changes.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from flows.domain.intervals import INTERVALS
from flows.indicators.series import FIELDS
from flows.rules.block import Block
from flows.rules.columns import ArrayColumn
from flows.rules.evaluate import PLAIN_SERIES, Program
from flows.rules.registry import FunctionBinding, IndicatorBinding
from flows.rules.syntax import Binary, Bool, Call, Compare, Expr, Index, Name, Number, Unary

IntArray = npt.NDArray[np.int64]
Result = tuple[Any, Any]  # (values, undefined): arrays over the rows, or one scalar for all
VFn = Callable[["Lanes", Any], Result]

_ARITH = {"+": operator.add, "-": operator.sub, "*": operator.mul}
_ORDER = {
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
    "==": np.equal,
    "!=": np.not_equal,
}


class Unsupported(Exception):
    """The rule uses something only the scalar evaluator computes."""


class Lanes:
    """The rows of one evaluation: per interval the block and each symbol's row in it."""

    __slots__ = ("blocks", "count", "rows", "suspect")

    def __init__(self, blocks: Mapping[str, Block], rows: Mapping[str, IntArray], count: int):
        self.blocks = blocks
        self.rows = rows
        self.count = count
        self.suspect = np.zeros(count, dtype=bool)

    def mark(self, rows: Any) -> None:
        self.suspect |= rows


@dataclass(frozen=True)
class VectorRule:
    condition: VFn
    intervals: frozenset[str]
    calls: tuple[tuple[str, VFn], ...]  # (canonical call text, its values), as Program.calls
    interval: str

    def holds(self, lanes: Lanes, back: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Per row: whether the rule holds, and whether it is undefined (not ready)."""
        with np.errstate(all="ignore"):
            value, bad = self.condition(lanes, back)
        n = lanes.count
        truth = np.broadcast_to(np.asarray(value).astype(bool), (n,))
        return truth, np.broadcast_to(np.asarray(bad, dtype=bool), (n,))

    def values(self, lanes: Lanes) -> list[dict[str, float | bool | None]]:
        """``Program.values(frames, 0)`` for every row: each helper call's value (None where
        undefined or not finite) and the close."""
        n = lanes.count
        columns: list[tuple[str, list[Any]]] = []
        with np.errstate(all="ignore"):
            for text, fn in self.calls:
                value, bad = fn(lanes, 0)
                value = np.broadcast_to(value, (n,))
                bad = np.broadcast_to(bad, (n,)) | (
                    ~np.isfinite(value) if value.dtype.kind == "f" else False
                )
                columns.append((text, _or_none(value, bad)))
        block = lanes.blocks[self.interval]
        close, missing = block.series_at("close", lanes.rows[self.interval], 0)
        columns.append(("close", _or_none(close, missing)))
        return [{text: col[i] for text, col in columns} for i in range(n)]


def _or_none(values: np.ndarray, bad: np.ndarray) -> list[Any]:
    return [None if b else v for v, b in zip(values.tolist(), bad.tolist(), strict=True)]


_cache: dict[int, tuple[Program, VectorRule | None]] = {}


def vectorize(program: Program) -> VectorRule | None:
    """The array form of ``program``, or None when only the scalar evaluator can run it."""
    found = _cache.get(id(program))
    if found is not None and found[0] is program:
        return found[1]
    try:
        compiler = _Compiler(program, program.interval)
        condition = compiler.compile(program.rule.ast)
        calls: dict[str, VFn] = {}
        for node, info in program.rule.calls.items():
            calls.setdefault(info.text, compiler.compile(node))
        rule: VectorRule | None = VectorRule(
            condition, frozenset(compiler.intervals), tuple(calls.items()), program.interval
        )
    except Unsupported:
        rule = None
    if len(_cache) > 10_000:
        _cache.clear()
    _cache[id(program)] = (program, rule)
    return rule


def _finite_bad(v: Any) -> Any:
    return ~np.isfinite(v)


def _truthy(v: Any) -> Any:
    return np.asarray(v).astype(bool)


class _Compiler:
    def __init__(self, program: Program, interval: str, intervals: set[str] | None = None):
        self.program = program
        self.rule = program.rule
        self.interval = interval
        if INTERVALS[interval].calendar_month:
            raise Unsupported(interval)
        self.intervals = intervals if intervals is not None else set()
        self.intervals.add(interval)

    def compile(self, node: Expr) -> VFn:
        if isinstance(node, Number):
            value = float(node.value)
            return lambda lanes, back: (value, False)
        if isinstance(node, Bool):
            flag = node.value
            return lambda lanes, back: (flag, False)
        if isinstance(node, Name):
            return self.series(node.name)
        if isinstance(node, Index):
            bars, inner = node.bars, node.target
            while isinstance(inner, Index):
                bars, inner = bars + inner.bars, inner.target
            if isinstance(inner, Call) and self.rule.calls[inner].tf not in (None, self.interval):
                return self.call(inner, offset=bars)
            target = self.compile(inner)
            return lambda lanes, back: target(lanes, back + bars)
        if isinstance(node, Unary):
            operand = self.compile(node.operand)
            if node.op == "-":

                def negate(lanes: Lanes, back: Any) -> Result:
                    v, bad = operand(lanes, back)
                    return -np.asarray(v, dtype=float), bad

                return negate

            def invert(lanes: Lanes, back: Any) -> Result:
                v, bad = operand(lanes, back)
                return np.logical_not(v), bad

            return invert
        if isinstance(node, Call):
            return self.call(node)
        if not isinstance(node, Binary | Compare):
            raise Unsupported(type(node).__name__)
        return self.binary(node, self.compile(node.left), self.compile(node.right))

    def binary(self, node: Binary | Compare, left: VFn, right: VFn) -> VFn:
        op = node.op
        if op in ("and", "or"):
            conj = op == "and"

            def logic(lanes: Lanes, back: Any) -> Result:
                lv, lb = left(lanes, back)
                rv, rb = right(lanes, back)
                lt = _truthy(lv)
                decides = lt if conj else ~lt  # rows where the right side gives the value
                value = np.where(decides, rv, lv)
                return value, lb | (decides & rb)

            return logic
        if isinstance(node, Compare):
            compare = _ORDER[op]

            def comparison(lanes: Lanes, back: Any) -> Result:
                lv, lb = left(lanes, back)
                rv, rb = right(lanes, back)
                return compare(lv, rv), lb | rb | _finite_bad(lv) | _finite_bad(rv)

            return comparison
        if op == "/":

            def division(lanes: Lanes, back: Any) -> Result:
                lv, lb = left(lanes, back)
                rv, rb = right(lanes, back)
                return np.true_divide(lv, rv), lb | rb | (np.asarray(rv) == 0)

            return division
        if op == "%":

            def modulo(lanes: Lanes, back: Any) -> Result:
                lv, lb = left(lanes, back)
                rv, rb = right(lanes, back)
                bad = lb | rb | (np.asarray(rv) == 0)
                lanes.mark(~bad & np.isinf(lv))  # math.fmod(inf, x) raises: decided per row
                return np.fmod(lv, rv), bad

            return modulo
        if op not in _ARITH:
            raise Unsupported(op)
        arith = _ARITH[op]

        def arithmetic(lanes: Lanes, back: Any) -> Result:
            lv, lb = left(lanes, back)
            rv, rb = right(lanes, back)
            return arith(np.asarray(lv, dtype=float), rv), lb | rb

        return arithmetic

    def series(self, name: str) -> VFn:
        if name not in PLAIN_SERIES:
            raise Unsupported(name)  # the 24h ticker: per row
        interval = self.interval

        def read(lanes: Lanes, back: Any) -> Result:
            return lanes.blocks[interval].series_at(name, lanes.rows[interval], back)

        return read

    def call(self, node: Call, offset: int = 0) -> VFn:
        tf = self.rule.calls[node].tf
        if tf is None or tf == self.interval:
            here = self.call_here(node)
            if not offset:
                return here
            return lambda lanes, back: here(lanes, back + offset)
        home = self.interval
        other = INTERVALS[tf]
        if other.calendar_month:
            raise Unsupported(tf)
        sub = _Compiler(self.program, tf, self.intervals)
        inner = sub.call_here(node)
        home_len, other_len = INTERVALS[home].length_ms, other.length_ms

        def other_interval(lanes: Lanes, back: Any) -> Result:
            home_open, hb = lanes.blocks[home].series_at("time", lanes.rows[home], back)
            newest, nb = lanes.blocks[tf].series_at("time", lanes.rows[tf], 0)
            bad = hb | nb
            home_end = np.where(bad, 0, home_open).astype(np.int64) + home_len
            after = np.where(bad, 0, newest).astype(np.int64) + other_len - home_end
            since = np.where(after <= 0, 0, -(-after // other_len))
            v, vb = inner(lanes, since + offset)
            return v, vb | bad

        return other_interval

    def call_here(self, node: Call) -> VFn:
        info = self.rule.calls[node]
        spec = info.spec
        binding = spec.binding
        interval = self.interval
        if isinstance(binding, IndicatorBinding):
            ind_spec = binding.spec_of(info.literals)
            output = binding.output
            as_bool = spec.returns == "bool"

            def indicator(lanes: Lanes, back: Any) -> Result:
                block = lanes.blocks[interval]
                column = block.column(ind_spec)
                if column is None or (output is None and column.outputs > 1):
                    lanes.mark(True)  # it failed for every row: each row raises its error
                    return np.full(lanes.count, np.nan), True
                v, bad, failed = column.values(block, output or 0, lanes.rows[interval], back)
                if failed is not None:
                    lanes.mark(failed)
                return (v != 0 if as_bool else v), bad

            return indicator
        if not isinstance(binding, FunctionBinding):
            raise Unsupported(spec.name)
        make = _FUNCTIONS.get(spec.name)
        func = binding.func
        if (
            make is None
            or (getattr(func, "__module__", ""), getattr(func, "__qualname__", ""))
            != _ORIGINS[spec.name]
        ):
            raise Unsupported(spec.name)  # not the default library's own: per row
        args: list[Any] = []
        for index, declared in enumerate(spec.args):
            if declared.literal:
                args.append(info.literals[index])
            else:
                arg = node.args[index]
                plain = arg.name if isinstance(arg, Name) and arg.name in PLAIN_SERIES else None
                args.append((self.compile(arg), plain))
        return make(interval, *args, **info.keywords)


def _arg(fn: tuple[VFn, str | None], lanes: Lanes, back: Any) -> Result:
    """An expression argument at ``back``: undefined also where it is not finite (the scalar
    helpers read their arguments through checks that raise Undefined)."""
    v, bad = fn[0](lanes, back)
    return v, bad | _finite_bad(v)


def _crosses(above: bool) -> Callable[..., VFn]:
    def make(interval: str, a: tuple[VFn, str | None], b: tuple[VFn, str | None]) -> VFn:
        def crosses(lanes: Lanes, back: Any) -> Result:
            a0, ab0 = _arg(a, lanes, back)
            b0, bb0 = _arg(b, lanes, back)
            a1, ab1 = _arg(a, lanes, back + 1)
            b1, bb1 = _arg(b, lanes, back + 1)
            bad = ab0 | bb0 | ab1 | bb1
            if above:
                return (np.greater(a0, b0) & np.less_equal(a1, b1)), bad
            return (np.less(a0, b0) & np.greater_equal(a1, b1)), bad

        return crosses

    return make


def _extreme(pick: Callable[..., Any]) -> Callable[..., VFn]:
    def make(interval: str, x: tuple[VFn, str | None], n: Any) -> VFn:
        n = int(n)
        field = x[1]

        def extreme(lanes: Lanes, back: Any) -> Result:
            if field is not None:  # a plain series: one gather of every row's n values
                block = lanes.blocks[interval]
                rows = lanes.rows[interval]
                first = np.asarray(back)[..., None] + np.arange(n)
                idx = (block.pos[rows][:, None] - 1 - first) % block.cap
                values = block.buf[_FIELD_ROW[field]][rows[:, None], idx]
                bad = (np.asarray(back) + n > block.held[rows]) | ~np.isfinite(values).all(axis=1)
                return pick(values, axis=1), bad
            got = [_arg(x, lanes, back + i) for i in range(n)]
            values = np.stack([np.broadcast_to(v, (lanes.count,)) for v, _ in got], axis=1)
            bad = np.zeros(lanes.count, dtype=bool)
            for _, b in got:
                bad = bad | b
            return pick(values, axis=1), bad

        return extreme

    return make


def _change(percent: bool) -> Callable[..., VFn]:
    def make(interval: str, x: tuple[VFn, str | None], n: Any) -> VFn:
        n = int(n)

        def change(lanes: Lanes, back: Any) -> Result:
            now, nb = _arg(x, lanes, back)
            before, bb = _arg(x, lanes, back + n)
            bad = nb | bb
            if percent:
                bad = bad | (np.asarray(before) == 0)
                out = (now - before) / before * 100.0
            else:
                out = np.asarray(now, dtype=float) - before
            return out, bad | _finite_bad(out)

        return change

    return make


def _vwap_band(sign: float) -> Callable[..., VFn]:
    def make(interval: str, period: Any, mult: Any = 1.0) -> VFn:
        spec = ("vwap", (int(period or 0),))
        factor = 1.0 if mult is None else mult

        def band(lanes: Lanes, back: Any) -> Result:
            block = lanes.blocks[interval]
            column = block.column(spec)
            if column is None:
                lanes.mark(True)
                return np.full(lanes.count, np.nan), True
            rows = lanes.rows[interval]
            vwap, vb, failed = column.values(block, 0, rows, back)
            dev, db, _ = column.values(block, 1, rows, back)
            if failed is not None:
                lanes.mark(failed)
            out = vwap + sign * factor * dev
            # not held (whatever the slots hold), or a result that is not finite
            bad = (vb & np.isfinite(vwap)) | (db & np.isfinite(dev)) | ~np.isfinite(out)
            return out, bad

        return band

    return make


def _profile(kind: str) -> Callable[..., VFn]:
    """``hvn_near``, ``hvn_count``, ``hvn_above``, ``hvn_below`` over every row's nodes (an
    array volume profile stores each row's nodes as (count, prices..., NaN))."""

    def make(interval: str, period: Any, pct: Any = None) -> VFn:
        spec = ("vprofile", (int(period or 0), 24))

        def helper(lanes: Lanes, back: Any) -> Result:
            block = lanes.blocks[interval]
            column = block.column(spec)
            if not isinstance(column, ArrayColumn):
                lanes.mark(True)  # failed for every row, or a replaced class: per row
                return np.full(lanes.count, np.nan), True
            rows = lanes.rows[interval]
            at, bad, failed = column.raw(block, rows, back)
            if failed is not None:
                lanes.mark(failed)
            nodes = at[1:].T  # rows x bins, nodes first
            held = np.arange(nodes.shape[1])[None, :] < at[0][:, None]
            close, cb = block.series_at("close", rows, back)
            # a warm-up or NaN profile is undefined; one without nodes is not
            bad = bad | cb | ((at[0] >= 1) & np.isnan(nodes[:, 0]))
            c = close[:, None]
            if kind in ("near", "count"):
                inside = held & (np.abs(nodes - c) <= (np.abs(close) * pct / 100.0)[:, None])
                if kind == "near":
                    return inside.any(axis=1), bad
                return inside.sum(axis=1).astype(float), bad
            if kind == "above":
                out = np.where(held & (nodes > c), nodes, np.inf).min(axis=1)
            else:
                out = np.where(held & (nodes < c), nodes, -np.inf).max(axis=1)
            return out, bad | ~np.isfinite(out)

        return helper

    return make


_FIELD_ROW = {name: i for i, name in enumerate(FIELDS)}
# the default library's implementation of each helper vectorised here
_ORIGINS = {
    name: ("flows.rules.helpers", qualname)
    for name, qualname in (
        ("crosses_above", "_crosses.<locals>.crosses"),
        ("crosses_below", "_crosses.<locals>.crosses"),
        ("highest", "_extreme.<locals>.extreme"),
        ("lowest", "_extreme.<locals>.extreme"),
        ("change", "_functions.<locals>._change"),
        ("pct_change", "_functions.<locals>._pct_change"),
        ("vwap_upper", "_vwap_band.<locals>.band"),
        ("hvn_near", "_functions.<locals>._hvn_near"),
        ("hvn_count", "_functions.<locals>._hvn_count"),
        ("hvn_above", "_functions.<locals>._hvn_above"),
        ("hvn_below", "_functions.<locals>._hvn_below"),
        ("vwap_lower", "_vwap_band.<locals>.band"),
    )
}
_FUNCTIONS: dict[str, Callable[..., VFn]] = {
    "crosses_above": _crosses(True),
    "crosses_below": _crosses(False),
    "highest": _extreme(np.max),
    "lowest": _extreme(np.min),
    "change": _change(False),
    "pct_change": _change(True),
    "vwap_upper": _vwap_band(1.0),
    "vwap_lower": _vwap_band(-1.0),
    "hvn_near": _profile("near"),
    "hvn_count": _profile("count"),
    "hvn_above": _profile("above"),
    "hvn_below": _profile("below"),
}
