"""Decoding Binance WebSocket frames: real frames from the captures, and hand-built ones in the
shapes Binance documents (the captures hold no @trade frames)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.binance.decode import (
    AggTradeEvent,
    FrameError,
    Ignored,
    ImplausibleTrade,
    InvalidTrade,
    KlineEvent,
    ServerShutdownEvent,
    TradeEvent,
    agg_trade_to_trade,
    decode_frame,
    trade_event_to_trade,
    trade_time_ms,
)

CAPTURE = "ws-capture-2021-04-04-btc-eth-dot.txt"
ILLIQUID = "ws-capture-2021-04-17-illiquid10.txt"


def frames_of(path: Path, stream_part: str, count: int) -> list[str]:
    """The first `count` raw frames whose stream name contains `stream_part`."""
    found = []
    with path.open() as f:
        next(f)  # the URL
        for line in f:
            head, sep, frame = line.rstrip("\n").partition(": ")
            if not sep or " -> " in head:
                continue
            if json.loads(frame)["stream"].find(stream_part) >= 0:
                found.append(frame)
                if len(found) == count:
                    break
    assert len(found) == count, f"only {len(found)} {stream_part} frames in {path.name}"
    return found


# --- real frames -----------------------------------------------------------------------------


def test_real_agg_trade_frames(shared_data: Path) -> None:
    for frame in frames_of(shared_data / CAPTURE, "@aggTrade", 5):
        expected = json.loads(frame)["data"]
        for raw in (frame, frame.encode()):
            ev = decode_frame(raw)
            assert type(ev) is AggTradeEvent
            assert (ev.s, ev.a, ev.p, ev.q, ev.f, ev.l, ev.T, ev.m) == (
                expected["s"],
                expected["a"],
                expected["p"],
                expected["q"],
                expected["f"],
                expected["l"],
                expected["T"],
                expected["m"],
            )


def test_first_real_agg_trade_as_a_trade(shared_data: Path) -> None:
    frame = frames_of(shared_data / CAPTURE, "btcusdt@aggTrade", 1)[0]
    assert frame == (
        '{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1617566591315,"s":"BTCUSDT",'
        '"a":665076760,"p":"58001.03000000","q":"0.08620500","f":745522877,"l":745522877,'
        '"T":1617566591314,"m":true,"M":true}}'
    )
    ev = decode_frame(frame)
    assert isinstance(ev, AggTradeEvent)
    assert agg_trade_to_trade(ev) == (
        745522877,
        745522877,
        5_800_103_000_000,
        8_620_500,
        1617566591314,
        True,
    )


def test_real_kline_frames(shared_data: Path) -> None:
    for frame in frames_of(shared_data / CAPTURE, "@kline_1m", 5):
        expected = json.loads(frame)["data"]
        ev = decode_frame(frame)
        assert type(ev) is KlineEvent
        assert (ev.E, ev.s) == (expected["E"], expected["s"])
        k = ev.k
        got = {
            "t": k.t, "T": k.T, "s": k.s, "i": k.i, "f": k.f, "L": k.L, "o": k.o, "c": k.c,
            "h": k.h, "l": k.l, "v": k.v, "n": k.n, "x": k.x, "q": k.q, "V": k.V, "Q": k.Q,
        }  # fmt: skip
        assert got == {key: expected["k"][key] for key in got}
        assert k.i == "1m"
        assert k.T - k.t == 59_999


def test_real_depth_frames_are_ignored(shared_data: Path) -> None:
    for frame in frames_of(shared_data / CAPTURE, "@depth", 5):
        stream = json.loads(frame)["stream"]
        assert decode_frame(frame) == Ignored(stream)
        assert decode_frame(frame.encode()) == Ignored(stream)
    first = frames_of(shared_data / CAPTURE, "@depth", 1)[0]
    assert decode_frame(first) == Ignored("dotusdt@depth@100ms")


def test_real_book_ticker_frame_is_ignored(shared_data: Path) -> None:
    frame = frames_of(shared_data / ILLIQUID, "@bookTicker", 1)[0]
    assert '"e":' not in frame  # bookTicker carries no event type
    assert decode_frame(frame) == Ignored("swrvbusd@bookTicker")


def test_bare_frames_from_the_capture(shared_data: Path) -> None:
    """The same payloads as a single-stream (/ws/...) connection sends them: no wrapper."""
    agg = json.loads(frames_of(shared_data / CAPTURE, "@aggTrade", 1)[0])["data"]
    ev = decode_frame(json.dumps(agg, separators=(",", ":")))
    assert type(ev) is AggTradeEvent
    assert (ev.s, ev.a, ev.T) == (agg["s"], agg["a"], agg["T"])

    kline = json.loads(frames_of(shared_data / CAPTURE, "@kline_1m", 1)[0])["data"]
    ev2 = decode_frame(json.dumps(kline).encode())
    assert type(ev2) is KlineEvent
    assert (ev2.s, ev2.k.t, ev2.k.n) == (kline["s"], kline["k"]["t"], kline["k"]["n"])

    depth = json.loads(frames_of(shared_data / CAPTURE, "@depth", 1)[0])["data"]
    assert decode_frame(json.dumps(depth)) == Ignored("depthUpdate")

    book = json.loads(frames_of(shared_data / ILLIQUID, "@bookTicker", 1)[0])["data"]
    assert decode_frame(json.dumps(book, separators=(",", ":"))) == Ignored("bookTicker")


# --- hand-built frames -----------------------------------------------------------------------

TRADE = {
    "e": "trade",
    "E": 1672515782136,
    "s": "BNBBTC",
    "t": 12345,
    "p": "0.001",
    "q": "100",
    "T": 1672515782134,
    "m": True,
    "M": True,
}


def test_trade_frame_bare_and_wrapped() -> None:
    bare = json.dumps(TRADE)
    wrapped = json.dumps({"stream": "bnbbtc@trade", "data": TRADE}, separators=(",", ":"))
    for raw in (bare, bare.encode(), wrapped, wrapped.encode()):
        ev = decode_frame(raw)
        assert ev == TradeEvent(s="BNBBTC", t=12345, p="0.001", q="100", T=1672515782134, m=True)
        assert trade_event_to_trade(ev) == (
            12345,
            12345,
            100_000,
            10_000_000_000,
            1672515782134,
            True,
        )


def test_server_shutdown_bare_and_wrapped() -> None:
    event = {"e": "serverShutdown", "E": 1699999999999}
    assert decode_frame(json.dumps(event)) == ServerShutdownEvent(E=1699999999999)
    wrapped = json.dumps({"stream": "!serverShutdown", "data": event}, separators=(",", ":"))
    assert decode_frame(wrapped) == ServerShutdownEvent(E=1699999999999)
    assert decode_frame(wrapped.encode()) == ServerShutdownEvent(E=1699999999999)


def test_ignored_event_types_and_streams() -> None:
    ticker = {"e": "24hrTicker", "E": 1, "s": "BNBBTC"}
    assert decode_frame(json.dumps(ticker)) == Ignored("24hrTicker")
    assert decode_frame(
        json.dumps({"stream": "bnbbtc@ticker", "data": ticker}, separators=(",", ":"))
    ) == Ignored("bnbbtc@ticker")
    assert decode_frame(
        json.dumps({"e": "avgPrice", "E": 1, "s": "X", "i": "5m", "w": "1"})
    ) == Ignored("avgPrice")


@pytest.mark.parametrize(
    "raw",
    [
        b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1617566591307,"s":"BTC',
        b"not json at all",
        "{",
        b"",
        b"[1,2,3]",
        b"null",
        b'{"e":5}',
    ],
)
def test_broken_json_is_malformed(raw: bytes | str) -> None:
    with pytest.raises(FrameError) as info:
        decode_frame(raw)
    assert info.value.reason == "malformed"
    assert str(info.value).startswith("malformed: ")


AGG = {
    "e": "aggTrade",
    "E": 1617566591307,
    "s": "BTCUSDT",
    "a": 697474457,
    "p": "58001.01000000",
    "q": "0.00108000",
    "f": 767389030,
    "l": 767389030,
    "T": 1617566591306,
    "m": False,
    "M": True,
}


@pytest.mark.parametrize(
    ("event", "detail"),
    [
        ({k: v for k, v in AGG.items() if k != "p"}, "Object missing required field `p`"),
        ({k: v for k, v in AGG.items() if k != "T"}, "Object missing required field `T`"),
        ({**AGG, "a": "697474457"}, "Expected `int`, got `str` - at `$.a`"),
        ({**AGG, "m": "false"}, "Expected `bool`, got `str` - at `$.m`"),
        ({k: v for k, v in TRADE.items() if k != "t"}, "Object missing required field `t`"),
        (
            {"e": "kline", "E": 1, "s": "BTCUSDT", "k": {"t": 0}},
            "Object missing required field `T` - at `$.k`",
        ),
        ({"e": "serverShutdown"}, "Object missing required field `E`"),
    ],
)
def test_known_event_with_a_missing_or_mistyped_field_is_malformed(
    event: dict, detail: str
) -> None:
    with pytest.raises(FrameError) as info:
        decode_frame(json.dumps(event))
    assert (info.value.reason, info.value.detail) == ("malformed", detail)
    wrapped = json.dumps({"stream": f"btcusdt@{event['e']}", "data": event}, separators=(",", ":"))
    wrapped_detail = (
        detail.replace("`$.", "`$.data.") if "`$." in detail else detail + " - at `$.data`"
    )
    with pytest.raises(FrameError) as info:
        decode_frame(wrapped)
    assert (info.value.reason, info.value.detail) == ("malformed", wrapped_detail)


def test_unknown_event_type() -> None:
    with pytest.raises(FrameError) as info:
        decode_frame(b'{"e":"fancyNewEvent","E":1}')
    assert info.value.reason == "unknown"
    assert "'fancyNewEvent'" in info.value.detail
    wrapped = b'{"stream":"btcusdt@fancy","data":{"e":"fancyNewEvent","E":1}}'
    with pytest.raises(FrameError) as info:
        decode_frame(wrapped)
    assert info.value.reason == "unknown"
    assert "'fancyNewEvent'" in info.value.detail


def test_an_object_without_event_type_is_unknown() -> None:
    with pytest.raises(FrameError) as info:
        decode_frame(b'{"result":null,"id":1}')
    assert info.value.reason == "unknown"


# --- trade conversion ------------------------------------------------------------------------


def test_microsecond_trade_times_become_milliseconds() -> None:
    us = 1735689600123456  # 2025-01-01 00:00:00.123456 UTC
    agg = decode_frame(json.dumps({**AGG, "T": us}))
    assert isinstance(agg, AggTradeEvent)
    assert agg_trade_to_trade(agg)[4] == 1735689600123
    # the exact (slow) path too: a price not in Binance's 8-decimal form
    agg_short = decode_frame(json.dumps({**AGG, "T": us, "p": "58001.01"}))
    assert isinstance(agg_short, AggTradeEvent)
    assert agg_trade_to_trade(agg_short) == (
        767389030,
        767389030,
        5_800_101_000_000,
        108_000,
        1735689600123,
        False,
    )
    trade = decode_frame(json.dumps({**TRADE, "T": us}))
    assert isinstance(trade, TradeEvent)
    assert trade_event_to_trade(trade)[4] == 1735689600123
    assert trade_time_ms(us) == 1735689600123
    assert trade_time_ms(1735689600123) == 1735689600123
    assert trade_time_ms(99_999_999_999_999) == 99_999_999_999_999  # still ms (year 5138)
    assert trade_time_ms(100_000_000_000_000) == 100_000_000_000


def agg_event(**changes: object) -> AggTradeEvent:
    ev = decode_frame(json.dumps({**AGG, **changes}))
    assert isinstance(ev, AggTradeEvent)
    return ev


def trade_event(**changes: object) -> TradeEvent:
    ev = decode_frame(json.dumps({**TRADE, **changes}))
    assert isinstance(ev, TradeEvent)
    return ev


def test_invalid_agg_trade_marker() -> None:
    ev = agg_event(p="0", q="0", f=-1, l=-1)
    with pytest.raises(InvalidTrade, match=r"^aggTrade 697474457 has trade ids -1\.\.-1$"):
        agg_trade_to_trade(ev)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"p": "0.00000000"}, "aggTrade 697474457 has zero price or quantity"),
        ({"q": "0.00000000"}, "aggTrade 697474457 has zero price or quantity"),
        ({"p": "0.000000001"}, "aggTrade 697474457: '0.000000001' has more than 8 decimals"),
        (
            {"p": "58001.010000001"},
            "aggTrade 697474457: '58001.010000001' has more than 8 decimals",
        ),
        ({"q": "1.123456789"}, "aggTrade 697474457: '1.123456789' has more than 8 decimals"),
        (
            {"p": "-58001.01000000"},
            "aggTrade 697474457: expected a finite non-negative decimal, got '-58001.01000000'",
        ),
        ({"p": "-1"}, "aggTrade 697474457: expected a finite non-negative decimal, got '-1'"),
        ({"p": "abc"}, "aggTrade 697474457: expected a decimal number, got 'abc'"),
        ({"l": 767389029}, "aggTrade 697474457 has trade ids 767389030..767389029"),
    ],
)
def test_impossible_agg_trades(changes: dict, message: str) -> None:
    with pytest.raises(InvalidTrade) as info:
        agg_trade_to_trade(agg_event(**changes))
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"p": "0.000000001"}, "trade 12345: '0.000000001' has more than 8 decimals"),
        ({"p": "-0.001"}, "trade 12345: expected a finite non-negative decimal, got '-0.001'"),
        ({"q": "0"}, "trade 12345 has zero price or quantity or a negative id"),
        ({"t": -1}, "trade -1 has zero price or quantity or a negative id"),
    ],
)
def test_impossible_trades(changes: dict, message: str) -> None:
    with pytest.raises(InvalidTrade) as info:
        trade_event_to_trade(trade_event(**changes))
    assert str(info.value) == message


def test_agg_trade_covering_several_trades() -> None:
    assert agg_trade_to_trade(agg_event(f=100, l=104, p="0.1", q="3")) == (
        100, 104, 10_000_000, 300_000_000, 1617566591306, False,
    )  # fmt: skip


@pytest.mark.parametrize("price", ["1.0000000 ", "0.1234_567"])
def test_agg_trade_fast_path_never_shifts_a_price(price: str) -> None:
    """KNOWN BUG: agg_trade_to_trade's own fast path only checks that the 9th character from
    the end is a dot, then int()s the rest, which tolerates a trailing space and '_'. So
    '1.0000000 ' (1.0) becomes 0.1 and '0.1234_567' becomes 0.01234567. The trade must be
    refused or carry the true price (100000000 and 12345670 units)."""
    true_units = {"1.0000000 ": 100_000_000, "0.1234_567": 12_345_670}[price]
    try:
        trade = agg_trade_to_trade(agg_event(p=price))
    except InvalidTrade:
        return
    assert trade[2] == true_units


# --- amounts beyond what Binance holds (int64 units) -----------------------------------------

MAX_TEXT = "92233720368.54775807"  # 2**63 - 1 units
ABOVE_MAX = ["1e400", "92233720368.54775808", "92233720369", "99999999999.99999999", "1" * 400]


@pytest.mark.parametrize("field", ["p", "q"])
@pytest.mark.parametrize("amount", ABOVE_MAX)
def test_amounts_above_the_int64_bound_are_implausible(field: str, amount: str) -> None:
    """Every exact path: the aggTrade fast path (8 decimals), its exact parser, and @trade."""
    for convert, event in (
        (agg_trade_to_trade, agg_event(**{field: amount})),
        (trade_event_to_trade, trade_event(**{field: amount})),
    ):
        with pytest.raises(ImplausibleTrade) as info:
            convert(event)  # type: ignore[operator]
        assert info.value.reason == "implausible"
        assert "above 92233720368.54775807, the largest Binance holds" in str(info.value)


@pytest.mark.parametrize("field", ["p", "q"])
@pytest.mark.parametrize("amount", ["inf", "Infinity", "nan", "NaN", "-inf", "sNaN"])
def test_non_finite_amounts_stay_invalid(field: str, amount: str) -> None:
    for convert, event in (
        (agg_trade_to_trade, agg_event(**{field: amount})),
        (trade_event_to_trade, trade_event(**{field: amount})),
    ):
        with pytest.raises(InvalidTrade) as info:
            convert(event)  # type: ignore[operator]
        assert type(info.value) is InvalidTrade and info.value.reason == "invalid"
        assert "expected a finite non-negative decimal" in str(info.value)


def test_the_largest_amount_binance_holds_is_taken() -> None:
    for text in (MAX_TEXT, "092233720368.54775807", "9223372036854775807e-8"):
        assert agg_trade_to_trade(agg_event(p=text, q=text))[2:4] == (2**63 - 1, 2**63 - 1)
        assert trade_event_to_trade(trade_event(p=text, q=text))[2:4] == (2**63 - 1, 2**63 - 1)
    # ten integer digits stay on the fast path of 8-decimal strings
    assert agg_trade_to_trade(agg_event(p="9999999999.99999999"))[2] == 999_999_999_999_999_999


def test_ids_beyond_any_real_one_are_implausible_even_out_of_order() -> None:
    with pytest.raises(ImplausibleTrade, match=r"trade ids 1000000000000000\.\.767389030, above"):
        agg_trade_to_trade(agg_event(f=10**15))
    # in order, the ids pass the decoder; trade_checks.implausible refuses them at the door
    assert agg_trade_to_trade(agg_event(l=10**15))[1] == 10**15
