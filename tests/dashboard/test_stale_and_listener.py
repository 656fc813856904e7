"""Unreachable servers (the last data, marked stale, and recovery) and the listener's
catch-up after its connection is killed."""

from __future__ import annotations

import time

import psycopg
import pytest

from dashboard.data import sources
from flows.signals.engine import Fire
from flows.signals.store import SignalWriter
from tests.dashboard.conftest import (
    Filled,
    as_user,
    chart_datasets,
    charts,
    make_app,
    no_exceptions,
)

DEAD_REDIS = "redis://127.0.0.1:1/0"
DEAD_POSTGRES = "host=127.0.0.1 port=1 dbname=nothing user=nobody connect_timeout=1"


def candle_times(at: object) -> list[int]:
    (chart,) = charts(at)
    (table,) = chart_datasets(chart).values()
    return list(table.column("t").to_pylist())


def warnings(at: object) -> list[str]:
    return [w.value for w in at.warning]  # type: ignore[attr-defined]


def test_market_keeps_its_data_while_redis_is_unreachable_and_recovers(
    filled: Filled, app_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = make_app(symbol="XRPETH", interval="1m").run()
    no_exceptions(at)
    before = candle_times(at)
    assert len(before) == 300 and not warnings(at)

    monkeypatch.setenv("KLINEFLOW_REDIS_URL", DEAD_REDIS)
    at.run()
    no_exceptions(at)
    banners = warnings(at)
    assert banners and all(b.startswith("Showing data from ") for b in banners)
    assert all(b.endswith(": Redis is unreachable") for b in banners)
    assert candle_times(at) == before  # the last data, still drawn

    monkeypatch.setenv("KLINEFLOW_REDIS_URL", filled.redis_url)
    at.run()
    no_exceptions(at)
    assert not warnings(at)
    assert candle_times(at) == before


def test_signals_keep_their_rows_while_postgres_is_unreachable_and_recover(
    filled: Filled, app_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = as_user(make_app(), filled.ana, "ana").run()
    at.switch_page("views/signals.py").run()
    rows = list(at.dataframe[0].value["id"])
    assert rows and not warnings(at)

    monkeypatch.setenv("KLINEFLOW_DATABASE_URL", DEAD_POSTGRES)
    at.session_state["klineflow_signals_cache"] = None  # as if the recheck were due
    at.run()
    no_exceptions(at)
    assert any(w.endswith(": PostgreSQL is unreachable") and w.startswith("Showing data from ")
               for w in warnings(at))  # fmt: skip
    assert list(at.dataframe[0].value["id"]) == rows

    monkeypatch.setenv("KLINEFLOW_DATABASE_URL", filled.database_url)
    at.session_state["klineflow_signals_cache"] = None
    at.run()
    no_exceptions(at)
    assert not warnings(at)
    assert list(at.dataframe[0].value["id"]) == rows


def test_listener_catches_up_after_its_connection_is_killed(filled: Filled, app_env: None) -> None:
    at = as_user(make_app(), filled.ana, "ana").run()
    at.switch_page("views/signals.py").run()
    lis = sources.listener()
    assert lis.connected.wait(10)
    first_connects = lis.connects
    pid = lis.backend_pid
    lis.reconnect_allowed.clear()  # keep it down until the signal is committed
    with psycopg.connect(filled.database_url, autocommit=True) as conn:
        assert conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
    deadline = time.monotonic() + 10
    while lis.connected.is_set() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not lis.connected.is_set()

    trader = filled.ana_trader
    open_ms = 1_570_752_000_000 + 11 * 60_000
    sid = f"{trader.id}-LTCBTC-1m-{open_ms}"
    writer = SignalWriter(filled.database_url, record_latency=False)
    assert writer.write([Fire(sid, trader.id, 1, "LTCBTC", "1m", open_ms, open_ms + 59_999,
                              open_ms, "0.00700000", {"close": 0.007}, 0)])  # fmt: skip
    writer.close()
    assert lis.seen(sid) is None  # its NOTIFY went to nobody

    lis.reconnect_allowed.set()
    deadline = time.monotonic() + 15
    while lis.seen(sid) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    seen = lis.seen(sid)
    assert seen is not None and seen.via == "catch-up"
    assert lis.connects == first_connects + 1
    at.run()
    assert at.dataframe[0].value["id"].iloc[0] == sid
    assert "Latest: Ana up bars · LTCBTC · 1m" in [c.value for c in at.caption]
