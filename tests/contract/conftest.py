"""The contract suite's servers and sample data: every endpoint class found by
`flows.io.contracts.discover` runs on the real Redis and PostgreSQL of the test session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flows.domain.keys import KeySpace
from flows.domain.trade_columns import TradeColumns
from flows.io.contracts import ContractEnv

T0 = 1_600_000_000_000  # 2020-09-13, a time Binance was trading
SYMBOL = "XRPETH"


def sample_trades(seed: int = 5, batches: int = 3, per_batch: int = 20) -> tuple[TradeColumns, ...]:
    """One symbol's trades in id order over a few minutes, in batches; amounts of every size
    Binance sends, quantities beyond 2**53 units among them."""
    rng = np.random.default_rng(seed)
    out = []
    next_id, t = 1_000, T0
    for _ in range(batches):
        n = per_batch
        span = rng.integers(1, 3, n)  # aggTrades of one or two trades
        first = next_id + np.concatenate([[0], np.cumsum(span)[:-1]])
        last = first + span - 1
        next_id = int(last[-1]) + 1
        times = t + np.cumsum(rng.integers(0, 20_000, n))
        t = int(times[-1])
        price = rng.integers(1, 10**12, n)
        qty = rng.choice([1, 10**8, 2**53 + 7, 9 * 10**17], n)
        maker = rng.integers(0, 2, n).astype(bool)
        out.append(TradeColumns(SYMBOL, times.astype(np.int64), price.astype(np.int64),
                                qty.astype(np.int64), first.astype(np.int64),
                                last.astype(np.int64), maker))  # fmt: skip
    return tuple(out)


@pytest.fixture
def contract_env(
    request: pytest.FixtureRequest, redis_url: str, keys: KeySpace, tmp_path: Path
) -> ContractEnv:
    """Servers and data for one test; a database of its own only when a signal sink asks."""
    needs_db = "signals" in request.node.name
    database_url = request.getfixturevalue("signals_db") if needs_db else ""
    return ContractEnv(redis_url, database_url, str(tmp_path), keys.namespace, sample_trades())
