"""Market page against Redis filled by a replay of real XRPETH trades."""

from __future__ import annotations

import json

import psycopg
import pytest
import redis

from dashboard.data.indicators import compute
from dashboard.views.market import TIMINGS
from flows.domain.kline import kline_of_row
from tests.dashboard.conftest import (
    Filled,
    as_user,
    chart_datasets,
    chart_spec,
    charts,
    make_app,
    no_exceptions,
    view_names,
)


def stored_klines(filled: Filled, interval: str) -> list[list[object]]:
    client = redis.Redis.from_url(filled.redis_url)
    try:
        return [json.loads(m) for m in client.zrange(filled.keys.klines("XRPETH", interval), 0, -1)]
    finally:
        client.close()


def the_table(element: object) -> dict[str, list[object]]:
    (table,) = chart_datasets(element).values()
    return table.to_pydict()


def test_market_draws_the_stored_candles_with_volume_signed_out(
    filled: Filled, app_env: None
) -> None:
    at = make_app(symbol="XRPETH", interval="5m").run()
    no_exceptions(at)
    assert at.selectbox[0].value == "XRPETH" and at.selectbox[1].value == "5m"
    (chart,) = charts(at)
    names = view_names(chart_spec(chart))
    assert any(n.startswith("candles") for n in names) and "volume" in names
    assert not any(n.startswith("signals") for n in names)  # nobody signed in
    data = the_table(chart)
    stored = stored_klines(filled, "5m")
    want = stored[-300:]  # the default limit
    assert data["t"] == [row[0] for row in want]
    assert data["close"] == [float(str(row[4])) for row in want]
    assert at.session_state[TIMINGS]["candles"] == 300
    # the picks are kept in the URL
    at.selectbox[1].set_value("1m").run()
    assert at.query_params["interval"] in ("1m", ["1m"])


def test_more_than_a_thousand_candles_and_indicator_layers(filled: Filled, app_env: None) -> None:
    at = make_app(symbol="XRPETH", interval="1m").run()
    at.select_slider[0].set_value(1500)
    at.multiselect(key="market_overlays").set_value(["EMA", "Bollinger bands"])
    at.multiselect(key="market_panels").set_value(["RSI", "MACD"])
    at.run()
    no_exceptions(at)
    (chart,) = charts(at)
    names = view_names(chart_spec(chart))
    assert any(n.startswith("overlay EMA(20)") for n in names)
    assert any(n.startswith("overlay Bollinger(20, 2)") for n in names)
    assert any(n.startswith("panel RSI") for n in names)
    assert any(n.startswith("panel MACD") for n in names)
    data = the_table(chart)
    stored = stored_klines(filled, "1m")
    assert len(stored) == 1500  # the 1m retention
    assert len(data["t"]) == 1500 and data["t"] == [row[0] for row in stored]
    # the EMA column equals the rule language's ema(20) over the same klines
    klines = [kline_of_row(r) for r in stored]  # type: ignore[arg-type]
    want = compute(["ema(20)", "rsi(14)"], "1m", klines)
    assert data["EMA(20)"][:19] == [None] * 19
    assert data["EMA(20)"][19:] == pytest.approx(want["ema(20)"][19:])
    assert data["RSI(14)"][14:] == pytest.approx(want["rsi(14)"][14:])


def test_signed_in_user_sees_markers_of_her_own_signals_only(filled: Filled, app_env: None) -> None:
    at = as_user(make_app(symbol="XRPETH", interval="1m"), filled.ana, "ana").run()
    no_exceptions(at)
    (chart,) = charts(at)
    tables = chart_datasets(chart)
    names = view_names(chart_spec(chart))
    assert any(n.startswith("signals") for n in names)
    first_open = the_table_main(tables)["t"][0]
    with psycopg.connect(filled.database_url) as conn:
        ana_opens = {
            r[0]
            for r in conn.execute(
                "SELECT kline_open_ms FROM signals WHERE trader_id = %s AND kline_open_ms >= %s",
                (filled.ana_trader.id, first_open),
            )
        }
    markers = [t for t in tables.values() if "label" in t.column_names]
    assert len(markers) == 1
    got = markers[0].to_pydict()
    assert set(got["t"]) == ana_opens and ana_opens
    assert all(label.startswith("Ana up bars") for label in got["label"])


def the_table_main(tables: dict[str, object]) -> dict[str, list[object]]:
    for t in tables.values():
        if "open" in t.column_names:  # type: ignore[attr-defined]
            return t.to_pydict()  # type: ignore[attr-defined, no-any-return]
    raise AssertionError("no kline table")


def test_open_ms_and_signal_open_the_chart_at_that_kline(filled: Filled, app_env: None) -> None:
    with psycopg.connect(filled.database_url) as conn:
        sid, open_ms = conn.execute(
            "SELECT id, kline_open_ms FROM signals WHERE trader_id = %s "
            "ORDER BY kline_open_ms DESC LIMIT 1 OFFSET 5",
            (filled.ana_trader.id,),
        ).fetchone()  # type: ignore[misc]
    at = as_user(
        make_app(symbol="XRPETH", interval="1m", open_ms=str(open_ms), signal=sid),
        filled.ana,
        "ana",
    ).run()
    no_exceptions(at)
    (chart,) = charts(at)
    assert any(n.startswith("focus") for n in view_names(chart_spec(chart)))
    data = the_table_main(chart_datasets(chart))
    assert open_ms in data["t"]
    assert data["t"][0] <= open_ms <= data["t"][-1]
    # the signal's recorded values are listed
    values = at.dataframe[0].value
    assert set(values["value"]) == {"close"}
    # bob cannot open ana's signal
    at = as_user(
        make_app(symbol="XRPETH", interval="1m", open_ms=str(open_ms), signal=sid),
        filled.bob,
        "bob",
    ).run()
    assert any("No signal with that id" in i.value for i in at.info)
