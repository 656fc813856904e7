"""The Binance spot protocol: frame decoding (and, later, the live client and simulator)."""
