"""The lax (float) fast path never gives a value the exact parser would not."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.binance.decode import AggTradeEvent, LaxCombined, agg_trade_to_trade, lax_trade
from flows.domain.money import parse_units
from flows.domain.trade_checks import EXCHANGE_START_MS, MAX_FILLS, MAX_TRADE_ID, implausible

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
    with pytest.raises(msgspec.ValidationError):  # invalid marker: ids below 0 leave at decode
        _decoder.decode(_frame("0", "0", -1, -1))
    assert lax_trade(_decoder.decode(_frame("0.00000000", "1.00000000")).data) is None
    assert lax_trade(_decoder.decode(_frame("1.00000000", "1.00000000", 9, 3)).data) is None
    trade = lax_trade(
        _decoder.decode(_frame("1.00000000", "2.00000000", t=1_735_689_600_010_866)).data
    )
    assert trade == (5, 7, 100_000_000, 200_000_000, 1_735_689_600_010, True)


# --- the fast path and the plausibility check ------------------------------------------------

CEILING = 1_700_000_000_123 + 3_600_000
_IDS = st.one_of(
    st.integers(0, 10),
    st.integers(MAX_TRADE_ID - MAX_FILLS - 2, MAX_TRADE_ID + 2),
    st.integers(0, 2**63 - 1),
)
_TIMES = st.one_of(
    st.sampled_from([EXCHANGE_START_MS - 1, EXCHANGE_START_MS, CEILING, CEILING + 1]),
    st.integers(EXCHANGE_START_MS - 10**6, CEILING + 10**6),
    st.integers(EXCHANGE_START_MS * 1000 - 10**6, CEILING * 1000 + 10**6),  # microseconds
    st.integers(0, 10**18),
)


@settings(max_examples=3000, derandomize=True)
@given(_IDS, st.integers(0, 2 * MAX_FILLS + 2), _TIMES)
def test_the_fast_path_takes_only_plausible_trades(first: int, span: int, t: int) -> None:
    """Whatever the fast path returns, the check passes; whatever the check refuses leaves the
    fast path (at decode or in lax_trade) and the exact path gives the same trade."""
    last = first + span if span <= MAX_FILLS + 1 else first  # mostly ascending ranges
    raw = _frame("1.50000000", "2.00000000", first, last, t)
    try:
        trade = lax_trade(_decoder.decode(raw).data, CEILING)
    except msgspec.ValidationError:
        trade = None
    exact = agg_trade_to_trade(
        AggTradeEvent("BTCUSDT", 1, "1.50000000", "2.00000000", first, last, t, True)
    )
    if trade is not None:
        assert trade == exact
        assert implausible(trade, CEILING) is None
    else:
        assert implausible(exact, CEILING) is not None


def test_the_fast_path_without_a_ceiling_keeps_the_other_bounds() -> None:
    ok = lax_trade(_decoder.decode(_frame("1.00000000", "1.00000000", t=9_999_999_999_999)).data)
    assert ok is not None and ok[4] == 9_999_999_999_999  # no latest time given
    with pytest.raises(msgspec.ValidationError):
        _decoder.decode(_frame("1.00000000", "1.00000000", first=10**15, last=10**15))
    with pytest.raises(msgspec.ValidationError):
        _decoder.decode(_frame("1.00000000", "1.00000000", t=EXCHANGE_START_MS - 1))
    wide = _frame("1.00000000", "1.00000000", first=1, last=MAX_FILLS + 1)
    assert lax_trade(_decoder.decode(wide).data) is None
