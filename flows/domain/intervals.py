"""Binance kline intervals and their alignment (UTC).

Fixed intervals up to 1d align to the epoch: open = t - t % interval. 1w opens on Monday
00:00 UTC (the epoch was a Thursday, so weeks are offset by 4 days). 1M opens on the 1st
of each calendar month. 3d is aligned to the epoch as well: that is the natural rule but
it is NOT verified against Binance's own 3d klines (see README, "Exactness").

>>> INTERVALS["1w"].open_time(1499040000000 + 3 * 86_400_000)  # a Thursday -> Monday 2017-07-03
1499040000000
>>> INTERVALS["1M"].open_time(1_700_000_000_000), INTERVALS["1M"].next_open(1698796800000)
(1698796800000, 1701388800000)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

SECOND_MS = 1_000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
WEEK_OFFSET_MS = 4 * DAY_MS  # epoch day 0 was a Thursday; weeks open on Monday

_FIXED_MS: dict[str, int] = {
    "1s": SECOND_MS,
    "1m": MINUTE_MS,
    "3m": 3 * MINUTE_MS,
    "5m": 5 * MINUTE_MS,
    "15m": 15 * MINUTE_MS,
    "30m": 30 * MINUTE_MS,
    "1h": HOUR_MS,
    "2h": 2 * HOUR_MS,
    "4h": 4 * HOUR_MS,
    "6h": 6 * HOUR_MS,
    "8h": 8 * HOUR_MS,
    "12h": 12 * HOUR_MS,
    "1d": DAY_MS,
    "3d": 3 * DAY_MS,
    "1w": 7 * DAY_MS,
}

# Intervals whose alignment no source we hold confirms.
UNVERIFIED_INTERVALS = frozenset({"3d"})


@dataclass(frozen=True, slots=True)
class Interval:
    name: str
    length_ms: int  # nominal length; for 1M the length of a 31-day month (only for ordering)
    offset_ms: int = 0
    calendar_month: bool = False

    def open_time(self, ts_ms: int) -> int:
        """Open time of the kline that contains ts_ms."""
        if self.calendar_month:
            d = datetime.fromtimestamp(ts_ms // 1000, tz=UTC)
            return _month_start_ms(d.year, d.month)
        return ts_ms - (ts_ms - self.offset_ms) % self.length_ms

    def next_open(self, open_ms: int) -> int:
        """Open time of the kline after the one opening at open_ms."""
        if self.calendar_month:
            d = datetime.fromtimestamp(open_ms // 1000, tz=UTC)
            year, month = (d.year + 1, 1) if d.month == 12 else (d.year, d.month + 1)
            return _month_start_ms(year, month)
        return open_ms + self.length_ms

    def close_time(self, open_ms: int) -> int:
        """Binance's close time: the last millisecond of the kline."""
        return self.next_open(open_ms) - 1

    def count_between(self, first_open_ms: int, end_ms: int) -> int:
        """How many klines open in [first_open_ms, end_ms) (first_open_ms aligned)."""
        if end_ms <= first_open_ms:
            return 0
        if not self.calendar_month:
            return (end_ms - first_open_ms + self.length_ms - 1) // self.length_ms
        n, t = 0, first_open_ms
        while t < end_ms:
            n += 1
            t = self.next_open(t)
        return n

    def advance(self, open_ms: int, steps: int) -> int:
        if not self.calendar_month:
            return open_ms + steps * self.length_ms
        for _ in range(steps):
            open_ms = self.next_open(open_ms)
        return open_ms


def _month_start_ms(year: int, month: int) -> int:
    return int(datetime(year, month, 1, tzinfo=UTC).timestamp()) * 1000


INTERVALS: dict[str, Interval] = {
    name: Interval(name, ms, WEEK_OFFSET_MS if name == "1w" else 0)
    for name, ms in _FIXED_MS.items()
}
INTERVALS["1M"] = Interval("1M", 31 * DAY_MS, calendar_month=True)

INTERVAL_NAMES: tuple[str, ...] = tuple(INTERVALS)  # in Binance's order, shortest first
DEFAULT_INTERVALS: tuple[str, ...] = ("1m", "5m", "15m", "1h", "4h", "1d")


class IntervalError(ValueError):
    pass


def get_interval(name: str) -> Interval:
    try:
        return INTERVALS[name]
    except KeyError:
        raise IntervalError(
            f"interval {name!r} is not one of {', '.join(INTERVAL_NAMES)}"
        ) from None


def parse_intervals(names: str | Iterable[str]) -> tuple[str, ...]:
    """Validate a list (or comma-separated text) of intervals; return them shortest first."""
    items = names.split(",") if isinstance(names, str) else list(names)
    wanted = {n.strip() for n in items if n.strip()}
    if not wanted:
        raise IntervalError("at least one interval is needed")
    for name in wanted:
        get_interval(name)
    return tuple(n for n in INTERVAL_NAMES if n in wanted)
