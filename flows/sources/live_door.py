"""The door of a live connection: each frame decoded, and refused if it cannot be real.

`FrameDoor` is the part of a `flows.sources.live_source` partition that takes one frame on
Bytewax's thread: a trade frame goes through a fast lax decode, else the exact decoder (both
in `flows.binance.frames`, which replays of captures and recordings use too), which
dead-letters every malformed frame with its reason; a trade whose time is before the exchange
existed or more than ``future_margin_ms`` ahead of the exchange's clock, or whose ids or
amounts cannot be real, is dead-lettered as ``implausible`` and never counts as evidence. A
clock-stream frame moves the exchange's clock (and so the latest plausible time); a
reconciled symbol's closed ``@kline_1m`` is kept to compare with ours.
"""

from __future__ import annotations

from typing import Any

from flows.binance.decode import KlineEvent, kline_of_event, trade_time_ms
from flows.binance.frames import FrameRefused, FrameTrade, exact_frame, lax_frame_trade
from flows.domain import deadletter as dl
from flows.domain.deadletter import DeadLetter
from flows.domain.kline import Kline, Trade
from flows.sources.live_order import SymbolOrder


class FrameDoor(SymbolOrder):
    """Frames in, plausible trades on to `SymbolOrder` (state set up by the partition)."""

    _clock_ms: int
    _time_refused: bool
    _refs: dict[str, list[Kline]]

    def _exchange_clock_ms(self) -> int:
        """The exchange's clock as best known: its clock stream, else its REST time (advanced
        by our own clock since it was read), else our own clock."""
        known = self._backfill.exchange_now
        rest = (
            -1 if known is None else known[1] + int((self._clock.monotonic_s() - known[0]) * 1000)
        )
        best = max(self._clock_ms, rest)
        return best if best >= 0 else self._clock.now_ms()

    def _frame(self, raw: bytes, out: dict[str, list[Trade]], dead: list[DeadLetter]) -> int:
        """Take one frame; returns the event time it proves delivered (-1 for none)."""
        taken = lax_frame_trade(raw, self._ceiling)
        if taken is None:
            exact = exact_frame(raw, self._ceiling, "live", text_limit=4000)
            if isinstance(exact, FrameRefused):
                self._time_refused |= exact.too_late
                dead.append(exact.letter)
                return -1
            if not isinstance(exact, FrameTrade):
                return self._event(exact, raw, dead)
            taken = exact
        self._accept(taken.symbol, taken.agg_id, taken.trade, out)
        return taken.trade[4]

    def _event(self, exact: Any, raw: bytes, dead: list[DeadLetter]) -> int:
        """A frame of another kind: the clock stream's and reconciled symbols' klines."""
        if isinstance(exact, KlineEvent):
            k = exact.k
            event_ms = trade_time_ms(exact.E)
            if event_ms > self._ceiling:
                self._time_refused = True
                text = raw[:4000].decode("utf-8", "replace")
                dead.append(DeadLetter(dl.IMPLAUSIBLE, f"event time {event_ms} is after "
                                       f"{self._ceiling}", text, "live", exact.s))  # fmt: skip
                return -1
            if k.i == "1m" and k.x and exact.s in self._cfg.reconcile:
                self._refs.setdefault(exact.s, []).append(kline_of_event(exact))
            else:
                self._stats.clock_frames += 1
                if event_ms > self._clock_ms:
                    # the exchange's clock moved: so does the latest plausible time
                    self._clock_ms = event_ms
                    self._ceiling = max(self._ceiling, event_ms + self._cfg.future_margin_ms)
            return event_ms
        self._stats.frames_ignored += 1  # depth, tickers and serverShutdown frames
        return -1
