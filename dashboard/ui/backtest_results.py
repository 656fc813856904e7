"""What a backtest run shows: its statistics under readable names, the histogram of the
forward returns, its signals on the candles, and the CSV export.

The statistics are ``flows.backtest.report.summary`` per trader and symbol (and per trader
over all its symbols when it had several), shown for one group and one horizon at a time as
metrics, with every statistic of the group in a two-column table: nothing wider than a
phone's screen.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import replace

import altair as alt
import pandas as pd  # type: ignore[import-untyped]
import streamlit as st

from dashboard.data import backtests
from dashboard.ui.charts import Marker, build_frame, chart_spec
from dashboard.ui.common import utc_text
from flows.backtest.report import HORIZONS, SignalOutcome, summary
from flows.domain.kline import Kline

CHART_CANDLES = 1500
DEFAULT_HORIZON = 15
EMPTY = "–"

Line = dict[str, float | int | str | None]


def _bars(n: int) -> str:
    return f"{n} bar" if n == 1 else f"{n} bars"


def stat_label(key: str) -> str:
    """The readable name of a statistic of ``summary``: `ret1_mean` is "mean return after 1
    bar, %"."""
    fixed = {"signals": "signals", "signals_per_day": "signals per day"}
    if key in fixed:
        return fixed[key]
    found = re.fullmatch(r"(ret|mfe|mae)(\d+)_(mean|median|hit_rate)", key)
    if found is None:
        raise ValueError(f"no statistic {key!r}")
    kind, n, what = found[1], int(found[2]), found[3]
    names = {
        ("ret", "mean"): f"mean return after {_bars(n)}, %",
        ("ret", "median"): f"median return after {_bars(n)}, %",
        ("ret", "hit_rate"): f"hit rate after {_bars(n)} (returns above 0), %",
        ("mfe", "mean"): f"mean best move within {_bars(n)} (MFE), %",
        ("mae", "mean"): f"mean worst move within {_bars(n)} (MAE), %",
    }
    return names[(kind, what)]


def stat_value(key: str, value: float | int | str | None) -> str:
    if value is None:
        return EMPTY
    if key == "signals":
        return f"{int(value):,}"
    if key == "signals_per_day":
        return f"{float(value):,.2f}"
    if key.endswith("hit_rate"):
        return f"{float(value) * 100:.1f}"
    return f"{float(value) * 100:.3f}"


def horizon_keys(n: int) -> list[str]:
    return [f"ret{n}_mean", f"ret{n}_median", f"ret{n}_hit_rate", f"mfe{n}_mean", f"mae{n}_mean"]


def statistic_table(line: Line) -> pd.DataFrame:
    """Every statistic of one group, one per row: readable name, value."""
    keys = ["signals", "signals_per_day", *(k for n in HORIZONS for k in horizon_keys(n))]
    labels = [stat_label(k) for k in keys]
    return pd.DataFrame({"statistic": labels, "value": [stat_value(k, line.get(k)) for k in keys]})


def groups(
    rows: Sequence[SignalOutcome], span_ms: int, names: dict[int, str]
) -> dict[str, tuple[Line, list[SignalOutcome]]]:
    """label -> (statistics, signals) per trader and symbol, and per trader over all its
    symbols when it has several (first)."""
    out: dict[str, tuple[Line, list[SignalOutcome]]] = {}
    by_trader: dict[int, list[SignalOutcome]] = {}
    for r in rows:
        by_trader.setdefault(r.signal.fire.trader_id, []).append(r)
    for trader, mine in sorted(by_trader.items()):
        name = names.get(trader, "") or f"trader {trader}"
        symbols = sorted({r.signal.fire.symbol for r in mine})
        if len(symbols) > 1:
            together = f"all {len(symbols)} symbols"
            merged = [
                replace(r, signal=replace(r.signal, fire=r.signal.fire._replace(symbol=together)))
                for r in mine
            ]
            (line,) = summary(merged, span_ms)
            out[f"{name} · {together}"] = (line, mine)
        for line in summary(mine, span_ms):
            symbol = str(line["symbol"])
            out[f"{name} · {symbol}"] = (line, [r for r in mine if r.signal.fire.symbol == symbol])
    return out


def results(rows: Sequence[SignalOutcome], span_ms: int, names: dict[int, str], key: str) -> None:
    """The statistics of a run's signals, their histogram."""
    if not rows:
        st.info("No signals: the rules never fired over this data.")
        return
    found = groups(rows, span_ms, names)
    labels = list(found)
    pick = labels[0]
    if len(labels) > 1:
        pick = str(st.selectbox("Statistics of", labels, key=f"bt_group_{key}"))
    line, mine = found[pick]
    at = HORIZONS.index(DEFAULT_HORIZON)
    horizon = int(st.selectbox("Bars after the signal", HORIZONS, index=at, key=f"bt_h_{key}"))
    ret, med, hit, mfe, mae = horizon_keys(horizon)
    for row in (["signals", "signals_per_day", hit], [ret, med], [mfe, mae]):
        for column, k in zip(st.columns(len(row)), row, strict=True):
            column.metric(stat_label(k), stat_value(k, line.get(k)))
    with st.expander("Every statistic of this group"):
        st.table(statistic_table(line), hide_index=True)
    values = backtests.returns_of(mine, horizon)
    if not values:
        st.caption(f"No signal has {_bars(horizon)} after it in the data.")
        return
    st.altair_chart(histogram(values, horizon), width="stretch")


def histogram(values: Sequence[float], horizon: int) -> alt.Chart:
    frame = pd.DataFrame({"ret": list(values)})
    chart: alt.Chart = (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X(
                "ret:Q",
                bin=alt.Bin(maxbins=40),
                title=f"return after {_bars(horizon)}",
                axis=alt.Axis(format="%"),
            ),
            y=alt.Y("count():Q", title="signals"),
        )
        .properties(name="returns histogram", width="container", height=260)
    )
    return chart


def signal_series(rows: Sequence[SignalOutcome]) -> list[tuple[str, str]]:
    """The (symbol, interval) series that have signals, in order."""
    return sorted({(r.signal.fire.symbol, r.signal.fire.interval) for r in rows})


def signals_chart(
    rows: Sequence[SignalOutcome],
    klines_of: Callable[[str, str], tuple[list[Kline], str]],
    names: dict[int, str],
    key: str,
) -> None:
    """The signals of one series (picked) on its candles; `klines_of` gives the series'
    klines and a note on where they came from."""
    series = signal_series(rows)
    if not series:
        return
    labels = [f"{s} {iv}" for s, iv in series]
    pick = st.selectbox("Signals on", labels, key=f"bt_series_{key}")
    symbol, interval = series[labels.index(str(pick))]
    bars, note = klines_of(symbol, interval)
    if not bars:
        st.caption(note or "No klines to draw the signals on.")
        return
    shown = bars[-CHART_CANDLES:]
    first = shown[0].open_ms
    marks = [
        Marker(
            r.signal.fire.open_ms,
            f"{names.get(r.signal.fire.trader_id, '')} (x{r.signal.repeat_count})",
            ", ".join(f"{k}={v}" for k, v in r.signal.fire.values.items()),
        )
        for r in rows
        if (r.signal.fire.symbol, r.signal.fire.interval) == (symbol, interval)
        and r.signal.fire.open_ms >= first
    ]
    frame = build_frame(shown, interval, {})
    spec = chart_spec(frame, markers=marks, title=f"{symbol} {interval}: backtest signals")
    st.vega_lite_chart(spec=spec, width="stretch")
    told = [note] if note else []
    if len(bars) > len(shown):
        told.append(f"The newest {len(shown):,} of {len(bars):,} klines, from "
                    f"{utc_text(first)} UTC; the statistics cover every one.")  # fmt: skip
    if told:
        st.caption(" ".join(told))


def download(rows: Sequence[SignalOutcome], run_id: int, key: str) -> None:
    st.download_button(
        "Download signals (CSV)",
        data=backtests.export_csv(rows),
        file_name=f"backtest-{run_id}.csv",
        mime="text/csv",
        key=f"bt_download_{key}",
    )
