"""Backtests: recorded trades through the very dataflow that runs live, signals collected."""
