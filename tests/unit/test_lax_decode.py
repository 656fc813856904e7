"""The lax (float) fast path never gives a value the exact parser would not."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.binance.decode import LaxCombined, lax_trade
from flows.domain.money import parse_units

_decoder = msgspec.json.Decoder(LaxCombined, strict=False)


def _frame(
    price: str, qty: str, first: int = 5, last: int = 7, t: int = 1_700_000_000_123
) -> bytes:
    return (
        b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1,"s":"BTCUSDT","a":1,'
        b'"p":"%s","q":"%s","f":%d,"l":%d,"T":%d,"m":true,"M":true}}'
        % (price.encode(), qty.encode(), first, last, t)
    )


def _decimal_text(units: int, decimals: int = 8) -> str:
    text = str(units).rjust(decimals + 1, "0")
    return f"{text[:-decimals]}.{text[-decimals:]}"


@settings(max_examples=3000, derandomize=True)
@given(st.integers(1, 10**15 - 1), st.integers(1, 10**15 - 1))
def test_eight_decimal_amounts_below_the_limit_are_exact(price: int, qty: int) -> None:
    trade = lax_trade(_decoder.decode(_frame(_decimal_text(price), _decimal_text(qty))).data)
    if price < 10**14 and qty < 10**14:  # below 1e6 the fast path always takes it
        assert trade == (5, 7, price, qty, 1_700_000_000_123, True)
    else:  # above, it may hand it to the exact parser, never get it wrong
        assert trade is None or trade == (5, 7, price, qty, 1_700_000_000_123, True)


@settings(max_examples=2000, derandomize=True)
@given(st.integers(1, 10**16), st.integers(1, 9))
def test_a_ninth_decimal_is_never_rounded_away(units: int, ninth: int) -> None:
    """Values with a non-zero 9th decimal leave the fast path (the exact parser rejects them)."""
    text = _decimal_text(units * 10 + ninth, 9)
    trade = lax_trade(_decoder.decode(_frame(text, "1.00000000")).data)
    if units < 10**14:  # below 1e6 the residual check always sees the 9th decimal
        assert trade is None
    elif trade is not None:  # above, it may only pass if the exact value has 8 decimals
        assert trade[2] == parse_units(_decimal_text(trade[2]))


@settings(max_examples=500, derandomize=True)
@given(st.integers(10**15, 10**20))
def test_large_values_leave_the_fast_path(units: int) -> None:
    assert lax_trade(_decoder.decode(_frame(_decimal_text(units), "1.00000000")).data) is None


def test_markers_zeros_and_microseconds() -> None:
    assert lax_trade(_decoder.decode(_frame("0", "0", -1, -1)).data) is None  # invalid marker
    assert lax_trade(_decoder.decode(_frame("0.00000000", "1.00000000")).data) is None
    assert lax_trade(_decoder.decode(_frame("1.00000000", "1.00000000", 9, 3)).data) is None
    trade = lax_trade(
        _decoder.decode(_frame("1.00000000", "2.00000000", t=1_735_689_600_010_866)).data
    )
    assert trade == (5, 7, 100_000_000, 200_000_000, 1_735_689_600_010, True)
