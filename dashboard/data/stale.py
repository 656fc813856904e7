"""Answers that survive an unreachable server: the last good value, marked stale.

Every data function returns a `Fetched`: the value, and when a server could not be reached,
`stale=True`, which server, and when the value shown was fetched. The next call tries the
server again, so the dashboard recovers by itself when it returns.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

from flows.domain.clock import SYSTEM_CLOCK, Clock

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


@dataclass(frozen=True)
class Fetched(Generic[T_co]):
    value: T_co
    fetched_ms: int  # when the value was read from its server
    stale: bool = False
    server: str = ""  # "Redis" or "PostgreSQL" when stale
    error: str = ""

    @property
    def banner(self) -> str:
        """The warning pages show for stale data ('' when fresh)."""
        if not self.stale:
            return ""
        if self.fetched_ms <= 0:
            return f"No data yet: {self.server} is unreachable"
        when = datetime.fromtimestamp(self.fetched_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
        return f"Showing data from {when} UTC: {self.server} is unreachable"


class LastGood:
    """The newest good answer per key (bounded LRU), shared by every session of a process."""

    def __init__(
        self, server: str, size: int = 512, clock: Clock = SYSTEM_CLOCK, retry_after_s: float = 2.0
    ) -> None:
        self.server = server
        self._retry_after_s = retry_after_s
        self._down: tuple[float, str] | None = None  # (when it failed, why)
        self._size = size
        self._clock = clock
        self._lock = threading.Lock()
        self._values: OrderedDict[Hashable, tuple[int, object]] = OrderedDict()

    def fetch(
        self,
        key: Hashable,
        read: Callable[[], T],
        default: T,
        errors: tuple[type[BaseException], ...],
    ) -> Fetched[T]:
        down = self._down
        if down is not None and self._clock.monotonic_s() - down[0] < self._retry_after_s:
            # it failed a moment ago: answer at once rather than wait for every timeout
            return self._held(key, default, down[1])
        try:
            value = read()
        except errors as exc:
            self._down = (self._clock.monotonic_s(), _one_line(exc))
            return self._held(key, default, self._down[1])
        self._down = None
        now = self._clock.now_ms()
        with self._lock:
            self._values[key] = (now, value)
            self._values.move_to_end(key)
            while len(self._values) > self._size:
                self._values.popitem(last=False)
        return Fetched(value, now)

    def _held(self, key: Hashable, default: T, error: str) -> Fetched[T]:
        with self._lock:
            held = self._values.get(key)
        if held is None:
            return Fetched(default, 0, True, self.server, error)
        return Fetched(held[1], held[0], True, self.server, error)  # type: ignore[arg-type]

    def server_changed(self) -> None:
        """The server was replaced: try it at once."""
        self._down = None


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:300]


def first_stale(*answers: Fetched[object]) -> Fetched[object] | None:
    """The first stale answer among these (to show one banner per page), or None."""
    return next((a for a in answers if a.stale), None)
