"""What makes the kline chart read like a trading terminal: a crosshair with a readout of
the kline under the pointer, the last price tagged at the right edge, and every view
fitted to the klines in sight.

* Crosshair: the ``hover`` parameter picks the kline nearest the pointer along x in any
  view (price, volume, panels); a dashed rule marks it in every view, another its close
  in the price view (tagged in the price strip), and the readout at the top left prints
  its open time (UTC), open, high, low, close and volume. With the pointer elsewhere the
  readout shows the newest kline.
* Last price: a rule across the price view at the newest close, and the close on a tag
  at the right edge, both in the colour of that kline's direction.
* Fitted views: every layer keeps only the klines whose open is in the zoomed x range
  (the ``zoom`` parameter, which zoom and pan move), so each view's y scale spans the
  visible klines (the price view: their lowest low to highest high) rather than the
  whole table.

The texts (readout, prices) are written by `terminal_columns` in Python from the klines'
exact decimals, one row per kline, so the chart's spec does not change with the data.
"""

from __future__ import annotations

from typing import Any

import altair as alt
import numpy as np
import pandas as pd  # type: ignore[import-untyped]

from dashboard.ui.chart_axes import PLOT_PX, x

UP = "#26a69a"
DOWN = "#ef5350"
HOVER = "hover"
ZOOM = "zoom"
CROSSHAIR = "#787878"
SELECTED = alt.ParameterPredicate(param=HOVER, empty=False)
# the hovered kline, or the newest while nothing is hovered (Altair's logical predicates
# take their operands as keyword arguments named "or" and "and", and have no signature)
_NEWEST_UNHOVERED = {
    "and": [
        alt.ParameterPredicate(param=HOVER, empty=True),
        alt.FieldEqualPredicate(field="last", equal=True),
    ]
}
SHOWN = alt.LogicalOrPredicate(
    **{"or": [SELECTED, alt.LogicalAndPredicate(**_NEWEST_UNHOVERED)]}  # type: ignore[no-untyped-call]
)


def visible(field: str = "t") -> str:
    """A filter: the row's time `field` is in the zoomed x range (every row, unzoomed). A
    candle is in sight when its open is: one cut by an edge is clamped there."""
    return f"!isValid({ZOOM}.t) || inrange(datum['{field}'], {ZOOM}.t)"


def direction_color() -> alt.Color:
    return alt.Color("dir:N", scale=alt.Scale(domain=["up", "down"], range=[UP, DOWN]), legend=None)


def hover_param() -> alt.Parameter:
    return alt.selection_point(
        name=HOVER, on="pointermove", clear="view:pointerleave", fields=["t"], nearest=False
    )


def hover_target(base: alt.Chart, hover: alt.Parameter, labels: bool) -> alt.Chart:
    """Invisible cells, one per kline, from halfway to the previous open to halfway to the
    next, the view's full height: the pointer anywhere in a kline's cell picks it. (Below
    the candles, which pick their own kline, and show their tooltips.)"""
    chart: alt.Chart = (
        base.mark_rect(opacity=0, color="#000")
        .encode(x=x("c0", labels=labels), x2="c1:T", y=alt.value(0), y2=alt.value("height"))
        .properties(name="hover target")
    )
    return chart


def time_rule(base: alt.Chart, labels: bool) -> alt.Chart:
    """The crosshair's vertical rule at the hovered kline."""
    chart: alt.Chart = (
        base.transform_filter(SELECTED)
        .mark_rule(color=CROSSHAIR, strokeDash=[4, 3], strokeWidth=1)
        .encode(x=x(labels=labels))
        .properties(name="crosshair time")
    )
    return chart


# the price view's y scale, as Vega-Lite names it after the view ("price")
PRICE_Y = "price_y"
TAG_PX = 8  # half a price tag's height


def close_px(offset: int = 0, inside: int | None = None) -> alt.ExprRef:
    """Where a row's close is on the price view (plus `offset` px): a price tag or line
    drawn there leaves the y scale to the klines in sight (a field would add the close to
    its domain). With `inside`, kept that far within the view: a tag whose price is above
    or below the klines in sight waits at the edge."""
    where = f"scale('{PRICE_Y}', datum.close)"
    if inside is not None:
        where = f"clamp({where}, {inside}, range('{PRICE_Y}')[0] - {inside})"
    return alt.ExprRef(expr=f"{where} + {offset}" if offset else where)


def price_layers(base: alt.Chart) -> list[alt.Chart]:
    """Crosshair (vertical and horizontal rules, the close's tag), the last price's rule
    and tag, and the readout, for the price view."""
    hovered = base.transform_filter(SELECTED)
    newest = base.transform_filter(alt.datum.last)
    layers: list[alt.Chart] = [
        time_rule(base, labels=False),
        hovered.mark_rule(color=CROSSHAIR, strokeDash=[4, 3], strokeWidth=1, clip=True)
        .encode(y=alt.value(close_px()))
        .properties(name="crosshair price"),
        newest.mark_rule(strokeDash=[1, 2], strokeWidth=1, clip=True)
        .encode(y=alt.value(close_px()), color=direction_color())
        .properties(name="last price line"),
        *_tag(newest, "last price", direction_color()),
        *_tag(hovered, "crosshair price tag", alt.value("#616161")),
    ]
    shown = base.transform_filter(SHOWN)
    text: dict[str, Any] = {
        "align": "left",
        "baseline": "top",
        "lineBreak": "\n",
        "font": "monospace",
        "fontSize": 11,
        "lineHeight": 14,
    }
    layers.append(
        shown.mark_text(stroke="white", strokeWidth=4, strokeJoin="round", opacity=0.9, **text)
        .encode(x=alt.value(6), y=alt.value(6), text="readout:N")
        .properties(name="readout halo")
    )
    layers.append(
        shown.mark_text(**text)
        .encode(x=alt.value(6), y=alt.value(6), text="readout:N", color=direction_color())
        .properties(name="readout")
    )
    return layers


def _tag(rows: alt.Chart, name: str, fill: Any) -> list[alt.Chart]:
    """A row's close on a coloured tag filling the price strip at the right edge."""
    box = (
        rows.mark_rect()
        .encode(
            x=alt.value(alt.ExprRef(expr=PLOT_PX)),
            x2=alt.value("width"),
            y=alt.value(close_px(-TAG_PX, inside=TAG_PX)),
            y2=alt.value(close_px(TAG_PX, inside=TAG_PX)),
            color=fill,
        )
        .properties(name=f"{name} box")
    )
    label = (
        rows.mark_text(
            align="right", baseline="middle", dx=-4, color="white", fontWeight="bold", fontSize=10
        )
        .encode(x=alt.value("width"), y=alt.value(close_px(inside=TAG_PX)), text="close_text:N")
        .properties(name=name)
    )
    return [box, label]


def price_texts(values: pd.Series, decimals: int) -> list[str]:
    return [f"{v:,.{decimals}f}" for v in values]


def volume_text(v: float) -> str:
    if v >= 100:
        return f"{v:,.2f}"
    return f"{v:.8f}".rstrip("0").rstrip(".")


def terminal_columns(frame: pd.DataFrame, decimals: int, step_ms: int) -> pd.DataFrame:
    """`frame` with what the terminal parts read: ``last`` (the newest row), ``c0`` and
    ``c1`` (the pointer's cell), ``close_text`` and ``readout`` (three lines: time and
    volume, open and high, low and close), prices printed with `decimals`."""
    out = frame.copy()
    out["last"] = [False] * (len(out) - 1) + [True] if len(out) else []
    out["c0"] = out["t"] - step_ms // 2
    out["c1"] = out["t"] + step_ms // 2
    opens = out["t"].to_numpy().astype("datetime64[ms]")  # UTC, to the minute or second
    stamps = np.datetime_as_string(opens, unit="m" if step_ms % 60_000 == 0 else "s")
    times = [t.replace("T", " ") for t in stamps]
    o, h, lo, c = (price_texts(out[k], decimals) for k in ("open", "high", "low", "close"))
    vol = [volume_text(v) for v in out["volume"]]
    out["close_text"] = c
    out["readout"] = [
        f"{t} UTC  V {v}\nO {a}  H {b}\nL {d}  C {e}"
        for t, v, a, b, d, e in zip(times, vol, o, h, lo, c, strict=True)
    ]
    return out
