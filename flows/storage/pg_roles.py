"""PostgreSQL roles of the components, and their logins.

The migrations make NOLOGIN group roles that hold every right (sql/0001, sql/0004):

- ``klineflow_flow``: the dataflow. Reads traders, writes signals and rule errors, records
  backtest runs. Never sees ``users``.
- ``klineflow_dashboard``: one dashboard user's transaction (``SET LOCAL ROLE``), held to that
  user's rows by row-level security.
- ``klineflow_dashboard_app``: the dashboard process itself, outside any user's transaction:
  since sql/0006 only the sign-in functions (SECURITY DEFINER) and schema_migrations; it can
  neither read nor change ``users`` or ``sessions``.

A dashboard login also gets a statement timeout and an idle-in-transaction timeout
(``DASHBOARD_TIMEOUTS``, as role defaults; the dashboard's pool sets them on each connection
too). A holder of the login can raise them again with SET: they bound the dashboard's own
mistakes, not an attacker's.

The API uses no PostgreSQL. A component logs in with a login role of its own that is a
member of its group roles (``ensure_login``: ``klineflow access pg-login``), and the flow's
connections also ``SET ROLE klineflow_flow`` as soon as they connect (``connect_as``), so
they act with exactly that role's rights whichever login they use: a flow login, the owner,
or the embedded server's superuser.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
from psycopg import sql

from flows.storage.migrations import MigrationError, applied, apply_migrations, migration_files

FLOW_ROLE = "klineflow_flow"
DASHBOARD_ROLE = "klineflow_dashboard"
DASHBOARD_APP_ROLE = "klineflow_dashboard_app"
GROUP_ROLES = (FLOW_ROLE, DASHBOARD_ROLE, DASHBOARD_APP_ROLE)
# what each component's login is a member of (the API uses no PostgreSQL)
COMPONENT_ROLES: dict[str, tuple[str, ...]] = {
    "flow": (FLOW_ROLE,),
    "dashboard": (DASHBOARD_ROLE, DASHBOARD_APP_ROLE),
    "api": (),
}
MIN_PASSWORD_LENGTH = 16
# what a dashboard login runs with (sql/0006 sets the same on logins made before it)
DASHBOARD_STATEMENT_TIMEOUT_MS = 10_000
DASHBOARD_TIMEOUTS: dict[str, str] = {
    "statement_timeout": f"{DASHBOARD_STATEMENT_TIMEOUT_MS}ms",
    "idle_in_transaction_session_timeout": "60s",
}
_LOGIN_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class LoginError(ValueError):
    """A login role cannot be made as asked."""


def timeout_options(timeouts: dict[str, str]) -> str:
    """The libpq `options` that set these parameters at connection start.

    >>> timeout_options({"statement_timeout": "10s", "lock_timeout": "1s"})
    '-c statement_timeout=10s -c lock_timeout=1s'
    """
    return " ".join(f"-c {name}={value}" for name, value in timeouts.items())


def connect_as(
    url: str, role: str, *, autocommit: bool = False, connect_timeout: int = 5
) -> psycopg.Connection[Any]:
    """A connection that acts as `role` from its first statement on (`SET ROLE`, outside any
    transaction, so a rollback cannot undo it). Raises psycopg.errors.InsufficientPrivilege
    when the login may not become `role`."""
    conn: psycopg.Connection[Any] = psycopg.connect(
        url, autocommit=True, connect_timeout=connect_timeout
    )
    try:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
        conn.autocommit = autocommit
    except BaseException:
        conn.close()
        raise
    return conn


def ensure_schema(url: str) -> list[str]:
    """Apply the migrations not yet applied, as `apply_migrations` does; but when the schema
    is already current only check it, so a component's login (which may read
    schema_migrations and change nothing) passes. Returns what was applied."""
    try:
        done = dict(applied(url))
    except psycopg.errors.InsufficientPrivilege:
        done = None  # a login from before 0004 may not read it: let apply_migrations say
    if done is not None and all(done.get(m.name) == m.checksum for m in migration_files()):
        return []
    try:
        return apply_migrations(url)
    except psycopg.errors.InsufficientPrivilege as e:
        raise MigrationError(
            f"the schema needs migrations this login may not apply ({e.diag.message_primary}): "
            "run `klineflow migrate` with the owner's URL"
        ) from e


def ensure_login(
    owner_url: str,
    name: str,
    password: str,
    component: str,
    *,
    statement_timeout_ms: int = DASHBOARD_STATEMENT_TIMEOUT_MS,
) -> bool:
    """Make (or update) the LOGIN role `name` with `password` and exactly the group roles of
    `component`; True when it was created. Run with the owner's URL after the migrations.
    The password is hashed here (SCRAM-SHA-256): the server never receives it in clear.
    A dashboard login gets DASHBOARD_TIMEOUTS (its statement timeout `statement_timeout_ms`)
    as role defaults; another component's login has them reset."""
    if component not in COMPONENT_ROLES:
        raise LoginError(f"component {component!r} is not one of {', '.join(COMPONENT_ROLES)}")
    roles = COMPONENT_ROLES[component]
    if not roles:
        raise LoginError(f"the {component} uses no PostgreSQL: it needs no login")
    if not _LOGIN_NAME.match(name) or name.startswith("pg_") or name in GROUP_ROLES:
        raise LoginError(
            f"login name {name!r}: use lower-case letters, digits and _ (at most 63), not "
            f"pg_... nor a group role ({', '.join(GROUP_ROLES)})"
        )
    if len(password) < MIN_PASSWORD_LENGTH:
        raise LoginError(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")
    with psycopg.connect(owner_url, autocommit=True) as conn, conn.transaction():
        present = {
            str(r[0])
            for r in conn.execute(
                "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (list(GROUP_ROLES),)
            )
        }
        missing = [r for r in GROUP_ROLES if r not in present]
        if missing:
            raise LoginError(
                f"the group roles {', '.join(missing)} do not exist yet: run `klineflow "
                "migrate` with the owner's URL first"
            )
        me = conn.execute("SELECT current_user").fetchone()
        if me is not None and me[0] == name:
            raise LoginError(f"{name!r} is the login running this command")
        row = conn.execute(
            "SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls "
            "FROM pg_roles WHERE rolname = %s",
            (name,),
        ).fetchone()
        if row is not None and row[0]:
            raise LoginError(
                f"the role {name!r} exists with administrative rights (superuser, createrole, "
                "createdb, replication or bypassrls): a component's login must have none"
            )
        verifier = conn.pgconn.encrypt_password(
            password.encode(), name.encode(), b"scram-sha-256"
        ).decode()
        verb = "CREATE ROLE {} LOGIN INHERIT PASSWORD {}" if row is None else (
            "ALTER ROLE {} LOGIN INHERIT PASSWORD {}"
        )  # fmt: skip
        conn.execute(sql.SQL(verb).format(sql.Identifier(name), sql.Literal(verifier)))
        member_of = {
            str(r[0])
            for r in conn.execute(
                "SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
                "JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = %s",
                (name,),
            )
        }
        for group in GROUP_ROLES:
            if group in roles and group not in member_of:
                conn.execute(
                    sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(name))
                )
            elif group not in roles and group in member_of:  # another component's: taken back
                conn.execute(
                    sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(group), sql.Identifier(name))
                )
        timeouts = dict(DASHBOARD_TIMEOUTS, statement_timeout=f"{int(statement_timeout_ms)}ms")
        for setting, value in timeouts.items():
            if component == "dashboard":
                statement = sql.SQL("ALTER ROLE {} SET {} = {}").format(
                    sql.Identifier(name), sql.Identifier(setting), sql.Literal(value)
                )
            else:
                statement = sql.SQL("ALTER ROLE {} RESET {}").format(
                    sql.Identifier(name), sql.Identifier(setting)
                )
            conn.execute(statement)
    return row is None
