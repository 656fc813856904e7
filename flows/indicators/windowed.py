"""TA-Lib window indicators for many symbols at once, bit for bit equal to ``talib``.

Every function takes 2-D windows, shape ``(rows, w)``, float64, oldest bar first, each row one
symbol's newest ``w = lookback + 1`` bars (checked), and returns per row exactly (same bits,
NaN where TA-Lib gives NaN) the value of ``talib.FUNC(row arrays..., same kwargs)[-1]``.

With exactly ``lookback + 1`` bars TA-Lib computes one output through its initial loops, so
replaying the bundled TA-Lib (C 0.8.1) build's order of operations gives the same bits. The
windows are transposed to ``(w, rows)``; ``np.add.reduce`` over axis 0 adds bar after bar (no
pairwise summation), like TA-Lib's ``total += x[i]``, one vectorised step over all rows.
That build: BBANDS takes the variance of the data shifted by the window's first value,
recomputed around the mean when it cancels; CCI, MFI and STOCH test flatness against the
prices' own scale (``1e-14`` relative); STOCH's fast %K is ``((c - lo) / (hi - lo)) * 100``;
MAX/MIN scan back from the newest bar (NaN there gives NaN, other NaN are skipped). The python
wrapper starts at the first bar where no input is NaN, so a NaN in any input's OLDEST bar
gives NaN (0 for patterns). Patterns (``PATTERN_ARRAYS``, keyed like ``extra.PATTERNS``) use
the default candle settings and penetrations, each average summed in order over the bars
before the one it describes.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import cast

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

_EPS = 1e-14  # TA_EPSILON


def _cols(*arrays: FloatArray) -> list[FloatArray]:
    """The windows as contiguous ``(w, rows)`` arrays: row ``i`` holds every symbol's bar i."""
    return [np.ascontiguousarray(a.T, dtype=np.float64) for a in arrays]


def _sum(xt: FloatArray) -> FloatArray:
    """Sum over axis 0, bar after bar, as a C ``total += x[i]`` loop (0.0 if no bars). An
    explicit loop: numpy's own reduction sums pairwise when the axis is contiguous (one
    row), which rounds differently."""
    total = np.zeros(xt.shape[1:])
    for bar in xt:
        total += bar
    return total


def _lead_nan(*arrays: FloatArray) -> BoolArray:
    """Rows where some input's oldest bar is NaN: the wrapper skips it, leaving no output."""
    return cast(BoolArray, np.logical_or.reduce([np.isnan(a[:, 0]) for a in arrays]))


def _width(w: int, *arrays: FloatArray) -> None:
    if any(a.ndim != 2 or a.shape[1] != w for a in arrays):  # other widths give other values
        raise ValueError(f"expected (rows, {w}) windows, got {[a.shape for a in arrays]}")


def _nan_where(mask: BoolArray, x: FloatArray) -> FloatArray:
    return np.where(mask, np.nan, x) if mask.any() else x


def bbands(close: FloatArray, period: int, nbdev: float) -> tuple[FloatArray, ...]:
    """``talib.BBANDS(c, period, nbdev, nbdev, matype=0)``: (upper, middle, lower); w = period."""
    _width(period, close)
    with np.errstate(all="ignore"):
        (ct,) = _cols(close)
        inv = 1.0 / period
        middle = _sum(ct) / period
        t = ct - ct[0]
        s2 = _sum(t * t)
        m1 = _sum(t) * inv
        var = s2 * inv - m1 * m1
        reseed = var < 1e-6 * (s2 * inv)  # (the other trigger, t[0]**2 > 1e6 * S2, is t[0] = 0)
        if reseed.any():
            t = ct[:, reseed] - _sum(ct[:, reseed]) * inv
            r2 = _sum(t * t)
            m1 = _sum(t) * inv
            v = r2 * inv - m1 * m1
            var[reseed] = np.where(v < 1e-12 * (r2 * inv), 0.0, v)
        dev = np.where(var != 0.0, np.sqrt(var), 0.0) * nbdev
        return middle + dev, middle, middle - dev  # a NaN oldest bar makes all three NaN


def cci(high: FloatArray, low: FloatArray, close: FloatArray, period: int) -> FloatArray:
    """``talib.CCI(h, l, c, timeperiod=period)``; w = period."""
    _width(period, high, low, close)
    with np.errstate(all="ignore"):
        (tp,) = _cols((high + low + close) / 3)
        avg = _sum(tp) / period
        dev = _sum(np.abs(tp - avg)) / period
        diff = tp[-1] - avg
        band = _EPS * np.abs(avg)
        live = ~(np.abs(diff) <= band) & ~(np.abs(dev) <= band)
        return np.where(live, diff / (0.015 * dev), 0.0)  # NaN oldest bar: NaN mean, NaN out


def mfi(
    high: FloatArray, low: FloatArray, close: FloatArray, volume: FloatArray, period: int
) -> FloatArray:
    """``talib.MFI(h, l, c, v, timeperiod=period)``; w = period + 1."""
    _width(period + 1, high, low, close, volume)
    with np.errstate(all="ignore"):
        tp, vol = _cols((high + low + close) / 3.0, volume)
        prev, cur = tp[:-1], tp[1:]
        move = cur - prev
        still = np.abs(move) <= _EPS * (np.abs(cur) + np.abs(prev))
        flow = np.where(still, 0.0, cur * vol[1:])
        down = move < 0.0
        pos = _sum(np.where(down, 0.0, flow))
        total = pos + _sum(np.where(down, flow, 0.0))
        pos = np.where(pos < 0.0, 0.0, np.where(pos > total, total, pos))
        out = np.where(total <= 0.0, 0.0, 100.0 * (pos / total))
        return _nan_where(_lead_nan(high, low, close, volume), out)


def _scan_extreme(xt: FloatArray, period: int, lowest: bool) -> FloatArray:
    """STOCH's incremental window min/max (rescan when the extreme leaves), step by step."""
    n, rows = xt.shape[0] - period + 1, xt.shape[1]
    out, idx, best = np.empty((n, rows)), np.full(rows, -1), np.zeros(rows)
    for k in range(n):
        today = k + period - 1
        stale = idx < k
        b, bi = xt[k], np.full(rows, k)
        for i in range(k + 1, today + 1):
            better = xt[i] < b if lowest else xt[i] > b
            b, bi = np.where(better, xt[i], b), np.where(better, i, bi)
        best, idx = np.where(stale, b, best), np.where(stale, bi, idx)
        new = ~stale & ((xt[today] <= best) if lowest else (xt[today] >= best))
        best, idx = np.where(new, xt[today], best), np.where(new, today, idx)
        out[k] = best
    return out


def stoch(
    high: FloatArray, low: FloatArray, close: FloatArray, fastk: int, slowk: int, slowd: int
) -> tuple[FloatArray, FloatArray]:
    """``talib.STOCH(h, l, c, fastk, slowk, 0, slowd, 0)``: (slowk, slowd);
    w = fastk + slowk + slowd - 2."""
    _width(fastk + slowk + slowd - 2, high, low, close)
    with np.errstate(all="ignore"):
        ht, lt, ct = _cols(high, low, close)
        n = ht.shape[0] - fastk + 1  # fast %K values
        hi = np.stack([ht[k : k + fastk].max(axis=0) for k in range(n)])
        lo = np.stack([lt[k : k + fastk].min(axis=0) for k in range(n)])
        odd = np.isnan(_sum(ht) + _sum(lt))  # NaN somewhere (or inf - inf): replay the scan
        if odd.any():
            hi[:, odd] = _scan_extreme(ht[:, odd], fastk, lowest=False)
            lo[:, odd] = _scan_extreme(lt[:, odd], fastk, lowest=True)
        rng = hi - lo
        flat = np.abs(rng) <= _EPS * (np.abs(hi) + np.abs(lo))
        k = np.where(flat, 0.0, ((ct[fastk - 1 :] - lo) / rng) * 100.0)
        total = _sum(k[: slowk - 1])
        slow = np.empty((slowd, k.shape[1]))
        for j in range(slowd):
            total = total + k[slowk - 1 + j]
            slow[j] = total / slowk
            total = total - k[j]
        lead = _lead_nan(high, low, close)
        return _nan_where(lead, slow[-1]), _nan_where(lead, _sum(slow) / slowd)


def _extreme(x: FloatArray, period: int, pick: np.ufunc) -> FloatArray:
    _width(period, x)
    with np.errstate(all="ignore"):
        (xt,) = _cols(x)
        return _nan_where(np.isnan(xt[0]) | np.isnan(xt[-1]), cast(FloatArray, pick.reduce(xt)))


def highest(x: FloatArray, period: int) -> FloatArray:
    """``talib.MAX(x, timeperiod=period)``; w = period."""
    return _extreme(x, period, np.fmax)


def lowest(x: FloatArray, period: int) -> FloatArray:
    """``talib.MIN(x, timeperiod=period)``; w = period."""
    return _extreme(x, period, np.fmin)


# --- candlestick patterns -------------------------------------------------------------------

# TA-Lib's default candle settings: name -> (range: 0 |c - o|, 1 h - l; bars averaged, factor)
_SETTINGS: dict[str, tuple[int, int, float]] = {
    "BodyLong": (0, 10, 1.0),
    "BodyShort": (0, 10, 1.0),
    "BodyDoji": (1, 10, 0.1),
    "ShadowLong": (0, 0, 1.0),
    "ShadowVeryLong": (0, 0, 2.0),
    "ShadowVeryShort": (1, 10, 0.1),
    "Near": (1, 5, 0.2),
    "Far": (1, 5, 0.6),
}


def _max(a: FloatArray, b: FloatArray) -> FloatArray:
    return np.where(a > b, a, b)  # TA-Lib's max() macro, NaN behaviour included


def _min(a: FloatArray, b: FloatArray) -> FloatArray:
    return np.where(a < b, a, b)


class _Bars:
    """Candle windows as ``(w, rows)`` arrays; bar ``k`` counts back from the newest (0)."""

    def __init__(self, *ohlc: FloatArray) -> None:
        self.ohlc = _cols(*ohlc)
        self.w = self.ohlc[0].shape[0]
        self._bars: list[list[FloatArray]] = [list(a[::-1]) for a in self.ohlc]  # newest first
        self._avgs: dict[tuple[str, int], FloatArray] = {}

    def o(self, k: int = 0) -> FloatArray:
        return self._bars[0][k]

    def hi(self, k: int = 0) -> FloatArray:
        return self._bars[1][k]

    def lo(self, k: int = 0) -> FloatArray:
        return self._bars[2][k]

    def c(self, k: int = 0) -> FloatArray:
        return self._bars[3][k]

    def white(self, k: int = 0) -> BoolArray:  # TA_CANDLECOLOR == 1; NaN counts as black
        return self.c(k) >= self.o(k)

    def body(self, k: int = 0) -> FloatArray:
        return np.abs(self.c(k) - self.o(k))

    def upper(self, k: int = 0) -> FloatArray:
        return self.hi(k) - np.where(self.white(k), self.c(k), self.o(k))

    def lower(self, k: int = 0) -> FloatArray:
        return np.where(self.white(k), self.o(k), self.c(k)) - self.lo(k)

    def gap_up(self, k: int) -> BoolArray:  # real body of bar k above that of bar k + 1
        return _min(self.o(k), self.c(k)) > _max(self.o(k + 1), self.c(k + 1))

    def gap_down(self, k: int) -> BoolArray:
        return _max(self.o(k), self.c(k)) < _min(self.o(k + 1), self.c(k + 1))

    def avg(self, name: str, k: int = 0) -> FloatArray:
        """TA_CANDLEAVERAGE of ``name`` for bar ``k``: over the bars before it, summed in order."""
        if (name, k) not in self._avgs:
            kind, period, factor = _SETTINGS[name]
            j = self.w - 1 - k
            o, h, lo, c = (a[j - period : j] if period else a[j : j + 1] for a in self.ohlc)
            r = np.abs(c - o) if kind == 0 else h - lo  # (the Shadows range type is unused)
            mean = _sum(r) / period if period else r[0]
            self._avgs[name, k] = factor * mean  # TA-Lib then divides by 1.0 (2.0 for Shadows)
        return self._avgs[name, k]


PatternFunc = Callable[[FloatArray, FloatArray, FloatArray, FloatArray], FloatArray]
Rule = Callable[[_Bars], FloatArray]
PATTERN_ARRAYS: dict[str, PatternFunc] = {}


def _pattern(name: str, func: str, w: int) -> Callable[[Rule], PatternFunc]:
    """Register ``rule`` as project pattern ``name``, equal to ``talib.<func>`` over w bars."""

    def wrap(rule: Rule) -> PatternFunc:
        def run(o: FloatArray, h: FloatArray, lo: FloatArray, c: FloatArray) -> FloatArray:
            _width(w, o, h, lo, c)
            with np.errstate(all="ignore"):
                out = np.asarray(rule(_Bars(o, h, lo, c)), dtype=np.float64)
                lead = _lead_nan(o, h, lo, c)
                return np.where(lead, 0.0, out) if lead.any() else out

        run.__name__ = name
        run.__doc__ = f"``talib.{func}(o, h, l, c)[-1]`` per row, as a float; w = {w}."
        PATTERN_ARRAYS[name] = run
        return run

    return wrap


def _sign(white: BoolArray) -> FloatArray:
    return np.where(white, 1.0, -1.0)


def _hammer(inverted: bool, bearish: bool, b: _Bars) -> FloatArray:
    """Small body, one long shadow, the other very short; then where it sits."""
    long_side, short_side = (b.upper(), b.lower()) if inverted else (b.lower(), b.upper())
    shape = (b.body() < b.avg("BodyShort")) & (long_side > b.avg("ShadowLong"))
    shape &= short_side < b.avg("ShadowVeryShort")
    if inverted:  # inverted hammer (gap down), shooting star (gap up)
        shape &= b.gap_up(0) if bearish else b.gap_down(0)
    elif bearish:  # hanging man: body near the prior high
        shape &= _min(b.c(), b.o()) >= b.hi(1) - b.avg("Near", 1)
    else:  # hammer: body near the prior low
        shape &= _min(b.c(), b.o()) <= b.lo(1) + b.avg("Near", 1)
    return np.where(shape, -100.0 if bearish else 100.0, 0.0)


hammer = _pattern("hammer", "CDLHAMMER", 12)(partial(_hammer, False, False))
hanging_man = _pattern("hanging_man", "CDLHANGINGMAN", 12)(partial(_hammer, False, True))
inverted_hammer = _pattern("inverted_hammer", "CDLINVERTEDHAMMER", 12)(
    partial(_hammer, True, False)
)
shooting_star = _pattern("shooting_star", "CDLSHOOTINGSTAR", 12)(partial(_hammer, True, True))


def _marubozu(b: _Bars, k: int) -> BoolArray:
    vs = b.avg("ShadowVeryShort", k)
    return (b.body(k) > b.avg("BodyLong", k)) & (b.upper(k) < vs) & (b.lower(k) < vs)


def _inside(b: _Bars, k: int) -> tuple[BoolArray, BoolArray]:
    """Body of bar k strictly inside, and inside or touching, the body of bar k + 1."""
    t, bo = _max(b.c(k), b.o(k)), _min(b.c(k), b.o(k))  # TA-Lib: max/min(close, open)
    t1, b1 = _max(b.c(k + 1), b.o(k + 1)), _min(b.c(k + 1), b.o(k + 1))
    return (t < t1) & (bo > b1), (t <= t1) & (bo >= b1)


@_pattern("engulfing", "CDLENGULFING", 3)
def engulfing(b: _Bars) -> FloatArray:
    w0, w1, o0, c0, o1, c1 = b.white(0), b.white(1), b.o(0), b.c(0), b.o(1), b.c(1)
    bull = w0 & ~w1 & (((c0 >= o1) & (o0 < c1)) | ((c0 > o1) & (o0 <= c1)))
    bear = ~w0 & w1 & (((o0 >= c1) & (c0 < o1)) | ((o0 > c1) & (c0 <= o1)))
    strict = (o0 != c1) & (c0 != o1)
    return np.where(bull | bear, _sign(w0) * np.where(strict, 100.0, 80.0), 0.0)


@_pattern("doji", "CDLDOJI", 11)
def doji(b: _Bars) -> FloatArray:
    return np.where(b.body() <= b.avg("BodyDoji"), 100.0, 0.0)


def _doji_shadow(upper_long: bool, b: _Bars) -> FloatArray:
    """Doji body, one shadow very short, the other not (dragonfly, gravestone)."""
    vs = b.avg("ShadowVeryShort")
    short, other = (b.lower(), b.upper()) if upper_long else (b.upper(), b.lower())
    return np.where((b.body() <= b.avg("BodyDoji")) & (short < vs) & (other > vs), 100.0, 0.0)


dragonfly_doji = _pattern("dragonfly_doji", "CDLDRAGONFLYDOJI", 11)(partial(_doji_shadow, False))
gravestone_doji = _pattern("gravestone_doji", "CDLGRAVESTONEDOJI", 11)(partial(_doji_shadow, True))


@_pattern("long_legged_doji", "CDLLONGLEGGEDDOJI", 11)
def long_legged_doji(b: _Bars) -> FloatArray:
    sl = b.avg("ShadowLong")
    hit = (b.body() <= b.avg("BodyDoji")) & ((b.lower() > sl) | (b.upper() > sl))
    return np.where(hit, 100.0, 0.0)


@_pattern("takuri", "CDLTAKURI", 11)
def takuri(b: _Bars) -> FloatArray:
    doji_body = b.body() <= b.avg("BodyDoji")
    hit = doji_body & (b.upper() < b.avg("ShadowVeryShort"))
    return np.where(hit & (b.lower() > b.avg("ShadowVeryLong")), 100.0, 0.0)


@_pattern("marubozu", "CDLMARUBOZU", 11)
def marubozu(b: _Bars) -> FloatArray:
    return np.where(_marubozu(b, 0), _sign(b.white()), 0.0) * 100.0


def _one_sided(closing: bool, b: _Bars) -> FloatArray:
    """Long body, very short shadow on the closing (or the opening) side."""
    white, vs = b.white(), b.avg("ShadowVeryShort")
    side = np.where(white == closing, b.upper() < vs, b.lower() < vs)
    return np.where((b.body() > b.avg("BodyLong")) & side, _sign(white) * 100.0, 0.0)


closing_marubozu = _pattern("closing_marubozu", "CDLCLOSINGMARUBOZU", 11)(partial(_one_sided, True))
belt_hold = _pattern("belt_hold", "CDLBELTHOLD", 11)(partial(_one_sided, False))


@_pattern("spinning_top", "CDLSPINNINGTOP", 11)
def spinning_top(b: _Bars) -> FloatArray:
    body = b.body()
    hit = (b.upper() > body) & (b.lower() > body) & (body < b.avg("BodyShort"))
    return np.where(hit, _sign(b.white()) * 100.0, 0.0)


def _harami(second: str, b: _Bars) -> FloatArray:
    long1 = b.body(1) > b.avg("BodyLong", 1)
    strict, loose = _inside(b, 0)
    score = np.where(strict, 100.0, np.where(loose, 80.0, 0.0)) * -_sign(b.white(1))
    return np.where(long1 & (b.body() <= b.avg(second)), score, 0.0)


harami = _pattern("harami", "CDLHARAMI", 12)(partial(_harami, "BodyShort"))
harami_cross = _pattern("harami_cross", "CDLHARAMICROSS", 12)(partial(_harami, "BodyDoji"))


@_pattern("piercing", "CDLPIERCING", 12)
def piercing(b: _Bars) -> FloatArray:
    o0, c0, o1, c1 = b.o(0), b.c(0), b.o(1), b.c(1)
    longs = (b.body(1) > b.avg("BodyLong", 1)) & (b.body() > b.avg("BodyLong"))
    shape = ~b.white(1) & b.white() & (o0 < b.lo(1)) & (c0 < o1) & (c0 > c1 + b.body(1) * 0.5)
    return np.where(longs & shape, 100.0, 0.0)


@_pattern("dark_cloud_cover", "CDLDARKCLOUDCOVER", 12)
def dark_cloud_cover(b: _Bars) -> FloatArray:
    o0, c0, o1, c1 = b.o(0), b.c(0), b.o(1), b.c(1)
    first = b.white(1) & (b.body(1) > b.avg("BodyLong", 1))
    shape = ~b.white() & (o0 > b.hi(1)) & (c0 > o1) & (c0 < c1 - b.body(1) * 0.5)
    return np.where(first & shape, -100.0, 0.0)


@_pattern("kicking", "CDLKICKING", 12)
def kicking(b: _Bars) -> FloatArray:
    w1 = b.white(1)
    gap = np.where(w1, b.hi() < b.lo(1), b.lo() > b.hi(1))
    hit = (w1 != b.white()) & _marubozu(b, 1) & _marubozu(b, 0) & gap
    return np.where(hit, _sign(b.white()) * 100.0, 0.0)


@_pattern("doji_star", "CDLDOJISTAR", 12)
def doji_star(b: _Bars) -> FloatArray:
    w1 = b.white(1)
    star = (b.body(1) > b.avg("BodyLong", 1)) & (b.body() <= b.avg("BodyDoji"))
    return np.where(star & np.where(w1, b.gap_up(0), b.gap_down(0)), -_sign(w1) * 100.0, 0.0)


def _star(bullish: bool, doji: bool, b: _Bars) -> FloatArray:
    """Morning/evening (doji) star with TA-Lib's default penetration 0.3."""
    middle = "BodyDoji" if doji else "BodyShort"
    first, third = (~b.white(2), b.white()) if bullish else (b.white(2), ~b.white())
    gap = b.gap_down(1) if bullish else b.gap_up(1)
    deep = b.body(2) * 0.3
    close = b.c() > b.c(2) + deep if bullish else b.c() < b.c(2) - deep
    sizes = (b.body(2) > b.avg("BodyLong", 2)) & (b.body(1) <= b.avg(middle, 1))
    sizes &= b.body() > b.avg("BodyShort")
    return np.where(first & third & gap & close & sizes, 100.0 if bullish else -100.0, 0.0)


morning_star = _pattern("morning_star", "CDLMORNINGSTAR", 13)(partial(_star, True, False))
evening_star = _pattern("evening_star", "CDLEVENINGSTAR", 13)(partial(_star, False, False))
morning_doji_star = _pattern("morning_doji_star", "CDLMORNINGDOJISTAR", 13)(
    partial(_star, True, True)
)
evening_doji_star = _pattern("evening_doji_star", "CDLEVENINGDOJISTAR", 13)(
    partial(_star, False, True)
)


@_pattern("three_white_soldiers", "CDL3WHITESOLDIERS", 13)
def three_white_soldiers(b: _Bars) -> FloatArray:
    hit = b.body() > b.avg("BodyShort")
    for k in (2, 1, 0):
        hit &= b.white(k) & (b.upper(k) < b.avg("ShadowVeryShort", k))
    for k in (1, 0):
        hit &= (b.c(k) > b.c(k + 1)) & (b.o(k) > b.o(k + 1))
        hit &= b.o(k) <= b.c(k + 1) + b.avg("Near", k + 1)
        hit &= b.body(k) > b.body(k + 1) - b.avg("Far", k + 1)
    return np.where(hit, 100.0, 0.0)


@_pattern("three_black_crows", "CDL3BLACKCROWS", 14)
def three_black_crows(b: _Bars) -> FloatArray:
    hit = b.white(3) & (b.hi(3) > b.c(2))
    for k in (2, 1, 0):
        hit &= ~b.white(k) & (b.lower(k) < b.avg("ShadowVeryShort", k))
    for k in (1, 0):
        hit &= (b.o(k) < b.o(k + 1)) & (b.o(k) > b.c(k + 1)) & (b.c(k + 1) > b.c(k))
    return np.where(hit, -100.0, 0.0)


@_pattern("three_inside", "CDL3INSIDE", 13)
def three_inside(b: _Bars) -> FloatArray:
    w2 = b.white(2)
    turn = np.where(w2, ~b.white() & (b.c() < b.o(2)), b.white() & (b.c() > b.o(2)))
    sizes = (b.body(2) > b.avg("BodyLong", 2)) & (b.body(1) <= b.avg("BodyShort", 1))
    return np.where(_inside(b, 1)[0] & turn & sizes, -_sign(w2) * 100.0, 0.0)


@_pattern("three_outside", "CDL3OUTSIDE", 4)
def three_outside(b: _Bars) -> FloatArray:
    w1, w2, o1, c1, o2, c2, c0 = b.white(1), b.white(2), b.o(1), b.c(1), b.o(2), b.c(2), b.c()
    bull = w1 & ~w2 & (c1 > o2) & (o1 < c2) & (c0 > c1)
    bear = ~w1 & w2 & (o1 > c2) & (c1 < o2) & (c0 < c1)
    return np.where(bull | bear, _sign(w1) * 100.0, 0.0)


@_pattern("hikkake", "CDLHIKKAKE", 6)
def hikkake(b: _Bars) -> FloatArray:
    """Replays TA-Lib's state machine: the pattern, then a confirmation within 3 bars."""
    zeros = np.zeros(b.c().shape[0])
    cd, result, saved_hi, saved_lo, out = zeros.astype(np.int64), zeros, zeros, zeros, zeros
    for k in (3, 2, 1, 0):
        h0, l0, h1, l1, c0 = b.hi(k), b.lo(k), b.hi(k + 1), b.lo(k + 1), b.c(k)
        inside = (h1 < b.hi(k + 2)) & (l1 > b.lo(k + 2))
        found = inside & (((h0 < h1) & (l0 < l1)) | ((h0 > h1) & (l0 > l1)))
        result = np.where(found, np.where(h0 < h1, 100.0, -100.0), result)
        saved_hi, saved_lo = np.where(found, h1, saved_hi), np.where(found, l1, saved_lo)
        breakout = ((result > 0) & (c0 > saved_hi)) | ((result < 0) & (c0 < saved_lo))
        confirm = ~found & (cd > 0) & breakout
        cd = np.where(found, 4, np.where(confirm, 0, cd))
        out = np.where(found, result, np.where(confirm, result + 100.0 * np.sign(result), 0.0))
        cd = np.where(cd > 0, cd - 1, cd)
    return out
