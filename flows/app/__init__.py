"""The application layer: what the command line and the dashboard both do, once.

Each module is a small service with no console and no typer: it takes settings and
arguments, talks to the stores, and raises ``flows.app.errors.AppError`` (a one-line cause
and what to do) for failures a person can act on.
"""
