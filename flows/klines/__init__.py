"""Pure kline building: trades in, Binance-exact klines out (no engine, no I/O)."""
