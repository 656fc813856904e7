"""Market page against Redis filled by a replay of real XRPETH trades."""

from __future__ import annotations

import json
from fractions import Fraction
from typing import Any

import psycopg
import pytest
import redis
from streamlit.testing.v1 import AppTest

from dashboard.data.indicators import compute
from dashboard.views.market import TIMINGS
from flows.domain.kline import kline_of_row
from flows.storage.redis_klines import KlineWriter
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
    assert param(at, "interval") == "1m"


def param(at: AppTest, name: str) -> str | None:
    value = at.query_params.get(name)
    if isinstance(value, list):
        return value[-1] if value else None
    return value


def copy_symbol(filled: Filled, name: str) -> None:
    """Store XRPETH's klines once more under another symbol's name."""
    client = redis.Redis.from_url(filled.redis_url)
    try:
        for interval in ("1m", "5m"):
            src = filled.keys.klines("XRPETH", interval)
            client.zunionstore(filled.keys.klines(name, interval), [src])
            closed = client.get(filled.keys.last_closed("XRPETH", interval))
            if closed is not None:
                client.set(filled.keys.last_closed(name, interval), closed)
        client.sadd(filled.keys.symbols, name)
    finally:
        client.close()


def chart_title(at: AppTest) -> str:
    (chart,) = charts(at)
    title = chart_spec(chart).get("title")
    for view in chart_spec(chart)["concat"]:
        title = title or view.get("title")
    return str(title)


def test_every_pick_takes_effect(filled: Filled, app_env: None) -> None:
    """A widget's identity must not depend on state written after it: with the index taken
    from the URL (written after the widgets), every second pick made a new selectbox whose
    default undid the pick."""
    copy_symbol(filled, "ETHXRP")
    copy_symbol(filled, "ZRXETH")
    at = make_app(symbol="XRPETH", interval="5m").run()
    no_exceptions(at)
    picks = [
        ("symbol", 0, "ETHXRP"),
        ("symbol", 0, "ZRXETH"),
        ("symbol", 0, "XRPETH"),
        ("interval", 1, "1m"),
        ("interval", 1, "5m"),
        ("interval", 1, "1m"),
        ("symbol", 0, "ETHXRP"),
    ]
    symbol, interval = "XRPETH", "5m"
    for name, box, value in picks:
        at.selectbox[box].set_value(value).run()
        no_exceptions(at)
        if name == "symbol":
            symbol = value
        else:
            interval = value
        assert (at.selectbox[0].value, at.selectbox[1].value) == (symbol, interval)
        assert chart_title(at) == f"{symbol} {interval}"
        assert (param(at, "symbol"), param(at, "interval")) == (symbol, interval)


def test_chart_settings_live_in_the_url(filled: Filled, app_env: None) -> None:
    at = make_app(symbol="XRPETH", interval="1m").run()
    at.multiselect(key="market_overlays").set_value(["EMA", "VWAP"])
    at.multiselect(key="market_panels").set_value(["MACD"])
    at.select_slider[0].set_value(500)
    at.number_input(key="market_ema").set_value(9)
    at.number_input(key="market_bb_k").set_value(2.5)
    at.run()
    no_exceptions(at)
    url = {k: param(at, k) for k in ("symbol", "interval", "overlays", "panels", "limit", "ema")}
    assert url == {
        "symbol": "XRPETH",
        "interval": "1m",
        "overlays": "ema,vwap",
        "panels": "macd",
        "limit": "500",
        "ema": "9",
    }
    assert param(at, "bb_k") == "2.5" and param(at, "rsi") is None  # defaults are left out
    # a reload (a new session with that address) draws the same chart
    again = make_app(**{k: v for k, v in url.items() if v is not None}, bb_k="2.5").run()
    no_exceptions(again)
    assert again.multiselect(key="market_overlays").value == ["EMA", "VWAP"]
    assert again.multiselect(key="market_panels").value == ["MACD"]
    assert again.select_slider[0].value == 500
    assert again.number_input(key="market_ema").value == 9
    (chart,) = charts(again)
    names = view_names(chart_spec(chart))
    assert any(n.startswith("overlay EMA(9)") for n in names)
    assert any(n.startswith("panel MACD") for n in names)
    assert len(the_table(chart)["t"]) == 500
    # nonsense in the address falls back to the defaults, and the address is corrected
    odd = make_app(symbol="NOPE", interval="7m", overlays="ema,zz", limit="-3", ema="x").run()
    no_exceptions(odd)
    assert (odd.selectbox[0].value, odd.selectbox[1].value) == ("XRPETH", "1m")
    assert odd.multiselect(key="market_overlays").value == []
    assert param(odd, "symbol") == "XRPETH" and param(odd, "overlays") is None
    assert param(odd, "limit") is None and param(odd, "ema") is None


def test_an_address_changed_from_outside_sets_the_widgets(filled: Filled, app_env: None) -> None:
    """A link (or back/forward) changes the URL without the widgets: the URL wins then; the
    sidebar's bare /market keeps what the session had."""
    at = make_app(symbol="XRPETH", interval="1m").run()
    at.multiselect(key="market_overlays").set_value(["SMA"]).run()
    at.query_params["interval"] = "5m"
    at.query_params["overlays"] = "bb"
    at.run()
    no_exceptions(at)
    assert at.selectbox[1].value == "5m"
    assert at.multiselect(key="market_overlays").value == ["Bollinger bands"]
    at.query_params.clear()
    at.run()
    no_exceptions(at)
    assert at.selectbox[1].value == "5m"
    assert at.multiselect(key="market_overlays").value == ["Bollinger bands"]
    assert param(at, "interval") == "5m" and param(at, "overlays") == "bb"


def test_tooltips_print_times_in_utc_and_one_overlay_legend(filled: Filled, app_env: None) -> None:
    at = make_app(symbol="XRPETH", interval="1m", overlays="ema,bb,vwap").run()
    no_exceptions(at)
    (chart,) = charts(at)
    spec = chart_spec(chart)
    tooltips = [
        t
        for t in walk(spec, "tooltip")
        for t in (t if isinstance(t, list) else [t])
        if isinstance(t, dict)  # a mark's `tooltip: null`: none on it
    ]
    times = [t for t in tooltips if t.get("field") == "t"]
    assert times and all(t["timeUnit"].startswith("utc") for t in times)
    # Vega-Lite takes any formatType but number and time for a custom function: NaN
    assert all(t.get("formatType") in (None, "number", "time") for t in tooltips)
    legends = [
        c for c in walk(spec, "color") if isinstance(c, dict) and c.get("legend") is not None
    ]
    assert len({json.dumps(c["scale"], sort_keys=True) for c in legends}) == 1


def walk(spec: object, key: str) -> list[Any]:
    """Every value of `key` anywhere in a spec."""
    found: list[Any] = []
    if isinstance(spec, dict):
        if key in spec:
            found.append(spec[key])
        for v in spec.values():
            found.extend(walk(v, key))
    elif isinstance(spec, list):
        for v in spec:
            found.extend(walk(v, key))
    return found


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


def store_symbol(filled: Filled, name: str, quote_scale: Fraction) -> None:
    """XRPETH's stored klines once more under `name`, their quote volumes scaled."""
    client = redis.Redis.from_url(filled.redis_url)
    writer = KlineWriter(client, keys=filled.keys)
    try:
        for interval in ("1m", "5m"):
            klines = [kline_of_row(r) for r in stored_klines(filled, interval)]  # type: ignore[arg-type]
            scaled = [k._replace(quote_volume=int(k.quote_volume * quote_scale)) for k in klines]
            writer.add_many(name, [(interval, k) for k in scaled], closed=True)
        writer.flush()
    finally:
        client.close()


def day_quote_volume(filled: Filled, symbol: str) -> float:
    """The symbol's quote volume over its newest day of stored 1m klines."""
    client = redis.Redis.from_url(filled.redis_url)
    try:
        rows = client.zrange(filled.keys.klines(symbol, "1m"), -1440, -1)
    finally:
        client.close()
    return sum(float(json.loads(r)[7]) for r in rows)


def test_without_a_symbol_the_page_opens_on_the_most_traded(filled: Filled, app_env: None) -> None:
    """Not the first by name: the one with the highest 24h quote volume."""
    store_symbol(filled, "AAAUSDT", Fraction(1, 1000))
    store_symbol(filled, "ZZZUSDT", Fraction(1000))
    symbols = ["AAAUSDT", "XRPETH", "ZZZUSDT"]
    busiest = max(symbols, key=lambda s: day_quote_volume(filled, s))
    assert busiest != sorted(symbols)[0]
    at = make_app().run()
    no_exceptions(at)
    assert at.selectbox[0].value == busiest
    assert chart_title(at) == f"{busiest} 1m" and param(at, "symbol") == busiest
    # a symbol asked for is kept; an unknown one falls back to the busiest
    at = make_app(symbol="AAAUSDT").run()
    assert at.selectbox[0].value == "AAAUSDT"
    at = make_app(symbol="NOPE").run()
    assert at.selectbox[0].value == busiest
