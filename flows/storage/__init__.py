"""Storage adapters: Redis klines (write and read)."""
