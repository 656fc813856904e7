"""Traders evaluated in the dataflow, and the signals they raise in PostgreSQL.

`flows.signals.runtime.rules_stage` assembles what a job needs. This package's modules are
imported one by one (the rules engine brings TA-Lib, and a flow without rules never needs it).
"""
