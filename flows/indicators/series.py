"""A bounded, picklable ring of the most recent closed bars of one symbol.

The ring stores every bar twice (at ``i`` and ``i + capacity``) in one float64 matrix, so the
newest ``n`` bars of any field are always one contiguous slice: ``window()`` returns a view
with no copy, which TA-Lib accepts directly. Only numpy arrays and ints are kept, so the
object pickles for recovery snapshots.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

PRICE_FIELDS: tuple[str, ...] = ("open", "high", "low", "close", "volume")
# every column held: the five TA-Lib inputs, then the kline's quote volume, its trade count
# and its open time in ms (exact in a float64 until the year 287,000)
FIELDS: tuple[str, ...] = (*PRICE_FIELDS, "quote_volume", "trades", "time")
_ROW = {name: row for row, name in enumerate(FIELDS)}


class BarSeries:
    """The last ``capacity`` closed bars (see ``FIELDS``), oldest first."""

    __slots__ = ("_buf", "_cap", "_held", "_pos", "_py", "_total")

    def __init__(self, capacity: int = 64) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self._cap = capacity
        self._buf: FloatArray = np.full((len(FIELDS), 2 * capacity), math.nan)
        # the same values as Python floats: reading one value from a list is several times
        # cheaper than from a numpy array, and rules read single values all the time
        self._py: list[list[float]] = self._buf.tolist()
        self._pos = 0  # next write slot, in [0, capacity)
        self._held = 0
        self._total = 0

    @property
    def capacity(self) -> int:
        return self._cap

    @property
    def total(self) -> int:
        """Bars appended since creation (not bounded by the capacity)."""
        return self._total

    def __len__(self) -> int:
        return self._held

    def append(
        self,
        open: float,
        high: float,
        low: float,
        close: float,
        volume: float,
        quote_volume: float = math.nan,
        trades: float = math.nan,
        time: float = math.nan,
    ) -> None:
        col = (open, high, low, close, volume, quote_volume, trades, time)
        pos, cap = self._pos, self._cap
        self._buf[:, pos] = col
        self._buf[:, pos + cap] = col
        for row, value in zip(self._py, col, strict=True):
            row[pos] = row[pos + cap] = value
        self._pos = (pos + 1) % cap
        self._held = min(self._held + 1, self._cap)
        self._total += 1

    def _end(self) -> int:
        # one past the newest bar in the doubled buffer; the held bars end there contiguously
        return self._pos + self._cap if self._pos else 2 * self._cap

    def window(self, field: str, n: int | None = None) -> FloatArray:
        """A contiguous view of the newest ``n`` values of ``field`` (all held if None)."""
        n = self._held if n is None else min(n, self._held)
        end = self._end()
        return self._buf[_ROW[field], end - n : end]

    def last(self, field: str, back: int = 0) -> float:
        """The value ``back`` bars before the newest one (0 = newest)."""
        if not 0 <= back < self._held:
            raise IndexError("not enough bars held")
        pos = self._pos
        return self._py[_ROW[field]][(pos + self._cap if pos else 2 * self._cap) - 1 - back]

    def recent(self, field: str, back: int, n: int) -> list[float]:
        """The ``n`` values ending ``back`` bars before the newest one, oldest first."""
        if back < 0 or n < 1 or back + n > self._held:
            raise IndexError("not enough bars held")
        end = self._end() - back
        return self._py[_ROW[field]][end - n : end]

    def arrays(self, n: int | None = None) -> dict[str, FloatArray]:
        """Copies of every field's newest ``n`` values (all held if None), oldest first."""
        return {name: self.window(name, n).copy() for name in FIELDS}

    def ensure_capacity(self, capacity: int) -> None:
        """Grow (never shrink) the ring, keeping the bars held, in order."""
        if capacity <= self._cap:
            return
        held = np.stack([self.window(name) for name in FIELDS])
        n = held.shape[1]
        self._cap = capacity
        self._buf = np.full((len(FIELDS), 2 * capacity), math.nan)
        self._buf[:, :n] = held
        self._buf[:, capacity : capacity + n] = held
        self._py = self._buf.tolist()
        self._pos = n % capacity

    def __getstate__(self) -> tuple[FloatArray, int, int, int, int]:
        return (self._buf, self._cap, self._pos, self._held, self._total)

    def __setstate__(self, state: tuple[FloatArray, int, int, int, int]) -> None:
        self._buf, self._cap, self._pos, self._held, self._total = state
        self._py = self._buf.tolist()
