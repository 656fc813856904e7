"""A backtest's signals are the fires of an independent batch computation (pandas resample,
TA-Lib, numpy): ten rules over a generated day, every one of them, minute for minute."""

from __future__ import annotations

from pathlib import Path

from flows.backtest.run import run_backtest
from flows.signals.book import TraderRow, build_book
from tests.reference_rules import TEN, all_fires, write_day


def test_backtest_fires_equal_a_pandas_and_talib_batch_computation(
    tmp_path: Path, redis_url: str
) -> None:
    day = tmp_path / "XRPETH-aggTrades-2019-10-11.csv"
    write_day(day, 150_000, seed=3)
    rows = [TraderRow(i + 1, f"rule {i}", rule.expression(), "1m", trigger_mode="every_close",
                      cooldown_bars=0) for i, rule in enumerate(TEN)]  # fmt: skip
    book = build_book(rows)
    assert not book.errors, book.errors
    result = run_backtest([day], book, ("1m",), redis_url)
    ours: dict[int, list[int]] = {row.id: [] for row in rows}
    for signal in result.signals:
        ours[signal.fire.trader_id].append(signal.fire.open_ms)
    reference = all_fires(day, TEN)
    expected = {i + 1: reference[rule] for i, rule in enumerate(TEN)}
    assert {k: sorted(v) for k, v in ours.items()} == expected
    assert sum(len(v) for v in expected.values()) >= 30  # the rules do fire, of each kind
    assert all(expected.values())  # every rule fires at least once
