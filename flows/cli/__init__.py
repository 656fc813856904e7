"""The `klineflow` command: a package of thin typer modules, one per group of commands.

Each module parses options, calls the application layer (``flows.app``) and prints.
``flows.cli.root`` assembles them; ``flows.cli.boundary`` is the error boundary of every
command (exit codes: ``flows.app.errors``). ``app`` and ``main`` are loaded on first use, so
a group living elsewhere (``dashboard.users_cli``) can use the boundary without a cycle.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name in ("app", "main"):
        import importlib

        assembled = importlib.import_module("flows.cli.root")

        return getattr(assembled, name)
    raise AttributeError(name)


__all__ = ["app", "main"]
