"""Composition roots: the only modules that wire sources, operators and sinks together."""
