"""`klineflow users`: the dashboard's accounts (user name and argon2 password hash).

    klineflow users add ana            # prompts for the password (twice)
    klineflow users add ana --password 'correct horse battery staple'
    klineflow users password ana       # a new password; ana's sessions end
    klineflow users list
    klineflow users sso on             # let the dashboard sign in single sign-on identities

The database is found like every command's: --database-url, else KLINEFLOW_DATABASE_URL,
else the embedded PostgreSQL (started or reused); pending migrations are applied first.
Accounts are the owner's (sql/0006): these commands need the owner's URL, the one
`klineflow migrate` runs with; the dashboard's own login is refused, with a message.
"""

from __future__ import annotations

from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from flows.cli.boundary import GuardedGroup

users_app = typer.Typer(
    cls=GuardedGroup,
    no_args_is_help=True,
    help="Dashboard accounts (with the owner's database URL): add, password, list, sso.",
)
console = Console(stderr=True, emoji=False)
out = Console(emoji=False)

DatabaseUrl = Annotated[
    str | None, typer.Option("--database-url", help="PostgreSQL URL (default: embedded)")
]


def _fail(message: str, code: int = 1) -> NoReturn:
    console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True, highlight=False)
    raise typer.Exit(code)


def _database(database_url: str | None) -> str:
    """The database's URL, its schema current (flows.app.database); failures are explained
    by the command line's error boundary."""
    from flows.app.database import open_database
    from flows.settings import load_settings

    return open_database(load_settings(database_url=database_url))


@users_app.command()
def add(
    name: Annotated[str, typer.Argument(help="the user name to sign in with")],
    password: Annotated[
        str | None, typer.Option("--password", help="the password (prompted for if not given)")
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create a dashboard user (or give a password to one that has none yet)."""
    import psycopg

    from dashboard.data.users import UserError, add_user

    if password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    url = _database(database_url)
    try:
        user_id = add_user(url, name, password)
    except UserError as e:
        _fail(str(e), 2)
    except psycopg.Error as e:
        _fail(f"database error: {type(e).__name__}")
    out.print(Text(f"added user {name.strip()!r}: id {user_id}"), soft_wrap=True)


@users_app.command("password")
def password_command(
    name: Annotated[str, typer.Argument(help="the user whose password changes")],
    password: Annotated[
        str | None, typer.Option("--password", help="the new password (prompted for if not given)")
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Set a new password for an existing user."""
    import psycopg

    from dashboard.data.users import UserError, set_password

    if password is None:
        password = typer.prompt("New password", hide_input=True, confirmation_prompt=True)
    url = _database(database_url)
    try:
        set_password(url, name.strip(), password)
    except UserError as e:
        _fail(str(e), 2)
    except psycopg.Error as e:
        _fail(f"database error: {type(e).__name__}")
    out.print(Text(f"password of {name.strip()!r} changed"), soft_wrap=True)


@users_app.command("list")
def list_users_command(database_url: DatabaseUrl = None) -> None:
    """Every user: id, name, whether a password is set, when created."""
    from dashboard.data.users import UserError, list_users

    try:
        users = list_users(_database(database_url))
    except UserError as e:
        _fail(str(e), 2)
    if not users:
        out.print("no users yet (add one with: klineflow users add NAME)")
        return
    table = Table(title="users")
    for column in ("id", "name", "password", "created (UTC)"):
        table.add_column(column, justify="right" if column == "id" else "left")
    for u in users:
        table.add_row(
            str(u.id),
            Text(u.name),
            "set" if u.has_password else "-",
            u.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    out.print(table)


@users_app.command("sso")
def sso_command(
    state: Annotated[
        str | None, typer.Argument(help="on or off (shows the current state when left out)")
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Single sign-on: whether the dashboard may open sessions for `oidc:` identities.

    On means the database trusts the dashboard to vouch for an identity: whoever holds the
    dashboard's login can then sign in as any `oidc:` account (never one with a password)."""
    import psycopg

    from dashboard.data.users import UserError, set_sso, sso_enabled

    if state not in (None, "on", "off"):
        _fail(f"expected on or off, got {state!r}", 2)
    url = _database(database_url)
    try:
        if state is not None:
            set_sso(url, state == "on")
        enabled = sso_enabled(url)
    except UserError as e:
        _fail(str(e), 2)
    except psycopg.Error as e:
        _fail(f"database error: {type(e).__name__}")
    out.print(f"single sign-on is {'on' if enabled else 'off'}")


__all__ = ["users_app"]
