"""The watermark close of quiet symbols (the live flow's grace timer), in the pure builder."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from flows.domain.intervals import INTERVALS
from flows.domain.kline import Kline, Trade
from flows.klines.builder import SymbolKlines, build_klines

M = 60_000
T0 = 1_700_000_100_000  # a 5-minute boundary


def _t(i: int, sec: float, price: int = 100) -> Trade:
    return (i, i, price, 10, T0 + int(sec * 1000), False)


def test_advance_closes_the_quiet_minute_and_later_trades_continue_exactly() -> None:
    trades = [_t(1, 5), _t(2, 20, 105), _t(3, 200, 99), _t(4, 201, 101)]
    sk = SymbolKlines(("1m", "5m"))
    closed: list[tuple[str, Kline]] = []
    sk.process(trades[:2], closed)
    assert closed == []
    sk.advance(T0 + M - 1, closed)  # the minute has not ended yet: nothing
    assert closed == []
    sk.advance(T0 + M + 2_000, closed)  # 2 s after it ended
    assert [(i, k.open_ms, k.trades) for i, k in closed] == [("1m", T0, 2)]
    sk.advance(T0 + 2 * M + 2_000, closed)  # the next minute had no trade: a flat kline
    assert [(i, k.open_ms, k.trades, k.close) for i, k in closed[1:]] == [("1m", T0 + M, 0, 105)]
    sk.process(trades[2:], closed)
    sk.advance(T0 + 4 * M + 2_000, closed)  # minute 3 closes; the 5m kline is still open
    open_now = dict(sk.open_klines())
    assert (open_now["1m"].open_ms, open_now["1m"].trades, open_now["1m"].close) == (
        T0 + 4 * M,
        0,
        101,
    )
    closed.append(("5m", open_now["5m"]))  # what end of input would close
    want = build_klines(trades, ("1m", "5m"))
    got: dict[str, list[Kline]] = {"1m": [], "5m": []}
    for interval, k in closed:
        got[interval].append(k)
    assert got == want  # the same klines as closing by trades and end of input


def test_a_trade_after_an_early_watermark_amends_the_closed_klines() -> None:
    sk = SymbolKlines(("1m", "5m"))
    closed: list[tuple[str, Kline]] = []
    sk.process([_t(1, 5)], closed)
    sk.advance(T0 + 6 * M, closed)  # a stall outlasted the grace: 1m x 6 and 5m x 1 closed
    assert [(i, k.open_ms) for i, k in closed][:2] == [("1m", T0), ("1m", T0 + M)]
    before = len(closed)
    late, dups = sk.process([_t(2, 50, 120), _t(3, 70, 90)], closed)  # held-back trades
    assert late == [] and dups == 0
    again = closed[before:]
    assert sk.amended_before == {"1m": T0 + 6 * M, "5m": T0 + 5 * M}
    # the minute of trade 2 and every kline after it, up to the same watermark, closed again
    assert sorted((i, k.open_ms) for i, k in again) == [("1m", T0 + i * M) for i in range(6)] + [
        ("5m", T0)
    ]
    latest = {(i, k.open_ms): k for i, k in closed}
    assert (latest[("1m", T0)].trades, latest[("1m", T0)].close) == (2, 120)
    assert (latest[("1m", T0 + M)].trades, latest[("1m", T0 + M)].close) == (1, 90)
    assert latest[("1m", T0 + 2 * M)].close == 90  # flat at the amended close
    assert (latest[("5m", T0)].trades, latest[("5m", T0)].high) == (3, 120)


def test_a_trade_older_than_the_rewind_point_is_late() -> None:
    sk = SymbolKlines(("1m",))
    closed: list[tuple[str, Kline]] = []
    sk.process([_t(1, 5), _t(2, 65)], closed)  # minute 0 closed by a trade: final
    sk.advance(T0 + 3 * M, closed)
    late, dups = sk.process([_t(3, 50)], closed)  # a new id, but before the rewind point
    assert late == [_t(3, 50)] and dups == 0 and sk.amended_before is None


def test_a_late_trade_after_an_applied_one_in_the_same_batch_loses_neither() -> None:
    """After a watermark, a batch applies a trade of the open minute, then (its time out of
    step with its id) a trade of a closed minute: rewinding to the state before the close
    would drop the applied trade. The late one is handed back (the caller counts it); the
    applied one stays in the klines."""
    sk = SymbolKlines(("1m",))
    closed: list[tuple[str, Kline]] = []
    sk.process([_t(1, 5)], closed)
    sk.advance(T0 + 2 * M + 2_000, closed)  # minutes 0 and 1 closed by the watermark
    late, dups = sk.process([_t(2, 125, 130), _t(3, 30, 80)], closed)
    assert late == [_t(3, 30, 80)] and dups == 0 and sk.amended_before is None
    open_now = dict(sk.open_klines())["1m"]
    assert (open_now.open_ms, open_now.trades, open_now.close) == (T0 + 2 * M, 1, 130)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_watermarks_at_any_moment_end_with_the_klines_of_the_trades(data: st.DataObject) -> None:
    """However early watermarks close klines, the latest version of each kline equals what
    the trades alone give (late trades amend; nothing is lost)."""
    gaps = data.draw(st.lists(st.integers(0, 400_000), min_size=1, max_size=40))
    trades: list[Trade] = []
    t = T0
    for i, gap in enumerate(gaps, 1):
        t += gap
        trades.append((i, i, 100 + i % 7, 10, t, i % 3 == 0))
    intervals = data.draw(st.sampled_from([("1m",), ("1m", "5m"), ("1m", "3m", "15m")]))
    sk = SymbolKlines(intervals)
    closed: list[tuple[str, Kline]] = []
    i = 0
    while i < len(trades):
        step = data.draw(st.integers(1, 5))
        sk.process(trades[i : i + step], closed)
        i += step
        if data.draw(st.booleans()):
            ahead = data.draw(st.integers(-60_000, 900_000))
            sk.advance(trades[min(i, len(trades)) - 1][4] + ahead, closed)
    latest = {(name, k.open_ms): k for name, k in closed}
    latest.update({(name, k.open_ms): k for name, k in sk.open_klines()})
    want = build_klines(trades, intervals)
    for name, klines in want.items():
        got = sorted((k for (n, _), k in latest.items() if n == name), key=lambda k: k.open_ms)
        got = [k for k in got if k.open_ms <= klines[-1].open_ms]
        assert got == klines, name


def test_snapshot_of_an_empty_open_bar_round_trips() -> None:
    sk = SymbolKlines(("1m",))
    closed: list[tuple[str, Kline]] = []
    sk.process([_t(1, 5, 100)], closed)
    sk.advance(T0 + M + 2_000, closed)
    again = SymbolKlines.restore(sk.snapshot())
    a: list[tuple[str, Kline]] = []
    b: list[tuple[str, Kline]] = []
    sk.process([_t(2, 70, 90)], a)
    again.process([_t(2, 70, 90)], b)
    assert sk.open_klines() == again.open_klines()
    assert sk.open_klines()[0][1][2:6] == (90, 90, 90, 90)  # o h l c from the first trade


def test_synthetic_market_does_not_depend_on_how_it_is_advanced() -> None:
    from flows.sources.synthetic import SyntheticMarket

    one = SyntheticMarket(12, 5, 1_700_000_000_000, 30.0).advance_to(1_700_000_600_000)
    stepped = SyntheticMarket(12, 5, 1_700_000_000_000, 30.0)
    many: dict[str, list[Trade]] = {}
    for t in range(1_700_000_000_000, 1_700_000_600_001, 7_919):
        for symbol, trades in stepped.advance_to(t).items():
            many.setdefault(symbol, []).extend(trades)
    for symbol, trades in stepped.advance_to(1_700_000_600_000).items():
        many.setdefault(symbol, []).extend(trades)
    assert one == many and sum(len(v) for v in one.values()) > 10_000


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_a_builder_resumed_from_stored_klines_continues_exactly(data: st.DataObject) -> None:
    """A restart that rebuilds the state from the closed klines in storage (each longer
    interval's open kline from the pieces that tile it) ends with the klines of the trades."""
    gaps = data.draw(st.lists(st.integers(0, 300_000), min_size=2, max_size=40))
    trades: list[Trade] = []
    t = T0
    for i, gap in enumerate(gaps, 1):
        t += gap
        trades.append((i, i, 100 + i % 5, 10 + i, t, i % 2 == 0))
    intervals = data.draw(st.sampled_from([("1m", "5m"), ("1m", "3m", "15m", "1h"), ("5m", "15m")]))
    want = build_klines(trades, intervals)
    smallest = min((INTERVALS[n] for n in intervals), key=lambda i: i.length_ms)
    cut = smallest.open_time(data.draw(st.integers(trades[0][4], trades[-1][4])))
    before = [tr for tr in trades if tr[4] < cut]
    stored: dict[str, list[Kline]] = {
        name: [k for k in ks if INTERVALS[name].next_open(k.open_ms) <= cut]
        for name, ks in want.items()
    }
    prev = build_klines(before, ("1m",))["1m"][-1].close if before else 0
    sk = SymbolKlines.resumed(intervals, cut, prev, stored)
    closed: list[tuple[str, Kline]] = []
    sk.process([tr for tr in trades if tr[4] >= cut], closed)
    latest = {(name, k.open_ms): k for name, ks in stored.items() for k in ks}
    latest.update({(name, k.open_ms): k for name, k in closed})
    latest.update({(name, k.open_ms): k for name, k in sk.open_klines()})
    for name, klines in want.items():
        got = sorted((k for (n, _), k in latest.items() if n == name), key=lambda k: k.open_ms)
        assert got == klines, name


def test_an_implausible_id_jump_is_refused_and_changes_nothing() -> None:
    """One poisoned id (a jump no market can trade in the time between two trades) is
    refused; the trades after it are neither duplicates nor changed."""
    good = [_t(i, 5 + i) for i in range(1, 30)]
    poison = (10**11, 10**11, 100, 10, T0 + 20_500, False)
    sk = SymbolKlines(("1m", "5m"))
    closed: list[tuple[str, Kline]] = []
    late, dups = sk.process([*good[:15], poison, *good[15:]], closed)
    assert (late, dups) == ([], 0)
    assert [t for t, _ in sk.refused] == [poison] and "jumps" in sk.refused[0][1]
    closed.extend(sk.open_klines())
    assert closed == [(n, k) for n, ks in build_klines(good, ("1m", "5m")).items() for k in ks]


def test_a_jump_the_time_between_explains_is_kept() -> None:
    """A file that skips a day of a busy market skips millions of ids: not refused."""
    sk = SymbolKlines(("1m",))
    closed: list[tuple[str, Kline]] = []
    day_later = (3_000_001, 3_000_001, 100, 10, T0 + 86_400_000, False)
    sk.process([_t(1, 5), day_later], closed)
    assert sk.refused == [] and sk.last_id == 3_000_001
