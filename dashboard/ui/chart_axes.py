"""The kline chart's axes, laid out as a trading terminal draws them.

* Time runs along x by kline open time: a candle is centred on its open, so a tick falls
  on a candle. The ticks are chosen in the browser from the visible range (they follow
  zoom and pan): a step that is a whole number of klines and a round time (5 min, 1 h, a
  Monday...), at most one label per 64 px, and labels that name the time, or the day at
  midnight, the month on its first day.
* Prices are read at the right edge, inside the chart (as wide as its column, at any
  screen width): the x range stops `axis_px` short of the right edge and the y labels are
  drawn in that strip, so they never cover a candle.

The expressions use three chart parameters: ``axis_px`` (the strip's width),
``xtick_step`` and ``xticks`` (the tick step and the ticks, from the x domain).
"""

from __future__ import annotations

import math

import altair as alt

from flows.domain.intervals import DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS, get_interval

AXIS_PX = "axis_px"
TICK_GAP_PX = 64  # at most one time label per this many pixels
CHAR_PX = 6.6  # width of a character of the 10-11 px labels (an estimate, a little wide)
WEEK_MS = 7 * DAY_MS
MONDAY_MS = 4 * DAY_MS  # 1970-01-01 was a Thursday: weeks open 4 days after the epoch
MONTH_MS = 31 * DAY_MS
# round steps between two time labels; those that are whole klines of the interval are used
ROUND_STEPS_MS = [
    SECOND_MS, 5 * SECOND_MS, 15 * SECOND_MS, 30 * SECOND_MS,
    MINUTE_MS, 2 * MINUTE_MS, 3 * MINUTE_MS, 5 * MINUTE_MS, 10 * MINUTE_MS, 15 * MINUTE_MS,
    30 * MINUTE_MS, HOUR_MS, 2 * HOUR_MS, 3 * HOUR_MS, 4 * HOUR_MS, 6 * HOUR_MS, 8 * HOUR_MS,
    12 * HOUR_MS, DAY_MS, 2 * DAY_MS, 3 * DAY_MS, WEEK_MS, 2 * WEEK_MS, 4 * WEEK_MS,
    13 * WEEK_MS, 26 * WEEK_MS, 52 * WEEK_MS,
]  # fmt: skip
MONTH_STEPS = [1, 2, 3, 6, 12, 24, 60]
PLOT_PX = f"(width - {AXIS_PX})"  # the candles' part of a view's width


def tick_steps_ms(interval: str) -> list[int]:
    """The steps between time labels for klines of `interval`: round times that are a
    whole number of klines, then doublings and tenfolds of the largest one."""
    length = get_interval(interval).length_ms
    steps = [s for s in ROUND_STEPS_MS if s >= length and s % length == 0] or [length]
    top = steps[-1]
    steps += [top * m for m in (2, 5, 10, 20, 50, 100, 1000)]
    return steps


def tick_params(interval: str) -> list[alt.Parameter]:
    """`xtick_step` (ms, or months for monthly klines) and `xticks` (the tick times), both
    recomputed from the x scale's domain and the plot's width as they change."""
    lo, hi = "time(domain('x')[0])", "time(domain('x')[1])"
    span = f"({hi} - {lo})"
    fits = f"max(1, floor({PLOT_PX} / {TICK_GAP_PX}))"
    if get_interval(interval).calendar_month:
        choose = (
            " : ".join(f"{span} / {m * MONTH_MS} <= {fits} ? {m}" for m in MONTH_STEPS)
            + f" : {MONTH_STEPS[-1] * 10}"
        )
        # the first month start in sight whose month is a multiple of the step
        month = f"utcmonth({lo}) + ({lo} > utc(utcyear({lo}), utcmonth({lo}), 1) ? 1 : 0)"
        first = f"utc(utcyear({lo}), ceil(({month}) / xtick_step) * xtick_step, 1)"
        ticks = f"utcSequence('month', {first}, {hi} + 1, xtick_step)"
    else:
        steps = tick_steps_ms(interval)
        choose = " : ".join(f"{span} / {s} <= {fits} ? {s}" for s in steps[:-1])
        choose += f" : {steps[-1]}"
        offset = get_interval(interval).offset_ms
        # week-sized steps start on Mondays; the others on the interval's own alignment
        first_offset = f"(xtick_step % {WEEK_MS} == 0 ? {MONDAY_MS} : {offset})"
        first = f"{first_offset} + ceil(({lo} - {first_offset}) / xtick_step) * xtick_step"
        ticks = f"sequence({first}, {hi} + 1, xtick_step)"
    return [
        alt.param(name="xtick_step", expr=choose),
        alt.param(name="xticks", expr=ticks),
    ]


# a label: the time of day; at midnight the day; on the 1st the month; on Jan 1st the year
TIME_LABEL = (
    "utchours(datum.value) + utcminutes(datum.value) + utcseconds(datum.value) > 0 "
    "? utcFormat(datum.value, xtick_step < 60000 ? '%H:%M:%S' : '%H:%M') "
    ": utcdate(datum.value) != 1 ? utcFormat(datum.value, '%d %b') "
    ": utcmonth(datum.value) != 0 ? utcFormat(datum.value, '%b') "
    ": utcFormat(datum.value, '%Y')"
)


def x_scale() -> alt.Scale:
    """The shared time scale: UTC, ending `axis_px` short of the right edge; a time past
    the zoomed range is drawn at its edge (a candle cut by the edge stops there)."""
    return alt.Scale(type="utc", range=[0, alt.ExprRef(expr=PLOT_PX)], clamp=True)


def x_axis(labels: bool = True) -> alt.Axis:
    return alt.Axis(
        values=alt.ExprRef(expr="xticks"),
        labelExpr=TIME_LABEL,
        labels=labels,
        labelOverlap=True,
        labelBound=True,
        labelFlush=False,
        tickSize=4 if labels else 0,
        grid=True,
        domainColor="#ccc",
        tickColor="#bbb",
        gridColor="#eee",
        title=None,
    )


def x(field: str = "t", labels: bool = True) -> alt.X:
    return alt.X(f"{field}:T", title=None, scale=x_scale(), axis=x_axis(labels))


def y_axis(title: str | None = None, label_format: str | None = None) -> alt.Axis:
    """A y axis whose labels are in the strip right of the candles (inside the view: no
    room is taken beside it) and whose grid spans the candles; a panel's title at its top
    left. (The axis is the left one, its labels pushed right across the plot: a right
    axis draws its grid from the view's right edge, over the strip.)"""
    return alt.Axis(
        orient="left",
        labelAlign="left",
        labelBaseline="middle",
        labelPadding=alt.ExprRef(expr=f"-{PLOT_PX} - 4"),
        labelFlush=True,
        tickSize=0,
        domain=False,
        minExtent=0,
        maxExtent=0,
        grid=True,
        gridColor="#eee",
        labelColor="#555",
        format=label_format if label_format is not None else alt.Undefined,
        title=title,
        titleAngle=0,
        titleAlign="left",
        titleBaseline="top",
        titleX=4,
        titleY=2,
        titleColor="#888",
        titleFontWeight="normal",
    )


def price_decimals(prices: list[float]) -> int:
    """The decimals that print every price exactly (prices are 8-decimal numbers), at
    least 2, and at least enough to show 5 significant digits of the largest."""
    exact = 0
    for p in prices:
        text = f"{p:.8f}".rstrip("0")
        exact = max(exact, len(text) - text.index(".") - 1)
    top = max((abs(p) for p in prices), default=1.0) or 1.0
    significant = max(0, 4 - math.floor(math.log10(top)))
    return min(8, max(2, exact, significant))


def axis_width_px(prices: list[float], decimals: int) -> int:
    """The strip that holds the price labels (and the last price's label)."""
    top = max((abs(p) for p in prices), default=0.0)
    chars = len(f"{top:,.{decimals}f}")
    return math.ceil(chars * CHAR_PX + 12)
