"""A live flow killed between storing a kline in Redis and deciding it: the restart decides it.

The Redis output and the rules step run side by side in the dataflow, so a `kill -9` can
fall after a kline is stored and before any rule has seen it. The restart resumes after the
newest stored kline, so only the rules' own record (the progress committed with the signals,
or where they began, `rules_since`) can bring that kline back to them. Here the pieces of
the live flow run by hand on real Redis and PostgreSQL, with the kill at every point of the
class: before the first process's rules decided anything (a fresh start: nothing recorded but
the start the kline sink claims with the kline), after some of its klines were decided and
committed, after all of them; for a 1m and a 3m trader at once.
"""

from __future__ import annotations

import psycopg
import pytest

from flows.dataflows.kline_step import KlineUpdate
from flows.domain.keys import KeySpace
from flows.domain.kline import Kline
from flows.domain.stats import RunStats
from flows.signals.book import TraderRow
from flows.signals.engine import Fire, Progress, RuleFailure
from flows.signals.runtime import RulesRuntime, rules_stage
from flows.signals.step import RulesLogic, RulesStart
from flows.signals.store import SignalWriter, TraderStore
from flows.sinks.redis_sink import RedisKlineSink, writer_factory

SYMBOL = "ETHUSDT"
T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC
M = 60_000
UNIT = 100_000_000


def _kline(open_ms: int, length_ms: int, open_: int, close: int) -> Kline:
    high, low = max(open_, close), min(open_, close)
    return Kline(open_ms, open_ms + length_ms - 1, open_ * UNIT, high * UNIT, low * UNIT,
                 close * UNIT, UNIT, close * UNIT, 1, 0, 0)  # fmt: skip


def _minutes(count: int) -> list[list[tuple[str, Kline]]]:
    """The closed klines of each minute: a 1m kline, and a 3m one every third minute. Closes
    go up and down, so each trader fires on some klines and not on others."""
    closes = [100, 103, 101, 104, 108, 107, 106, 110, 109]
    out: list[list[tuple[str, Kline]]] = []
    for m in range(count):
        closed = [("1m", _kline(T0 + m * M, M, closes[m], closes[m + 1]))]
        if m % 3 == 2:
            first = m - 2
            closed.append(("3m", _kline(T0 + first * M, 3 * M, closes[first], closes[m + 1])))
        out.append(closed)
    return out


def _expected(traders: dict[str, int], minutes: list[list[tuple[str, Kline]]]) -> set[str]:
    return {
        f"{traders[name]}-{SYMBOL}-{name}-{k.open_ms}"
        for closed in minutes
        for name, k in closed
        if k.close > k.open
    }


def _written(db: str) -> set[str]:
    with psycopg.connect(db) as conn:
        return {str(r[0]) for r in conn.execute("SELECT id FROM signals").fetchall()}


class _Process:
    """One process of the live flow: its kline sink (claiming the rules' start as the live
    flow's does) and its rules step, fed by hand."""

    def __init__(self, redis_url: str, keys: KeySpace, db: str) -> None:
        self.rules: RulesRuntime = rules_stage(db, redis_url, ["1m", "3m"], keys)
        self.sink = RedisKlineSink(
            writer_factory(redis_url, keys=keys, journal=16),
            RunStats(),
            rules_start=RulesStart(self.rules.holder),
        ).build("redis_out", 0, 1)
        self.logic = RulesLogic(self.rules.stage.config, None)
        self.writer = SignalWriter(db)

    def store(self, closed: list[tuple[str, Kline]]) -> None:
        self.sink.write_batch([(SYMBOL, KlineUpdate(SYMBOL, closed=list(closed)))])

    def decide(self, closed: list[tuple[str, Kline]]) -> None:
        out, _ = self.logic.on_batch([(SYMBOL, list(closed), None)])
        items: list[Fire | RuleFailure | Progress] = [x for batch in out for x in batch]
        assert not [x for x in items if isinstance(x, RuleFailure)]
        assert self.writer.write(items)

    def kill(self) -> None:
        self.rules.stop()
        self.writer.close()
        self.sink.close()


CASES = [(n, d) for n in (0, 1, 2, 4) for d in range(n + 2)]


@pytest.mark.parametrize(("stored", "decided"), CASES)
def test_a_kline_stored_but_never_decided_before_a_kill_is_decided_by_the_restart(
    redis_url: str, keys: KeySpace, signals_db: str, stored: int, decided: int
) -> None:
    """The first process stores minutes 0..`stored` and its rules decide (and commit) the
    first `decided` of them; then it is killed. The second stores and decides the rest."""
    store = TraderStore(signals_db)
    traders = {
        name: store.add(TraderRow(0, f"up {name}", "close > open", name,
                                  trigger_mode="every_close", cooldown_bars=0)).id
        for name in ("1m", "3m")
    }  # fmt: skip
    minutes = _minutes(7)
    first = _Process(redis_url, keys, signals_db)
    try:
        for m in range(stored + 1):
            first.store(minutes[m])
            if m < decided:
                first.decide(minutes[m])
    finally:
        first.kill()
    before = _written(signals_db)
    assert before == _expected(traders, minutes[:decided])
    second = _Process(redis_url, keys, signals_db)
    try:
        for closed in minutes[stored + 1 :]:
            second.store(closed)
            second.decide(closed)
    finally:
        second.kill()
    want = _expected(traders, minutes)
    assert {sid.split("-")[2] for sid in want} == {"1m", "3m"}  # both traders fire
    assert _written(signals_db) == want


def test_the_sink_claims_each_start_once_and_only_for_traded_intervals(
    redis_url: str, keys: KeySpace, signals_db: str
) -> None:
    """The kline sink claims the start of a (symbol, interval) a trader decides on with its
    first stored kline; intervals no trader reads (3m here) are not claimed, and a later
    process never moves an earlier claim."""
    import redis

    TraderStore(signals_db).add(TraderRow(0, "up", "close > open", "1m", cooldown_bars=0))
    client = redis.Redis.from_url(redis_url)
    try:
        minutes = _minutes(4)
        for process, span in enumerate(((0, 2), (2, 4))):
            proc = _Process(redis_url, keys, signals_db)
            try:
                for m in range(*span):
                    proc.store(minutes[m])
            finally:
                proc.kill()
            claims = client.hgetall(keys.rules_since)
            assert claims == {f"{SYMBOL} 1m".encode(): str(T0).encode()}, (process, claims)
    finally:
        client.close()


def test_a_redis_that_lost_its_data_gets_the_rules_starts_again(
    redis_url: str, keys: KeySpace, signals_db: str
) -> None:
    """Redis restarted without its data: the kline writer writes its journal again, and the
    rules' starts it had claimed with it, so the restored klines are still decided after a
    kill (a kline sink claims each pair once per process and would not claim it again)."""
    import redis

    TraderStore(signals_db).add(TraderRow(0, "up", "close > open", "1m", cooldown_bars=0))
    client = redis.Redis.from_url(redis_url)
    proc = _Process(redis_url, keys, signals_db)
    try:
        minutes = _minutes(3)
        proc.store(minutes[0])
        proc.store(minutes[1])
        claim = {f"{SYMBOL} 1m".encode(): str(T0).encode()}
        assert client.hgetall(keys.rules_since) == claim
        lost = [*client.scan_iter(match=keys.sentinel("*")), keys.rules_since]
        lost += [keys.klines(SYMBOL, i) for i in ("1m", "3m")]
        client.delete(*lost)  # what a Redis without persistence loses at a restart
        proc.store(minutes[2])  # the writer finds its sentinel gone and repairs
        assert client.hgetall(keys.rules_since) == claim
        assert client.zcard(keys.klines(SYMBOL, "1m")) >= 3
    finally:
        proc.kill()
        client.close()
