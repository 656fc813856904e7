"""An in-memory endpoint of each kind: for tests, notebooks and backtests that keep their
results in the process. Each is a whole implementation of its contract, not a stub: the
contract suite runs them like the others.

>>> from flows.domain.kline import Kline
>>> sink = MemoryKlines()
>>> k = Kline(0, 59_999, 5, 7, 5, 6, 10, 60, 2, 4, 24, 1, 2)
>>> sink.write_batch([KlineRecord("BTCUSDT", "1m", k, False)])
>>> sink.write_batch([KlineRecord("BTCUSDT", "1m", k._replace(close=7), True)])
>>> [(key, rec.kline.close, rec.closed) for key, rec in sink.contents().items()]
[(('BTCUSDT', '1m', 0), 7, True)]
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from flows.domain.trade_columns import TradeColumns
from flows.io.contracts import (
    ContractEnv,
    KlineRecord,
    KlineSink,
    Position,
    Report,
    ReportSink,
    SignalSink,
    TradeSource,
)

if TYPE_CHECKING:
    from flows.signals.engine import Fire


class MemoryTrades(TradeSource):
    """Batches held in a list; the position is the number of batches read."""

    def __init__(self, batches: Sequence[TradeColumns]) -> None:
        self._batches = list(batches)

    def read(self, after: Position | None = None) -> Iterator[tuple[TradeColumns, Position]]:
        start = 0 if after is None else int(after)  # type: ignore[call-overload]
        for i in range(start, len(self._batches)):
            yield self._batches[i], i + 1

    @classmethod
    def for_contract(cls, env: ContractEnv) -> MemoryTrades:
        return cls(env.trades)


class MemoryKlines(KlineSink):
    def __init__(self) -> None:
        self._store: dict[tuple[str, str, int], KlineRecord] = {}

    def write_batch(self, records: Sequence[KlineRecord]) -> None:
        for r in records:
            self._store[(r.symbol, r.interval, r.kline.open_ms)] = r

    def contents(self) -> dict[tuple[str, str, int], KlineRecord]:
        return dict(sorted(self._store.items()))

    @classmethod
    def for_contract(cls, env: ContractEnv) -> MemoryKlines:
        return cls()


class MemorySignals(SignalSink):
    def __init__(self) -> None:
        self._store: dict[str, Fire] = {}

    def write_batch(self, fires: Sequence[Fire]) -> None:
        for f in fires:
            self._store.setdefault(f.id, f)

    def contents(self) -> dict[str, Any]:
        return {i: (f.trader_id, f.symbol, f.interval, f.open_ms, f.price)
                for i, f in sorted(self._store.items())}  # fmt: skip

    @classmethod
    def for_contract(cls, env: ContractEnv) -> MemorySignals:
        return cls()


class MemoryReports(ReportSink):
    def __init__(self) -> None:
        self._store: dict[Report, None] = {}  # insertion order, each value once

    def write_batch(self, reports: Sequence[Report]) -> None:
        for r in reports:
            self._store.setdefault(r, None)

    def contents(self) -> dict[Report, int]:
        return {r: i for i, r in enumerate(self._store)}

    @classmethod
    def for_contract(cls, env: ContractEnv) -> MemoryReports:
        return cls()
