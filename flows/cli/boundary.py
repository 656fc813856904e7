"""The error boundary of every `klineflow` command, and the consoles they print on.

Every typer app of the command (the root and each group: traders, users, access, services)
is made with ``cls=GuardedGroup``, so a command run alone (as tests do) has the same
boundary as one run from the root.
"""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from flows.app.errors import EXIT_FAILURE, EXIT_INTERRUPTED, explain

console = Console(stderr=True)
out = Console()
DEBUG = {"on": False}  # --debug: a traceback instead of the one line


class GuardedGroup(TyperGroup):
    """The error boundary of every command: a known failure (``flows.app.errors``) is one
    line naming the cause and what to do, with its exit code; anything else is one line
    too, with a traceback only under ``--debug``. Ctrl-C is exit 130."""

    def invoke(self, ctx: Any) -> Any:  # typer.Context (its own click)
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort):
            raise
        except KeyboardInterrupt:
            console.print("stopped")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except Exception as exc:
            if DEBUG["on"] or hasattr(exc, "format_message"):  # --debug, or click's usage errors
                raise
            known = explain(exc)
            if known is None:
                first = (str(exc).strip() or "-").splitlines()[0]
                console.print(f"[red]error:[/red] unexpected {type(exc).__name__}: "
                              f"{escape(first)} (run with --debug for the traceback)",
                              soft_wrap=True, highlight=False)  # fmt: skip
                raise typer.Exit(EXIT_FAILURE) from None
            console.print(f"[red]{known.label}:[/red] {escape(known.line())}", soft_wrap=True,
                          highlight=False)  # fmt: skip
            if known.detail:
                for line in known.detail.split("\n"):
                    console.print("  " + line, markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(known.code) from None
