"""A hostile trader cannot stop the shared live flow.

Traders are written straight into PostgreSQL, past every check of the command line and the
dashboard (as anyone holding a login that may write traders could): rules the checker now
refuses (the ten that crashed the flow before, by their first two), a regular expression
that took minutes to match, infinity, and, registered for this test, a helper whose shared
indicator raises and one that is always over its time budget. Meanwhile the live flow must
close every kline exactly as the reference does and write every signal of the honest traders
(0 missing, 0 extra against the reference klines), and each hostile trader's reason must be
in ``trader_errors`` for its owner to read.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import redis

from flows.domain.keys import KeySpace
from flows.indicators import Indicator
from flows.indicators.series import BarSeries
from flows.rules.helpers import DEFAULT_REGISTRY
from flows.rules.registry import Arg
from flows.signals.store import TraderStore
from tests.integration.test_live import _check_equal, _complete, _live, _market, _reference, _wait

BUDGET_MS = 40.0


class _Boom(Indicator):
    def __init__(self, after: int = 2) -> None:
        super().__init__()
        self.spec = ("boom", (after,))
        self.after = after

    def update(self, series: BarSeries) -> float:
        self._n += 1
        if self._n >= self.after:
            raise FloatingPointError("the shared indicator broke")
        return 1.0


def _slow(frame: Any, back: int, _: int) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started <= 2 * BUDGET_MS / 1000:  # always over budget
        pass
    return 1.0


@pytest.fixture
def hostile_helpers() -> Iterator[None]:
    """Two helpers a careless data engineer might add, in this process's library."""
    DEFAULT_REGISTRY.indicator("boom", args=[Arg("period", 2)])(_Boom)
    DEFAULT_REGISTRY.function("slow", args=[Arg("period", 1)])(_slow)
    try:
        yield
    finally:
        DEFAULT_REGISTRY.remove("boom")
        DEFAULT_REGISTRY.remove("slow")
        DEFAULT_REGISTRY.factories.pop("boom", None)


HONEST = {
    "always": "close >= open or close < open",
    "up": "close > open",
}
HOSTILE = {
    "rsi one": ("rsi(1) > 50", "argument 1 of rsi must be from 2 to 100000 bars"),
    "bands": ("bb_upper(20,1e308) > close", "argument 2 of bb_upper must be at most 100"),
    "infinity": ("1e308 * 1e308 > close", None),  # accepted, never ready, never fires
    "boom": ("boom(2) > 0", "IndicatorFailed: indicator boom(2) failed: FloatingPointError"),
    "slow": ("slow(1) > 0", f"over the budget of {BUDGET_MS:g} ms on 3 klines in a row"),
}


def _insert(conn: psycopg.Connection[Any], owner: int, name: str, expr: str, **kw: Any) -> int:
    row = conn.execute(
        "INSERT INTO traders (owner_id, name, expression, interval, trigger_mode, "
        "cooldown_bars, symbols_mode, symbols_pattern) VALUES (%s, %s, %s, '1m', "
        "'every_close', 0, %s, %s) RETURNING id",
        (owner, name, expr, kw.get("mode", "all"), kw.get("pattern")),
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_the_live_flow_runs_on_for_everyone_while_hostile_traders_are_present(
    hostile_helpers: None,
    redis_url: str,
    redis_client: redis.Redis,
    keys: KeySpace,
    signals_db: str,
) -> None:
    TraderStore(signals_db)  # the schema
    with psycopg.connect(signals_db, autocommit=True) as conn:
        owner_row = conn.execute(
            "INSERT INTO users (name) VALUES ('mallory') RETURNING id"
        ).fetchone()
        assert owner_row is not None
        owner = int(owner_row[0])
        ids = {name: _insert(conn, owner, name, expr) for name, expr in HONEST.items()}
        ids |= {name: _insert(conn, owner, name, expr) for name, (expr, _) in HOSTILE.items()}
        ids["regex"] = _insert(conn, owner, "regex", "close > 0", mode="pattern",
                               pattern="((((.*)*)*)*)*Z")  # fmt: skip
        ids["glob"] = _insert(conn, owner, "glob", HONEST["always"], mode="pattern",
                              pattern="*USDT")  # fmt: skip
    cfg = _market()
    want = _reference(cfg)
    with _live(cfg, redis_url, keys, database_url=signals_db, rule_budget_ms=BUDGET_MS) as (
        _base,
        stats,
        _stop,
    ):
        assert _wait(lambda: _complete(redis_client, keys, want), 90), "klines did not complete"

        def signals_of(name: str) -> set[tuple[str, int]]:
            with psycopg.connect(signals_db) as conn:
                rows = conn.execute(
                    "SELECT symbol, kline_open_ms FROM signals WHERE trader_id = %s",
                    (ids[name],),
                ).fetchall()
            return {(str(s), int(t)) for s, t in rows}

        def caught_up() -> bool:  # the honest traders decided the last reference kline
            got = signals_of("always")
            last = {s: int(rows["1m"][-1][0]) for s, rows in want.items()}  # type: ignore[call-overload]
            return all((s, t) in got for s, t in last.items())

        assert _wait(caught_up, 60), "the honest traders stopped deciding"
    assert _check_equal(redis_client, keys, want) >= 20
    assert stats.gaps == 0
    always = signals_of("always")
    for symbol, rows in want.items():
        opens = [int(r[0]) for r in rows["1m"]]  # type: ignore[call-overload]
        first = min(t for s, t in always if s == symbol)
        decided = [t for t in opens if t >= first]
        assert len(decided) >= 2, symbol
        assert sorted(t for s, t in always if s == symbol) == decided, symbol  # 0 missing/extra
        ups = {int(r[0]) for r in rows["1m"] if int(r[0]) >= first and r[4] > r[1]}  # type: ignore[call-overload, operator]
        assert {t for s, t in signals_of("up") if s == symbol} == ups, symbol
    assert signals_of("glob") == always  # every simulated symbol ends in USDT
    assert signals_of("infinity") == set()
    assert signals_of("regex") == set()
    with psycopg.connect(signals_db) as conn:
        errors = conn.execute("SELECT trader_id, symbol, error FROM trader_errors").fetchall()
    by_trader: dict[int, list[tuple[str, str]]] = {}
    for tid, symbol, error in errors:
        by_trader.setdefault(int(tid), []).append((str(symbol), str(error)))
    for name, (_, reason) in HOSTILE.items():
        if reason is None:
            assert ids[name] not in by_trader
            continue
        assert by_trader.get(ids[name]), name
        assert all(reason in error for _, error in by_trader[ids[name]]), by_trader[ids[name]]
    assert {s for s, _ in by_trader[ids["boom"]]} == set(want)  # per symbol
    assert {s for s, _ in by_trader[ids["rsi one"]]} == {"*"}  # left out of the book
    assert "not allowed in a symbols pattern" in by_trader[ids["regex"]][0][1]
    for honest in ("always", "up", "glob"):
        assert ids[honest] not in by_trader
