"""The kline chart as a trading terminal, in its spec (the browser's side is
tests/e2e/test_market_browser.py): a crosshair in every view and a readout of the hovered
kline, the last close tagged at the right edge, every view fitted to the klines in sight,
time ticks on kline opens, price labels in a strip right of the candles, and views as wide
as their container for every caller of `chart_spec` (Market, Traders' preview, Backtest).

On real klines: Redis filled by a replay of real XRPETH trades (tests/dashboard/conftest.py).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import altair as alt
import pytest

from dashboard.ui.chart_axes import AXIS_PX, tick_params, tick_steps_ms
from dashboard.ui.chart_terminal import HOVER, SHOWN, ZOOM, visible
from dashboard.ui.charts import Marker, build_frame
from dashboard.ui.charts import chart_spec as build_spec
from flows.domain.intervals import INTERVALS, get_interval
from flows.domain.kline import Kline, kline_of_row
from tests.dashboard.conftest import (
    Filled,
    chart_datasets,
    chart_spec,
    charts,
    make_app,
    no_exceptions,
)
from tests.dashboard.test_market import stored_klines, walk

READOUT = re.compile(
    r"^(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d) UTC  V (?P<v>[\d,.]+)\n"
    r"O (?P<o>[\d,.]+)  H (?P<h>[\d,.]+)\nL (?P<l>[\d,.]+)  C (?P<c>[\d,.]+)$"
)


def units(spec: Any) -> list[dict[str, Any]]:
    """Every single view (a `mark`) anywhere in a spec."""
    found: list[dict[str, Any]] = []
    if isinstance(spec, dict):
        if "mark" in spec:
            found.append(spec)
        for key in ("layer", "concat"):
            for child in spec.get(key, []):
                found.extend(units(child))
    return found


def named(spec: Any, prefix: str) -> list[dict[str, Any]]:
    return [u for u in units(spec) if str(u.get("name", "")).startswith(prefix)]


def filters(unit: dict[str, Any]) -> list[Any]:
    return [t["filter"] for t in unit.get("transform", []) if "filter" in t]


def param_dict(param: alt.Parameter) -> Any:
    return param.param.to_dict()  # type: ignore[union-attr]  # a made parameter has its param


def market_spec(**query: str) -> tuple[dict[str, Any], Any]:
    at = make_app(**query).run()
    no_exceptions(at)
    (chart,) = charts(at)
    return chart_spec(chart), chart


def test_every_view_has_the_crosshair_and_fits_the_klines_in_sight(
    filled: Filled, app_env: None
) -> None:
    spec, _ = market_spec(symbol="XRPETH", interval="1m", overlays="ema", panels="rsi,macd")
    views = spec["concat"]
    assert [v["name"] for v in views] == ["price", "volume", "panel RSI", "panel MACD"]
    params = {p["name"]: p for p in spec["params"]}
    # one pointer target and one crosshair rule per view; the hover picks a kline by its time
    targets = []
    for view in views:
        (target,) = named(view, "hover target")
        assert len(named(view, "crosshair time")) == 1
        assert {"param": HOVER, "empty": False} in filters(named(view, "crosshair time")[0])
        targets.append(target["name"])
    hover = params[HOVER]
    assert hover["select"]["type"] == "point" and hover["select"]["on"] == "pointermove"
    assert hover["select"]["fields"] == ["t"] and sorted(hover["views"]) == sorted(targets)
    zoom = params[ZOOM]
    assert zoom["bind"] == "scales" and zoom["views"] == [named(spec, "wicks")[0]["name"]]
    # what each view draws keeps the klines in the zoomed range only: y scales follow them
    drawn = [*named(spec, "wicks"), *named(spec, "candles"), *named(spec, "volume bars")]
    drawn += [u for v in views[2:] for u in units(v) if u["mark"]["type"] in ("line", "bar")]
    drawn += [u for u in units(views[0]) if u["mark"]["type"] == "line"]  # the EMA
    assert len(drawn) >= 6
    for unit in drawn:
        assert visible() in filters(unit), unit.get("name")
    price_scale = named(spec, "wicks")[0]["encoding"]["y"]["scale"]
    assert price_scale["zero"] is False and price_scale["nice"] is False
    # the price view: readout, crosshair price, last price (rule and tag)
    (readout,) = named(views[0], "readout_")
    assert readout["encoding"]["text"]["field"] == "readout"
    assert filters(readout) == [SHOWN.to_dict()]  # the hovered kline, else the newest
    for name in ("crosshair price", "last price line", "last price_"):
        assert named(views[0], name), name
    (tag,) = named(views[0], "last price_")
    assert tag["encoding"]["text"]["field"] == "close_text"
    assert tag["encoding"]["x"] == {"value": "width"}  # at the right edge
    assert filters(tag) == ["datum.last"]


def test_time_ticks_and_price_labels_leave_the_candles_free(filled: Filled, app_env: None) -> None:
    spec, _ = market_spec(symbol="XRPETH", interval="5m", panels="rsi")
    views = spec["concat"]
    # candles are centred on their open times: wicks, markers and rules at `t`
    assert named(spec, "wicks")[0]["encoding"]["x"]["field"] == "t"
    xs = [e for e in walk(spec, "x") if isinstance(e, dict) and "field" in e and "scale" in e]
    assert xs and all(
        x["scale"]["range"] == [0, {"expr": f"(width - {AXIS_PX})"}] and x["scale"]["clamp"]
        for x in xs
    )
    # the time axis's ticks are the `xticks` parameter, labels only under the bottom view
    assert all(x["axis"]["values"] == {"expr": "xticks"} for x in xs)
    for view in views:
        shown = {x["axis"]["labels"] for u in units(view) for x in [u["encoding"].get("x")]
                 if isinstance(x, dict) and "axis" in x}  # fmt: skip
        assert shown == {view is views[-1]}, view["name"]
    params = {p["name"]: p for p in spec["params"]}
    assert [params["xtick_step"], params["xticks"]] == [param_dict(p) for p in tick_params("5m")]
    assert isinstance(params[AXIS_PX]["value"], int) and params[AXIS_PX]["value"] > 0
    # y labels: the left axis's, pushed right across the candles into the strip
    ys = [e["axis"] for e in walk(spec, "y") if isinstance(e, dict) and e.get("axis")]
    assert ys and all(
        a["orient"] == "left"
        and a["labelAlign"] == "left"
        and a["labelPadding"] == {"expr": f"-(width - {AXIS_PX}) - 4"}
        and a["maxExtent"] == 0
        for a in ys
    )


@pytest.mark.parametrize("interval", sorted(INTERVALS))
def test_tick_steps_are_whole_klines(interval: str) -> None:
    steps = tick_steps_ms(interval)
    length = get_interval(interval).length_ms
    assert steps == sorted(set(steps)) and steps[0] >= length
    assert all(s % length == 0 for s in steps)


def parse_readout(text: str) -> dict[str, str]:
    found = READOUT.match(text)
    assert found, text
    return found.groupdict()


def number(text: str) -> Decimal:
    return Decimal(text.replace(",", ""))


def test_the_readout_and_the_last_price_print_the_stored_klines(
    filled: Filled, app_env: None
) -> None:
    spec, chart = market_spec(symbol="XRPETH", interval="5m", limit="100")
    (table,) = [t for t in chart_datasets(chart).values() if "readout" in t.column_names]
    data = table.to_pydict()
    stored = stored_klines(filled, "5m")[-100:]
    assert data["t"] == [row[0] for row in stored]
    decimals = int(re.findall(r",\.(\d)f", json.dumps(named(spec, "wicks")[0]["encoding"]))[0])
    for text, row in zip(data["readout"], stored, strict=True):
        got = parse_readout(text)
        opened = datetime.fromtimestamp(int(str(row[0])) / 1000, tz=UTC)
        assert got["time"] == opened.strftime("%Y-%m-%d %H:%M")
        for key, index in (("o", 1), ("h", 2), ("l", 3), ("c", 4)):
            assert number(got[key]) == Decimal(str(row[index]))  # exact
            assert len(got[key].split(".")[1]) == decimals
        assert abs(float(number(got["v"])) - float(str(row[5]))) < 0.005
    assert data["last"] == [False] * 99 + [True]
    assert number(data["close_text"][-1]) == Decimal(str(stored[-1][4]))


def frame_of(klines: list[Kline], interval: str) -> Any:
    return build_frame(klines, interval, {})


def test_chart_spec_fills_its_container_for_every_caller(filled: Filled) -> None:
    """Traders' preview and Backtest call `chart_spec` without the Market's options: every
    view is as wide as the container, none has a width of its own in pixels."""
    klines = [kline_of_row(r) for r in stored_klines(filled, "1m")[-300:]]  # type: ignore[arg-type]
    frame = frame_of(klines, "1m")
    for spec in (
        build_spec(frame, preview=[Marker(klines[-5].open_ms, "would fire")], title="a preview"),
        build_spec(frame, markers=[Marker(klines[-9].open_ms, "x")], title="a backtest"),
    ):
        assert [v["width"] for v in spec["concat"]] == ["container"] * len(spec["concat"])
        widths = [w for w in walk({k: v for k, v in spec.items() if k != "datasets"}, "width")]
        assert all(not isinstance(w, int | float) for w in widths), widths
        assert spec["autosize"] == {"type": "pad", "contains": "padding"}
        params = {p["name"]: p for p in spec["params"]}
        assert params["xtick_step"] == param_dict(tick_params("1m")[0])  # the frame's interval


def test_newer_klines_keep_the_spec(filled: Filled) -> None:
    """A live chart redrawn with newer klines sends the same spec (only its data change),
    so the browser keeps its zoom and crosshair."""
    klines = [kline_of_row(r) for r in stored_klines(filled, "1m")]  # type: ignore[arg-type]
    first = build_spec(frame_of(klines[-301:-1], "1m"), title="XRPETH 1m")
    later = build_spec(frame_of(klines[-300:], "1m"), title="XRPETH 1m")
    del first["datasets"], later["datasets"]
    assert json.dumps(first, sort_keys=True) == json.dumps(later, sort_keys=True)


@pytest.mark.parametrize(
    ("overlays", "panels", "markers", "preview", "focus"),
    [(0, 0, False, False, False), (2, 1, True, False, False), (4, 2, True, True, True)],
)
def test_every_layout_is_valid_vega_lite(
    overlays: int, panels: int, markers: bool, preview: bool, focus: bool
) -> None:
    """The spec is put together without Altair's validation (for speed): it must still be
    what the Vega-Lite schema allows, and name each view once."""
    import jsonschema
    from altair.vegalite.v6.schema import load_schema

    from dashboard.data.indicators import overlay_choices, panel_choices

    klines = [Kline(1_700_000_000_000 + i * 60_000, 1_700_000_000_000 + i * 60_000 + 59_999,
                    10**8 + i, 10**8 + 2 * i, 10**8 - i, 10**8 + i // 2, 10**9, 10**11, 5, 1, 1)
              for i in range(60)]  # fmt: skip
    frame = build_frame(klines, "1m", {})
    marks = [Marker(klines[10].open_ms, "fired")]
    spec = build_spec(
        frame,
        overlay_choices(20, 50, 20, 2.0, 0)[:overlays],
        panel_choices(14)[:panels],
        markers=marks if markers else (),
        preview=marks if preview else (),
        focus_ms=klines[20].open_ms if focus else None,
        title="t",
    )
    spec = json.loads(json.dumps({k: v for k, v in spec.items() if k != "datasets"}))
    jsonschema.validate(spec, load_schema())
    from dashboard.ui.charts import _unit_names

    names = _unit_names(spec)
    assert names and len(names) == len(set(names))
