"""The closed bars of many symbols on one interval, with the indicators rules read, as arrays.

A ``Block`` is the many-symbol form of ``flows.rules.frame.Frame``: each symbol is a *row*;
the bars are one ring per row in a float64 array (field x row x slot), and each distinct
indicator is one column: an array indicator (``flows.indicators.arrays``) advancing every
row that closed with one numpy step, or, for an indicator without an array twin, one scalar
instance per row. Each column keeps its recent values per row, as deep as the rules read
back. ``take`` advances the rows that closed at once; rows close whenever their symbol does
(a row that missed a bar, or was listed later, simply has taken fewer).

Everything a frame promises holds per row: a bar at or before a row's newest one is
ignored; an indicator reads exactly the bars its scalar form would, so each value is the one
a ``Frame`` computes, bit for bit; a row keeps as many bars, and each indicator's values as
deep, as a frame with that row's own requirements would (``set_needs``), so what is not
held there is not held here either; and an indicator that raises is dropped for that row only
(an array step that raises goes on per row, its rows' states exported losslessly, so the
row at fault is found and the others keep going). A block whose indicator cannot even be
made records it for every row, as a frame does.

``RowFrame`` shows one row through the ``Frame`` interface, so any compiled rule
(``flows.rules.evaluate``) and any helper runs on a row unchanged; the array evaluator
(``flows.rules.vector``) reads the columns directly.
"""

from __future__ import annotations

import copy
import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from flows.domain.intervals import INTERVALS
from flows.domain.kline import Kline
from flows.domain.money import SCALE as UNITS_PER_COIN
from flows.indicators import Indicator, Spec, Value
from flows.indicators.arrays import array_twin
from flows.indicators.series import FIELDS
from flows.rules.columns import ROW, ArrayColumn, Column, RowSeries, ScalarColumn, Step
from flows.rules.frame import (
    Frame,
    IndicatorFailed,
    Requirements,
    _failure,
    capacity_for,
    kline_floats,
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
_NO_ROWS = np.zeros(0, dtype=np.int64)


class Block:
    """The bars and indicators of many symbols on one interval (see the module docstring)."""

    def __init__(
        self,
        interval: str,
        requirements: Requirements,
        factories: Mapping[str, Callable[..., Indicator]],
    ) -> None:
        self.interval = interval
        self.requirements = requirements
        self.rows: dict[str, int] = {}
        self.broken: dict[Spec, str] = {}  # spec -> why no row computes it
        self.columns: list[Column] = []
        self.by_spec: dict[Spec, Column] = {}
        canonical: dict[Spec, tuple[Indicator, Callable[..., Indicator]]] = {}
        depths: dict[Spec, int] = {}
        aliases: dict[Spec, Spec] = {}
        for spec, depth in requirements.specs.items():
            name, args = spec
            try:
                factory = factories[name]
                ind = factory(*args)
            except Exception as exc:
                self.broken[spec] = _failure(spec, exc)
                continue
            canonical.setdefault(ind.spec, (ind, factory))
            aliases[spec] = ind.spec
            depths[ind.spec] = max(depths.get(ind.spec, 0), depth)
        made: dict[Spec, Column] = {}
        for key, (ind, factory) in canonical.items():
            twin = array_twin(ind, factory)
            column: Column
            if twin is not None:
                column = ArrayColumn(twin, depths[key] + 1)
            else:
                column = ScalarColumn(factory, ind.spec[1], depths[key] + 1)
            made[key] = column
            self.columns.append(column)
        for spec, key in aliases.items():
            self.by_spec[spec] = made[key]
        self._canonical = made
        self._alias = aliases
        self._windows = {key: ind.window for key, (ind, _) in canonical.items()}
        self.cap = self.capacity_of(requirements)
        self.size = 0
        self.buf: FloatArray = np.full((len(FIELDS), 0, self.cap), math.nan)
        self.pos: IntArray = np.zeros(0, dtype=np.int64)  # next slot of each row's ring
        self.held: IntArray = np.zeros(0, dtype=np.int64)
        self.total: IntArray = np.zeros(0, dtype=np.int64)  # bars taken
        self.last_open: IntArray = np.zeros(0, dtype=np.int64)
        # bars each row keeps (what a frame with that row's requirements keeps, at most cap)
        self.row_cap: IntArray = np.zeros(0, dtype=np.int64)

    def set_needs(self, row: int, requirements: Requirements) -> None:
        """The row keeps what a frame with ``requirements`` (some of this block's) keeps:
        as many bars, and each indicator's values as deep (none of one it does not need)."""
        self.row_cap[row] = self.capacity_of(requirements)
        depths = self._depths(requirements)
        for key, column in self._canonical.items():
            column.keep(row, depths.get(key, -1) + 1)

    def capacity_of(self, requirements: Requirements) -> int:
        """The bars a frame with ``requirements`` (some of this block's) keeps."""
        depths = self._depths(requirements)
        reaches = [self._windows[key] + depth for key, depth in depths.items()]
        return capacity_for(requirements.series_depth, reaches)

    def _depths(self, requirements: Requirements) -> dict[Spec, int]:
        """The deepest read back of each of this block's indicators ``requirements`` need."""
        depths: dict[Spec, int] = {}
        for spec, depth in requirements.specs.items():
            key = self._alias.get(spec)
            if key is not None:
                depths[key] = max(depths.get(key, 0), depth)
        return depths

    # ------------------------------------------------------------------ rows

    def row(self, symbol: str) -> int:
        """The row of `symbol`, added (empty) if new."""
        found = self.rows.get(symbol)
        if found is not None:
            return found
        index = self.rows[symbol] = len(self.rows)
        if index >= self.size:
            self._grow(max(8, 2 * self.size))
        return index

    def _grow(self, size: int) -> None:
        old = self.size
        buf = np.full((len(FIELDS), size, self.cap), math.nan)
        buf[:, :old] = self.buf
        self.buf = buf
        for name in ("pos", "held", "total"):
            arr = np.zeros(size, dtype=np.int64)
            arr[:old] = getattr(self, name)
            setattr(self, name, arr)
        last = np.full(size, -1, dtype=np.int64)
        last[:old] = self.last_open
        self.last_open = last
        caps = np.full(size, self.cap, dtype=np.int64)
        caps[:old] = self.row_cap
        self.row_cap = caps
        for column in self.columns:
            column.grow(size)
        self.size = size

    def reset(self, rows: IntArray) -> None:
        """Forget everything the rows took."""
        self.pos[rows] = self.held[rows] = self.total[rows] = 0
        self.last_open[rows] = -1
        self.buf[:, rows] = math.nan
        for column in self.columns:
            column.reset(rows)

    # ------------------------------------------------------------------ bars

    def take(self, rows: IntArray, bars: FloatArray, opens: IntArray) -> IntArray:
        """Each row takes its bar (``bars``: FIELDS x rows; ``opens``: open times), unless
        not newer than its newest; every column advances the rows that took one. Returns
        the rows that took a bar."""
        newer = opens > self.last_open[rows]
        if not newer.all():
            rows, bars, opens = rows[newer], bars[:, newer], opens[newer]
        if not len(rows):
            return rows
        pos = self.pos[rows]
        self.buf[:, rows, pos] = bars
        self.pos[rows] = (pos + 1) % self.cap
        self.held[rows] = np.minimum(self.held[rows] + 1, self.row_cap[rows])
        n = self.total[rows] + 1
        self.total[rows] = n
        self.last_open[rows] = opens
        step = Step(self, rows)
        with np.errstate(all="ignore"):
            for i, column in enumerate(self.columns):
                if isinstance(column, ArrayColumn):
                    try:
                        column.advance(step, rows, n)
                        continue
                    except Exception:
                        self._per_row(i, column, n, rows).advance(step, rows, n)
                        continue
                column.advance(step, rows, n)
        return rows

    def _per_row(self, index: int, column: ArrayColumn, n: IntArray, rows: IntArray
                 ) -> ScalarColumn:  # fmt: skip
        """An array step raised: go on with one scalar indicator per row, each with its row's
        state (as before this bar), so the row at fault is found and dropped alone."""
        ind = column.ind
        scalar = ScalarColumn(ind._factory, ind.spec[1], column.depth, column.outputs)
        taken = self.total.copy()
        taken[rows] = n - 1
        for row in range(len(self.rows)):
            scalar.inds.append(ind.export(row, int(taken[row])))
            hist: deque[Value] = deque(maxlen=int(column.limit[row]))
            count = int(column.held[row])  # the step raised before it counted this bar
            for back in range(count - 1, -1, -1):
                at = column.hist[:, row, (int(taken[row]) - 1 - back) % column.depth]
                hist.append(ind.to_value(at))
            scalar.hist.append(hist)
        scalar.grow(self.size)
        for row, message in column.broken.items():
            scalar.broken[row] = message
            scalar.inds[row] = None
        self.columns[index] = scalar
        for table in (self.by_spec, self._canonical):
            for spec, found in list(table.items()):
                if found is column:
                    table[spec] = scalar
        return scalar

    def adopt(self, row: int, frame: Frame | RowFrame) -> None:
        """Give an empty row the bars and indicator states of a frame (a one-symbol
        ``Frame``, or a row of another block) as they are: no value changes. An indicator
        the frame does not compute stays empty for this row (no rule reading the row reads
        it, see ``flows.signals.shard_engine``); one that failed there is failed here."""
        series = frame.series
        held = min(len(series), int(self.row_cap[row]))
        for field, i in ROW.items():
            self.buf[i, row, :held] = series.window(field, held)
        total = series.total
        self.pos[row] = held % self.cap
        self.held[row] = held
        self.total[row] = total
        self.last_open[row] = frame.last_open
        for spec, column in self._canonical.items():
            found = frame.parts(spec)
            if found is None:
                continue
            if isinstance(found, str):
                column.broken[row] = found
                continue
            ind, hist = found
            if isinstance(column, ArrayColumn):
                column.ind.load(row, ind)
                kept = min(len(hist), int(column.limit[row]))
                for back, value in enumerate(list(reversed(hist))[:kept]):
                    slot = (total - 1 - back) % column.depth
                    column.hist[:, row, slot] = column.ind.from_value(value)
                column.held[row] = kept
            else:
                column.inds[row] = ind
                column.hist[row] = deque(hist, maxlen=column.hist[row].maxlen)

    def take_klines(self, items: list[tuple[int, Kline]]) -> IntArray:
        """``take`` for (row, kline) pairs, one per row."""
        if not items:
            return _NO_ROWS
        rows = np.fromiter((r for r, _ in items), dtype=np.int64, count=len(items))
        bars = np.array([kline_floats(k) for _, k in items]).T
        opens = np.fromiter((k.open_ms for _, k in items), dtype=np.int64, count=len(items))
        return self.take(rows, bars, opens)

    def feed(self, histories: Iterable[tuple[int, list[Kline]]]) -> None:
        """Each row takes its klines (oldest first), all rows in step from their newest back,
        so a history of any length costs one array step per bar of the longest."""
        lists = [(row, ks) for row, ks in histories if ks]
        if not lists:
            return
        longest = max(len(ks) for _, ks in lists)
        for j in range(longest):
            self.take_klines(
                [(row, ks[j - longest + len(ks)]) for row, ks in lists if j >= longest - len(ks)]
            )

    def held_klines(self, row: int) -> list[Kline]:
        """The bars a row holds, oldest first, as klines (the fields kept; the rest 0)."""
        held = int(self.held[row])
        idx = (int(self.pos[row]) - held + np.arange(held)) % self.cap
        cols = self.buf[:, row, idx].tolist()
        u = UNITS_PER_COIN
        length = INTERVALS[self.interval]
        out = []
        for o, h, lo, c, v, qv, trades, t in zip(*cols, strict=True):
            open_ms = int(t)
            out.append(
                Kline(open_ms, length.close_time(open_ms), round(o * u), round(h * u),
                      round(lo * u), round(c * u), round(v * u),
                      round(qv * u) if not math.isnan(qv) else 0,
                      int(trades) if not math.isnan(trades) else 0, 0, 0)
            )  # fmt: skip
        return out

    # ------------------------------------------------------------------ reads

    def series_at(self, field: str, rows: IntArray, back: Any) -> tuple[FloatArray, np.ndarray]:
        """Each row's ``field`` ``back`` bars before its newest, and where that is undefined
        (not held, or not finite)."""
        v = self.buf[ROW[field], rows, (self.pos[rows] - 1 - back) % self.cap]
        return v, (back >= self.held[rows]) | ~np.isfinite(v)

    def column(self, spec: Spec) -> Column | None:
        return self.by_spec.get(spec)

    def frame(self, row: int) -> RowFrame:
        return RowFrame(self, row)


class RowFrame:
    """One row of a block through the ``Frame`` reading interface."""

    __slots__ = ("_block", "_row", "interval", "series")

    def __init__(self, block: Block, row: int) -> None:
        self._block, self._row = block, row
        self.interval = block.interval
        self.series = RowSeries(block, row)

    @property
    def bars(self) -> int:
        return int(self._block.total[self._row])

    @property
    def last_open(self) -> int:
        return int(self._block.last_open[self._row])

    @property
    def capacity(self) -> int:
        return self._block.cap

    def held_klines(self) -> list[Kline]:
        return self._block.held_klines(self._row)

    def parts(self, spec: Spec) -> tuple[Indicator, deque[Value]] | str | None:
        """As ``Frame.parts``: the row's indicator for ``spec`` as a scalar one (exported
        from an array one), its recent values; why it failed; None if not computed."""
        block, row = self._block, self._row
        column = block._canonical.get(spec) or block.by_spec.get(spec)
        if column is None:
            return block.broken.get(spec)
        if row in column.broken:
            return column.broken[row]
        total = int(block.total[row])
        if isinstance(column, ArrayColumn):
            ind: Indicator | None = column.ind.export(row, total)
            hist: deque[Value] = deque(maxlen=int(column.limit[row]) or None)
            for back in range(int(column.held[row]) - 1, -1, -1):
                hist.append(column.value_row(block, row, back))
        else:  # a copy: the row's own objects stay with this block
            ind, hist = copy.deepcopy(column.inds[row]), deque(column.hist[row])
        return None if ind is None else (ind, hist)

    def value(self, spec: Spec, back: int) -> Value:
        column = self._block.by_spec.get(spec)
        if column is None:
            raise IndicatorFailed(self._block.broken.get(spec, f"{spec} is not computed"))
        return column.value_row(self._block, self._row, back)
