"""Pure domain types: money units, intervals, trades, klines, clocks and key names."""
