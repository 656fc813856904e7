"""The columns of a ``flows.rules.block.Block``: one per distinct indicator, holding every
row's recent values (an array indicator and its values as arrays, or one scalar indicator
per row), the bars a step reads (``Step``), and one row's bars through the ``BarSeries``
interface (``RowSeries``)."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from flows.indicators import Indicator, Value
from flows.indicators.arrays import ArrayIndicator
from flows.indicators.series import FIELDS
from flows.rules.frame import UNDEFINED, IndicatorFailed, _failure

if TYPE_CHECKING:
    from flows.rules.block import Block

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
ROW = {name: i for i, name in enumerate(FIELDS)}


class Step:
    """The bars of the rows being advanced, each read computed once per step."""

    __slots__ = ("_aligned", "_block", "_cache", "_end", "_rows")

    def __init__(self, block: Block, rows: IntArray) -> None:
        self._block = block
        self._rows = rows
        self._aligned: bool | None = None  # every row's newest bar in the same slot
        self._end = block.pos[rows]  # one past each row's newest bar
        self._cache: dict[tuple[str, int], FloatArray] = {}

    def last(self, field: str, back: int = 0) -> FloatArray:
        key = (field, back)
        found = self._cache.get(key)
        if found is None:
            b = self._block
            found = b.buf[ROW[field], self._rows, (self._end - 1 - back) % b.cap]
            self._cache[key] = found
        return found

    def window(self, field: str, n: int) -> FloatArray:
        key = (field, -n)
        found = self._cache.get(key)
        if found is None:
            b = self._block
            plane = b.buf[ROW[field]]
            end = int(self._end[0]) if len(self._end) else 0
            if self._aligned is None:
                self._aligned = bool((self._end == end).all())
            if self._aligned and end >= n:  # every row at the same slot: one slice each
                found = plane[self._rows, end - n : end]
            else:
                idx = (self._end[:, None] - n + np.arange(n)) % b.cap
                found = plane[self._rows[:, None], idx]
            self._cache[key] = found
        return found


class ArrayColumn:
    """An array indicator and its recent values, (outputs, rows, depth)."""

    def __init__(self, ind: ArrayIndicator, depth: int) -> None:
        self.ind = ind
        self.depth = depth
        self.outputs = ind.outputs
        self.hist = np.full((ind.outputs, 0, depth), math.nan)
        self.broken: dict[int, str] = {}  # rows whose scalar form failed (adopted as such)
        # per row: values held (the newest ones), and how many it keeps (its own frame's
        # depth for this indicator; the column's depth is the deepest of its rows)
        self.held = np.zeros(0, dtype=np.int64)
        self.limit = np.zeros(0, dtype=np.int64)

    def grow(self, size: int) -> None:
        self.ind.grow(size)
        old = self.hist
        self.hist = np.full((self.outputs, size, self.depth), math.nan)
        self.hist[:, : old.shape[1]] = old
        self.held = np.concatenate((self.held, np.zeros(size - len(self.held), dtype=np.int64)))
        more = np.full(size - len(self.limit), self.depth, dtype=np.int64)
        self.limit = np.concatenate((self.limit, more))

    def reset(self, rows: IntArray) -> None:
        self.ind.reset(rows)
        self.hist[:, rows] = math.nan
        self.held[rows] = 0
        for row in rows.tolist():
            self.broken.pop(row, None)

    def keep(self, row: int, limit: int) -> None:
        """The row keeps its newest ``limit`` values (at most the column's depth)."""
        self.limit[row] = min(limit, self.depth)
        self.held[row] = min(self.held[row], self.limit[row])

    def advance(self, step: Step, rows: IntArray, n: IntArray) -> None:
        self.hist[:, rows, (n - 1) % self.depth] = self.ind.update(step, rows, n)
        self.held[rows] = np.minimum(self.held[rows] + 1, self.limit[rows])

    def value_row(self, block: Block, row: int, back: int) -> Value:
        if row in self.broken:
            raise IndicatorFailed(self.broken[row])
        total = int(block.total[row])
        if back >= self.held[row]:
            raise UNDEFINED
        value: Value = self.ind.to_value(self.hist[:, row, (total - 1 - back) % self.depth])
        return value

    def values(self, block: Block, output: int, rows: IntArray, back: Any
               ) -> tuple[FloatArray, np.ndarray, np.ndarray | None]:  # fmt: skip
        total = block.total[rows]
        v = self.hist[output, rows, (total - 1 - back) % self.depth]
        bad = (back >= self.held[rows]) | ~np.isfinite(v)
        if self.broken:
            failed = np.isin(rows, list(self.broken))
            return v, bad, failed if failed.any() else None
        return v, bad, None

    def raw(self, block: Block, rows: IntArray, back: Any
            ) -> tuple[FloatArray, np.ndarray, np.ndarray | None]:  # fmt: skip
        """Every stored output of each row (outputs x rows), where the value is not held,
        and the rows whose indicator failed (None if none)."""
        total = block.total[rows]
        at = self.hist[:, rows, (total - 1 - back) % self.depth]
        failed = np.isin(rows, list(self.broken)) if self.broken else None
        return at, back >= self.held[rows], failed


class ScalarColumn:
    """One scalar indicator per row, for an indicator without an array twin, or one whose
    array step raised (then built from each row's exported state)."""

    def __init__(self, factory: Callable[..., Indicator], args: tuple[Any, ...], depth: int,
                 outputs: int = 1) -> None:  # fmt: skip
        self.factory, self.args, self.depth = factory, args, depth
        self.inds: list[Indicator | None] = []
        self.hist: list[deque[Value]] = []
        self.broken: dict[int, str] = {}
        self.outputs = outputs

    def grow(self, size: int) -> None:
        while len(self.inds) < size:
            self.inds.append(self.factory(*self.args))
            self.hist.append(deque(maxlen=self.depth))

    def reset(self, rows: IntArray) -> None:
        for row in rows.tolist():
            self.inds[row] = self.factory(*self.args)
            self.hist[row] = deque(maxlen=self.hist[row].maxlen)
            self.broken.pop(row, None)

    def keep(self, row: int, limit: int) -> None:
        """The row keeps its newest ``limit`` values (at most the column's depth)."""
        self.hist[row] = deque(self.hist[row], maxlen=min(limit, self.depth))

    def advance(self, step: Step, rows: IntArray, n: IntArray) -> None:
        block = step._block
        for row in rows.tolist():
            ind = self.inds[row]
            if ind is None:
                continue
            try:
                self.hist[row].append(ind.update(RowSeries(block, row)))
            except Exception as exc:  # this row only: see the module docstring
                self.broken[row] = _failure(ind.spec, exc)
                self.inds[row] = None
                self.hist[row].clear()

    def value_row(self, block: Block, row: int, back: int) -> Value:
        if row in self.broken:
            raise IndicatorFailed(self.broken[row])
        hist = self.hist[row]
        if back >= len(hist):
            raise UNDEFINED
        return hist[-1 - back]

    def values(self, block: Block, output: int, rows: IntArray, back: Any
               ) -> tuple[FloatArray, np.ndarray, np.ndarray | None]:  # fmt: skip
        backs = np.broadcast_to(back, rows.shape).tolist()
        out = np.full(len(rows), math.nan)
        bad = np.ones(len(rows), dtype=bool)
        failed = np.zeros(len(rows), dtype=bool)
        for i, (row, b) in enumerate(zip(rows.tolist(), backs, strict=True)):
            if row in self.broken:
                failed[i] = True
                continue
            hist = self.hist[row]
            if b < len(hist):
                v = hist[-1 - b]
                if isinstance(v, tuple):
                    v = v[output]
                out[i] = v
                bad[i] = not math.isfinite(v)
        return out, bad, failed if failed.any() else None


Column = ArrayColumn | ScalarColumn


class RowSeries:
    """One row's bars through the ``BarSeries`` reading interface."""

    __slots__ = ("_block", "_row")

    def __init__(self, block: Block, row: int) -> None:
        self._block, self._row = block, row

    @property
    def capacity(self) -> int:
        return self._block.cap

    @property
    def total(self) -> int:
        return int(self._block.total[self._row])

    def __len__(self) -> int:
        return int(self._block.held[self._row])

    def last(self, field: str, back: int = 0) -> float:
        b, row = self._block, self._row
        if not 0 <= back < b.held[row]:
            raise IndexError("not enough bars held")
        return float(b.buf[ROW[field], row, (b.pos[row] - 1 - back) % b.cap])

    def window(self, field: str, n: int | None = None) -> FloatArray:
        b, row = self._block, self._row
        held = int(b.held[row])
        n = held if n is None else min(n, held)
        idx = (int(b.pos[row]) - n + np.arange(n)) % b.cap
        values: FloatArray = b.buf[ROW[field], row, idx]
        return values

    def recent(self, field: str, back: int, n: int) -> list[float]:
        if back < 0 or n < 1 or back + n > len(self):
            raise IndexError("not enough bars held")
        values: list[float] = self.window(field, back + n)[:n].tolist()
        return values
