"""One WebSocket frame to one trade: the single decoder of the live flow and of replays.

The live source (`flows.sources.live_door`) takes frames as they arrive; replays of captures
and recordings (`flows.sources.captures`) take the same frames from files. Both go through
here, so a frame gives the same trade, or the same dead letter with the same reason, wherever
it is read:

- `lax_frame_trade`: the fast path, a combined trade frame whose amounts a float decode gets
  exactly and whose trade no check could refuse (a replay runs the same two steps, `LAX_FRAME`
  and `lax_trade`, inline over millions of lines); None sends the frame to
- `exact_frame`: every frame kind, every error with its reason: a `FrameTrade`, a
  `FrameRefused` (malformed, invalid or implausible: its dead letter), or the decoded event
  of another kind (klines, depth, tickers, serverShutdown) for the caller to use or count.
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

import msgspec

from flows.binance.decode import (
    AggTradeEvent,
    FrameError,
    InvalidTrade,
    LaxAggTrade,
    LaxCombined,
    TradeEvent,
    agg_trade_to_trade,
    decode_frame,
    lax_trade,
    trade_event_to_trade,
)
from flows.domain import deadletter as dl
from flows.domain.deadletter import DeadLetter
from flows.domain.kline import Trade
from flows.domain.trade_checks import implausible

LAX_FRAME: Final = msgspec.json.Decoder(LaxCombined, strict=False)
LAX_ERRORS: Final = (msgspec.DecodeError, msgspec.ValidationError)


class FrameTrade(NamedTuple):
    symbol: str
    agg_id: int  # the aggregate trade id; -1 for a raw trade frame
    trade: Trade


class FrameRefused(NamedTuple):
    letter: DeadLetter
    too_late: bool  # refused for a time past the ceiling (the caller's clock may lag)


def lax_frame_trade(frame: bytes, ceiling_ms: int) -> FrameTrade | None:
    """The trade of a combined trade frame when the fast decode (`LAX_FRAME`, then
    `flows.binance.decode.lax_trade`) reads it exactly and no check could refuse it; None:
    only `exact_frame` may decide."""
    try:
        ev = LAX_FRAME.decode(frame).data
        trade = lax_trade(ev, ceiling_ms)
    except LAX_ERRORS:
        return None
    if trade is None:
        return None
    return FrameTrade(ev.s, ev.a if type(ev) is LaxAggTrade else -1, trade)


def exact_frame(
    frame: bytes, ceiling_ms: int, where: str, text_limit: int | None = None
) -> FrameTrade | FrameRefused | Any:
    """Any frame, exactly. `where` and the frame's text (its first `text_limit` bytes) go
    into a dead letter; a non-trade event is returned as decoded."""

    def refused(reason: str, detail: str, symbol: str = "", late: bool = False) -> FrameRefused:
        raw = frame if text_limit is None else frame[:text_limit]
        text = raw.decode("utf-8", "replace")
        return FrameRefused(DeadLetter(reason, detail, text, where, symbol), late)

    try:
        ev = decode_frame(frame)
    except FrameError as e:
        return refused(e.reason, e.detail)
    if not isinstance(ev, AggTradeEvent | TradeEvent):
        return ev
    try:
        if isinstance(ev, AggTradeEvent):
            trade, agg_id = agg_trade_to_trade(ev), ev.a
        else:
            trade, agg_id = trade_event_to_trade(ev), -1
    except InvalidTrade as e:
        return refused(e.reason, str(e), ev.s)
    why = implausible(trade, ceiling_ms)
    if why is not None:
        return refused(dl.IMPLAUSIBLE, why, ev.s, trade[4] > ceiling_ms)
    return FrameTrade(ev.s, agg_id, trade)


__all__ = [
    "LAX_ERRORS",
    "LAX_FRAME",
    "FrameRefused",
    "FrameTrade",
    "exact_frame",
    "lax_frame_trade",
]
