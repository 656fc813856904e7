"""What every source hands the dataflow: batches of one symbol's trades, keyed by symbol, and
reports (dead letters, data-quality gaps) that go straight to the sink."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from flows.domain.deadletter import DeadLetter
from flows.domain.kline import Kline, Trade
from flows.domain.trade_columns import TradeColumns


class SymbolBatch(NamedTuple):
    """Trades of one symbol in order, then an optional watermark: every trade of the symbol
    with a time before `watermark_ms` has been delivered (-1: no watermark; replays never
    send one, they run on event time alone).

    `reset`: the kline builder state to continue from, before these trades (a live source
    resuming a symbol from what the stores hold); None: go on from the current state.

    `columns`: more trades of the symbol as arrays, after `trades` (columnar sources send
    these and leave `trades` empty; the kline step builds them with array operations)."""

    symbol: str
    trades: list[Trade]
    watermark_ms: int = -1
    references: tuple[Kline, ...] = ()  # Binance's own closed 1m klines (reconciliation)
    reset: dict[str, Any] | None = None
    columns: TradeColumns | None = None


@dataclass(frozen=True, slots=True)
class GapReport:
    """Trades a live source knows it missed and could not fetch: the klines of this time range
    are incomplete. Trade ids are Binance's (first missing, last missing)."""

    symbol: str
    first_trade_id: int
    last_trade_id: int
    from_ms: int
    to_ms: int
    reason: str

    def span(self) -> str:
        """The gap as a member of `klines:gaps:<symbol>` (scored by `from_ms`)."""
        return f"{self.from_ms}:{self.to_ms}:{self.first_trade_id}:{self.last_trade_id}"

    def fields(self) -> dict[str, str | int]:
        return {
            "symbol": self.symbol,
            "first_trade_id": self.first_trade_id,
            "last_trade_id": self.last_trade_id,
            "from_ms": self.from_ms,
            "to_ms": self.to_ms,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class QualityNote:
    """Something an operator must know about the klines of one symbol that is not a missing
    range: an amended kline, a resume point, a repair. Kept in the data-quality stream."""

    symbol: str
    what: str  # "amended", "resumed", "repaired", ...
    detail: str
    interval: str = ""
    open_ms: int = -1

    def fields(self) -> dict[str, str | int]:
        return {
            "symbol": self.symbol,
            "what": self.what,
            "detail": self.detail,
            "interval": self.interval,
            "open_ms": self.open_ms,
        }


@dataclass(frozen=True, slots=True)
class SourceReport:
    dead: list[DeadLetter]
    gaps: list[GapReport] | None = None
    notes: list[QualityNote] | None = None


class Watermarks(NamedTuple):
    """One watermark for many symbols at once (a live source's each second): every trade of
    each of `symbols` with a time before `watermark_ms` has been delivered. Keyed by the empty
    string; the dataflow hands each shard of the kline step the part of `symbols` it holds,
    so a second's watermark for 1,600 symbols is a few items, not 1,600. It follows the
    trades it covers in the source's batch (they are applied first)."""

    symbols: tuple[str, ...]
    watermark_ms: int


KeyedBatch = tuple[str, SymbolBatch]
SourceItem = KeyedBatch | tuple[str, Watermarks] | SourceReport
