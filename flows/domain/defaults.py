"""Defaults of the components that the settings expose, each written once here: the
settings (``flows.settings``), the components' own config dataclasses and the command line
all read them from this module."""

from __future__ import annotations

RULE_BUDGET_MS = 250.0  # one trader's evaluation on one kline (flows.signals.engine)
SIGNALS_RETENTION_DAYS = 90.0  # flows.storage.retention
TRADER_ERRORS_RETENTION_DAYS = 30.0
DEAD_LETTERS_RETENTION_DAYS = 14.0
RETENTION_EVERY_S = 3600.0
GRACE_MS = 2000  # a kline closes once its connection delivered events this far past its end
STREAMS_PER_CONNECTION = 200  # Binance allows 1,024
OPEN_KLINE_THROTTLE_MS = 1000  # least wall time between two writes of an open kline
MAX_FLAT_FILL = 10_000  # most flat klines emitted for one gap
DEAD_LETTER_MAXLEN = 100_000  # length cap of the dead-letter stream
