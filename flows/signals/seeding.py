"""How the rows of a shard engine are seeded from storage: as a symbol's own frame is.

A row rebuilt with bars it held gets older ones from storage before them, up to the bars its
own frame keeps; a row with no bars (a new symbol, or an interval its traders newly read)
waits for its symbol's next close and is seeded up to it, where the per-symbol engine seeds a
frame (``flows.signals.scalar_engine.ScalarEngine._seeded``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from flows.domain.kline import Kline
from flows.rules.block import Block
from flows.signals.engine import EngineCounters, Seeder

log = logging.getLogger(__name__)


class RowSeeding:
    """Seeding for ``ShardEngine`` (its ``blocks`` and the rows waiting, ``_pending``)."""

    blocks: dict[str, Block]
    _pending: dict[str, set[str]]

    def _seed(self, seeder: Seeder | None, symbol: str, interval: str, end_ms: int,
              count: int) -> list[Kline]:  # fmt: skip
        if seeder is None or count <= 0:
            return []
        try:
            return seeder(symbol, interval, end_ms, count)
        except Exception as exc:  # storage unavailable: start from what is held
            log.warning("seeding symbol=%s interval=%s failed (%s); rules warm up from new bars",
                        symbol, interval, exc)  # fmt: skip
            return []

    def _older(self, seeder: Seeder | None, symbol: str, interval: str, held: list[Kline],
               cap: int) -> list[Kline]:  # fmt: skip
        """Klines from storage before the ``held`` ones, up to ``cap`` bars in all, as a
        frame is rebuilt."""
        if len(held) >= cap:
            return []
        older = self._seed(seeder, symbol, interval, held[0].open_ms, cap - len(held))
        return [k for k in older if k.open_ms < held[0].open_ms]

    def _history(self, block: Block, symbol: str, held: list[Kline], seeder: Seeder | None,
                 counters: EngineCounters) -> list[Kline]:  # fmt: skip
        """What a row is fed: ``held`` after older bars from storage; nothing yet for a row
        with no bars, seeded when its symbol next closes (``_seed_pending``), where a
        symbol's own frame would be seeded."""
        if not held:
            self._pending.setdefault(symbol, set()).add(block.interval)
            return []
        cap = int(block.row_cap[block.rows[symbol]])
        klines = self._older(seeder, symbol, block.interval, held, cap) + held
        counters.seeded_klines += len(klines)
        return klines

    def _seed_pending(self, symbols: Iterable[str], end_ms: int, seeder: Seeder | None,
                      counters: EngineCounters) -> None:  # fmt: skip
        """Seed the rows of ``symbols`` that wait for it, up to ``end_ms`` (their close)."""
        todo: dict[str, list[tuple[int, list[Kline]]]] = {}
        for symbol in symbols:
            for interval in self._pending.pop(symbol, ()):
                block = self.blocks.get(interval)
                if block is None or symbol not in block.rows:
                    continue
                cap = int(block.row_cap[block.rows[symbol]])
                klines = self._seed(seeder, symbol, interval, end_ms, cap)
                counters.seeded_klines += len(klines)
                todo.setdefault(interval, []).append((block.rows[symbol], klines))
        for interval, histories in todo.items():
            self.blocks[interval].feed(histories)
