"""klineflow: Binance trades to Binance-exact klines in Redis, signals in PostgreSQL."""

__version__ = "0.1.0"
