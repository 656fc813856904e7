"""A batch of one symbol's trades as columns: what columnar sources hand the kline step.

Amounts are int64 1e-8 units and times int64 milliseconds, as in `flows.domain.kline.Trade`;
the arrays have one length and are in trade-id order. Dead letters of the same input lines,
and where the source stands in its input (its resume position), travel with them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from flows.domain.deadletter import DeadLetter
from flows.domain.kline import Trade

Int64s = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]


@dataclass(slots=True)
class TradeColumns:
    """A batch of one symbol's trades as arrays, with the dead letters of the same lines."""

    symbol: str
    time_ms: Int64s
    price_units: Int64s
    qty_units: Int64s
    first_id: Int64s
    last_id: Int64s
    is_buyer_maker: Bools
    dead: list[DeadLetter] = field(default_factory=list)
    records: int = 0  # records of the input consumed so far (the resume position)
    truncated: int = 0  # 1 in the last batch of a file cut short
    bytes_done: int = 0  # bytes of the file on disk consumed so far (progress)

    def __len__(self) -> int:
        return len(self.time_ms)

    def trades(self) -> list[Trade]:
        """The batch as trade tuples (tests and per-trade consumers)."""
        return list(
            zip(
                self.first_id.tolist(),
                self.last_id.tolist(),
                self.price_units.tolist(),
                self.qty_units.tolist(),
                self.time_ms.tolist(),
                self.is_buyer_maker.tolist(),
                strict=True,
            )
        )

    @classmethod
    def empty(
        cls, symbol: str, dead: list[DeadLetter] | None = None, records: int = 0,
        truncated: int = 0,
    ) -> TradeColumns:  # fmt: skip
        none = np.zeros(0, np.int64)
        return cls(symbol, none, none, none, none, none, np.zeros(0, np.bool_),
                   dead if dead is not None else [], records, truncated)  # fmt: skip

    @classmethod
    def of(cls, symbol: str, trades: list[Trade]) -> TradeColumns:
        """Trade tuples as columns."""
        if not trades:
            return cls.empty(symbol)
        first, last, price, qty, time_ms, maker = zip(*trades, strict=True)
        i64 = np.int64
        return cls(symbol, np.array(time_ms, i64), np.array(price, i64),
                   np.array(qty, i64), np.array(first, i64), np.array(last, i64),
                   np.array(maker, np.bool_))  # fmt: skip
