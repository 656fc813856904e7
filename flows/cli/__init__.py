"""The `klineflow` command: a package of thin typer modules, one per group of commands.

Each module parses options, calls the application layer (``flows.app``) and prints; none
talks to Redis or PostgreSQL itself. ``flows.cli.main`` assembles them and is the error
boundary of every command (see its docstring for the exit codes).
"""

from flows.cli.main import app, main

__all__ = ["app", "main"]
