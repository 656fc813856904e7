"""`klineflow access`: least-privilege credentials for a deployment.

    klineflow access redis-acl --flow-password-file F --api-password-file F \\
        --dashboard-password-file F [--namespace NS] [--redis-version N] [--out users.acl]
    klineflow access pg-login NAME --component flow|dashboard --password-file F

`redis-acl` writes a Redis ACL file (mode 0600; passwords stored as SHA-256) with the default
user switched off and one user per component (flows.access). It refuses a Redis older than 7
(given by --redis-version, or asked of the server KLINEFLOW_REDIS_URL names when that is set
and answers): there the api and dashboard users could write what they may read. `pg-login`
makes or updates a PostgreSQL LOGIN role holding exactly the component's group roles
(flows.storage.pg_roles); run it with the owner's URL after `klineflow migrate`. Passwords
are read from files (or an environment variable), never from the command line, where other
users could see them.
"""

from __future__ import annotations

import os
import tempfile
from enum import StrEnum
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from flows.cli.boundary import GuardedGroup

access_app = typer.Typer(
    cls=GuardedGroup,
    no_args_is_help=True,
    help="Least-privilege credentials: Redis ACL users, PostgreSQL logins.",
)
console = Console(stderr=True, emoji=False)
out = Console(emoji=False)


class Component(StrEnum):
    flow = "flow"
    dashboard = "dashboard"
    api = "api"


def _fail(message: str, code: int = 1) -> NoReturn:
    console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True, highlight=False)
    raise typer.Exit(code)


def _secret(path: Path, what: str) -> str:
    from flows.settings import ConfigError, read_secret_file

    try:
        return read_secret_file(path, what)
    except ConfigError as e:
        _fail(str(e), 2)


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable by its owner only (0600), replacing it atomically so a
    server reading the file never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # created 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


PasswordFile = Annotated[Path, typer.Option(help="file holding the user's password")]


@access_app.command("redis-acl")
def redis_acl(
    flow_password_file: PasswordFile,
    api_password_file: PasswordFile,
    dashboard_password_file: PasswordFile,
    namespace: Annotated[
        str | None, typer.Option(help="key prefix the components use (default: the setting)")
    ] = None,
    redis_version: Annotated[
        int | None,
        typer.Option(
            help="major version of the Redis server (7 or later; default: asked of the "
            "server KLINEFLOW_REDIS_URL names, if set)"
        ),
    ] = None,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="the ACL file to write (default: print it)")
    ] = None,
) -> None:
    """Write a Redis ACL file: the default user off, and the users flow, api and dashboard,
    each held to its keys and commands (load it with `redis-server --aclfile FILE`)."""
    from flows.access import OldRedisError, acl_file, check_redis_version
    from flows.settings import load_settings

    try:
        settings = load_settings()
    except Exception as e:  # pydantic names the bad setting
        _fail(f"configuration error: {e}", 2)
    if namespace is None:
        namespace = settings.namespace
    try:
        if redis_version is not None:
            check_redis_version(redis_version, "--redis-version")
        else:
            redis_version = _configured_redis_major(settings.redis_url_value())
    except OldRedisError as e:
        _fail(str(e), 2)
    passwords = {
        "flow": _secret(flow_password_file, "--flow-password-file"),
        "api": _secret(api_password_file, "--api-password-file"),
        "dashboard": _secret(dashboard_password_file, "--dashboard-password-file"),
    }
    try:
        text = acl_file(passwords, namespace, redis_version)
    except ValueError as e:
        _fail(str(e), 2)
    if out_file is None:
        out.print(text, end="", highlight=False, soft_wrap=True, markup=False)
        return
    write_private(out_file, text)
    console.print(f"wrote {out_file} (users: default off, flow, api, dashboard)")


def _configured_redis_major(url: str | None) -> int:
    """The configured Redis's major version, checked (see flows.access.redis_major_of)."""
    from flows.access import redis_major_of

    major, note = redis_major_of(url)
    if note:
        console.print(f"note: {escape(note)}", soft_wrap=True, highlight=False)
    return major


@access_app.command("pg-login")
def pg_login(
    name: Annotated[str, typer.Argument(help="the login role to make or update")],
    component: Annotated[Component, typer.Option(help="whose rights it gets")],
    password_file: Annotated[Path | None, typer.Option(help="file holding the password")] = None,
    password_env: Annotated[
        str | None, typer.Option(help="environment variable holding the password")
    ] = None,
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="the owner's PostgreSQL URL")
    ] = None,
) -> None:
    """Make (or update) a PostgreSQL LOGIN role for a component: its password, and membership
    of exactly that component's group roles (the api uses no PostgreSQL)."""
    import psycopg

    from flows.app.database import database_url as owner_url
    from flows.settings import load_settings
    from flows.storage.pg_roles import LoginError, ensure_login

    if (password_file is None) == (password_env is None):
        _fail("give --password-file FILE or --password-env VARIABLE", 2)
    if password_file is not None:
        password = _secret(password_file, "--password-file")
    else:
        assert password_env is not None
        password = os.environ.get(password_env, "").rstrip("\r\n")
        if not password:
            _fail(f"the environment variable {password_env} is unset or empty", 2)
    try:
        settings = load_settings(database_url=database_url)
    except Exception as e:  # pydantic names the bad setting
        _fail(f"configuration error: {e}", 2)
    url = owner_url(settings)
    try:
        created = ensure_login(url, name, password, component.value)
    except LoginError as e:
        _fail(str(e), 2)
    except psycopg.Error as e:
        _fail(f"PostgreSQL refused: {' '.join(str(e).split())}")
    out.print(f"{'created' if created else 'updated'} login {name} ({component.value})")
