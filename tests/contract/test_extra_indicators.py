"""Contract: the indicators of ``flows.indicators.extra``, fed bar by bar through an
``IndicatorSet``, equal a batch computation over the full history at EVERY bar, with NaN
exactly where the reference is NaN.

References: TA-Lib's STOCHRSI and candlestick functions; for vwap, pvi, the volume profile
(and its hvn_* helpers) and RSI divergence, plain loops over the full arrays written here,
independently of the incremental code. All comparisons are bit for bit: stochrsi and
rsi_divergence replay the bundled TA-Lib build's RSI exactly, the others fix their arithmetic
order (see the module docstring of ``extra``). TA-Lib functions are causal, so one batch run
over the whole series gives, at bar i, the value of a batch run over bars 0..i (checked at a
few cut points too).

Data: random walks with flat stretches, zero-volume (empty) bars, tick-quantised prices and a
tiny-priced pair, on 1m, 1h and 1d open times across UTC midnights; and Binance's real XRPETH
1m and 5m klines from ../shared/data/binance (skipped when that folder is absent)."""

from __future__ import annotations

import functools
import json
import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import talib

from flows.indicators import REGISTRY, IndicatorSet, Spec
from flows.indicators.extra import (
    PATTERNS,
    Pattern,
    hvn_above,
    hvn_below,
    hvn_count,
    hvn_near,
    pattern_lookback,
)
from tests.contract.test_indicator_parity import CASES as LIBRARY_CASES

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "binance"
MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
# 2024-03-09 22:00 UTC: 1m bars cross midnight after 120 bars
START = 1_710_021_600_000
Arrays = dict[str, np.ndarray]

STOCHRSI_ARGS = [(14, 14, 3), (14, 5, 3), (5, 14, 3), (7, 3, 1), (2, 2, 2), (21, 9, 5)]
VWAP_ARGS = [0, 1, 20, 60]
VPROFILE_ARGS = [(100, 24), (50, 10), (20, 1), (30, 7), (3, 5)]
DIVERGENCE_ARGS = [(14, 30), (5, 10), (2, 1)]
HVN_PCTS = [0.1, 0.5, 2.0]

SPECS: list[Spec] = [
    *(("stochrsi", a) for a in STOCHRSI_ARGS),
    *(("vwap", (p,)) for p in VWAP_ARGS),
    ("pvi", ()),
    *(("vprofile", a) for a in VPROFILE_ARGS),
    *(("rsi_divergence", a) for a in DIVERGENCE_ARGS),
    *(("pattern", (name,)) for name in PATTERNS),
]


# ---------------------------------------------------------------- data


def make_bars(
    seed: int,
    n: int,
    interval: int,
    price: float = 100.0,
    tick: float | None = None,
    empty_from: int = 120,
) -> Arrays:
    """Random-walk klines: some unchanged closes, some empty bars (flat at the previous close,
    zero volume, no trades, as Binance emits them), one run of empty bars starting at bar
    ``empty_from``, and optionally prices rounded to ``tick``."""
    rng = np.random.default_rng(seed)
    close = price * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    open_ = np.empty(n)
    open_[0] = price
    open_[1:] = close[:-1] * (1.0 + rng.normal(0.0, 0.001, n - 1))
    high = np.maximum(open_, close) * (1.0 + np.abs(rng.normal(0.0, 0.004, n)))
    low = np.minimum(open_, close) * (1.0 - np.abs(rng.normal(0.0, 0.004, n)))
    if tick is not None:
        open_, high, low, close = (np.round(a / tick) * tick for a in (open_, high, low, close))
    volume = rng.lognormal(3.0, 1.0, n)
    volume[rng.random(n) < 0.05] = 10.0  # repeated volumes: ties for pvi
    trades = np.floor(volume) + 1.0
    empty = rng.random(n) < 0.08
    empty[empty_from : empty_from + 15] = True
    empty[0] = False
    flat = (rng.random(n) < 0.05) & ~empty
    for i in range(1, n):
        if flat[i]:
            close[i] = close[i - 1]
            high[i] = max(high[i], close[i])
            low[i] = min(low[i], close[i])
        if empty[i]:
            open_[i] = high[i] = low[i] = close[i] = close[i - 1]
            volume[i] = trades[i] = 0.0
    return {
        "open": open_,
        "high": high,
        "low": low,
        "close": close,
        "volume": volume,
        "quote_volume": volume * close,
        "trades": trades,
        "time": START + interval * np.arange(n, dtype=np.float64),
    }


def load_real(name: str) -> Arrays:
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"real Binance data not available at {path}")
    rows = np.array(json.loads(path.read_text()), dtype=np.float64)
    close, volume = rows[:, 4], rows[:, 5]
    return {
        "time": rows[:, 0],
        "open": rows[:, 1],
        "high": rows[:, 2],
        "low": rows[:, 3],
        "close": close,
        "volume": volume,
        "quote_volume": volume * close,  # not in the file; only carried through
        "trades": (volume > 0).astype(np.float64),
    }


DATASETS: dict[str, Any] = {
    "rw-1m": lambda: make_bars(1, 3000, MINUTE),
    "rw-1m-ticks": lambda: make_bars(2, 3000, MINUTE, tick=0.01),
    "rw-1m-tiny-price": lambda: make_bars(3, 2000, MINUTE, price=2e-6, tick=1e-10),
    "rw-1h": lambda: make_bars(4, 1500, HOUR, empty_from=2),
    "rw-1d": lambda: make_bars(5, 400, DAY),
    "xrpeth-1m": lambda: load_real("XRPETH-klines-1m-ohlcv.json"),
    "xrpeth-5m": lambda: load_real("XRPETH-klines-5m-ohlcv.json"),
}
BAR_FIELDS = ("open", "high", "low", "close", "volume", "quote_volume", "trades", "time")


@functools.cache
def dataset(name: str) -> Arrays:
    return DATASETS[name]()


def feed(iset: IndicatorSet, data: Arrays, lo: int, hi: int) -> dict[Spec, list[Any]]:
    out: dict[Spec, list[Any]] = {spec: [] for spec in SPECS}
    for i in range(lo, hi):
        iset.on_bar(*(float(data[f][i]) for f in BAR_FIELDS))
        for spec in SPECS:
            out[spec].append(iset.value(spec))
    return out


def new_set() -> IndicatorSet:
    iset = IndicatorSet()
    for spec in SPECS:
        assert iset.get(spec).spec == spec
    return iset


@functools.cache
def streamed(name: str) -> dict[Spec, list[Any]]:
    """Every spec's value at every bar, all sharing one IndicatorSet."""
    data = dataset(name)
    return feed(new_set(), data, 0, len(data["close"]))


# ---------------------------------------------------------------- batch references


def ref_vwap(data: Arrays, period: int) -> list[tuple[float, float]]:
    h, lo, c, v, t = (data[f].tolist() for f in ("high", "low", "close", "volume", "time"))

    def result(sv: float, spv: float, spv2: float) -> tuple[float, float]:
        if sv == 0.0:
            return (math.nan, math.nan)
        mean = spv / sv
        return (mean, math.sqrt(max(0.0, spv2 / sv - mean**2)))

    out = []
    sv = spv = spv2 = 0.0
    for i in range(len(c)):
        if period == 0:  # one running session per UTC day of the open time
            if i == 0 or math.floor(t[i] / DAY) != math.floor(t[i - 1] / DAY):
                sv = spv = spv2 = 0.0
            tp = (h[i] + lo[i] + c[i]) / 3.0
            sv += v[i]
            spv += v[i] * tp
            spv2 += v[i] * tp * tp
            out.append(result(sv, spv, spv2))
        elif i < period - 1:
            out.append((math.nan, math.nan))
        else:  # the window's sums afresh, oldest bar first
            sv = spv = spv2 = 0.0
            for k in range(i - period + 1, i + 1):
                tp = (h[k] + lo[k] + c[k]) / 3.0
                sv += v[k]
                spv += v[k] * tp
                spv2 += v[k] * tp * tp
            out.append(result(sv, spv, spv2))
    return out


def ref_pvi(data: Arrays) -> list[float]:
    c, v = data["close"].tolist(), data["volume"].tolist()
    out = [1000.0]
    for i in range(1, len(c)):
        prev = out[-1]
        out.append(prev * (1.0 + (c[i] - c[i - 1]) / c[i - 1]) if v[i] > v[i - 1] else prev)
    return out


def ref_nodes(data: Arrays, i: int, period: int, bins: int) -> tuple[float, ...]:
    if i < period - 1:
        return (math.nan,)
    rows = range(i - period + 1, i + 1)
    h, lo, c, v = (data[f].tolist() for f in ("high", "low", "close", "volume"))
    bottom, top = min(lo[k] for k in rows), max(h[k] for k in rows)
    if bottom == top:
        return (bottom,)
    width = (top - bottom) / bins
    hist = [0.0] * bins
    for k in rows:
        tp = (h[k] + lo[k] + c[k]) / 3.0
        hist[max(0, min(int((tp - bottom) / width), bins - 1))] += v[k]
    mean = sum(hist) / bins
    nodes = []
    for b in range(bins):
        left = hist[b - 1] if b > 0 else -math.inf
        right = hist[b + 1] if b < bins - 1 else -math.inf
        if hist[b] >= 1.5 * mean and hist[b] > left and hist[b] >= right:
            nodes.append(bottom + (b + 0.5) * width)
    return tuple(nodes)


def ref_hvn(nodes: tuple[float, ...], close: float, pct: float) -> tuple[Any, ...]:
    """(near, count, above, below) by plain loops."""
    if nodes and math.isnan(nodes[0]):
        return (math.nan, math.nan, math.nan, math.nan)
    count = 0
    above = below = math.nan
    for x in nodes:
        if abs(x - close) <= abs(close) * pct / 100.0:
            count += 1
        if x > close and (math.isnan(above) or x < above):
            above = x
        if x < close and (math.isnan(below) or x > below):
            below = x
    return (count > 0, float(count), above, below)


def ref_divergence(data: Arrays, period: int, lookback: int) -> list[tuple[float, float]]:
    rsi = talib.RSI(data["close"], period)
    low, high = data["low"], data["high"]
    out: list[tuple[float, float]] = []
    for i in range(len(rsi)):
        if i < period + lookback:
            out.append((math.nan, math.nan))
            continue
        bull = bear = 0.0
        j_low = j_high = None
        for j in range(i - lookback, i):  # oldest to newest: ties keep the most recent
            if j_low is None or low[j] <= low[j_low]:
                j_low = j
            if j_high is None or high[j] >= high[j_high]:
                j_high = j
        assert j_low is not None and j_high is not None
        if low[i] < low[j_low] and rsi[i] > rsi[j_low]:
            bull = 1.0
        if high[i] > high[j_high] and rsi[i] < rsi[j_high]:
            bear = 1.0
        out.append((bull, bear))
    return out


# ---------------------------------------------------------------- helpers


def same(got: float, want: float) -> bool:
    if math.isnan(want) or math.isnan(got):
        return math.isnan(want) and math.isnan(got)
    return got == want


def assert_rows(spec: Spec, got: list[Any], want: list[Any]) -> None:
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        g_t = g if isinstance(g, tuple) else (g,)
        w_t = w if isinstance(w, tuple) else (w,)
        assert len(g_t) == len(w_t), (spec, i, g, w)
        assert all(same(float(a), float(b)) for a, b in zip(g_t, w_t, strict=True)), (
            spec,
            i,
            g,
            w,
        )


def first_defined(values: list[Any]) -> int | None:
    for i, v in enumerate(values):
        t = v if isinstance(v, tuple) else (v,)
        if t and not any(math.isnan(x) for x in t):
            return i
    return None


DATASET_IDS = list(DATASETS)


# ---------------------------------------------------------------- parity tests


def test_every_registered_indicator_is_covered() -> None:
    ours = {name for name, _ in SPECS}
    assert ours | {name for name, _ in LIBRARY_CASES} == set(REGISTRY)
    assert ours.isdisjoint(name for name, _ in LIBRARY_CASES)


@pytest.mark.parametrize("args", STOCHRSI_ARGS, ids=str)
@pytest.mark.parametrize("name", DATASET_IDS)
def test_stochrsi_equals_talib(name: str, args: tuple[int, int, int]) -> None:
    data, spec = dataset(name), ("stochrsi", args)
    period, fastk, fastd = args
    k, d = talib.STOCHRSI(data["close"], period, fastk, fastd, 0)
    got = streamed(name)[spec]
    assert_rows(spec, got, list(zip(k.tolist(), d.tolist(), strict=True)))
    warmup = period + fastk + fastd - 1
    assert first_defined(got) == warmup - 1
    for cut in (warmup - 1, warmup + 7, len(k) // 2):  # the batch is causal
        k_cut, d_cut = talib.STOCHRSI(data["close"][: cut + 1], period, fastk, fastd, 0)
        assert same(k_cut[-1], k[cut]) and same(d_cut[-1], d[cut])


def test_stochrsi_uses_fastk_for_the_stochastic_window() -> None:
    # TA-Lib's STOCHRSI is STOCHF(fastk, fastd) over RSI(timeperiod): %K is not smoothed
    data = dataset("rw-1m")
    rsi = talib.RSI(data["close"], 14)
    k, d = talib.STOCHF(rsi, rsi, rsi, 5, 3, 0)
    got = streamed("rw-1m")[("stochrsi", (14, 5, 3))]
    assert_rows(("stochrsi", (14, 5, 3)), got, list(zip(k.tolist(), d.tolist(), strict=True)))


@pytest.mark.parametrize("period", VWAP_ARGS)
@pytest.mark.parametrize("name", DATASET_IDS)
def test_vwap_equals_batch(name: str, period: int) -> None:
    spec = ("vwap", (period,))
    got = streamed(name)[spec]
    assert_rows(spec, got, ref_vwap(dataset(name), period))
    assert sum(not math.isnan(v[1]) for v in got) > len(got) // 2


def assert_fresh_session(data: Arrays, i: int, value: tuple[float, float]) -> None:
    """A session of the single bar i: its typical price, no spread (rounding noise only)."""
    v = float(data["volume"][i])
    tp = (float(data["high"][i]) + float(data["low"][i]) + float(data["close"][i])) / 3.0
    if v > 0:
        assert value[0] == v * tp / v and value[0] == pytest.approx(tp, rel=1e-15)
        assert 0.0 <= value[1] <= 1e-6 * tp
    else:
        assert math.isnan(value[0]) and math.isnan(value[1])


@pytest.mark.parametrize("name", ["rw-1m", "rw-1h", "xrpeth-1m"])
def test_session_vwap_restarts_at_utc_midnight(name: str) -> None:
    data = dataset(name)
    got = streamed(name)[("vwap", (0,))]
    day = np.floor(data["time"] / DAY)
    starts = [i for i in range(1, len(day)) if day[i] != day[i - 1]]
    assert starts  # the data crosses midnight
    for i in starts:
        assert_fresh_session(data, i, got[i])


def test_session_vwap_of_an_empty_session_start_is_nan() -> None:
    data = dataset("rw-1m")
    got = streamed("rw-1m")[("vwap", (0,))]
    # bars 120..134 are empty and 120 is the first bar of 2024-03-10
    assert data["time"][120] % DAY == 0
    assert all(math.isnan(got[i][0]) and math.isnan(got[i][1]) for i in range(120, 135))
    assert not math.isnan(got[135][0])


def test_daily_bars_are_each_their_own_session() -> None:
    data = dataset("rw-1d")
    got = streamed("rw-1d")[("vwap", (0,))]
    for i, value in enumerate(got):
        assert_fresh_session(data, i, value)


def test_vwap_without_open_times_is_undefined() -> None:
    iset = IndicatorSet()
    spec = ("vwap", (0,))
    iset.get(spec)
    iset.on_bar(1.0, 2.0, 0.5, 1.5, 10.0)  # no time given
    assert all(math.isnan(x) for x in iset.value(spec))
    iset.on_bar(1.0, 2.0, 0.5, 1.5, 10.0, time=float(START))
    assert iset.value(spec) == ((2.0 + 0.5 + 1.5) / 3.0, 0.0)


@pytest.mark.parametrize("name", DATASET_IDS)
def test_pvi_equals_batch(name: str) -> None:
    got = streamed(name)[("pvi", ())]
    assert_rows(("pvi", ()), got, ref_pvi(dataset(name)))
    assert got[0] == 1000.0


@pytest.mark.parametrize("args", VPROFILE_ARGS, ids=str)
@pytest.mark.parametrize("name", DATASET_IDS)
def test_volume_profile_equals_batch(name: str, args: tuple[int, int]) -> None:
    data, spec = dataset(name), ("vprofile", args)
    got = streamed(name)[spec]
    want = [ref_nodes(data, i, *args) for i in range(len(data["close"]))]
    assert_rows(spec, got, want)
    defined = [g for g in got[args[0] - 1 :]]
    assert all(list(g) == sorted(g) for g in defined)
    if args[1] > 1:
        assert any(len(g) > 0 for g in defined)
    # the helpers on top of the value
    closes = data["close"].tolist()
    for i, nodes in enumerate(got):
        for pct in HVN_PCTS:
            near, count, above, below = ref_hvn(want[i], closes[i], pct)
            assert same(float(hvn_near(nodes, closes[i], pct)), float(near)), (i, nodes)
            assert same(hvn_count(nodes, closes[i], pct), count), (i, nodes)
        assert same(hvn_above(nodes, closes[i]), above), (i, nodes)
        assert same(hvn_below(nodes, closes[i]), below), (i, nodes)


def test_volume_profile_edge_cases() -> None:
    iset = IndicatorSet()
    spec = ("vprofile", (3, 4))
    iset.get(spec)
    iset.on_bar(5.0, 5.0, 5.0, 5.0, 0.0, time=float(START))
    assert len(iset.value(spec)) == 1 and math.isnan(iset.value(spec)[0])
    iset.on_bar(5.0, 5.0, 5.0, 5.0, 0.0, time=float(START + MINUTE))
    iset.on_bar(5.0, 5.0, 5.0, 5.0, 0.0, time=float(START + 2 * MINUTE))
    assert iset.value(spec) == (5.0,)  # flat range: its one price, volume or not
    iset.on_bar(5.0, 5.0, 5.0, 5.0, 7.0, time=float(START + 3 * MINUTE))
    assert iset.value(spec) == (5.0,)
    # range [0, 8]: bins of 2; typical prices 1 (bin 0), 7 and 8 (bin 3, which holds hi);
    # volumes [1, 0, 0, 10], mean 2.75: bin 3 is the only node, centred at 7
    iset.on_bar(0.0, 3.0, 0.0, 0.0, 1.0, time=float(START + 4 * MINUTE))
    iset.on_bar(7.0, 8.0, 6.0, 7.0, 5.0, time=float(START + 5 * MINUTE))
    iset.on_bar(8.0, 8.0, 8.0, 8.0, 5.0, time=float(START + 6 * MINUTE))
    assert iset.value(spec) == (7.0,)


def test_hvn_helpers_by_hand() -> None:
    nodes = (90.0, 99.5, 101.0, 120.0)
    assert hvn_near(nodes, 100.0, 1.0) is True
    assert hvn_near(nodes, 110.0, 1.0) is False
    assert hvn_count(nodes, 100.0, 1.0) == 2.0
    assert hvn_count(nodes, 100.0, 0.1) == 0.0
    assert hvn_above(nodes, 100.0) == 101.0
    assert hvn_above(nodes, 101.0) == 120.0  # strictly above
    assert math.isnan(hvn_above(nodes, 120.0))
    assert hvn_below(nodes, 100.0) == 99.5
    assert math.isnan(hvn_below(nodes, 90.0))
    assert hvn_count((), 100.0, 5.0) == 0.0 and hvn_near((), 100.0, 5.0) is False
    warm = (math.nan,)
    for value in (
        hvn_near(warm, 100.0, 1.0),
        hvn_count(warm, 100.0, 1.0),
        hvn_above(warm, 100.0),
        hvn_below(warm, 100.0),
    ):
        assert math.isnan(value)


@pytest.mark.parametrize("args", DIVERGENCE_ARGS, ids=str)
@pytest.mark.parametrize("name", DATASET_IDS)
def test_rsi_divergence_equals_batch(name: str, args: tuple[int, int]) -> None:
    spec = ("rsi_divergence", args)
    got = streamed(name)[spec]
    want = ref_divergence(dataset(name), *args)
    assert_rows(spec, got, want)
    period, lookback = args
    assert first_defined(got) == period + lookback
    assert all(v[0] in (0.0, 1.0) and v[1] in (0.0, 1.0) for v in got[period + lookback :])


def test_rsi_divergence_fires_on_the_data() -> None:
    got = streamed("xrpeth-1m")[("rsi_divergence", (14, 30))]
    assert sum(v[0] == 1.0 for v in got) > 0
    assert sum(v[1] == 1.0 for v in got) > 0


@pytest.mark.parametrize("pattern", list(PATTERNS))
@pytest.mark.parametrize("name", DATASET_IDS)
def test_pattern_equals_talib(name: str, pattern: str) -> None:
    data, spec = dataset(name), ("pattern", (pattern,))
    func = getattr(talib, PATTERNS[pattern])
    batch = func(data["open"], data["high"], data["low"], data["close"]).astype(np.float64)
    lookback = pattern_lookback(PATTERNS[pattern])
    # the batch leaves 0 where it evaluates nothing; the incremental value is NaN there
    assert not batch[:lookback].any()
    want = batch.copy()
    want[:lookback] = math.nan
    got = streamed(name)[spec]
    assert_rows(spec, got, want.tolist())
    assert first_defined(got) == lookback


def test_patterns_fire_on_the_data() -> None:
    for pattern in ("engulfing", "doji", "hammer", "harami", "marubozu"):
        got = np.array(streamed("rw-1m-ticks")[("pattern", (pattern,))])
        assert np.count_nonzero(got[~np.isnan(got)]) > 0, pattern


def test_unknown_pattern_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown pattern"):
        Pattern("nope")
    with pytest.raises(ValueError):
        IndicatorSet().get(("pattern", ("CDLDOJI",)))  # TA-Lib names are not ours


def test_pattern_names_map_to_talib_functions() -> None:
    required = {
        "engulfing",
        "hammer",
        "inverted_hammer",
        "hanging_man",
        "shooting_star",
        "doji",
        "dragonfly_doji",
        "gravestone_doji",
        "morning_star",
        "evening_star",
        "harami",
        "piercing",
        "dark_cloud_cover",
        "three_white_soldiers",
        "three_black_crows",
        "marubozu",
    }
    assert required <= set(PATTERNS)
    patterns = set(talib.get_function_groups()["Pattern Recognition"])
    assert set(PATTERNS.values()) <= patterns


# ---------------------------------------------------------------- set behaviour


@pytest.mark.parametrize("name", ["rw-1m", "xrpeth-1m"])
def test_pickle_mid_stream_continues_identically(name: str) -> None:
    data = dataset(name)
    n = len(data["close"])
    iset = new_set()
    head = feed(iset, data, 0, n // 3)
    clone = pickle.loads(pickle.dumps(iset))
    a = feed(iset, data, n // 3, n)
    b = feed(clone, data, n // 3, n)
    full = streamed(name)
    for spec in SPECS:
        assert_rows(spec, b[spec], a[spec])
        assert_rows(spec, head[spec] + b[spec], full[spec])


def test_specs_are_canonical_and_shared() -> None:
    iset = IndicatorSet()
    stoch = iset.get(("stochrsi", ()))
    assert stoch.spec == ("stochrsi", (14, 14, 3))
    assert iset.get(("stochrsi", (14, 14, 3))) is stoch
    assert iset.get(("vwap", ())).spec == ("vwap", (0,))
    assert iset.get(("vprofile", ())).spec == ("vprofile", (100, 24))
    assert iset.get(("rsi_divergence", ())).spec == ("rsi_divergence", (14, 30))
    assert iset.get(("pattern", ("doji",))) is iset.get(("pattern", ("doji",)))
    assert len(iset.indicators()) == 5


def test_ring_grows_to_the_widest_window() -> None:
    iset = IndicatorSet(capacity=4)
    iset.get(("vprofile", (250, 24)))
    assert iset.series.capacity >= 250
    iset.get(("rsi_divergence", (14, 300)))
    assert iset.series.capacity >= 301


@pytest.mark.parametrize(
    "spec",
    [
        ("stochrsi", (1, 14, 3)),
        ("stochrsi", (14, 0, 3)),
        ("vwap", (-1,)),
        ("vprofile", (0, 24)),
        ("vprofile", (10, 0)),
        ("rsi_divergence", (14, 0)),
    ],
    ids=str,
)
def test_bad_arguments_are_rejected(spec: Spec) -> None:
    with pytest.raises(ValueError):
        IndicatorSet().get(spec)
