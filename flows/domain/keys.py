"""Every Redis key and channel name, built in one place (the dashboard imports these too).

A `KeySpace` may carry a namespace prefix so that tests and backtests write beside, never
over, the live keys. The default namespace is empty, which gives the documented layout:

>>> KeySpace().klines("BTCUSDT", "1m")
'klines:BTCUSDT:1m'
>>> KeySpace("bt42").klines("BTCUSDT", "1m")
'bt42:klines:BTCUSDT:1m'
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class KeySpace:
    namespace: str = ""

    def _k(self, key: str) -> str:
        return f"{self.namespace}:{key}" if self.namespace else key

    def klines(self, symbol: str, interval: str) -> str:
        """Sorted set of one symbol's klines: score = open time ms, member = REST array JSON."""
        return self._k(f"klines:{symbol}:{interval}")

    def last_closed(self, symbol: str, interval: str) -> str:
        """Open time (ms) of the newest closed kline."""
        return self._k(f"klines:last_closed:{symbol}:{interval}")

    def origin(self, symbol: str) -> str:
        """Open time (ms) of the first kline the live flow built for a symbol, set once at its
        first start, so a restart before anything closed starts from the same point."""
        return self._k(f"klines:origin:{symbol}")

    @property
    def rules_since(self) -> str:
        """Hash "SYMBOL interval" -> open time of the first kline the live rules decided for
        that pair (set once): where a restart's catch-up starts when PostgreSQL never
        received any of its decisions."""
        return self._k("klineflow:rules_since")

    def sentinel(self, writer: str) -> str:
        """A key one kline writer sets when it starts: finding it gone later means Redis lost
        data (a restart without persistence), and the writer repairs what it wrote."""
        return self._k(f"klineflow:sentinel:{writer}")

    @property
    def closed_channel(self) -> str:
        """PUBLISH channel announcing each closed kline."""
        return self._k("klines:closed")

    @property
    def symbols(self) -> str:
        """Set of every symbol with stored klines."""
        return self._k("klines:symbols")

    @property
    def dead_letters(self) -> str:
        """Capped stream of rejected input (reason, raw text, position)."""
        return self._k("klineflow:dead_letters")

    @property
    def data_quality(self) -> str:
        """Capped stream of data-quality records (trades known missing, per symbol)."""
        return self._k("klineflow:data_quality")

    @property
    def reconcile(self) -> str:
        """Capped stream of klines that differ from Binance's own (ours and theirs)."""
        return self._k("klineflow:reconcile_mismatches")

    @property
    def heartbeat(self) -> str:
        """Hash the live flow rewrites every few seconds: its time, counters and the state
        of each feed connection (expires when the flow stops writing it)."""
        return self._k("klineflow:heartbeat")

    def heartbeat_of(self, process: int) -> str:
        """One cluster member's own heartbeat hash (the flow's is rebuilt from them)."""
        return self._k(f"klineflow:heartbeat:{process}")

    def gaps(self, symbol: str) -> str:
        """Sorted set of a symbol's unfilled gaps: score = from_ms, member = "from:to:ids"."""
        return self._k(f"klines:gaps:{symbol}")

    def replay_state(self, symbol: str) -> str:
        """Kline builder state at the end of the last replay, so the next one continues it."""
        return self._k(f"klineflow:replay_state:{symbol}")

    @property
    def replay_state_pattern(self) -> str:
        return self._k("klineflow:replay_state:*")
