"""Screener and Status pages."""

from __future__ import annotations

import json

import pytest
import redis

from flows.domain.deadletter import DeadLetter
from flows.domain.kline import kline_of_row
from flows.sources.items import GapReport
from flows.storage.redis_klines import KlineWriter
from tests.dashboard.conftest import Filled, make_app, no_exceptions


def page(path: str) -> object:
    at = make_app().run()
    at.switch_page(path).run()
    no_exceptions(at)
    return at


def test_screener_shows_the_24h_figures_of_the_stored_klines(filled: Filled, app_env: None) -> None:
    client = redis.Redis.from_url(filled.redis_url)
    members = client.zrevrange(filled.keys.klines("XRPETH", "1m"), 0, 1439)
    client.close()
    day = [kline_of_row(json.loads(m)) for m in members]  # newest first
    at = page("views/screener.py")
    table = at.dataframe[0].value
    assert list(table["symbol"]) == ["XRPETH"]
    row = table.iloc[0]
    assert row["klines"] == 1440
    assert row["last price"] == pytest.approx(day[0].close / 1e8)
    first_open = day[-1].open / 1e8
    assert row["24h change %"] == pytest.approx(
        (day[0].close / 1e8 - first_open) / first_open * 100
    )
    assert row["24h quote volume"] == pytest.approx(sum(k.quote_volume for k in day) / 1e8)
    # filtering
    at.text_input[0].input("BTC").run()
    assert len(at.dataframe[0].value) == 0
    at.text_input[0].input("xrp").run()
    assert len(at.dataframe[0].value) == 1


def test_status_shows_reachability_series_dead_letters_and_gaps(
    filled: Filled, app_env: None
) -> None:
    writer = KlineWriter(redis.Redis.from_url(filled.redis_url), keys=filled.keys)
    for i in range(3):
        writer.dead_letter(
            DeadLetter("late", "trade for a closed kline", f"raw{i}", "x.csv:1", "XRPETH")
        )
    writer.dead_letter(DeadLetter("malformed", "bad json", "{", "x.csv:9"))
    writer.gap(GapReport("XRPETH", 10, 20, 1_570_752_000_000, 1_570_752_060_000, "backfill failed"))
    writer.flush()
    at = page("views/status.py")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Redis"] == "reachable" and metrics["PostgreSQL"] == "reachable"
    assert metrics["Symbols"] == "1"
    assert metrics["Dead letters"] == "4"
    assert metrics["Late trades"] == "3"
    assert metrics["Data-quality records"] == "1"
    assert metrics["Gaps (incomplete ranges)"] == "1"
    series = at.dataframe[0].value
    assert set(series["interval"]) == {"1m", "5m"}
    assert set(series["stored"]) == {1500, 712}
    reasons = at.dataframe[1].value
    assert dict(zip(reasons["reason"], reasons["dead letters"], strict=True)) == {
        "late": 3,
        "malformed": 1,
    }
    assert any("publishes no heartbeat" in c.value for c in at.caption)
