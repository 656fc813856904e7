"""PostgreSQL signal endpoint: `flows.signals.store.SignalWriter` (one transaction per batch,
the database deciding new, repeat or duplicate; retried while the server is away)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import psycopg

from flows.io.contracts import ContractEnv, SignalSink

if TYPE_CHECKING:
    from flows.signals.engine import Fire


class PostgresSignals(SignalSink):
    """Signals into the `signals` table (announced by the database's NOTIFY trigger)."""

    def __init__(self, url: str, record_latency: bool = False) -> None:
        from flows.signals.store import SignalWriter

        self._url = url
        self._writer = SignalWriter(url, record_latency=record_latency)

    def write_batch(self, fires: Sequence[Fire]) -> None:
        self._writer.write_or_wait(fires)

    def contents(self) -> dict[str, Any]:
        with psycopg.connect(self._url) as conn:
            rows = conn.execute(
                "SELECT id, trader_id, symbol, interval, kline_open_ms, price::text, "
                "repeat_count FROM signals ORDER BY id"
            ).fetchall()
        return {r[0]: tuple(r[1:]) for r in rows}

    def close(self) -> None:
        self._writer.close()

    @classmethod
    def for_contract(cls, env: ContractEnv) -> PostgresSignals:
        from flows.signals.book import TraderRow
        from flows.signals.store import TraderStore

        row = TraderStore(env.database_url).add(
            TraderRow(0, f"contract {env.namespace}", "close > open", "1m",
                      trigger_mode="every_close", cooldown_bars=0),
            owner="contract",
        )  # fmt: skip
        sink = cls(env.database_url)
        sink.contract_trader = (row.id, row.version)
        return sink
