"""One symbol's closed bars of one interval, with the shared indicators rules read on them.

A ``Frame`` holds a ``BarSeries`` ring, one indicator instance per distinct spec (however many
rules use it) and the recent values of each, deep enough for the furthest earlier bar any rule
reads (``rsi(14)[3]`` needs four). Bars arrive in open-time order; a bar at or before the
newest one is ignored, so overlapping seeds and re-deliveries are harmless.

An indicator added to a frame that has already seen bars would start cold, so requirements
are never added in place: ``Frame.rebuilt`` makes a new frame with the new requirements and
feeds it the bars of the old one (plus older ones from storage when the ring is too short),
and the indicators come out as if they had been there from the first bar.

An indicator that raises (when made, or on any bar) is not allowed to stop the frame: it
is dropped from the frame with the error kept, the other indicators go on, and reading it
raises ``IndicatorFailed``, which switches off, for this symbol only, each rule that reads
it (see ``flows.signals.engine``). The checker's ranges keep every indicator a rule can name
constructible; this is the backstop for what they cannot foresee (a data engineer's helper,
a numeric library's surprise).

Everything here is plain Python and numpy, so a frame pickles into recovery snapshots.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from math import isfinite

from flows.domain.intervals import INTERVALS, MINUTE_MS
from flows.domain.kline import Kline
from flows.domain.money import SCALE as UNITS_PER_COIN
from flows.indicators import Indicator, Spec, Value
from flows.indicators.series import BarSeries

DAY_BARS_1M = 1440
MIN_CAPACITY = 250  # bars every frame keeps at least: the seed of later-added indicators


class Undefined(Exception):
    """A value a rule reads does not exist yet (warm-up, too little history, x/0)."""


UNDEFINED = Undefined()


class IndicatorFailed(Exception):
    """A shared indicator raised; every rule reading it stops for this symbol."""


@dataclass
class Requirements:
    """What the rules evaluated on one symbol need of one interval's frame."""

    specs: dict[Spec, int] = field(default_factory=dict)  # spec -> deepest bar read back
    series_depth: int = 0  # deepest bar read back from the plain series

    def need(self, spec: Spec, depth: int) -> None:
        self.specs[spec] = max(self.specs.get(spec, 0), depth)

    def merge(self, other: Requirements) -> None:
        for spec, depth in other.specs.items():
            self.need(spec, depth)
        self.series_depth = max(self.series_depth, other.series_depth)

    def covered_by(self, other: Requirements) -> bool:
        return self.series_depth <= other.series_depth and all(
            other.specs.get(spec, -1) >= depth for spec, depth in self.specs.items()
        )


def capacity_for(series_depth: int, reaches: Iterable[int]) -> int:
    """The bars a frame keeps: at least ``MIN_CAPACITY``, and enough for the deepest read of
    the plain series and for each indicator's window plus its deepest read back."""
    return max([MIN_CAPACITY, series_depth + 1, *reaches])


def kline_floats(k: Kline) -> tuple[float, float, float, float, float, float, float, float]:
    """A kline as the bar a frame stores (prices in coins, not 1e-8 units)."""
    u = UNITS_PER_COIN
    return (
        k.open / u,
        k.high / u,
        k.low / u,
        k.close / u,
        k.volume / u,
        k.quote_volume / u,
        float(k.trades),
        float(k.open_ms),
    )


class Frame:
    __slots__ = (
        "_broken",
        "_distinct",
        "_hist",
        "_ind",
        "interval",
        "last_open",
        "requirements",
        "series",
    )

    def __init__(
        self,
        interval: str,
        requirements: Requirements,
        factories: Mapping[str, Callable[..., Indicator]],
    ) -> None:
        self.interval = interval
        self.requirements = requirements
        self.last_open = -1
        # one instance per canonical spec (`("rsi", ())` and `("rsi", (14,))` are one), its
        # history as deep as the deepest of the specs that name it
        self._ind: dict[Spec, Indicator] = {}
        self._broken: dict[Spec, str] = {}  # spec -> why it is not computed
        canonical: dict[Spec, Indicator] = {}
        depths: dict[Spec, int] = {}
        for spec, depth in requirements.specs.items():
            name, args = spec
            try:
                ind = factories[name](*args)
            except Exception as exc:
                self._broken[spec] = _failure(spec, exc)
                continue
            ind = canonical.setdefault(ind.spec, ind)
            self._ind[spec] = ind
            depths[ind.spec] = max(depths.get(ind.spec, 0), depth)
        self._distinct: list[tuple[Indicator, deque[Value]]] = [
            (ind, deque(maxlen=depths[key] + 1)) for key, ind in canonical.items()
        ]
        self._hist: dict[Spec, deque[Value]] = {ind.spec: hist for ind, hist in self._distinct}
        for spec, ind in self._ind.items():
            self._hist[spec] = self._hist[ind.spec]
        reaches = [ind.window + depths[key] for key, ind in canonical.items()]
        self.series = BarSeries(capacity_for(requirements.series_depth, reaches))

    @property
    def capacity(self) -> int:
        return self.series.capacity

    @property
    def bars(self) -> int:
        """Bars this frame has taken (its indicators' history length)."""
        return self.series.total

    def on_bar(self, k: Kline) -> bool:
        """Take one closed kline (ignored unless newer than the newest held)."""
        if k.open_ms <= self.last_open:
            return False
        self.last_open = k.open_ms
        self.series.append(*kline_floats(k))
        series = self.series
        failed: list[tuple[Indicator, Exception]] | None = None
        for ind, hist in self._distinct:
            try:
                hist.append(ind.update(series))
            except Exception as exc:
                failed = (failed or []) + [(ind, exc)]
        if failed:
            self._drop(failed)
        return True

    def _drop(self, failed: list[tuple[Indicator, Exception]]) -> None:
        gone = {id(ind): _failure(ind.spec, exc) for ind, exc in failed}
        self._distinct = [(i, h) for i, h in self._distinct if id(i) not in gone]
        for spec, ind in list(self._ind.items()):
            if id(ind) in gone:
                self._broken[spec] = self._broken[ind.spec] = gone[id(ind)]
                del self._ind[spec]
                self._hist.pop(spec, None)
                self._hist.pop(ind.spec, None)

    def value(self, spec: Spec, back: int) -> Value:
        """The value of an indicator ``back`` bars before the newest (Undefined if not held;
        IndicatorFailed if the indicator raised)."""
        try:
            hist = self._hist[spec]
        except KeyError:
            raise IndicatorFailed(self._broken.get(spec, f"{spec} is not computed")) from None
        if back >= len(hist):
            raise UNDEFINED
        return hist[-1 - back]

    def parts(self, spec: Spec) -> tuple[Indicator, deque[Value]] | str | None:
        """The indicator computing ``spec`` (canonical: ``("sma", (10, "close"))``) here and
        its recent values, to move this frame's state elsewhere; why it failed, if it did;
        None if it is not required."""
        if spec in self._broken:
            return self._broken[spec]
        for ind in self._ind.values():  # ``spec`` is canonical; the frame keys its aliases
            if ind.spec == spec:
                return ind, self._hist[ind.spec]
        return None

    def held_klines(self) -> list[Kline]:
        """The bars held, oldest first, as klines (the fields a frame keeps; the rest 0)."""
        s = self.series
        n = len(s)
        cols = {f: s.window(f, n) for f in ("open", "high", "low", "close", "volume")}
        qv, trades, times = s.window("quote_volume", n), s.window("trades", n), s.window("time", n)
        out = []
        u = UNITS_PER_COIN
        length = INTERVALS[self.interval]
        for i in range(n):
            open_ms = int(times[i])
            out.append(
                Kline(
                    open_ms,
                    length.close_time(open_ms),
                    round(float(cols["open"][i]) * u),
                    round(float(cols["high"][i]) * u),
                    round(float(cols["low"][i]) * u),
                    round(float(cols["close"][i]) * u),
                    round(float(cols["volume"][i]) * u),
                    round(float(qv[i]) * u) if not math.isnan(qv[i]) else 0,
                    int(trades[i]) if not math.isnan(trades[i]) else 0,
                    0,
                    0,
                )
            )
        return out

    def rebuilt(
        self,
        requirements: Requirements,
        factories: Mapping[str, Callable[..., Indicator]],
        older: Iterable[Kline] = (),
    ) -> Frame:
        """A new frame with ``requirements``, fed ``older`` klines then the bars held here."""
        frame = Frame(self.interval, requirements, factories)
        held = self.held_klines()
        first_held = held[0].open_ms if held else None
        for k in older:
            if first_held is None or k.open_ms < first_held:
                frame.on_bar(k)
        for k in held:
            frame.on_bar(k)
        return frame

    def truncated(
        self, before_open: int, factories: Mapping[str, Callable[..., Indicator]]
    ) -> Frame:
        """A new frame holding only the bars opening before `before_open`."""
        frame = Frame(self.interval, self.requirements, factories)
        for k in self.held_klines():
            if k.open_ms < before_open:
                frame.on_bar(k)
        return frame


def _failure(spec: Spec, exc: Exception) -> str:
    name, args = spec
    shown = ", ".join(str(a) for a in args)
    return f"indicator {name}({shown}) failed: {type(exc).__name__}: {exc}"[:500]


class SeriesRef:
    """A bare series passed to a function helper: callable like any argument
    (``x(back)``), and ``window(back, n)`` gives n values at once, oldest first."""

    __slots__ = ("field", "frame")

    def __init__(self, frame: Frame, field: str) -> None:
        self.frame = frame
        self.field = field

    def __call__(self, back: int) -> float:
        try:
            value = self.frame.series.last(self.field, back)
        except IndexError:
            raise UNDEFINED from None
        if not isfinite(value):
            raise UNDEFINED
        return value

    def window(self, back: int, n: int) -> list[float]:
        try:
            values = self.frame.series.recent(self.field, back, n)
        except IndexError:
            raise UNDEFINED from None
        if not all(isfinite(v) for v in values):
            raise UNDEFINED
        return values


def ticker_24h(frames: Mapping[str, Frame], interval: str, back: int) -> tuple[float, float]:
    """(price change %, quote volume) over exactly the 24 hours of 1m klines that end where
    the ``interval`` bar ``back`` bars ago ends; Undefined unless all 1,440 are held."""
    main = frames[interval]
    minute = frames.get("1m")
    if minute is None:
        raise UNDEFINED
    try:
        open_ms = int(main.series.last("time", back))
        newest = int(minute.series.last("time", 0))
    except IndexError:
        raise UNDEFINED from None
    end = INTERVALS[interval].next_open(open_ms)
    k0, rest = divmod(newest - (end - MINUTE_MS), MINUTE_MS)
    series = minute.series
    if rest or k0 < 0 or k0 + DAY_BARS_1M > len(series):
        raise UNDEFINED
    if int(series.last("time", k0 + DAY_BARS_1M - 1)) != end - DAY_BARS_1M * MINUTE_MS:
        raise UNDEFINED  # a hole in the minutes held
    first_open = series.last("open", k0 + DAY_BARS_1M - 1)
    last_close = series.last("close", k0)
    if first_open == 0:
        raise UNDEFINED
    volumes = series.window("quote_volume", k0 + DAY_BARS_1M)[:DAY_BARS_1M]
    return (last_close - first_open) / first_open * 100.0, float(volumes.sum())
