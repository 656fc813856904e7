"""Screener and Status pages."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlsplit

import pytest
import redis
from streamlit.testing.v1 import AppTest

from dashboard.data import sources
from dashboard.data.market import SPARK_POINTS
from dashboard.ui.common import utc_text
from flows.app.health import FeedState, FlowCounters, FlowHeartbeat
from flows.domain.clock import SYSTEM_CLOCK
from flows.domain.deadletter import DeadLetter
from flows.domain.keys import KeySpace
from flows.domain.kline import Kline, kline_of_row
from flows.sources.items import GapReport
from flows.storage.redis_klines import KlineWriter
from tests.dashboard.conftest import Filled, open_page
from tests.dashboard.synthetic_klines import write_symbols


def test_screener_shows_the_24h_figures_of_the_stored_klines(filled: Filled, app_env: None) -> None:
    client = redis.Redis.from_url(filled.redis_url)
    members = client.zrevrange(filled.keys.klines("XRPETH", "1m"), 0, 1439)
    client.close()
    day = [kline_of_row(json.loads(m)) for m in members]  # newest first
    at = open_page("views/screener.py")
    table = at.dataframe[0].value
    # each symbol is a link to its chart on Market (shown as the symbol's name)
    assert list(table["symbol"]) == ["market?symbol=XRPETH&interval=1m"]
    columns = json.loads(str(at.dataframe[0].proto.columns))
    assert columns["symbol"]["type_config"] == {"type": "link", "display_text": "symbol=([^&]+)"}
    assert columns["last 24 h"]["type_config"]["type"] == "line_chart"
    row = table.iloc[0]
    assert row["klines"] == 1440
    assert row["last price"] == pytest.approx(day[0].close / 1e8)
    first_open = day[-1].open / 1e8
    assert row["24h change %"] == pytest.approx(
        (day[0].close / 1e8 - first_open) / first_open * 100
    )
    assert row["24h quote volume"] == pytest.approx(sum(k.quote_volume for k in day) / 1e8)
    # the sparkline: the day's closes, oldest first, evenly spaced, ending at the newest
    spark = list(row["last 24 h"])
    assert len(spark) == SPARK_POINTS and spark[-1] == row["last price"]
    step = len(day) // SPARK_POINTS
    assert spark == [k.close / 1e8 for k in reversed(day[::step])]
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
    at = open_page("views/status.py")
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
    assert any("No live flow heartbeat" in c.value for c in at.caption)


def test_status_shows_the_flow_heartbeat_and_each_feed_connection(
    filled: Filled, app_env: None
) -> None:
    client = redis.Redis.from_url(filled.redis_url)
    feeds = [
        {"connection": 0, "streams": 200, "state": "connected", "last_message_age_s": 0.4,
         "reconnects": 1, "frames": 52_000},
        {"connection": 1, "streams": 37, "state": "reconnecting", "last_message_age_s": 31.0,
         "reconnects": 3, "frames": 9_000},
    ]  # fmt: skip
    now_ms = int(at_now())
    client.hset(filled.keys.heartbeat, mapping={
        "ts_ms": now_ms, "started_ms": now_ms - 60_000, "state": "running",
        "trades_read": 123_456, "trades_backfilled": 10, "feed_reconnects": 4, "gaps": 0,
        "duplicates": 7, "late": 2, "klines_closed": json.dumps({"1m": 12}),
        "feeds": json.dumps(feeds),
    })  # fmt: skip
    at = open_page("views/status.py")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Flow"] == "running"
    assert metrics["Trades read"] == "123,456"
    assert metrics["Late / duplicate"] == "2 / 7"
    assert metrics["Reconnects / gaps"] == "4 / 0"
    table = at.dataframe[0].value
    assert list(table["state"]) == ["connected", "reconnecting"]
    assert list(table["last message"]) == ["0.4 s ago", "31.0 s ago"]
    # judged as `klineflow status` judges it (an older flow's hash: no waiting_for, ...)
    assert [e.value for e in at.error] == ["Not healthy: feed 1 reconnecting."]


def test_status_says_healthy_and_names_what_the_flow_waits_for(
    filled: Filled, app_env: None
) -> None:
    client = redis.Redis.from_url(filled.redis_url)
    beat = FlowHeartbeat(ts_ms=at_now(), started_ms=at_now() - 5_000, state="running",
                         feeds=(FeedState("0", "connected", 3, 0.2),))  # fmt: skip
    client.hset(filled.keys.heartbeat, mapping=beat.encode())  # type: ignore[arg-type]
    at = open_page("views/status.py")
    assert [x.value for x in at.success] == ["Healthy."] and not at.error
    waiting = FlowHeartbeat(ts_ms=at_now(), started_ms=beat.started_ms, state="running",
                            waiting_for=("postgresql",), feeds=beat.feeds)  # fmt: skip
    client.hset(filled.keys.heartbeat, mapping=waiting.encode())  # type: ignore[arg-type]
    at = open_page("views/status.py")
    assert [e.value for e in at.error] == [
        "Not healthy: waiting for postgresql (the flow is paused)."
    ]
    assert any("waiting for postgresql" in w.value for w in at.warning)


def test_status_says_when_the_heartbeat_cannot_be_read(filled: Filled, app_env: None) -> None:
    client = redis.Redis.from_url(filled.redis_url)
    client.hset(filled.keys.heartbeat, mapping={"ts_ms": "soon", "state": "running"})
    at = open_page("views/status.py")
    assert [e.value for e in at.error] == [
        "The flow's heartbeat in Redis cannot be read: heartbeat field 'ts_ms': expected an "
        "integer, got 'soon'"
    ]


def test_status_counts_the_signals_of_the_users_own_traders_only(
    filled: Filled, app_env: None
) -> None:
    import psycopg

    with psycopg.connect(filled.database_url) as conn:
        conn.execute(  # one of Ana's signals is two days old
            "UPDATE signals SET created_at = now() - interval '2 days' WHERE id = "
            "(SELECT min(id) FROM signals WHERE trader_id = %s)",
            (filled.ana_trader.id,),
        )
        (total,) = conn.execute(  # type: ignore[misc]
            "SELECT count(*) FROM signals WHERE trader_id = %s", (filled.ana_trader.id,)
        ).fetchone()
    assert total > 1
    at = open_page("views/status.py", filled.ana, "ana")
    table = next(d.value for d in at.dataframe if "last 24 h" in d.value.columns)
    assert list(table["trader"]) == ["Ana up bars"]  # not Bob's
    assert list(table["signals"]) == [total] and list(table["last 24 h"]) == [total - 1]


def test_status_shows_a_cluster_from_its_combined_heartbeat(filled: Filled, app_env: None) -> None:
    from flows.app.health import combine

    now_ms = int(at_now())
    member = {
        "ts_ms": str(now_ms), "state": "running", "started_ms": str(now_ms - 9_000),
        "trades_read": "40",
        "klines_closed": "{}", "feeds": json.dumps([{
            "connection": 0, "streams": 3, "state": "connected", "last_message_age_s": 0.2,
            "reconnects": 0, "frames": 40}]),
    }  # fmt: skip
    client = redis.Redis.from_url(filled.redis_url)
    flow = combine([FlowHeartbeat.decode(member), None], now_ms)
    client.hset(filled.keys.heartbeat, mapping=flow.encode())  # type: ignore[arg-type]
    at = open_page("views/status.py")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Flow"] == "degraded"  # one of two members is missing
    assert any("1 of 2 processes" in c.value for c in at.caption)
    assert list(at.dataframe[0].value["connection"]) == ["0/0"]
    assert [e.value for e in at.error] == ["Not healthy: cluster process 1 of 2 not heard from."]


def at_now() -> int:
    from flows.domain.clock import SYSTEM_CLOCK

    return SYSTEM_CLOCK.now_ms()


def test_status_keeps_the_last_heartbeat_and_verdict_while_redis_is_unreachable(
    filled: Filled, app_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.dashboard.conftest import make_app, no_exceptions

    client = redis.Redis.from_url(filled.redis_url)
    beat = FlowHeartbeat(ts_ms=at_now(), started_ms=at_now(), state="running",
                         counters=FlowCounters(trades_read=777),
                         feeds=(FeedState("0", "connected", 3, 0.2),))  # fmt: skip
    client.hset(filled.keys.heartbeat, mapping=beat.encode())  # type: ignore[arg-type]
    at = make_app().run()
    at.switch_page("views/status.py").run()
    no_exceptions(at)
    assert [x.value for x in at.success] == ["Healthy."]

    monkeypatch.setenv("KLINEFLOW_REDIS_URL", "redis://127.0.0.1:1/0")
    at.run()
    no_exceptions(at)
    assert any(w.value.endswith(": Redis is unreachable") for w in at.warning)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Redis"] == "unreachable" and metrics["Trades read"] == "777"
    assert [x.value for x in at.success] == ["Healthy (as of the data shown)."]


def test_screener_lists_every_symbol_most_traded_first_and_keeps_its_filters(
    redis_url: str, keys: KeySpace, app_env: None
) -> None:
    symbols = [f"C{i:02d}USDT" for i in range(40)]
    newest_open = SYSTEM_CLOCK.now_ms() // 60_000 * 60_000
    written = write_symbols(redis_url, keys, symbols, newest_open)
    volume = {s: sum(k.quote_volume for k in day) / 1e8 for s, day in written.items()}
    by_volume = sorted(symbols, key=lambda s: (-volume[s], s))
    assert by_volume != symbols  # the data's order is not the names' order

    at = open_page("views/screener.py")
    table = at.dataframe[0].value
    assert [link_symbol(x) for x in table["symbol"]] == by_volume  # all 40, most traded first
    assert list(table["24h quote volume"]) == pytest.approx([volume[s] for s in by_volume])
    assert sources.market().most_traded(5).value == by_volume[:5]
    for url in table["symbol"]:
        assert url == f"market?symbol={link_symbol(url)}&interval=1m"

    up = [s for s in by_volume if written[s][-1].close > written[s][0].open]
    assert 0 < len(up) < len(symbols)
    at.selectbox[0].select("up").run()
    assert [link_symbol(x) for x in at.dataframe[0].value["symbol"]] == up
    at.run()  # what the table's own refresh does: the filter stays
    assert at.selectbox[0].value == "up"
    assert [link_symbol(x) for x in at.dataframe[0].value["symbol"]] == up
    assert any(c.value.startswith(f"{len(up)} of 40 symbols") for c in at.caption)


def link_symbol(url: str) -> str:
    return parse_qs(urlsplit(url).query)["symbol"][0]


def test_status_ages_a_kline_from_its_close(
    redis_url: str, keys: KeySpace, app_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 4h kline that closed 3 h 30 min ago is 3 h 30 min old (its open was 7 h 30 min
    ago); the forming one after it closes in 29 min."""
    monkeypatch.setenv("KLINEFLOW_INTERVALS", "1m,4h")
    hour = 3_600_000
    now = SYSTEM_CLOCK.now_ms()
    closed_end = now - 3 * hour - 30 * 60_000 - 20_000  # 20 s of slack for the page's run
    closed = Kline(closed_end - 4 * hour, closed_end - 1, 100, 120, 90, 110, 5, 500, 3, 2, 200)
    forming = closed._replace(open_ms=closed_end, close_ms=closed_end + 4 * hour - 1)
    writer = KlineWriter(redis.Redis.from_url(redis_url), keys=keys)
    writer.add("ETHBTC", "4h", closed, closed=True)
    writer.add("ETHBTC", "4h", forming, closed=False)
    writer.flush()

    at = open_page("views/status.py")
    series = at.dataframe[0].value
    row = series[series["interval"] == "4h"].iloc[0]
    assert row["last closed age"] == "3 h 30 min"
    assert row["last closed (UTC)"] == utc_text(closed_end)
    assert row["newest open (UTC)"] == utc_text(closed_end)
    assert row["newest closes"] == "in 29 min"
    assert row["forming"]


def test_status_reads_the_heartbeat_again_at_each_run(filled: Filled, app_env: None) -> None:
    """A flow that stops writing its heartbeat turns unhealthy on the page by itself (the
    page's fragment re-runs it every few seconds; here a run stands for one)."""
    client = redis.Redis.from_url(filled.redis_url)
    beat = FlowHeartbeat(ts_ms=at_now(), started_ms=at_now() - 5_000, state="running",
                         feeds=(FeedState("0", "connected", 3, 0.2),))  # fmt: skip
    client.hset(filled.keys.heartbeat, mapping=beat.encode())  # type: ignore[arg-type]
    at = open_page("views/status.py")
    assert [x.value for x in at.success] == ["Healthy."] and not at.error
    first_age = heartbeat_age_s(at)
    assert first_age < 60

    # the flow died a minute and a half ago: its last heartbeat is that old
    client.hset(filled.keys.heartbeat, "ts_ms", str(at_now() - 90_000))
    at.run()
    assert heartbeat_age_s(at) >= 90 > first_age
    assert not at.success
    (error,) = [e.value for e in at.error]
    found = re.fullmatch(r"Not healthy: no heartbeat for (\d+) s .*it stopped or hangs\.", error)
    assert found is not None and int(found.group(1)) >= 90, error


def heartbeat_age_s(at: AppTest) -> int:
    (flow,) = [m for m in at.metric if m.label == "Flow"]
    found = re.fullmatch(r"heartbeat (\d+) (s|min) ago", flow.proto.delta)
    assert found is not None, flow.proto.delta
    return int(found.group(1)) * (60 if found.group(2) == "min" else 1)
