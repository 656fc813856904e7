"""Decode Binance WebSocket frames with typed msgspec structs.

Frames come bare (``/ws/<stream>``) or in the combined-stream wrapper
(``/stream?streams=...``), e.g. a real aggTrade frame from the 2021-04-04 capture::

    {"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1617566591315,"s":"BTCUSDT",
     "a":665076760,"p":"58001.03000000","q":"0.08620500","f":745522877,"l":745522877,
     "T":1617566591314,"m":true,"M":true}}

`decode_frame` returns a typed event, an `Ignored` marker for streams that are known but not
used for klines (depth, bookTicker, tickers), or raises `FrameError` with a reason for
anything malformed or unknown. Trade times given in microseconds (``timeUnit=MICROSECOND``)
are brought to milliseconds by `trade_time_ms`.
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

from flows.domain import deadletter as dl
from flows.domain.kline import Kline, Trade
from flows.domain.money import parse_units
from flows.domain.trade_checks import (
    EXCHANGE_START_MS,
    MAX_FILLS,
    MAX_TRADE_ID,
    US_FROM,
    ImplausibleAmount,
    parse_amount,
)


class AggTradeEvent(msgspec.Struct, tag_field="e", tag="aggTrade"):
    s: str
    a: int
    p: str
    q: str
    f: int
    l: int  # noqa: E741 - Binance's field name
    T: int
    m: bool


class TradeEvent(msgspec.Struct, tag_field="e", tag="trade"):
    s: str
    t: int
    p: str
    q: str
    T: int
    m: bool


class KlinePayload(msgspec.Struct):
    t: int
    T: int
    s: str
    i: str
    f: int
    L: int
    o: str
    c: str
    h: str
    l: str  # noqa: E741 - Binance's field name
    v: str
    n: int
    x: bool
    q: str
    V: str
    Q: str


class KlineEvent(msgspec.Struct, tag_field="e", tag="kline"):
    E: int
    s: str
    k: KlinePayload


class RestAggTrade(msgspec.Struct):
    """One element of REST ``GET /api/v3/aggTrades`` (the ``M`` field is dropped)."""

    a: int
    p: str
    q: str
    f: int
    l: int  # noqa: E741 - Binance's field name
    T: int
    m: bool

    def event(self, symbol: str) -> AggTradeEvent:
        """The same trade as a stream event (REST elements carry no symbol)."""
        return AggTradeEvent(symbol, self.a, self.p, self.q, self.f, self.l, self.T, self.m)


class ServerShutdownEvent(msgspec.Struct, tag_field="e", tag="serverShutdown"):
    E: int


Event = AggTradeEvent | TradeEvent | KlineEvent | ServerShutdownEvent


class Combined(msgspec.Struct):
    stream: str
    data: Event


# -- the fast path: amounts decoded as floats inside msgspec (C), checked, then made exact ----
#
# For a decimal x with at most 8 decimals and 0 < x < 1e7, U = x * 1e8 is an integer below
# 1e15; msgspec parses x to the nearest double and one multiplication by 1e8 adds one more
# rounding, so |fl(fl(x) * 1e8) - U| <= U * 2.3e-16 < 0.23 and round() returns U exactly.
# A residual of 0.05 or more means a non-zero 9th decimal (below 1e6, where rounding error
# stays under 0.023; between 1e6 and 1e7 some exact values also fail the check): such a value,
# anything out of range, zeros and Binance's invalid markers go to the exact string parser,
# which rejects or converts them. Measured: 36% less time per trade than parsing the strings
# in Python. tests/unit/test_lax_decode.py checks all of this against the exact parser.
#
# The fast path also refuses, at no cost in Python, what `trade_checks.implausible` could
# refuse: ids outside 0..MAX_TRADE_ID and times before EXCHANGE_START_MS fail msgspec's
# constraints (checked in C while decoding), the rest is two comparisons in `lax_trade`. A
# refused frame takes the exact path, where the check says why.
LAX_LIMIT: Final = 10**15  # in 1e-8 units
_NO_CEILING: Final = 2**63 - 1  # lax_trade without a latest time: only the other bounds
_LaxId = Annotated[int, msgspec.Meta(ge=0, le=MAX_TRADE_ID)]
_LaxTime = Annotated[int, msgspec.Meta(ge=EXCHANGE_START_MS)]  # ms or µs


class LaxAggTrade(msgspec.Struct, tag_field="e", tag="aggTrade"):
    s: str
    a: int
    p: float
    q: float
    f: _LaxId
    l: _LaxId  # noqa: E741 - Binance's field name
    T: _LaxTime
    m: bool


class LaxTrade(msgspec.Struct, tag_field="e", tag="trade"):
    s: str
    t: _LaxId
    p: float
    q: float
    T: _LaxTime
    m: bool


class LaxCombined(msgspec.Struct):
    stream: str
    data: LaxAggTrade | LaxTrade


def lax_trade(ev: LaxAggTrade | LaxTrade, ceiling_ms: int = _NO_CEILING) -> Trade | None:
    """The trade, or None when only the exact path may decide.

    None as well for a trade `flows.domain.trade_checks.implausible(trade, ceiling_ms)`
    could refuse (a time outside EXCHANGE_START_MS..ceiling_ms, ids beyond MAX_TRADE_ID or
    MAX_FILLS; the struct's constraints refused the rest while decoding): the exact path
    decodes it again and the check says why. A trade returned here needs no further check.
    """
    p = ev.p * 1e8
    q = ev.q * 1e8
    pu = round(p)
    qu = round(q)
    if not (
        0 < pu < LAX_LIMIT
        and 0 < qu < LAX_LIMIT
        and -0.05 < p - pu < 0.05
        and -0.05 < q - qu < 0.05
    ):
        return None
    t = ev.T
    if t >= US_FROM:  # µs
        t //= 1000
        if t < EXCHANGE_START_MS:
            return None
    if t > ceiling_ms:
        return None
    if type(ev) is LaxAggTrade:
        f = ev.f
        last = ev.l
        if 0 <= last - f < MAX_FILLS:
            return (f, last, pu, qu, t, ev.m)
        return None
    tid = ev.t  # type: ignore[union-attr]
    return (tid, tid, pu, qu, t, ev.m)


class _CombinedRaw(msgspec.Struct):
    stream: str
    data: msgspec.Raw


class _EventProbe(msgspec.Struct):
    e: str | None = None


class Ignored(msgspec.Struct, frozen=True):
    """A well-formed frame of a stream klines do not use."""

    stream: str


class FrameError(ValueError):
    """A frame that cannot be used: `reason` is 'malformed' or 'unknown'."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


_combined_decoder: Final = msgspec.json.Decoder(Combined)
_event_decoder: Final = msgspec.json.Decoder(Event)
_combined_raw_decoder: Final = msgspec.json.Decoder(_CombinedRaw)
_probe_decoder: Final = msgspec.json.Decoder(_EventProbe)

# Streams (by their name's suffix) and event types that are valid Binance data but carry
# nothing klines need.
_IGNORED_STREAM_MARKERS: Final = (
    "@depth",
    "@bookTicker",
    "@ticker",
    "@miniTicker",
    "@avgPrice",
    "@referencePrice",
    "@blockTrade",
    "!ticker",
    "!miniTicker",
    "!bookTicker",
)
_IGNORED_EVENTS: Final = frozenset(
    {"depthUpdate", "24hrTicker", "24hrMiniTicker", "1hTicker", "4hTicker", "1dTicker", "avgPrice"}
)


def decode_frame(raw: bytes | str) -> Event | Ignored:
    """Decode one wire frame, combined or bare."""
    try:
        if raw[:10] in (b'{"stream":', '{"stream":'):
            wrapped: Combined = _combined_decoder.decode(raw)
            return wrapped.data
        event: Event = _event_decoder.decode(raw)
        return event
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        return _classify(raw, e)


def _classify(raw: bytes | str, error: Exception) -> Ignored:
    """Tell a frame of an unused stream from a broken one (the slow path)."""
    try:
        wrapped = _combined_raw_decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        wrapped = None
    if wrapped is not None:
        if any(marker in wrapped.stream for marker in _IGNORED_STREAM_MARKERS):
            return Ignored(wrapped.stream)
        payload: bytes | str = bytes(wrapped.data)
    else:
        payload = raw
    try:
        probe = _probe_decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise FrameError("malformed", str(error)) from error
    if probe.e in _IGNORED_EVENTS:
        return Ignored(probe.e or "")
    if probe.e is None and wrapped is None and b'"u":' in _as_bytes(payload)[:40]:
        return Ignored("bookTicker")  # a bare bookTicker carries no event type
    if probe.e in ("aggTrade", "trade", "kline", "serverShutdown"):
        raise FrameError("malformed", str(error)) from error
    raise FrameError("unknown", f"event type {probe.e!r}: {error}") from error


def _as_bytes(raw: bytes | str) -> bytes:
    return raw.encode() if isinstance(raw, str) else raw


def kline_of_event(ev: KlineEvent) -> Kline:
    """Binance's kline as ours (raises ValueError for amounts that are not 8-decimal)."""
    k = ev.k
    u = parse_units
    return Kline(
        k.t, k.T, u(k.o), u(k.h), u(k.l), u(k.c), u(k.v), u(k.q), k.n, u(k.V), u(k.Q), k.f, k.L
    )


def trade_time_ms(t: int) -> int:
    """Trade time in ms; times past year 5138 in ms are taken to be microseconds."""
    return t // 1000 if t >= US_FROM else t


class InvalidTrade(ValueError):
    """A well-formed trade that cannot be used; `reason` is its dead-letter reason."""

    reason = dl.INVALID


class ImplausibleTrade(InvalidTrade):
    """A trade with an id or amount beyond what Binance can send (see trade_checks)."""

    reason = dl.IMPLAUSIBLE


def agg_trade_to_trade(ev: AggTradeEvent) -> Trade:
    """An aggTrade as a trade tuple; raises InvalidTrade for Binance's invalid-marker rows and
    ImplausibleTrade for an amount above MAX_UNITS or an id above MAX_TRADE_ID."""
    p, q, f, last = ev.p, ev.q, ev.f, ev.l
    # Fast path for Binance's own form (8 decimals) with at most 10 integer digits, so below
    # 10**18 units and MAX_UNITS; anything else takes the exact parser.
    if 9 < len(p) < 20 and p[-9] == "." and 9 < len(q) < 20 and q[-9] == "." and 0 <= f <= last:
        pd = p.replace(".", "", 1)
        qd = q.replace(".", "", 1)
        # int() alone would accept spaces, signs and "_" separators: check for plain digits
        if pd.isdigit() and qd.isdigit() and pd.isascii() and qd.isascii():
            price = int(pd)
            qty = int(qd)
        else:
            price = qty = 0
        if price > 0 and qty > 0:
            t = ev.T
            return (f, last, price, qty, t if t < US_FROM else t // 1000, ev.m)
    return _checked_agg_trade(ev)


def _checked_agg_trade(ev: AggTradeEvent) -> Trade:
    if max(ev.f, ev.l) > MAX_TRADE_ID:
        raise ImplausibleTrade(
            f"aggTrade {ev.a} has trade ids {ev.f}..{ev.l}, above {MAX_TRADE_ID}"
        )
    if ev.f < 0 or ev.l < ev.f:
        raise InvalidTrade(f"aggTrade {ev.a} has trade ids {ev.f}..{ev.l}")
    price, qty = _amounts(f"aggTrade {ev.a}", ev.p, ev.q)
    if price == 0 or qty == 0:
        raise InvalidTrade(f"aggTrade {ev.a} has zero price or quantity")
    return (ev.f, ev.l, price, qty, trade_time_ms(ev.T), ev.m)


def trade_event_to_trade(ev: TradeEvent) -> Trade:
    price, qty = _amounts(f"trade {ev.t}", ev.p, ev.q)
    if price == 0 or qty == 0 or ev.t < 0:
        raise InvalidTrade(f"trade {ev.t} has zero price or quantity or a negative id")
    return (ev.t, ev.t, price, qty, trade_time_ms(ev.T), ev.m)


def _amounts(what: str, price: str, qty: str) -> tuple[int, int]:
    try:
        return parse_amount(price), parse_amount(qty)
    except ImplausibleAmount as e:
        raise ImplausibleTrade(f"{what}: {e}") from e
    except ValueError as e:
        raise InvalidTrade(f"{what}: {e}") from e
