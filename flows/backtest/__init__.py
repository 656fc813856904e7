"""Backtests: recorded trades through the very dataflow that runs live, signals collected."""

# Each run builds its klines under a Redis namespace of its own, this prefix and a random tag
# (removed afterwards); the Redis users that may run backtests may write there.
SCRATCH_PREFIX = "backtest-"
