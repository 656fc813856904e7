"""Altair charts of klines: candles with volume, indicator overlays and panels, markers.

`build_frame` turns klines and indicator series into one table (one row per kline); the
chart's views all read it, sharing one x scale that the mouse zooms and pans (drag, wheel),
so every panel follows the candles. Times are UTC epoch milliseconds drawn on a UTC scale.

Every view carries a `name` (``candles``, ``overlay EMA(20)``, ``panel RSI``, ``signals``,
...), which is how the tests find them in the rendered spec.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import altair as alt
import pandas as pd  # type: ignore[import-untyped]

from dashboard.data.indicators import Indicator
from flows.domain.intervals import get_interval
from flows.domain.kline import Kline

UP = "#26a69a"
DOWN = "#ef5350"
X_TITLE = "time (UTC)"
PALETTE = ["#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf"]  # fmt: skip
CHART_WIDTH = 860  # px; concatenated views cannot take the container's width


@dataclass(frozen=True)
class Marker:
    """A point on the candles: a signal that fired there, or a preview's fire."""

    open_ms: int
    label: str  # a tooltip line (user text is fine here: tooltips are text, not HTML)
    detail: str = ""


def build_frame(
    klines: Sequence[Kline],
    interval: str,
    series: Mapping[str, Sequence[float | None]],
    forming_open_ms: int | None = None,
) -> pd.DataFrame:
    """One row per kline: times (open, middle, body edges), prices as floats, direction,
    whether it is still forming, and one column per indicator series."""
    step = get_interval(interval).length_ms
    opens = [k.open_ms for k in klines]
    u = 1e8
    frame = pd.DataFrame(
        {
            "t": opens,
            "tm": [t + step // 2 for t in opens],
            "tb": [t + step // 10 for t in opens],
            "te": [t + step - step // 10 for t in opens],
            "open": [k.open / u for k in klines],
            "high": [k.high / u for k in klines],
            "low": [k.low / u for k in klines],
            "close": [k.close / u for k in klines],
            "volume": [k.volume / u for k in klines],
            "quote_volume": [k.quote_volume / u for k in klines],
            "trades": [k.trades for k in klines],
        }
    )
    frame["dir"] = ["up" if k.close >= k.open else "down" for k in klines]
    frame["forming"] = [k.open_ms == forming_open_ms for k in klines]
    for name, values in series.items():
        frame[name] = pd.array(list(values), dtype="Float64").astype("float64")
    return frame


def _named(name: str) -> alt.Data:
    """A reference to a dataset the spec carries under `datasets`."""
    return alt.Data(name=name)  # type: ignore[no-untyped-call]


def _y_axis() -> alt.Axis:
    """A y axis drawn inside its plot (labels and title at the left edge, no space taken
    beside it): the chart is as wide as the page's column, at any screen width."""
    return alt.Axis(
        labelAlign="left",
        labelBaseline="bottom",
        labelPadding=-4,
        tickSize=0,
        domain=False,
        minExtent=0,
        maxExtent=0,
        titleAngle=0,
        titleAlign="left",
        titleBaseline="top",
        titleX=60,  # right of the labels
        titleY=2,
        titleColor="#888",
        titleFontWeight="normal",
        labelFlush=True,
    )


def _x(title: str | None = X_TITLE, field: str = "tm") -> alt.X:
    return alt.X(
        f"{field}:T",
        title=title,
        scale=alt.Scale(type="utc"),
        axis=alt.Axis(format="%m-%d %H:%M", labelOverlap=True, labelBound=True),
    )


def _time_tooltip(title: str, utc_unit: str, fmt: str) -> alt.Tooltip:
    """The open time `t` printed in UTC. Not `formatType="utc"`: Vega-Lite takes any format
    type but "number" and "time" for a custom formatter, and calls Vega's `utc(year, month,
    ...)` with the time and the format (NaN). A UTC time unit parses `t` as a date and
    prints it with `utcFormat`."""
    return alt.Tooltip("t:T", title=title, timeUnit=utc_unit, format=fmt)  # type: ignore[arg-type]


def candle_chart(
    overlays: Sequence[Indicator] = (),
    panels: Sequence[Indicator] = (),
    markers: bool = False,
    preview: bool = False,
    focus: bool = False,
    title: str = "",
) -> alt.VConcatChart:
    """Candles (with overlays and markers), volume below, then one panel per indicator.

    The chart reads named datasets: ``klines`` (a `build_frame` table), and when asked for,
    ``signals`` and ``preview`` (`marker_frame` tables) and ``focus`` (one time ``t``)."""
    zoom = alt.selection_interval(bind="scales", encodings=["x"], name="zoom")
    color = alt.Color(
        "dir:N", scale=alt.Scale(domain=["up", "down"], range=[UP, DOWN]), legend=None
    )
    price_y = alt.Y("low:Q", title="price", scale=alt.Scale(zero=False), axis=_y_axis())
    tooltip = [
        _time_tooltip("open (UTC)", "utcyearmonthdatehoursminutesseconds", "%Y-%m-%d %H:%M:%S"),
        alt.Tooltip("open:Q", format=".8f"),
        alt.Tooltip("high:Q", format=".8f"),
        alt.Tooltip("low:Q", format=".8f"),
        alt.Tooltip("close:Q", format=".8f"),
        alt.Tooltip("volume:Q", format=",.2f"),
    ]
    base = alt.Chart()
    wicks = (
        base.mark_rule()
        .encode(x=_x(), y=price_y, y2="high:Q", color=color)
        .properties(name="wicks")
        .add_params(zoom)
    )
    bodies = (
        base.mark_bar()
        .encode(x=_x(field="tb"), x2="te:T", y="open:Q", y2="close:Q", color=color, tooltip=tooltip)
        .properties(name="candles")
    )
    layers: list[alt.Chart | alt.LayerChart] = [wicks, bodies]
    forming = (
        base.transform_filter("datum.forming")
        .mark_bar(filled=False, strokeDash=[3, 2], stroke="#888")
        .encode(x=_x(field="tb"), x2="te:T", y="open:Q", y2="close:Q")
        .properties(name="forming")
    )
    layers.append(forming)
    names = [name for ind in overlays for name, _ in ind.series]
    if overlays:
        # one colour scale (one legend) for every overlay line: a scale of their own, apart
        # from the candles' direction colours, shared by their layers
        lines = [
            _lines(base, ind, "price", names).properties(name=f"overlay {ind.label}")
            for ind in overlays
        ]
        layers.append(
            alt.LayerChart(layer=lines)
            .resolve_scale(color="shared", strokeDash="shared")
            .properties(name="overlays")
        )
    if markers:
        layers.append(_markers("signals", "triangle-up", "#1e88e5"))
    if preview:
        layers.append(_markers("preview", "diamond", "#fb8c00"))
    if focus:
        layers.append(
            alt.Chart(_named("focus"))
            .mark_rule(strokeDash=[4, 4], color="#7e57c2", size=2)
            .encode(x=_x(field="t"))
            .properties(name="focus")
        )
    # candles colour by direction, lines by series: separate colour scales in one layer
    price = (
        alt.LayerChart(layer=layers)
        .resolve_scale(color="independent", strokeDash="independent")
        .properties(height=380, width=CHART_WIDTH, title=title)
    )
    volume = (
        base.mark_bar()
        .encode(
            x=_x(field="tb"),
            x2="te:T",
            y=alt.Y("volume:Q", title="volume", axis=_y_axis()),
            y2=alt.datum(0),
            color=color,
            tooltip=tooltip,
        )
        .properties(height=90, width=CHART_WIDTH, name="volume")
    )
    views: list[alt.Chart | alt.LayerChart] = [price, volume]
    for ind in panels:
        views.append(_panel(base, ind))
    chart: alt.VConcatChart = (
        alt.vconcat(*views, data=_named("klines"), spacing=6)
        .resolve_scale(x="shared", color="independent")
        .configure_view(strokeWidth=0)
    )
    return chart


_TemplateKey = tuple[Any, ...]
_templates: OrderedDict[_TemplateKey, str] = OrderedDict()
_templates_lock = threading.Lock()


def chart_spec(
    frame: pd.DataFrame,
    overlays: Sequence[Indicator] = (),
    panels: Sequence[Indicator] = (),
    markers: Sequence[Marker] = (),
    preview: Sequence[Marker] = (),
    focus_ms: int | None = None,
    title: str = "",
) -> dict[str, Any]:
    """The Vega-Lite spec of `candle_chart` with its datasets filled in, for
    `st.vega_lite_chart`. Altair builds and validates each chart layout once (that costs
    far more than the data: about 0.4 s); later charts of the same layout reuse it."""
    key = (
        tuple((i.label, i.series, i.panel) for i in overlays),
        tuple((i.label, i.series, i.panel) for i in panels),
        bool(markers),
        bool(preview),
        focus_ms is not None,
        title,
    )
    with _templates_lock:
        text = _templates.get(key)
        if text is not None:
            _templates.move_to_end(key)
    if text is None:
        chart = candle_chart(overlays, panels, bool(markers), bool(preview), focus_ms is not None,
                             title)  # fmt: skip
        text = json.dumps(_one_zoom_view(chart.to_dict()))
        with _templates_lock:
            _templates[key] = text
            while len(_templates) > 64:
                _templates.popitem(last=False)
    spec: dict[str, Any] = json.loads(text)
    datasets: dict[str, pd.DataFrame] = {"klines": frame}
    if markers:
        datasets["signals"] = marker_frame(frame, markers, below=True)
    if preview:
        datasets["preview"] = marker_frame(frame, preview, below=False)
    if focus_ms is not None:
        datasets["focus"] = pd.DataFrame({"t": [focus_ms]})
    spec["datasets"] = datasets
    return spec


def _lines(
    base: alt.Chart, ind: Indicator, y_title: str, palette_of: Sequence[str] = ()
) -> alt.Chart:
    """One line per series of `ind`; series named in `palette_of` keep one colour each
    across layers (each layer has its own colour scale)."""
    columns: list[str | alt.FieldName] = [name for name, _ in ind.series]
    domain = list(palette_of) or [name for name, _ in ind.series]
    scale = alt.Scale(domain=domain, range=[PALETTE[i % len(PALETTE)] for i in range(len(domain))])
    chart: alt.Chart = (
        base.transform_fold(columns, as_=["series", "value"])
        .transform_filter("isValid(datum.value)")
        .mark_line(strokeWidth=1.4)
        .encode(
            x=_x(),
            y=alt.Y("value:Q", title=y_title, scale=alt.Scale(zero=False), axis=_y_axis()),
            color=alt.Color("series:N", scale=scale, legend=alt.Legend(title=None, orient="top")),
            strokeDash=alt.StrokeDash("series:N", legend=None),
        )
    )
    return chart


def _panel(base: alt.Chart, ind: Indicator) -> alt.LayerChart:
    layers: list[alt.Chart] = []
    if ind.panel == "MACD":
        hist = next(name for name, text in ind.series if text.startswith("macd_hist"))
        layers.append(
            base.transform_filter(f"isValid(datum['{hist}'])")
            .mark_bar(opacity=0.5)
            .encode(
                x=_x(field="tb"),
                x2="te:T",
                y=alt.Y(f"{hist}:Q", title="MACD", axis=_y_axis()),
                y2=alt.datum(0),
            )
        )
        lines = Indicator(ind.label, tuple(s for s in ind.series if s[0] != hist), ind.panel)
        layers.append(_lines(base, lines, "MACD"))
    else:
        layers.append(_lines(base, ind, ind.panel or ind.label))
        if ind.panel == "RSI":
            for level in (30, 70):
                layers.append(
                    alt.Chart()
                    .mark_rule(strokeDash=[2, 3], color="#999")
                    .encode(y=alt.datum(level))
                )
    panel = alt.LayerChart(layer=layers).properties(
        height=110, width=CHART_WIDTH, name=f"panel {ind.panel}"
    )
    return panel


def _markers(name: str, shape: str, fill: str) -> alt.Chart:
    chart: alt.Chart = (
        alt.Chart(_named(name))
        .mark_point(shape=shape, filled=True, size=110, color=fill, opacity=0.9)
        .encode(
            x=_x(),
            y=alt.Y("y:Q", axis=_y_axis()),
            tooltip=[
                _time_tooltip("kline (UTC)", "utcyearmonthdatehoursminutes", "%Y-%m-%d %H:%M"),
                alt.Tooltip("label:N", title=name),
                alt.Tooltip("detail:N", title="values"),
            ],
        )
        .properties(name=name)
    )
    return chart


def _one_zoom_view(spec: dict[str, Any]) -> dict[str, Any]:
    """Altair lifts a layer's params to the top and names every view of the layer in them;
    a scale binding in several views of one layer makes Vega fail ("duplicate signal"), so
    the zoom is kept on the first of them (the shared x scale carries it to every view)."""
    for param in spec.get("params", []):
        if param.get("bind") == "scales" and len(param.get("views", [])) > 1:
            param["views"] = param["views"][:1]
    return spec


def marker_frame(frame: pd.DataFrame, markers: Sequence[Marker], below: bool) -> pd.DataFrame:
    """One row per marker on a drawn kline: under its low (signals) or over its high."""
    by_open = frame.set_index("t")
    rows = []
    for m in markers:
        if m.open_ms not in by_open.index:
            continue
        k = by_open.loc[m.open_ms]
        rows.append(
            {
                "t": m.open_ms,
                "tm": int(k["tm"]),
                "y": float(k["low"] if below else k["high"]),
                "label": m.label,
                "detail": m.detail,
            }
        )
    return pd.DataFrame(rows, columns=["t", "tm", "y", "label", "detail"])
