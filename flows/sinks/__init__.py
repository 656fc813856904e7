"""Outputs: Bytewax sinks over the storage adapters."""
