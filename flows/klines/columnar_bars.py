"""Array pieces of the columnar kline builder: buckets, grouping, closing with flat fills.

A *bucket index* numbers the klines of one interval: for a fixed-length interval it is
``(open_ms - offset) // length``, for 1M the count of calendar months since 1970-01. Working
in bucket indices makes the empty klines between two bars a plain integer range, for every
interval alike.

`Bars` holds one row per bucket that has a bar, bucket indices strictly increasing. The
amount columns (v, q, bv, bq) are int64 when every sum is known to stay below 2**62, and
object arrays of Python ints otherwise, so that sums stay exact however large they get.

>>> from flows.domain.intervals import INTERVALS
>>> month = INTERVALS["1M"]
>>> k = bucket_index(month, np.array([1_700_000_000_000]))
>>> open_ms_of(month, k).tolist(), open_ms_of(month, k + 1).tolist()
([1698796800000], [1701388800000])
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from flows.domain.intervals import Interval

I64 = npt.NDArray[np.int64]
Amounts = npt.NDArray[Any]  # int64, or object holding Python ints


def bucket_index(interval: Interval, ms: I64) -> I64:
    """The bucket index of the kline of `interval` holding each time."""
    if interval.calendar_month:
        months = ms.astype("datetime64[ms]").astype("datetime64[M]")
        return months.astype(np.int64)
    return (ms - interval.offset_ms) // interval.length_ms


def open_ms_of(interval: Interval, k: I64) -> I64:
    """The open time of each bucket index."""
    if interval.calendar_month:
        return k.astype("datetime64[M]").astype("datetime64[ms]").astype(np.int64)
    return k * interval.length_ms + interval.offset_ms


class Bars(NamedTuple):
    """Bars in bucket order; a row with n == 0 holds no trade (only a carried first row)."""

    k: I64
    o: I64
    h: I64
    l: I64  # noqa: E741 (the kline's low, named as Binance names it)
    c: I64
    v: Amounts
    q: Amounts
    bv: Amounts
    bq: Amounts
    n: I64
    fid: I64
    lid: I64

    def take(self, index: Any) -> Bars:
        return Bars(*(col[index] for col in self))

    def row(self, i: int) -> list[int]:
        """Row i as Python ints, in the order of `flows.klines.builder._Bar.dump` minus
        the open time: o, h, l, c, v, q, bv, bq, n, first_id, last_id."""
        return [int(col[i]) for col in self[1:]]


def starts_of(k: I64) -> I64:
    """Where each run of equal bucket indices starts."""
    if len(k) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate(([0], np.flatnonzero(k[1:] != k[:-1]) + 1)).astype(np.int64)


def group_trades(
    k: I64,
    price: I64,
    qty: Amounts,
    quote: Amounts,
    first_id: I64,
    last_id: I64,
    taker_buy: npt.NDArray[np.bool_],
) -> Bars:
    """One bar per run of trades in the same bucket (`k` non-decreasing)."""
    starts = starts_of(k)
    ends = np.append(starts[1:], len(k)) - 1
    zero = np.zeros(1, dtype=qty.dtype)[0]
    return Bars(
        k[starts],
        price[starts],
        np.maximum.reduceat(price, starts),
        np.minimum.reduceat(price, starts),
        price[ends],
        np.add.reduceat(qty, starts),
        np.add.reduceat(quote, starts),
        np.add.reduceat(np.where(taker_buy, qty, zero), starts),
        np.add.reduceat(np.where(taker_buy, quote, zero), starts),
        np.add.reduceat(last_id - first_id + 1, starts),
        first_id[starts],
        last_id[ends],
    )


def group_bars(bars: Bars, k: I64) -> Bars:
    """Roll bars holding trades up into the buckets `k` (non-decreasing) of a longer
    interval."""
    starts = starts_of(k)
    ends = np.append(starts[1:], len(k)) - 1
    return Bars(
        k[starts],
        bars.o[starts],
        np.maximum.reduceat(bars.h, starts),
        np.minimum.reduceat(bars.l, starts),
        bars.c[ends],
        np.add.reduceat(bars.v, starts),
        np.add.reduceat(bars.q, starts),
        np.add.reduceat(bars.bv, starts),
        np.add.reduceat(bars.bq, starts),
        np.add.reduceat(bars.n, starts),
        bars.fid[starts],
        bars.lid[ends],
    )


def with_carried(k0: int, carried: list[int], bars: Bars) -> Bars:
    """`bars` with a carried bar (o, h, l, c, v, q, bv, bq, n, first_id, last_id) of bucket
    k0 in front: merged into the first row when it is the same bucket (the carried part
    comes first), else as a row of its own."""
    o, h, lo, c, v, q, bv, bq, n, fid, lid = carried
    if len(bars.k) and int(bars.k[0]) == k0:
        if n == 0:
            return bars
        bars.o[0] = o
        bars.fid[0] = fid
        bars.h[0] = max(h, int(bars.h[0]))
        bars.l[0] = min(lo, int(bars.l[0]))
        bars.v[0] += v
        bars.q[0] += q
        bars.bv[0] += bv
        bars.bq[0] += bq
        bars.n[0] += n
        return bars
    values = (k0, o, h, lo, c, v, q, bv, bq, n, fid, lid)
    return Bars(
        *(
            np.concatenate((np.array([x], dtype=col.dtype), col))
            for x, col in zip(values, bars, strict=True)
        )
    )


class KlineColumns(NamedTuple):
    """Closed klines as columns, in the field order of `flows.domain.kline.Kline`."""

    open_ms: I64
    close_ms: I64
    open: I64
    high: I64
    low: I64
    close: I64
    volume: Amounts
    quote_volume: Amounts
    trades: I64
    taker_buy_volume: Amounts
    taker_buy_quote_volume: Amounts
    first_trade_id: I64
    last_trade_id: I64


def close_bars(
    interval: Interval, bars: Bars, k_end: int, prev_close: int, max_fill: int
) -> tuple[KlineColumns, int]:
    """The klines closed by reaching bucket `k_end`: every row before it, and flat klines
    (the newest `max_fill` of each gap) for the empty buckets between rows and up to
    `k_end`, at the close before them. A first row without trades is flat at `prev_close`.
    Returns the klines and the close after them."""
    m = int(np.searchsorted(bars.k, k_end))
    k = bars.k[:m]
    n = bars.n[:m]
    pc = bars.c[:m].copy()
    if m and n[0] == 0:
        pc[0] = prev_close
    next_k = np.append(k[1:], k_end)
    fills = np.minimum(next_k - k - 1, max(max_fill, 0))
    fills_before = np.cumsum(fills) - fills
    total = m + int(fills.sum())
    pos = np.arange(m, dtype=np.int64) + fills_before
    # every row starts flat; the rows of bars are written over
    owner = np.repeat(np.arange(m, dtype=np.int64), fills)
    offset = np.arange(len(owner), dtype=np.int64) - fills_before[owner]
    out_k = np.empty(total, dtype=np.int64)
    out_k[pos] = k
    fill_pos = pos[owner] + 1 + offset
    out_k[fill_pos] = (next_k - fills)[owner] + offset
    price = np.empty(total, dtype=np.int64)
    price[fill_pos] = pc[owner]
    o, h, lo, c = price.copy(), price.copy(), price.copy(), price
    for col, src in ((o, bars.o), (h, bars.h), (lo, bars.l), (c, bars.c)):
        col[pos] = np.where(n > 0, src[:m], pc)
    amounts = []
    for src in (bars.v, bars.q, bars.bv, bars.bq):
        col = np.zeros(total, dtype=src.dtype)
        col[pos] = src[:m]
        amounts.append(col)
    count = np.zeros(total, dtype=np.int64)
    count[pos] = n
    fid = np.full(total, -1, dtype=np.int64)
    lid = np.full(total, -1, dtype=np.int64)
    fid[pos] = bars.fid[:m]
    lid[pos] = bars.lid[:m]
    opens = open_ms_of(interval, out_k)
    closes = open_ms_of(interval, out_k + 1) - 1
    out = KlineColumns(
        opens, closes, o, h, lo, c, amounts[0], amounts[1], count, amounts[2], amounts[3],
        fid, lid,
    )  # fmt: skip
    return out, int(pc[-1]) if m else prev_close
