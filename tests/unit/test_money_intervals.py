"""Exact money, kline interval alignment and the environment settings.

Expected values are written out by hand (or derived from `datetime`/`Decimal`), never from the
code under test, so a wrong rule shows up as a wrong number.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from flows.domain.intervals import (
    DEFAULT_INTERVALS,
    INTERVAL_NAMES,
    INTERVALS,
    UNVERIFIED_INTERVALS,
    IntervalError,
    get_interval,
    parse_intervals,
)
from flows.domain.money import format_units, parse_units, quote_units
from flows.settings import Settings, unknown_env_vars


def ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    """A UTC wall-clock time as epoch milliseconds."""
    return int(datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()) * 1000


# --- parse_units -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "units"),
    [
        ("0.00141342", 141_342),
        ("58001.01000000", 5_800_101_000_000),
        ("0.00000001", 1),
        ("0.00000000", 0),
        ("1.00000000", 100_000_000),
        ("90000000000.00000000", 9_000_000_000_000_000_000),
        ("0.001", 100_000),
        ("23.5", 2_350_000_000),
        ("0.1", 10_000_000),
        ("100", 10_000_000_000),
        ("0", 0),
        ("7", 700_000_000),
        ("1.000000010", 100_000_001),  # a 9th decimal that is zero changes nothing
        ("12345678901234.5678", 1_234_567_890_123_456_780_000),
    ],
)
def test_parse_units_is_exact(text: str, units: int) -> None:
    assert parse_units(text) == units
    assert Decimal(text).scaleb(8) == units


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0.000000001", "'0.000000001' has more than 8 decimals"),
        ("1.123456789", "'1.123456789' has more than 8 decimals"),
        ("0.123456785", "'0.123456785' has more than 8 decimals"),
        ("-1.00000000", "expected a finite non-negative decimal, got '-1.00000000'"),
        ("-0.5", "expected a finite non-negative decimal, got '-0.5'"),
        ("-3", "expected a finite non-negative decimal, got '-3'"),
        ("nan", "expected a finite non-negative decimal, got 'nan'"),
        ("NaN", "expected a finite non-negative decimal, got 'NaN'"),
        ("inf", "expected a finite non-negative decimal, got 'inf'"),
        ("-Infinity", "expected a finite non-negative decimal, got '-Infinity'"),
        ("abc", "expected a decimal number, got 'abc'"),
        ("", "expected a decimal number, got ''"),
        ("1.2.3", "expected a decimal number, got '1.2.3'"),
        ("1,5", "expected a decimal number, got '1,5'"),
        ("0.0000000x", "expected a decimal number, got '0.0000000x'"),
        ("12.3456789y", "expected a decimal number, got '12.3456789y'"),
    ],
)
def test_parse_units_rejects_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_units(text)
    assert str(info.value) == message


@pytest.mark.parametrize("text", ["1.0000000 ", "0.1234_567", "5.0000_001"])
def test_parse_units_never_returns_a_shifted_value(text: str) -> None:
    """An odd spelling must raise or give its true value, never a value off by a factor.

    KNOWN BUG: the fast path for "8 decimals" only measures the text after the dot and hands it
    to int(), which also accepts a trailing space and '_' digit separators. '1.0000000 ' (1.0
    with 7 decimals and a space) becomes 10000000 (0.1) and '0.1234_567' becomes 1234567
    (0.01234567) instead of 12345670; the slow path (Decimal) reads both correctly.
    """
    true_units = Decimal(text.strip()).scaleb(8)
    try:
        got = parse_units(text)
    except ValueError:
        return  # refusing an odd spelling is fine
    assert got == true_units


# --- format_units ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("units", "text"),
    [
        (0, "0.00000000"),
        (1, "0.00000001"),
        (141_342, "0.00141342"),
        (99_999_999, "0.99999999"),
        (100_000_000, "1.00000000"),
        (123_456_789, "1.23456789"),
        (9_000_000_000_000_000_000, "90000000000.00000000"),
    ],
)
def test_format_units_prints_eight_decimals(units: int, text: str) -> None:
    assert format_units(units) == text


def test_format_units_rejects_a_small_negative() -> None:
    with pytest.raises(ValueError, match=r"^amounts are never negative, got -1$"):
        format_units(-1)


def test_format_units_rejects_a_large_negative() -> None:
    """KNOWN BUG: the sign is only checked for values shorter than 9 digits, so -1.0 prints as
    '-1.00000000' while -0.00000001 raises."""
    with pytest.raises(ValueError, match="never negative"):
        format_units(-100_000_000)


@given(st.integers(min_value=0, max_value=10**30))
def test_format_then_parse_round_trips(units: int) -> None:
    text = format_units(units)
    whole, dot, decimals = text.partition(".")
    assert dot == "."
    assert len(decimals) == 8
    assert whole.isdigit()
    assert whole == "0" or not whole.startswith("0")
    assert int(whole + decimals) == units
    assert parse_units(text) == units


@given(st.decimals(min_value=0, max_value=10**12, places=8, allow_nan=False))
def test_parse_then_format_round_trips(value: Decimal) -> None:
    text = f"{value:.8f}"
    assert format_units(parse_units(text)) == text


# --- quote_units -----------------------------------------------------------------------------

# XMRBTC trades of 2021-08-14 (ws-capture-2021-08-14-ftm-sxp-badger-xmr.txt): Binance truncates
# every price*qty to 8 decimals before summing it into the kline's quote volume.
XMRBTC_QUOTES = [
    ("0.005773", "0.228", 131_624),  # 0.001316244
    ("0.005773", "0.045", 25_978),  # 0.000259785: rounding would give 25979
    ("0.005773", "0.042", 24_246),  # 0.000242466: rounding would give 24247
    ("0.00578", "0.07", 40_460),  # exact
]


@pytest.mark.parametrize(("price", "qty", "quote"), XMRBTC_QUOTES)
def test_quote_units_truncates(price: str, qty: str, quote: int) -> None:
    assert quote_units(parse_units(price), parse_units(qty)) == quote


def test_quote_units_small_cases() -> None:
    assert quote_units(1, 1) == 0  # 1e-16 truncates to zero
    assert quote_units(100_000_000, 1) == 1
    # 58001.01 * 0.00108 = 62.6410908
    assert quote_units(parse_units("58001.01"), parse_units("0.00108")) == 6_264_109_080


def test_xmrbtc_capture_shows_truncated_quote_volume(shared_data: Path) -> None:
    """The kline's quote volume grows by exactly the truncated quote of each aggTrade."""
    path = shared_data / "ws-capture-2021-08-14-ftm-sxp-badger-xmr.txt"
    events = []
    for line in path.read_text().splitlines()[1:]:
        _, _, frame = line.partition(": ")
        if '"s":"XMRBTC"' in frame and ('"e":"aggTrade"' in frame or '"e":"kline"' in frame):
            events.append(json.loads(frame)["data"])
    kinds = [e["e"] for e in events]
    assert kinds == ["aggTrade", "kline", "aggTrade", "kline", "aggTrade", "kline"]
    quote_volumes = [parse_units(e["k"]["q"]) for e in events if e["e"] == "kline"]
    trades = [e for e in events if e["e"] == "aggTrade"]
    assert quote_volumes == [64_706, 196_330, 222_308]
    # the first state holds a trade before the capture began (0.042 at 0.005773) and the 0.07 one
    first = quote_units(parse_units("0.005773"), parse_units("0.042"))
    second = quote_units(parse_units(trades[0]["p"]), parse_units(trades[0]["q"]))
    assert first + second == quote_volumes[0]
    steps = zip(quote_volumes[:-1], quote_volumes[1:], trades[1:], strict=True)
    for before, after, trade in steps:
        assert after - before == quote_units(parse_units(trade["p"]), parse_units(trade["q"]))
    assert [(t["p"], t["q"]) for t in trades[1:]] == [
        ("0.00577300", "0.22800000"),
        ("0.00577300", "0.04500000"),
    ]


# --- intervals -------------------------------------------------------------------------------

# 2021-04-04 20:03:11.306 UTC, a Sunday (the time of the first aggTrade of the 04-04 capture).
T = ms(2021, 4, 4, 20, 3, 11) + 306
EXPECTED_OPEN = {
    "1s": ms(2021, 4, 4, 20, 3, 11),
    "1m": ms(2021, 4, 4, 20, 3),
    "3m": ms(2021, 4, 4, 20, 3),
    "5m": ms(2021, 4, 4, 20, 0),
    "15m": ms(2021, 4, 4, 20, 0),
    "30m": ms(2021, 4, 4, 20, 0),
    "1h": ms(2021, 4, 4, 20),
    "2h": ms(2021, 4, 4, 20),
    "4h": ms(2021, 4, 4, 20),
    "6h": ms(2021, 4, 4, 18),
    "8h": ms(2021, 4, 4, 16),
    "12h": ms(2021, 4, 4, 12),
    "1d": ms(2021, 4, 4),
    "3d": ms(2021, 4, 3),  # epoch day 18721; 18720 is the multiple of 3
    "1w": ms(2021, 3, 29),  # the Monday before
    "1M": ms(2021, 4, 1),
}
EXPECTED_CLOSE = {
    "1s": ms(2021, 4, 4, 20, 3, 12) - 1,
    "1m": ms(2021, 4, 4, 20, 4) - 1,
    "3m": ms(2021, 4, 4, 20, 6) - 1,
    "5m": ms(2021, 4, 4, 20, 5) - 1,
    "15m": ms(2021, 4, 4, 20, 15) - 1,
    "30m": ms(2021, 4, 4, 20, 30) - 1,
    "1h": ms(2021, 4, 4, 21) - 1,
    "2h": ms(2021, 4, 4, 22) - 1,
    "4h": ms(2021, 4, 5) - 1,
    "6h": ms(2021, 4, 5) - 1,
    "8h": ms(2021, 4, 5) - 1,
    "12h": ms(2021, 4, 5) - 1,
    "1d": ms(2021, 4, 5) - 1,
    "3d": ms(2021, 4, 6) - 1,
    "1w": ms(2021, 4, 5) - 1,
    "1M": ms(2021, 5, 1) - 1,
}


def test_every_interval_is_covered() -> None:
    assert set(EXPECTED_OPEN) == set(INTERVAL_NAMES) == set(INTERVALS)
    assert INTERVAL_NAMES == (
        "1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h",
        "1d", "3d", "1w", "1M",
    )  # fmt: skip


@pytest.mark.parametrize("name", list(EXPECTED_OPEN))
def test_alignment_of_a_known_time(name: str) -> None:
    iv = get_interval(name)
    open_ms = iv.open_time(T)
    assert open_ms == EXPECTED_OPEN[name]
    assert iv.close_time(open_ms) == EXPECTED_CLOSE[name]
    assert iv.close_time(open_ms) == iv.next_open(open_ms) - 1
    # every millisecond of the kline maps to the same open, the next one to the next kline
    assert iv.open_time(open_ms) == open_ms
    assert iv.open_time(iv.close_time(open_ms)) == open_ms
    assert iv.open_time(iv.next_open(open_ms)) == iv.next_open(open_ms)
    assert iv.open_time(open_ms - 1) < open_ms


def test_1w_opens_on_monday() -> None:
    week = INTERVALS["1w"]
    # Binance REST: a 1w kline with open 1499040000000 (Monday 2017-07-03) closes 1499644799999
    assert datetime.fromtimestamp(1499040000000 / 1000, tz=UTC).weekday() == 0
    assert week.close_time(1499040000000) == 1499644799999
    for day in range(7):
        assert week.open_time(1499040000000 + day * 86_400_000 + 12_345) == 1499040000000
    assert week.open_time(1499040000000 - 1) == 1499040000000 - 7 * 86_400_000
    assert week.open_time(1499644799999) == 1499040000000
    assert week.open_time(1499644800000) == 1499644800000
    assert week.open_time(0) == ms(1969, 12, 29)  # the epoch (a Thursday) is in that week


@pytest.mark.parametrize(
    ("inside", "open_ms", "next_ms"),
    [
        (ms(2024, 2, 29, 23, 59, 59) + 999, ms(2024, 2, 1), ms(2024, 3, 1)),  # leap February
        (ms(2023, 2, 15), ms(2023, 2, 1), ms(2023, 3, 1)),
        (ms(2023, 12, 31, 12), ms(2023, 12, 1), ms(2024, 1, 1)),  # December -> January
        (ms(2024, 1, 1), ms(2024, 1, 1), ms(2024, 2, 1)),
        (ms(2021, 4, 30, 23, 59, 59) + 999, ms(2021, 4, 1), ms(2021, 5, 1)),
        (1_700_000_000_000, 1698796800000, 1701388800000),  # 2023-11-14 -> Nov, Dec
    ],
)
def test_1m_month_is_a_calendar_month(inside: int, open_ms: int, next_ms: int) -> None:
    month = INTERVALS["1M"]
    assert month.open_time(inside) == open_ms
    assert month.next_open(open_ms) == next_ms
    assert month.close_time(open_ms) == next_ms - 1


def test_leap_february_has_29_days() -> None:
    month = INTERVALS["1M"]
    feb = ms(2024, 2, 1)
    assert month.close_time(feb) - feb + 1 == 29 * 86_400_000
    assert month.close_time(ms(2023, 2, 1)) - ms(2023, 2, 1) + 1 == 28 * 86_400_000


def test_3d_is_epoch_aligned_and_unverified() -> None:
    three = INTERVALS["3d"]
    day = 86_400_000
    assert three.open_time(0) == 0
    assert three.open_time(3 * day - 1) == 0
    assert three.open_time(3 * day) == 3 * day
    assert three.open_time(T) == 18720 * day
    assert three.close_time(18720 * day) == 18723 * day - 1
    assert sorted(UNVERIFIED_INTERVALS) == ["3d"]


def test_count_between_and_advance_for_fixed_intervals() -> None:
    minute = INTERVALS["1m"]
    start = ms(2021, 4, 4, 20, 3)
    assert minute.count_between(start, start) == 0
    assert minute.count_between(start, start - 1) == 0
    assert minute.count_between(start, start + 1) == 1
    assert minute.count_between(start, start + 60_000) == 1
    assert minute.count_between(start, start + 60_001) == 2
    assert minute.count_between(start, ms(2021, 4, 4, 21)) == 57
    assert minute.advance(start, 0) == start
    assert minute.advance(start, 57) == ms(2021, 4, 4, 21)
    day = INTERVALS["1d"]
    assert day.count_between(ms(2024, 2, 1), ms(2024, 3, 1)) == 29
    assert day.advance(ms(2024, 2, 28), 2) == ms(2024, 3, 1)
    week = INTERVALS["1w"]
    assert week.advance(1499040000000, 1) == 1499644800000


def test_count_between_and_advance_for_months() -> None:
    month = INTERVALS["1M"]
    jan = ms(2024, 1, 1)
    assert month.count_between(jan, jan) == 0
    assert month.count_between(jan, jan + 1) == 1
    assert month.count_between(jan, ms(2024, 3, 1)) == 2
    assert month.count_between(jan, ms(2024, 3, 1) + 1) == 3
    assert month.count_between(ms(2023, 11, 1), ms(2024, 2, 1)) == 3
    assert month.count_between(jan, ms(2025, 1, 1)) == 12
    assert month.advance(ms(2023, 11, 1), 0) == ms(2023, 11, 1)
    assert month.advance(ms(2023, 11, 1), 3) == ms(2024, 2, 1)
    assert month.advance(jan, 12) == ms(2025, 1, 1)


def test_parse_intervals_orders_shortest_first() -> None:
    assert parse_intervals("1d,1m,5m") == ("1m", "5m", "1d")
    assert parse_intervals(" 1h , 1m,1h,,") == ("1m", "1h")
    assert parse_intervals(["1M", "1w", "1s"]) == ("1s", "1w", "1M")
    assert parse_intervals(("3d", "12h")) == ("12h", "3d")
    assert DEFAULT_INTERVALS == ("1m", "5m", "15m", "1h", "4h", "1d")


def test_parse_intervals_rejects_an_unknown_name() -> None:
    with pytest.raises(IntervalError) as info:
        parse_intervals("1m,7m")
    assert str(info.value) == (
        "interval '7m' is not one of 1s, 1m, 3m, 5m, 15m, 30m, 1h, 2h, 4h, 6h, 8h, 12h, 1d, "
        "3d, 1w, 1M"
    )


@pytest.mark.parametrize("names", ["", " , ", []])
def test_parse_intervals_needs_one(names: str | list[str]) -> None:
    with pytest.raises(IntervalError, match=r"^at least one interval is needed$"):
        parse_intervals(names)


def test_interval_names_are_case_sensitive() -> None:
    assert parse_intervals("1M") == ("1M",)
    with pytest.raises(IntervalError, match="'1H'"):
        get_interval("1H")


# --- settings --------------------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No KLINEFLOW_* variable from the outer environment (CI may set the Redis URL)."""
    for name in list(os.environ):
        if name.upper().startswith("KLINEFLOW_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_intervals_from_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("KLINEFLOW_INTERVALS", "1d, 5m,1m")
    assert Settings().intervals == ("1m", "5m", "1d")
    clean_env.setenv("KLINEFLOW_INTERVALS", "1M")
    assert Settings().intervals == ("1M",)


def test_default_intervals(clean_env: pytest.MonkeyPatch) -> None:
    settings = Settings()
    assert settings.intervals == ("1m", "5m", "15m", "1h", "4h", "1d")
    assert settings.redis_url is None
    assert settings.redis_url_value() is None


def test_bad_interval_in_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("KLINEFLOW_INTERVALS", "1m,7m")
    with pytest.raises(ValidationError, match=r"interval '7m' is not one of 1s, 1m, 3m"):
        Settings()


def test_other_settings_from_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("KLINEFLOW_REDIS_URL", "redis://localhost:6390/0")
    clean_env.setenv("KLINEFLOW_RETENTION", "250")
    clean_env.setenv("KLINEFLOW_NAMESPACE", "scratch")
    settings = Settings()
    assert settings.redis_url_value() == "redis://localhost:6390/0"
    assert "6390" not in repr(settings)  # a secret is not printed
    assert settings.retention == 250
    assert settings.namespace == "scratch"
    clean_env.setenv("KLINEFLOW_RETENTION", "0")
    with pytest.raises(ValidationError, match="retention"):
        Settings()


def test_unknown_env_vars_reports_a_typo(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("KLINEFLOW_REDIS_ULR", "redis://localhost:6379/0")
    clean_env.setenv("KLINEFLOW_INTERVALS", "1m")
    clean_env.setenv("OTHER_REDIS_ULR", "x")
    assert unknown_env_vars() == ["KLINEFLOW_REDIS_ULR"]
    assert unknown_env_vars({"KLINEFLOW_INTERVLAS": "1m", "klineflow_retention": "5"}) == [
        "KLINEFLOW_INTERVLAS"
    ]
    assert unknown_env_vars({}) == []


def test_settings_are_frozen(clean_env: pytest.MonkeyPatch) -> None:
    settings = Settings(intervals="5m,1m")
    assert settings.intervals == ("1m", "5m")
    with pytest.raises(ValidationError, match="frozen"):
        settings.retention = 5  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        settings.intervals = ("1m",)  # type: ignore[misc]
    assert settings.retention == 1000


def test_a_huge_exponent_is_a_value_error_not_an_overflow() -> None:
    """A poisoned amount like "1e1000000" must be refused like any bad amount (the readers
    dead-letter on ValueError), not raise decimal.Overflow out of the reader."""
    import pytest

    from flows.domain.money import parse_units

    with pytest.raises(ValueError, match="out of range"):
        parse_units("1e1000000")
