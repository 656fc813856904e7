"""Inputs: recorded files and synthetic markets (pure readers) and their Bytewax sources."""
