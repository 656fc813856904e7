"""The assembled `klineflow` command and its error boundary."""

from __future__ import annotations

import logging
import signal

from dashboard.users_cli import users_app
from flows.cli import channels, live, replay, status  # noqa: F401  (they register commands)
from flows.cli.access import access_app
from flows.cli.common import app
from flows.cli.traders import traders_app

app.add_typer(traders_app, name="traders")
app.add_typer(users_app, name="users")
app.add_typer(access_app, name="access")


def main() -> None:
    """The `klineflow` command. Ctrl-C (SIGINT) and SIGTERM stop every command, also when
    it was started with them ignored: a shell's background job (`cmd &` in a script) inherits
    SIGINT ignored, and then neither `kill -INT` nor a supervisor's SIGINT reached it (a
    cluster or a demo started that way could not be stopped but by SIGKILL)."""
    from flows.logs import setup

    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGTERM) == signal.SIG_IGN:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    setup(logging.WARNING)
    app()


__all__ = ["app", "main"]
