"""The example traders ``klineflow demo`` starts with, so signals flow from the first minutes.

They are ordinary traders of the user ``local``: list them with ``klineflow traders list``,
switch them off with ``klineflow traders disable NAME``. Seeding is by name, so it never
duplicates and never overwrites an edited example.
"""

from __future__ import annotations

from flows.signals.book import TraderRow
from flows.signals.store import TraderError, TraderStore

EXAMPLES: tuple[TraderRow, ...] = (
    TraderRow(
        0,
        "RSI oversold bounce",
        "crosses_above(rsi(14), 30)",
        "1m",
        description="RSI(14) climbs back above 30",
        trigger_mode="on_change",
        cooldown_bars=10,
    ),
    TraderRow(
        0,
        "Volume spike",
        "volume > 3 * avg_volume(20)[1] and close > open",
        "1m",
        description="an up bar on three times the recent average volume",
        trigger_mode="every_close",
        cooldown_bars=5,
    ),
    TraderRow(
        0,
        "Golden cross 50/200",
        "crosses_above(sma(50), sma(200))",
        "1m",
        description="the 50-bar average crosses above the 200-bar one",
        trigger_mode="on_change",
        cooldown_bars=50,
    ),
    TraderRow(
        0,
        "MACD bullish cross",
        "crosses_above(macd(), macd_signal()) and macd() < 0",
        "5m",
        description="MACD crosses its signal line from below, under zero",
        trigger_mode="on_change",
        cooldown_bars=6,
    ),
    TraderRow(
        0,
        "Bollinger squeeze break",
        "close > bb_upper(20, 2) and (bb_upper(20, 2) - bb_lower(20, 2))[1]"
        " < 1.2 * lowest(bb_upper(20, 2) - bb_lower(20, 2), 50)",
        "5m",
        description="a close above the upper band right after the bands were at their narrowest",
        trigger_mode="on_change",
        cooldown_bars=12,
    ),
    TraderRow(
        0,
        "Multi-timeframe momentum",
        'rsi(14) > 55 and rsi(14, tf="15m") > 50 and close > ema(50, tf="1h")',
        "5m",
        description="5m momentum agreeing with the 15m RSI and the 1h trend",
        trigger_mode="on_change",
        cooldown_bars=6,
    ),
)


def seed_examples(store: TraderStore, owner: str = "local") -> list[str]:
    """Add the examples not present yet (by name); returns the names added."""
    present = {row.name for row in store.all()}
    added = []
    for row in EXAMPLES:
        if row.name in present:
            continue
        try:
            store.add(row, owner)
        except TraderError:  # added concurrently by another process: fine
            continue
        added.append(row.name)
    return added
