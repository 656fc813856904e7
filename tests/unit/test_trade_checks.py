"""The bounds a real Binance trade stays within (flows.domain.trade_checks), at their edges."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from flows.domain.kline import Trade
from flows.domain.trade_checks import (
    EXCHANGE_START_MS,
    MAX_FILLS,
    MAX_TRADE_ID,
    MAX_UNITS,
    ImplausibleAmount,
    implausible,
    parse_amount,
)

CEILING = 1_570_755_611_620
GOOD: Trade = (15_373_518, 15_373_518, 141_342, 2_300_000_000, 1_570_752_011_620, True)


def trade(**changes: int) -> Trade:
    f, last, p, q, t, m = GOOD
    values = {"first": f, "last": last, "price": p, "qty": q, "time": t, **changes}
    return (values["first"], values["last"], values["price"], values["qty"], values["time"], m)


def test_the_bounds_are_what_their_comments_say() -> None:
    assert datetime.fromtimestamp(EXCHANGE_START_MS / 1000, UTC) == datetime(2017, 7, 1, tzinfo=UTC)
    assert MAX_UNITS == 9_223_372_036_854_775_807  # int64
    assert MAX_TRADE_ID == 10**12
    assert MAX_FILLS == 10**6


def test_a_real_trade_passes() -> None:
    assert implausible(GOOD, CEILING) is None


@pytest.mark.parametrize(
    ("changes", "ok"),
    [
        ({"time": EXCHANGE_START_MS}, True),
        ({"time": EXCHANGE_START_MS - 1}, False),
        ({"time": 0}, False),
        ({"time": -1}, False),
        ({"time": CEILING}, True),
        ({"time": CEILING + 1}, False),
        ({"time": 9_999_999_999_999}, False),
        ({"first": 0, "last": 0}, True),
        ({"first": MAX_TRADE_ID, "last": MAX_TRADE_ID}, True),
        ({"first": MAX_TRADE_ID, "last": MAX_TRADE_ID + 1}, False),
        ({"first": MAX_TRADE_ID + 1, "last": MAX_TRADE_ID + 1}, False),
        ({"first": 10**15, "last": 10**15}, False),
        ({"last": 10**15}, False),
        ({"first": 10**15}, False),  # and out of order
        ({"first": 5, "last": 5 + MAX_FILLS - 1}, True),  # MAX_FILLS fills
        ({"first": 5, "last": 5 + MAX_FILLS}, False),
        ({"first": -1, "last": -1}, False),
        ({"first": 7, "last": 6}, False),
        ({"price": MAX_UNITS, "qty": MAX_UNITS}, True),
        ({"price": MAX_UNITS + 1}, False),
        ({"qty": MAX_UNITS + 1}, False),
        ({"price": 10**408}, False),
    ],
)
def test_each_bound_at_its_edge(changes: dict[str, int], ok: bool) -> None:
    why = implausible(trade(**changes), CEILING)
    assert (why is None) == ok, why


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"time": 9_999_999_999_999},
            "trade time 9999999999999 (2286-11-20 17:46:39 UTC) is after 1570755611620 "
            "(2019-10-11 01:00:11 UTC), the latest time it can have",
        ),
        (
            {"time": 1_400_000_000_000},
            "trade time 1400000000000 (2014-05-13 16:53:20 UTC) is before 1498867200000 "
            "(2017-07-01 00:00:00 UTC), when Binance opened",
        ),
        (
            {"time": -(10**30)},
            f"trade time {-(10**30)} (out of the calendar) is before 1498867200000 "
            "(2017-07-01 00:00:00 UTC), when Binance opened",
        ),
        (
            {"first": 10**15},
            "first trade id 1000000000000000 is above 1000000000000, far beyond any Binance id",
        ),
        (
            {"last": 10**15},
            "last trade id 1000000000000000 is above 1000000000000, far beyond any Binance id",
        ),
        (
            {"first": 1, "last": 1_000_001},
            "trade ids 1..1000001 make 1000001 fills in one aggTrade, more than 1000000",
        ),
        ({"first": 9, "last": 8}, "trade ids 9..8 are not an ascending range of ids"),
        (
            {"price": 10**408},
            "price of 409 digits is above 92233720368.54775807",
        ),
        (
            {"qty": MAX_UNITS + 1},
            "quantity of 19 digits is above 92233720368.54775807",
        ),
    ],
)
def test_the_reason_names_the_value_and_the_bound(changes: dict[str, int], message: str) -> None:
    assert implausible(trade(**changes), CEILING) == message


@pytest.mark.parametrize(
    ("text", "units"),
    [
        ("0.00141342", 141_342),
        ("23.00000000", 2_300_000_000),
        ("9999999999.99999999", 999_999_999_999_999_999),  # the fast path's largest
        ("92233720368.54775807", MAX_UNITS),
        ("0092233720368.54775807", MAX_UNITS),
        ("9223372036854775807e-8", MAX_UNITS),
        ("23", 2_300_000_000),
        ("1e2", 10_000_000_000),
    ],
)
def test_parse_amount_takes_what_binance_can_send(text: str, units: int) -> None:
    assert parse_amount(text) == units


@pytest.mark.parametrize(
    "text",
    ["1e400", "1E400", "92233720368.54775808", "92233720369", "1" * 400, "1e999999999"],
)
def test_parse_amount_refuses_more_than_int64_units(text: str) -> None:
    with pytest.raises(ImplausibleAmount, match=r"is above 92233720368\.54775807"):
        parse_amount(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("inf", "expected a finite non-negative decimal, got 'inf'"),
        ("nan", "expected a finite non-negative decimal, got 'nan'"),
        ("-1", "expected a finite non-negative decimal, got '-1'"),
        ("abc", "expected a decimal number, got 'abc'"),
        ("0.000000001", "'0.000000001' has more than 8 decimals"),
    ],
)
def test_parse_amount_keeps_the_other_errors_of_parse_units(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_amount(text)
    assert type(info.value) is ValueError and str(info.value) == message
