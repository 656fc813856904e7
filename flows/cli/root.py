"""The assembled `klineflow` command and its error boundary."""

from __future__ import annotations

import logging

from dashboard.users_cli import users_app
from flows.cli import live, replay, status  # noqa: F401  (they register their commands)
from flows.cli.access import access_app
from flows.cli.common import app
from flows.cli.traders import traders_app

app.add_typer(traders_app, name="traders")
app.add_typer(users_app, name="users")
app.add_typer(access_app, name="access")


def main() -> None:
    from flows.logs import setup

    setup(logging.WARNING)
    app()


__all__ = ["app", "main"]
