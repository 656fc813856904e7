"""Klines of one symbol built from trade columns with array operations, exactly as
`flows.klines.builder` builds them one trade at a time.

The trades of a batch come as numpy columns sorted by trade id (and so by time). Runs of
*regular* trades (each one neither a duplicate, nor an implausible id jump, nor older than the
open base kline) are built with array operations: the trades are grouped by base bucket (first,
last, max, min and sums per group), the open base bar carried from the batch before is merged
in front, every base bar but the last is closed with flat klines for the empty buckets between
them, and the closed base bars are rolled up into each longer interval the same way, in front
of that interval's carried open bar.

The open bars between batches are those of a `SymbolKlines` (`state`): any batch split gives
the same klines, and the rare irregular trades are handled as the builder handles them.
Duplicates and refused trades change nothing but a count and a list; a late trade (which may
rewind klines closed by a watermark) hands the rest of its batch to the builder itself.

>>> import numpy as np
>>> ck = ColumnarKlines(("1m", "5m"))
>>> batch = ck.process(
...     time_ms=np.array([60_000, 61_000, 200_000]), price_units=np.array([5, 7, 6]),
...     qty_units=np.array([100_000_000] * 3), first_id=np.array([1, 2, 4]),
...     last_id=np.array([1, 3, 4]), is_buyer_maker=np.array([True, False, True]))
>>> [(k.open_ms, k.open, k.close, k.trades) for k in batch.closed["1m"]]
[(60000, 5, 7, 3), (120000, 7, 7, 0)]
>>> [(name, k.open_ms, k.trades) for name, ks in ck.final_klines().items() for k in ks]
[('1m', 180000, 1), ('5m', 0, 4)]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from flows.domain.kline import Kline, Trade
from flows.domain.money import SCALE
from flows.domain.trade_checks import JUMP_BASE, JUMP_PER_MS, implausible_jump
from flows.klines.builder import DEFAULT_MAX_FILL, SymbolKlines, _Bar
from flows.klines.columnar_bars import (
    I64,
    Amounts,
    Bars,
    KlineColumns,
    bucket_index,
    close_bars,
    group_bars,
    group_trades,
    open_ms_of,
    with_carried,
)

# Amount sums stay in int64 while they are surely below this; above, Python ints.
_INT64_SAFE = float(2**62)


@dataclass
class Batch:
    """What one batch closed, per interval in order, and the trades it did not take."""

    closed: dict[str, list[Kline]]
    duplicates: int = 0
    refused: list[tuple[Trade, str]] = field(default_factory=list)
    late: list[Trade] = field(default_factory=list)
    amended_before: dict[str, int] | None = None  # see SymbolKlines.amended_before


def quote_column(price: I64, qty: I64) -> I64:
    """trunc8(price * qty) per trade in int64, exact whenever the result is below 2**63
    (the product itself may pass it): with q = qh*1e8 + ql and p = ph*1e8 + pl,
    p*q // 1e8 = p*qh + ph*ql + (pl*ql) // 1e8, and every term is at most the result."""
    qh, ql = np.divmod(qty, SCALE)
    ph, pl = np.divmod(price, SCALE)
    out: I64 = price * qh + ph * ql + (pl * ql) // SCALE
    return out


def to_klines(cols: KlineColumns) -> list[Kline]:
    return list(map(Kline, *(col.tolist() for col in cols)))


def _carried(bar: _Bar) -> list[int]:
    return bar.dump()[1:]


def _bar_of(open_ms: int, bars: Bars, i: int) -> _Bar:
    return _Bar.load([open_ms, *bars.row(i)])


class ColumnarKlines:
    """The klines of one symbol, all configured intervals, from batches of trade columns."""

    def __init__(
        self,
        intervals: tuple[str, ...],
        max_fill: int = DEFAULT_MAX_FILL,
        state: SymbolKlines | None = None,
    ) -> None:
        self.state = state if state is not None else SymbolKlines(intervals, max_fill)
        self.intervals = self.state.intervals

    def final_klines(self) -> dict[str, list[Kline]]:
        """The klines still open, closed as they stand (end of input)."""
        out: dict[str, list[Kline]] = {name: [] for name in self.intervals}
        for name, k in self.state.open_klines():
            out[name].append(k)
        return out

    def advance(self, watermark_ms: int) -> dict[str, list[Kline]]:
        """Close every kline ending at or before the watermark (`SymbolKlines.advance`)."""
        closed: list[tuple[str, Kline]] = []
        self.state.advance(watermark_ms, closed)
        out: dict[str, list[Kline]] = {name: [] for name in self.intervals}
        for name, k in closed:
            out[name].append(k)
        return out

    def process(
        self,
        time_ms: npt.ArrayLike,
        price_units: npt.ArrayLike,
        qty_units: npt.ArrayLike,
        first_id: npt.ArrayLike,
        last_id: npt.ArrayLike,
        is_buyer_maker: npt.ArrayLike,
    ) -> Batch:
        """Apply one batch of trades (in id order); return the klines it closed."""
        cols = _Columns(time_ms, price_units, qty_units, first_id, last_id, is_buyer_maker)
        batch = Batch({name: [] for name in self.intervals})
        sk = self.state
        sk.amended_before = None
        count = len(cols.ts)
        if count == 0:
            return batch
        start_last_id = sk.last_id
        base_ms = sk.base.length_ms
        kb = cols.ts // base_ms
        # irregular[j]: trade j is not regular if trade j - 1 was taken (trade 0: always check)
        irregular = np.ones(count, dtype=np.bool_)
        gap = cols.first[1:] - cols.last[:-1]
        irregular[1:] = (
            (gap <= 0)
            | ((gap > JUMP_BASE) & (cols.last[:-1] >= 0)
               & (gap > JUMP_BASE + JUMP_PER_MS * (cols.ts[1:] - cols.ts[:-1])))
            | (kb[1:] < kb[:-1])
        )  # fmt: skip
        checks = np.flatnonzero(irregular)
        wide = self._needs_python_ints(cols)
        qty: Amounts = cols.qty.astype(object) if wide else cols.qty
        quote: Amounts = (
            qty * cols.price.astype(object) // SCALE if wide else quote_column(cols.price, qty)
        )
        pieces: dict[str, list[KlineColumns]] = {name: [] for name in self.intervals}
        i = 0
        while i < count:
            kind = self._check(cols, i)
            if kind == "duplicate":
                batch.duplicates += 1
                i += 1
                continue
            if kind is not None and kind != "late":
                batch.refused.append((cols.trade(i), kind))
                i += 1
                continue
            if kind == "late":
                self._flush(pieces, batch)
                if sk.last_id != start_last_id:
                    sk._rewind = None  # trades of this batch were applied: no rewind past them
                taken_before = sk.last_id
                self._by_builder(cols, i, batch)
                if sk.last_id == taken_before != start_last_id:
                    sk._rewind = None  # as the builder does at the end of a batch
                return batch
            following = int(np.searchsorted(checks, i, side="right"))
            end = int(checks[following]) if following < len(checks) else count
            self._run(cols, kb[i:end], qty[i:end], quote[i:end], i, end, pieces)
            i = end
        self._flush(pieces, batch)
        if sk.last_id != start_last_id:
            # a trade was taken: nothing closed before can be amended any more (the builder
            # keeps its rewind point to the end of a batch, and so do we)
            sk._rewind = None
        return batch

    # -- irregular trades ------------------------------------------------------------------
    def _check(self, cols: _Columns, i: int) -> str | None:
        """None for a regular trade; else "duplicate", "late" or why it is refused."""
        sk = self.state
        first, ts = int(cols.first[i]), int(cols.ts[i])
        if first <= sk.last_id:
            return "duplicate"
        jump = first - sk.last_id
        if (
            jump > JUMP_BASE
            and sk.last_id >= 0
            and jump > JUMP_BASE + JUMP_PER_MS * (ts - sk.last_ms)
        ):
            return implausible_jump(first, sk.last_id, ts - sk.last_ms) or ""
        if ts < (sk.bar.open_ms if sk.bar is not None else 0):
            return "late"
        return None

    def _by_builder(self, cols: _Columns, i: int, batch: Batch) -> None:
        """The rest of the batch, from a late trade on, through the per-trade builder."""
        sk = self.state
        closed: list[tuple[str, Kline]] = []
        late, dups = sk.process(cols.trades(i), closed)
        batch.duplicates += dups
        batch.refused.extend(sk.refused)
        batch.late.extend(late)
        batch.amended_before = sk.amended_before
        for name, k in closed:
            batch.closed[name].append(k)

    @staticmethod
    def _flush(pieces: dict[str, list[KlineColumns]], batch: Batch) -> None:
        for name, parts in pieces.items():
            for part in parts:
                batch.closed[name].extend(to_klines(part))
            parts.clear()

    def _needs_python_ints(self, cols: _Columns) -> bool:
        """Whether some amount sum of this batch might pass int64 (then Python ints)."""
        sk = self.state
        carried = [sk.bar, *sk.up] if sk.bar is not None else []
        largest = max((float(max(b.v, b.q)) for b in carried), default=0.0)
        qty = cols.qty.astype(np.float64)
        quote = qty * cols.price.astype(np.float64) / SCALE
        return bool(largest + max(float(qty.sum()), float(quote.sum())) >= _INT64_SAFE)

    # -- the array path ----------------------------------------------------------------------
    def _run(
        self,
        cols: _Columns,
        kb: I64,
        qty: Amounts,
        quote: Amounts,
        start: int,
        end: int,
        pieces: dict[str, list[KlineColumns]],
    ) -> None:
        """Trades start..end, all regular: close what they close, carry what stays open."""
        sk = self.state
        base = sk.base
        base_ms = base.length_ms
        ts = cols.ts[start:end]
        bars = group_trades(
            kb,
            cols.price[start:end],
            qty,
            quote,
            cols.first[start:end],
            cols.last[start:end],
            ~cols.maker[start:end],
        )
        if sk.bar is None:
            ups = [_Bar(level.open_time(int(ts[0]))) for level in sk.levels]
        else:
            bars = with_carried(sk.bar.open_ms // base_ms, _carried(sk.bar), bars)
            ups = sk.up
        k_open = int(bars.k[-1])
        prev_close = sk.prev_close
        if len(bars.k) == 1 and sk.bar is not None:  # all in the open base bar: none closes
            sk.bar = _bar_of(k_open * base_ms, bars, 0)
            sk.last_id = int(cols.last[end - 1])
            sk.last_ms = int(ts[-1])
            return
        closed, after = close_bars(base, bars, k_open, prev_close, sk.max_fill)
        if sk.emit_base:
            pieces[base.name].append(closed)
        taken = bars.take(np.flatnonzero(bars.n[:-1] > 0))
        taken_open_ms = taken.k * base_ms
        open_ms = k_open * base_ms
        new_up: list[_Bar] = []
        for level, up in zip(sk.levels, ups, strict=True):
            k_level = bucket_index(level, taken_open_ms)
            level_bars = group_bars(taken, k_level) if len(k_level) else taken
            k0 = int(bucket_index(level, np.array([up.open_ms], dtype=np.int64))[0])
            level_bars = with_carried(k0, _carried(up), level_bars)
            k_end = int(bucket_index(level, np.array([open_ms], dtype=np.int64))[0])
            if k_end != k0:  # else the open bar of this level only grows
                level_closed, _ = close_bars(level, level_bars, k_end, prev_close, sk.max_fill)
                pieces[level.name].append(level_closed)
            level_open = int(open_ms_of(level, np.array([k_end], dtype=np.int64))[0])
            if int(level_bars.k[-1]) == k_end:
                new_up.append(_bar_of(level_open, level_bars, len(level_bars.k) - 1))
            else:
                new_up.append(_Bar(level_open))
        sk.up = new_up
        sk.bar = _bar_of(open_ms, bars, len(bars.k) - 1)
        sk.prev_close = after
        sk.last_id = int(cols.last[end - 1])
        sk.last_ms = int(ts[-1])


class _Columns:
    """A batch's trade columns, as int64 and bool arrays of one length."""

    def __init__(self, *columns: npt.ArrayLike) -> None:
        ts, price, qty, first, last, maker = columns
        self.ts: I64 = np.asarray(ts, dtype=np.int64)
        self.price: I64 = np.asarray(price, dtype=np.int64)
        self.qty: I64 = np.asarray(qty, dtype=np.int64)
        self.first: I64 = np.asarray(first, dtype=np.int64)
        self.last: I64 = np.asarray(last, dtype=np.int64)
        self.maker: npt.NDArray[np.bool_] = np.asarray(maker, dtype=np.bool_)
        sizes = {len(c) for c in (self.ts, self.price, self.qty, self.first, self.last)}
        if sizes != {len(self.maker)}:
            raise ValueError(f"trade columns must have one length, got {sorted(sizes)}")

    def trade(self, i: int) -> Trade:
        return (int(self.first[i]), int(self.last[i]), int(self.price[i]), int(self.qty[i]),
                int(self.ts[i]), bool(self.maker[i]))  # fmt: skip

    def trades(self, start: int) -> list[Trade]:
        lists: list[list[Any]] = [
            c[start:].tolist()
            for c in (self.first, self.last, self.price, self.qty, self.ts, self.maker)
        ]
        return list(zip(*lists, strict=True))


def build_klines_columnar(
    time_ms: npt.ArrayLike,
    price_units: npt.ArrayLike,
    qty_units: npt.ArrayLike,
    first_id: npt.ArrayLike,
    last_id: npt.ArrayLike,
    is_buyer_maker: npt.ArrayLike,
    intervals: tuple[str, ...],
) -> dict[str, list[Kline]]:
    """All klines of one symbol's trade columns, the last closed at end of input: the
    columnar twin of `flows.klines.builder.build_klines`."""
    ck = ColumnarKlines(intervals)
    batch = ck.process(time_ms, price_units, qty_units, first_id, last_id, is_buyer_maker)
    for name, ks in ck.final_klines().items():
        batch.closed[name].extend(ks)
    return batch.closed
