"""The `klineflow` command: a package of thin typer modules, one per group of commands.

Each module parses options, calls the application layer (``flows.app``) and prints.
``flows.cli.root`` assembles them; ``flows.cli.boundary`` is the error boundary of every
command (exit codes: ``flows.app.errors``). ``app`` and ``main`` are loaded on first use, so
a group living elsewhere (``dashboard.users_cli``) can use the boundary without a cycle.
"""

from __future__ import annotations

from typing import Any


def main() -> None:
    """The `klineflow` command (`flows.cli.root.main`). The cyclic garbage collector is off
    while the command's modules load: they make some hundred thousand objects that live as
    long as the process, which it would walk about 170 times for nothing; they are then
    frozen out of its sight, so later collections (and the one at exit) skip them too."""
    import gc

    gc.disable()
    try:
        from flows.cli.root import main as command
    finally:
        gc.freeze()
        gc.enable()
    command()


def __getattr__(name: str) -> Any:
    if name == "app":
        import importlib

        assembled = importlib.import_module("flows.cli.root")

        return getattr(assembled, name)
    raise AttributeError(name)


__all__ = ["app", "main"]
