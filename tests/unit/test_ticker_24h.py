"""The 24h ticker series of the rule language: exactly the 1,440 1m klines that end where the
evaluated kline ends, for rules on 1m and on longer intervals; undefined without them."""

from __future__ import annotations

import math

import pytest

from flows.domain.kline import Kline
from flows.rules.evaluate import compile_rule
from flows.rules.frame import Frame, Undefined
from flows.rules.helpers import DEFAULT_REGISTRY

MIN = 60_000
T0 = 1_700_006_400_000  # a day boundary


def minute(i: int) -> Kline:
    price = 1_000_000_000 + (i * 7919) % 100_000 - 50_000
    open_ = price - 1000 if i % 3 else price + 2000
    return Kline(T0 + i * MIN, T0 + (i + 1) * MIN - 1, open_, max(open_, price) + 10,
                 min(open_, price) - 10, price, 10**8, 1000 + i, 1, 0, 0)  # fmt: skip


def five(ms: list[Kline]) -> Kline:
    return Kline(ms[0].open_ms, ms[-1].close_ms, ms[0].open, max(k.high for k in ms),
                 min(k.low for k in ms), ms[-1].close, sum(k.volume for k in ms),
                 sum(k.quote_volume for k in ms), 5, 0, 0)  # fmt: skip


def values(interval: str, text: str, minutes: list[Kline]) -> list[float]:
    program = compile_rule(text, interval, condition=False)
    frames = {
        iv: Frame(iv, r, DEFAULT_REGISTRY.factories) for iv, r in program.requirements.items()
    }
    out = []
    for i, k in enumerate(minutes):
        frames["1m"].on_bar(k)
        if interval == "5m":
            if (i + 1) % 5:
                continue
            frames["5m"].on_bar(five(minutes[i - 4 : i + 1]))
        try:
            out.append(float(program.condition(frames, 0)))
        except Undefined:
            out.append(math.nan)
    return out


def expected(minutes: list[Kline], end: int) -> tuple[float, float]:
    """Over the 1,440 minutes ending at index `end` (inclusive)."""
    window = minutes[end - 1439 : end + 1]
    first_open = window[0].open / 1e8
    return ((window[-1].close / 1e8 - first_open) / first_open * 100,
            sum(k.quote_volume for k in window) / 1e8)  # fmt: skip


@pytest.mark.parametrize("interval", ["1m", "5m"])
def test_ticker_over_exactly_the_last_day_of_minutes(interval: str) -> None:
    minutes = [minute(i) for i in range(1440 + 300)]
    pct = values(interval, "price_change_pct_24h", minutes)
    vol = values(interval, "quote_volume_24h", minutes)
    step = 1 if interval == "1m" else 5
    ends = list(range(step - 1, len(minutes), step))
    assert len(pct) == len(ends)
    for got_pct, got_vol, end in zip(pct, vol, ends, strict=True):
        if end < 1439:
            assert math.isnan(got_pct) and math.isnan(got_vol), end  # less than a day held
            continue
        want_pct, want_vol = expected(minutes, end)
        assert got_pct == pytest.approx(want_pct, rel=1e-12)
        assert got_vol == pytest.approx(want_vol, rel=1e-12)


def test_a_missing_minute_in_the_day_leaves_the_ticker_undefined() -> None:
    minutes = [minute(i) for i in range(2200)]
    del minutes[700]  # a hole: the day cannot be exactly 1,440 minutes
    got = values("1m", "quote_volume_24h", minutes)
    # every day that still holds the hole (ending at minutes 1439..2139) is undefined
    assert all(math.isnan(v) for v in got[1438:2139])
    assert not any(math.isnan(v) for v in got[2139:])  # the days after the hole are whole
