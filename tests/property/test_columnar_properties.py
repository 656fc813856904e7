"""Property tests: the columnar kline builder equals the per-trade builder on generated streams.

Streams of one symbol mix what the array path must get exactly right and what it hands to
the builder: gaps of many intervals (flat fills, capped by a small max_fill too), one trade
per bucket and many per bucket, amounts up to 2**63 - 1 (price*qty past int64, sums past it),
duplicates, id jumps (plausible and implausible), trades older than the open kline, and
watermarks between batches. Every stream is fed in a random batch split; every batch must
close what `SymbolKlines` closes for the same batch, with the same duplicates, refusals and
late trades.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows.domain.kline import Kline, Trade
from flows.domain.trade_checks import EXCHANGE_START_MS, JUMP_BASE
from flows.klines.builder import DEFAULT_MAX_FILL, SymbolKlines
from flows.klines.columnar import ColumnarKlines, quote_column

SEC = 1_000
MIN = 60 * SEC
HOUR = 60 * MIN
DAY = 24 * HOUR
INT64_MAX = 2**63 - 1

INTERVAL_SETS = (
    ("1s", "1m", "3m", "5m", "15m", "1h", "1d", "1w", "1M"),
    ("1s",),
    ("1m", "5m", "30m", "2h", "6h", "8h", "12h", "1d"),
    ("5m", "1h", "4h", "1d", "3d", "1w", "1M"),
)

amounts = st.one_of(
    st.sampled_from([1, 100_000_000, 10**15, INT64_MAX, INT64_MAX - 1]),
    st.integers(1, 10_000),
    st.integers(1, 10**10),
    st.integers(10**11, 10**13),  # price*qty past int64, the quote inside it
    st.integers(1, INT64_MAX),
)
gaps = st.one_of(
    st.just(0),
    st.integers(0, 999),
    st.integers(0, 2 * MIN),
    st.integers(0, 3 * HOUR),
    st.integers(0, 40 * DAY),
)


@st.composite
def streams(draw: st.DrawFn) -> list[Trade]:
    count = draw(st.integers(1, 60))
    ts = draw(st.integers(EXCHANGE_START_MS, EXCHANGE_START_MS + 12 * 365 * DAY))
    next_id = draw(st.integers(0, 10**9))
    trades: list[Trade] = []
    for _ in range(count):
        kind = draw(
            st.sampled_from(("next",) * 8 + ("duplicate", "jump", "far jump", "late", "no id"))
        )
        ts += draw(gaps)
        first = next_id
        if kind == "duplicate" and trades:
            first = draw(st.sampled_from(trades))[0]
        elif kind == "jump":
            first = next_id + draw(st.integers(1, JUMP_BASE))
        elif kind == "far jump":
            first = next_id + JUMP_BASE + draw(st.integers(1, 10**9))
        elif kind == "no id":  # a first trade of id 0 after nothing: last id -1 before it
            first = max(first, 0)
        when = ts - draw(st.integers(1, 2 * HOUR)) if kind == "late" else ts
        last = first + draw(st.integers(0, 3))
        trades.append((first, last, draw(amounts), draw(amounts), when, draw(st.booleans())))
        next_id = max(next_id, last + 1)
    return trades


@st.composite
def plans(draw: st.DrawFn) -> tuple[tuple[str, ...], int, list[Trade], list[int], list[Any]]:
    """Intervals, max_fill, trades, batch cut points, and a watermark (or None) per cut."""
    intervals = draw(st.sampled_from(INTERVAL_SETS))
    max_fill = draw(st.sampled_from((DEFAULT_MAX_FILL, 3, 1)))
    trades = draw(streams())
    cuts = sorted(set(draw(st.lists(st.integers(1, len(trades)), max_size=8))))
    marks = [
        draw(st.one_of(st.none(), st.none(), st.integers(-HOUR, HOUR))) for _ in range(len(cuts))
    ]
    return intervals, max_fill, trades, cuts, marks


def as_columns(trades: list[Trade]) -> list[np.ndarray]:
    if not trades:
        return [np.zeros(0, dtype=np.int64)] * 5 + [np.zeros(0, dtype=np.bool_)]
    first, last, price, qty, ts, maker = (list(c) for c in zip(*trades, strict=True))
    return [np.array(c, dtype=np.int64) for c in (ts, price, qty, first, last)] + [
        np.array(maker, dtype=np.bool_)
    ]


def grouped(intervals: tuple[str, ...], pairs: list[tuple[str, Kline]]) -> dict[str, list[Kline]]:
    out: dict[str, list[Kline]] = {name: [] for name in intervals}
    for name, k in pairs:
        out[name].append(k)
    return out


def pure(max_examples: int) -> settings:
    return settings(
        derandomize=True,
        database=None,
        deadline=None,
        max_examples=max_examples,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@pure(300)
@given(plan=plans())
def test_any_stream_in_any_split_closes_what_the_builder_closes(
    plan: tuple[tuple[str, ...], int, list[Trade], list[int], list[Any]],
) -> None:
    intervals, max_fill, trades, cuts, marks = plan
    sk = SymbolKlines(intervals, max_fill)
    ck = ColumnarKlines(intervals, max_fill)
    bounds = list(zip([0, *cuts], [*cuts, len(trades)], strict=True))
    for (lo, hi), mark in zip(bounds, [*marks, None], strict=True):
        closed: list[tuple[str, Kline]] = []
        late, dups = sk.process(trades[lo:hi], closed)
        batch = ck.process(*as_columns(trades[lo:hi]))
        assert batch.closed == grouped(intervals, closed)
        assert (batch.late, batch.duplicates, batch.refused) == (late, dups, sk.refused)
        assert batch.amended_before == sk.amended_before
        if mark is not None and hi < len(trades):
            closed = []
            sk.advance(trades[hi][4] + mark, closed)
            assert ck.advance(trades[hi][4] + mark) == grouped(intervals, closed)
    assert ck.final_klines() == grouped(intervals, sk.open_klines())
    assert ck.state.snapshot() == sk.snapshot()


@pure(150)
@given(plan=plans())
def test_without_watermarks_the_split_does_not_matter(
    plan: tuple[tuple[str, ...], int, list[Trade], list[int], list[Any]],
) -> None:
    intervals, max_fill, trades, cuts, _ = plan
    whole = ColumnarKlines(intervals, max_fill)
    expected = whole.process(*as_columns(trades)).closed
    split = ColumnarKlines(intervals, max_fill)
    got: dict[str, list[Kline]] = {name: [] for name in intervals}
    for lo, hi in zip([0, *cuts], [*cuts, len(trades)], strict=True):
        for name, ks in split.process(*as_columns(trades[lo:hi])).closed.items():
            got[name].extend(ks)
    assert got == expected
    assert split.final_klines() == whole.final_klines()


@pure(300)
@given(prices=st.lists(amounts, min_size=1, max_size=50), qtys=st.lists(amounts, min_size=50))
def test_quote_column_is_exact_while_the_quote_fits_int64(
    prices: list[int], qtys: list[int]
) -> None:
    pairs = [(p, q) for p, q in zip(prices, qtys, strict=False) if p * q // 10**8 <= INT64_MAX]
    if not pairs:
        return
    p = np.array([x for x, _ in pairs], dtype=np.int64)
    q = np.array([y for _, y in pairs], dtype=np.int64)
    assert quote_column(p, q).tolist() == [x * y // 10**8 for x, y in pairs]
