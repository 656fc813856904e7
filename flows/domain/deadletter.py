"""Rejected input, kept with the reason and where it came from."""

from __future__ import annotations

import msgspec

# Reasons, in one place so counters and docs agree.
MALFORMED = "malformed"  # not valid JSON/CSV, or a known event with missing or mistyped fields
UNKNOWN = "unknown"  # an event or stream type the pipeline does not know
INVALID = "invalid"  # a trade Binance marks invalid (p=0, q=0, f=l=-1) or with impossible values
LATE = "late"  # a trade for a kline that was already closed
NO_SYMBOL = "no_symbol"  # a dump file whose symbol cannot be told from its name
# a trade whose time, ids or amounts cannot be real (flows.domain.trade_checks): well formed,
# but outside what Binance can send
IMPLAUSIBLE = "implausible"
TRUNCATED = "truncated"  # a compressed file that ends before its data does (one per file)

REASONS = (MALFORMED, UNKNOWN, INVALID, LATE, NO_SYMBOL, IMPLAUSIBLE, TRUNCATED)


class DeadLetter(msgspec.Struct, frozen=True):
    reason: str
    detail: str
    raw: str
    position: str  # "path:line" for files, "stream" for live input
    symbol: str = ""

    def fields(self) -> dict[str, str]:
        return {
            "reason": self.reason,
            "detail": self.detail[:500],
            "raw": self.raw[:4000],
            "position": self.position,
            "symbol": self.symbol,
        }
