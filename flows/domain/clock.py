"""The one place that reads the wall clock.

Core code never calls this module: it receives times as arguments. Live code injects a
`SystemClock`; replays run on event time; tests inject a `ManualClock`.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int:
        """UTC epoch milliseconds."""
        ...

    def now_exact_ms(self) -> float:
        """UTC epoch milliseconds with their fraction (to time what takes under one)."""
        ...

    def monotonic_s(self) -> float:
        """Seconds from an arbitrary origin that never goes backwards."""
        ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def now_exact_ms(self) -> float:
        return time.time_ns() / 1_000_000

    def monotonic_s(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock a test moves by hand."""

    def __init__(self, now_ms: int = 0) -> None:
        self._now_ms = now_ms

    def now_ms(self) -> int:
        return self._now_ms

    def now_exact_ms(self) -> float:
        return float(self._now_ms)

    def monotonic_s(self) -> float:
        return self._now_ms / 1000.0

    def advance(self, ms: int) -> None:
        self._now_ms += ms


SYSTEM_CLOCK = SystemClock()
