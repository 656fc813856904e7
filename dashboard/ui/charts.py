"""Altair charts of klines: candles with volume, indicator overlays and panels, markers.

`build_frame` turns klines and indicator series into one table (one row per kline); the
chart's views all read it, sharing one x scale that the mouse zooms and pans (drag, wheel),
so every panel follows the candles. Times are UTC epoch milliseconds drawn on a UTC scale;
a candle is centred on its open time, where the time axis puts its ticks
(`dashboard.ui.chart_axes`). The crosshair, readout, last price and the views' fit to the
visible klines are `dashboard.ui.chart_terminal`'s.

The chart is a one-column `concat` whose views are as wide as their container: as wide as
the page's column for every caller, at any screen width (no sideways scroll on a phone).

Every view carries a `name` (``price``, ``candles``, ``overlay EMA(20)``, ``panel RSI``,
``signals``, ``readout``, ``last price``...), which is how the tests find them in the
rendered spec.
"""

from __future__ import annotations

import functools
import json
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import altair as alt
import pandas as pd  # type: ignore[import-untyped]

from dashboard.data.indicators import Indicator
from dashboard.ui.chart_axes import (
    AXIS_PX,
    axis_width_px,
    price_decimals,
    tick_params,
    x,
    y_axis,
)
from dashboard.ui.chart_compose import Part, column, layer
from dashboard.ui.chart_terminal import (
    DOWN,
    UP,
    ZOOM,
    direction_color,
    hover_param,
    hover_target,
    price_layers,
    terminal_columns,
    time_rule,
    visible,
)
from flows.domain.intervals import get_interval
from flows.domain.kline import Kline

__all__ = ["DOWN", "UP", "Marker", "build_frame", "candle_chart", "chart_spec", "marker_frame"]

PALETTE = ["#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf"]  # fmt: skip
CHART_WIDTH = 860  # px: a view's width where its container has none to give
BODY = 0.8  # a candle body's share of its interval


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
    """One row per kline: open time ``t`` and the body's edges around it (``tb``, ``te``),
    prices as floats, direction, whether it is still forming, and one column per
    indicator series. The interval is kept in ``frame.attrs``."""
    step = get_interval(interval).length_ms
    half = int(step * BODY) // 2
    opens = [k.open_ms for k in klines]
    u = 1e8
    frame = pd.DataFrame(
        {
            "t": opens,
            "tb": [t - half for t in opens],
            "te": [t + half for t in opens],
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
    frame.attrs["interval"] = interval
    return frame


def _named(name: str) -> alt.Data:
    """A reference to a dataset the spec carries under `datasets`."""
    return alt.Data(name=name)  # type: ignore[no-untyped-call]


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
    interval: str = "1m",
    price_format: str = ",.8f",
    axis_px: int = 72,
) -> dict[str, Any]:
    """Candles (with overlays and markers), volume below, then one panel per indicator;
    time labels under the last view, on `interval` klines' opens; prices printed with
    `price_format` in a strip `axis_px` wide at the right.

    The chart reads named datasets: ``klines`` (a `build_frame` table with
    `terminal_columns`), and when asked for, ``signals`` and ``preview`` (`marker_frame`
    tables) and ``focus`` (one time ``t``).

    Its parameters (zoom, crosshair, the axis strip's width, the time ticks) are not in the
    chart: `with_params` puts them into its spec, each naming the views it belongs to.
    (Added to the views, Altair lifts and merges them through deep copies of every layer,
    which made a new layout cost most of a second.)"""
    hover = hover_param()
    color = direction_color()
    price_scale = alt.Scale(zero=False, nice=False, padding=24)
    price_axis = y_axis(None, price_format)

    def price_y(field: str) -> alt.Y:
        return alt.Y(field, title=None, scale=price_scale, axis=price_axis)

    tooltip = [
        _time_tooltip("open (UTC)", "utcyearmonthdatehoursminutesseconds", "%Y-%m-%d %H:%M:%S"),
        alt.Tooltip("open:Q", format=price_format),
        alt.Tooltip("high:Q", format=price_format),
        alt.Tooltip("low:Q", format=price_format),
        alt.Tooltip("close:Q", format=price_format),
        alt.Tooltip("volume:Q", format=",.2f"),
    ]
    base = alt.Chart()
    shown = base.transform_filter(visible())
    wicks = (
        shown.mark_rule()
        .encode(x=x(labels=False), y=price_y("low:Q"), y2="high:Q", color=color)
        .properties(name="wicks")
    )
    body: dict[str, Any] = {
        "x": x("tb", labels=False),
        "x2": alt.X2("te:T"),
        "y": price_y("open:Q"),
        "y2": "close:Q",
    }
    bodies = (
        shown.mark_bar().encode(**body, color=color, tooltip=tooltip).properties(name="candles")
    )
    forming = (
        shown.transform_filter("datum.forming")
        .mark_bar(filled=False, strokeDash=[3, 2], stroke="#888")
        .encode(**body)
        .properties(name="forming")
    )
    layers: list[Part] = [
        hover_target(base, hover, labels=False),
        wicks,
        bodies,
        forming,
    ]
    names = [name for ind in overlays for name, _ in ind.series]
    if overlays:
        # one colour scale (one legend) for every overlay line: a scale of their own, apart
        # from the candles' direction colours, shared by their layers
        lines = [
            _lines(shown, ind, price_y, names, labels=False).properties(name=f"overlay {ind.label}")
            for ind in overlays
        ]
        layers.append(layer(lines, {"color": "shared", "strokeDash": "shared"}, name="overlays"))
    if markers:
        layers.append(_markers("signals", "triangle-up", "#1e88e5", price_y))
    if preview:
        layers.append(_markers("preview", "diamond", "#fb8c00", price_y))
    if focus:
        layers.append(
            alt.Chart(_named("focus"))
            .mark_rule(strokeDash=[4, 4], color="#7e57c2", size=2)
            .encode(x=x(labels=False))
            .properties(name="focus")
        )
    layers.extend(price_layers(base))
    # candles colour by direction, lines by series: separate colour scales in one layer
    price = layer(layers, {"color": "independent", "strokeDash": "independent"},
                  name="price", height=380, width="container", title=title)  # fmt: skip
    last = len(panels)  # the index of the bottom view among the panels below the price
    volume = _view(
        base,
        hover,
        [
            shown.mark_bar()
            .encode(
                x=x("tb", labels=last == 0),
                x2="te:T",
                y=alt.Y("volume:Q", title="volume", axis=y_axis("volume", "~s")),
                y2=alt.datum(0),
                color=color,
                tooltip=tooltip,
            )
            .properties(name="volume bars")
        ],
        labels=last == 0,
        height=90,
        name="volume",
    )
    views = [price, volume]
    for i, ind in enumerate(panels, start=1):
        views.append(_panel(shown, base, hover, ind, labels=i == last))
    return column(
        views,
        data={"name": "klines"},
        spacing=6,
        resolve={"scale": {"x": "shared", "color": "independent", "strokeDash": "independent"}},
        autosize={"type": "pad", "contains": "padding"},
        config={
            "view": {"continuousWidth": CHART_WIDTH, "continuousHeight": 300, "strokeWidth": 0},
            "mark": {"tooltip": None},  # tooltips where asked for (candles, markers) only
        },
    )


def _view(
    base: alt.Chart,
    hover: alt.Parameter,
    layers: list[alt.Chart],
    labels: bool,
    height: int,
    name: str,
) -> dict[str, Any]:
    """A view below the price: the pointer's target, its layers, the crosshair's rule."""
    return layer([hover_target(base, hover, labels), *layers, time_rule(base, labels)],
                 name=name, height=height, width="container")  # fmt: skip


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
    interval: str | None = None,
) -> dict[str, Any]:
    """The Vega-Lite spec of `candle_chart` with its datasets filled in, for
    `st.vega_lite_chart` (at any `width`: the chart takes its container's). `interval` is
    the klines' (default: the one `build_frame` recorded). Altair builds and validates
    each chart layout once (that costs far more than the data: most of a second); later charts
    of the same layout reuse it, and a chart redrawn with newer klines keeps its spec
    (only its datasets change), so the browser keeps its zoom."""
    interval = interval or frame.attrs.get("interval") or _interval_of(frame)
    prices = [float(v) for k in ("low", "high") for v in frame[k]]
    decimals = price_decimals(prices)
    key = (
        tuple((i.label, i.series, i.panel) for i in overlays),
        tuple((i.label, i.series, i.panel) for i in panels),
        bool(markers),
        bool(preview),
        focus_ms is not None,
        bool(title),
    )
    with _templates_lock:
        text = _templates.get(key)
        if text is not None:
            _templates.move_to_end(key)
    if text is None:
        with warnings.catch_warnings():
            # the crosshair's parameter is one, in every view: Altair merges it, and says so
            warnings.filterwarnings("ignore", "Automatically deduplicated selection parameter")
            chart = candle_chart(
                overlays, panels, bool(markers), bool(preview), focus_ms is not None,
                _TITLE if title else "", price_format=_PRICE_FORMAT,
            )  # fmt: skip
            text = json.dumps(with_params(chart))
        with _templates_lock:
            _templates[key] = text
            while len(_templates) > 64:
                _templates.popitem(last=False)
    # the title, and what depends on the klines (their interval, prices' decimals)
    text = text.replace(json.dumps(_PRICE_FORMAT), json.dumps(f",.{decimals}f"))
    spec: dict[str, Any] = json.loads(text.replace(json.dumps(_TITLE), json.dumps(title)))
    filled = {AXIS_PX: {"name": AXIS_PX, "value": axis_width_px(prices, decimals)}}
    filled.update((p["name"], p) for p in _tick_params(interval))
    spec["params"] = [filled.get(p.get("name"), p) for p in spec["params"]]
    step = get_interval(interval).length_ms
    datasets: dict[str, pd.DataFrame] = {"klines": terminal_columns(frame, decimals, step)}
    if markers:
        datasets["signals"] = marker_frame(frame, markers, below=True)
    if preview:
        datasets["preview"] = marker_frame(frame, preview, below=False)
    if focus_ms is not None:
        datasets["focus"] = pd.DataFrame({"t": [focus_ms]})
    spec["datasets"] = datasets
    return spec


# in a chart layout's spec, where the prices' format and the title go
_PRICE_FORMAT = "{price format}"
_TITLE = "{title}"


@functools.lru_cache(maxsize=32)
def _tick_params_of(interval: str) -> str:
    return json.dumps([p.param.to_dict() for p in tick_params(interval)])  # type: ignore[union-attr]


def _tick_params(interval: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(_tick_params_of(interval))
    return found


def _interval_of(frame: pd.DataFrame) -> str:
    """The interval whose candle body `build_frame` gave the frame's first row."""
    if len(frame):
        width = int(frame["te"].iloc[0] - frame["tb"].iloc[0])
        for name in ("1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h",
                     "1d", "3d", "1w", "1M"):  # fmt: skip
            if int(get_interval(name).length_ms * BODY) // 2 * 2 == width:
                return name
    return "1m"


def _lines(
    shown: alt.Chart,
    ind: Indicator,
    y: Callable[[str], alt.Y] | str,
    palette_of: Sequence[str] = (),
    labels: bool = True,
) -> alt.Chart:
    """One line per series of `ind` (on the y scale and axis of `y`, or a new one titled
    `y`); series named in `palette_of` keep one colour each across layers (each layer has
    its own colour scale)."""
    columns: list[str | alt.FieldName] = [name for name, _ in ind.series]
    domain = list(palette_of) or [name for name, _ in ind.series]
    scale = alt.Scale(domain=domain, range=[PALETTE[i % len(PALETTE)] for i in range(len(domain))])
    if isinstance(y, str):
        value_y = alt.Y("value:Q", title=None, scale=alt.Scale(zero=False), axis=y_axis(y))
    else:
        value_y = y("value:Q")
    chart: alt.Chart = (
        shown.transform_fold(columns, as_=["series", "value"])
        .transform_filter("isValid(datum.value)")
        .mark_line(strokeWidth=1.4)
        .encode(
            x=x(labels=labels),
            y=value_y,
            color=alt.Color("series:N", scale=scale, legend=alt.Legend(title=None, orient="top")),
            strokeDash=alt.StrokeDash("series:N", legend=None),
        )
    )
    return chart


def _panel(
    shown: alt.Chart, base: alt.Chart, hover: alt.Parameter, ind: Indicator, labels: bool
) -> dict[str, Any]:
    layers: list[alt.Chart] = []
    title = ind.panel or ind.label
    if ind.panel == "MACD":
        hist = next(name for name, text in ind.series if text.startswith("macd_hist"))
        layers.append(
            shown.transform_filter(f"isValid(datum['{hist}'])")
            .mark_bar(opacity=0.5)
            .encode(
                x=x("tb", labels=labels),
                x2="te:T",
                y=alt.Y(f"{hist}:Q", title=None, axis=y_axis(title)),
                y2=alt.datum(0),
            )
        )
        lines = Indicator(ind.label, tuple(s for s in ind.series if s[0] != hist), ind.panel)
        layers.append(_lines(shown, lines, title, labels=labels))
    else:
        layers.append(_lines(shown, ind, title, labels=labels))
        if ind.panel == "RSI":
            for level in (30, 70):
                layers.append(
                    alt.Chart()
                    .mark_rule(strokeDash=[2, 3], color="#999")
                    .encode(y=alt.datum(level))
                )
    return _view(base, hover, layers, labels, 110, f"panel {ind.panel}")


def _markers(name: str, shape: str, fill: str, price_y: Callable[[str], alt.Y]) -> alt.Chart:
    chart: alt.Chart = (
        alt.Chart(_named(name))
        .transform_filter(visible())
        .mark_point(shape=shape, filled=True, size=110, color=fill, opacity=0.9)
        .encode(
            x=x(labels=False),
            y=price_y("y:Q"),
            tooltip=[
                _time_tooltip("kline (UTC)", "utcyearmonthdatehoursminutes", "%Y-%m-%d %H:%M"),
                alt.Tooltip("label:N", title=name),
                alt.Tooltip("detail:N", title="values"),
            ],
        )
        .properties(name=name)
    )
    return chart


def with_params(spec: dict[str, Any], interval: str = "1m", axis_px: int = 72) -> dict[str, Any]:
    """`candle_chart`'s spec with its parameters, at the top, each naming its views. The
    crosshair belongs to the pointer's targets only (one per view: a nearest-point target
    over every layer would hide the candles' tooltips), and the zoom to the wicks only (a
    scale binding in several views of one layer makes Vega fail, "duplicate signal"; the
    shared x scale carries it to every view)."""
    names = _unit_names(spec)
    zoom = _param_dict(alt.selection_interval(bind="scales", encodings=["x"], name=ZOOM))
    hover = _param_dict(hover_param())
    zoom["views"] = [n for n in names if n.startswith("wicks")]
    hover["views"] = [n for n in names if n.startswith("hover target")]
    spec["params"] = [zoom, hover, {"name": AXIS_PX, "value": axis_px},
                      *_tick_params(interval)]  # fmt: skip
    return spec


def _param_dict(p: alt.Parameter) -> dict[str, Any]:
    spec: dict[str, Any] = p.param.to_dict()  # type: ignore[union-attr]
    return spec


def _unit_names(spec: Any) -> list[str]:
    names: list[str] = []
    if isinstance(spec, dict):
        if "mark" in spec and isinstance(spec.get("name"), str):
            names.append(spec["name"])
        for key in ("layer", "concat"):
            for child in spec.get(key, []):
                names.extend(_unit_names(child))
    return names


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
                "y": float(k["low"] if below else k["high"]),
                "label": m.label,
                "detail": m.detail,
            }
        )
    return pd.DataFrame(rows, columns=["t", "y", "label", "detail"])
