"""Which streams each live connection carries, and how the universe of symbols changes.

Symbols are grouped into connections of at most ``per_connection`` streams (a reconciled
symbol's ``@kline_1m`` rides with its trades), every connection also carries one *clock
stream*, and `Universe` moves symbols in and out of the connections when the universe is
refreshed, keeping those that stay where they are.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)


def symbol_streams(symbols: Sequence[str], kind: str, reconcile: frozenset[str]) -> list[str]:
    """Each symbol's trade stream, and its @kline_1m when it is reconciled."""
    out: list[str] = []
    for s in symbols:
        out.append(f"{s.lower()}@{kind}")
        if s in reconcile:
            out.append(f"{s.lower()}@kline_1m")
    return out


def stream_groups(
    symbols: tuple[str, ...],
    kind: str,
    per_connection: int,
    reconcile: frozenset[str] = frozenset(),
) -> list[list[str]]:
    """Streams per connection; a reconciled symbol's @kline_1m rides with its trades."""
    if not 1 <= per_connection <= 1024:
        raise ValueError(
            f"streams per connection must be 1..1024 (Binance's limit), got {per_connection}"
        )
    groups: list[list[str]] = [[]]
    for s in symbols:
        mine = symbol_streams([s], kind, reconcile)
        if len(groups[-1]) + len(mine) > per_connection:
            groups.append([])
        groups[-1].extend(mine)
    return [g for g in groups if g]


def clock_stream_for(symbols: Sequence[str], listed: Sequence[str] = ()) -> str:
    """The clock stream every connection carries: BTCUSDT's 1-second klines when the exchange
    lists it (the most traded symbol, so it is pushed every second), else those of the first
    symbol of the universe (the most traded one for a --top universe)."""
    pick = "BTCUSDT" if "BTCUSDT" in listed or "BTCUSDT" in symbols else symbols[0]
    return f"{pick.lower()}@kline_1s"


class Universe:
    """Which symbols each connection carries; `refresh` recomputes it every `every_s` on a
    thread: symbols that stay keep their connection, symbols that leave are dropped, new ones
    go to the connections with the most room (at most `per_connection` each)."""

    def __init__(self, groups: list[list[str]], per_connection: int, kind: str) -> None:
        self._lock = threading.Lock()
        self._groups = [[s.split("@", 1)[0].upper() for s in g] for g in groups]
        self._per_connection = per_connection
        self._kind = kind
        self.version = 0
        self.refreshes = 0

    def symbols_of(self, index: int) -> list[str]:
        with self._lock:
            return list(dict.fromkeys(self._groups[index]))

    def apply(self, wanted: Sequence[str]) -> None:
        want = [s.upper() for s in wanted]
        keep = set(want)
        with self._lock:
            groups = [list(dict.fromkeys(s for s in g if s in keep)) for g in self._groups]
            placed = {s for g in groups for s in g}
            for symbol in want:
                if symbol in placed:
                    continue
                room = min(range(len(groups)), key=lambda i: len(groups[i]))
                if len(groups[room]) >= self._per_connection:
                    log.warning(
                        "universe: no room for symbol=%s (every connection is full)", symbol
                    )
                    continue
                groups[room].append(symbol)
                placed.add(symbol)
            if groups != self._groups:
                self._groups = groups
                self.version += 1
            self.refreshes += 1

    def run(
        self, refresh: Callable[[], Sequence[str]], every_s: float, stop: threading.Event
    ) -> None:
        while not stop.wait(every_s):
            try:
                self.apply(refresh())
            except Exception as e:  # a failed refresh keeps the current universe
                log.warning("universe refresh failed: %s", e)
