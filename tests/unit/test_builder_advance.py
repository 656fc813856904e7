"""The watermark close of quiet symbols (the live flow's grace timer), in the pure builder."""

from __future__ import annotations

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


def test_a_trade_older_than_the_watermark_is_late() -> None:
    sk = SymbolKlines(("1m",))
    closed: list[tuple[str, Kline]] = []
    sk.process([_t(1, 5)], closed)
    sk.advance(T0 + M + 2_000, closed)
    late, dups = sk.process([_t(2, 50)], closed)  # a new id, but for the closed minute
    assert late == [_t(2, 50)] and dups == 0
    assert [k.trades for _, k in closed] == [1]


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
