"""Dashboard accounts and sessions (sql/0006).

Two kinds of caller:

- The dashboard, with its own login, which may neither read nor change ``users``: it signs
  in through SECURITY DEFINER functions that never hand it a stored hash. `sign_in` asks for
  the name's argon2 parameters and salt (a made-up but stable salt for an unknown name),
  computes the argon2 hash of the typed password with them here, and sends that for
  comparison; the attempt is committed (its failure counted) before its outcome is asked
  for, so a caller cannot roll a failure back. A success gives a `Session` whose token is
  the only proof of the user afterwards (`Database.user_tx`).
- The owner (`klineflow users`, the demo, tests): `add_user`, `set_password`, `list_users`
  and `set_sso` write the tables directly and need the owner's URL; another login gets a
  UserError saying so.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from argon2 import PasswordHasher, Type
from argon2.low_level import hash_secret

from flows.storage.pg_roles import DASHBOARD_TIMEOUTS, timeout_options

from .db import Session

_hasher = PasswordHasher()
OIDC_PREFIX = "oidc:"  # names of accounts made from a single sign-on identity
MIN_PASSWORD_LENGTH = 8
MAX_NAME_LENGTH = 200
_PARAMS = re.compile(r"^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$([A-Za-z0-9+/]+)$")
OWNER_NEEDED = (
    "this needs the owner's database URL (the one `klineflow migrate` runs with): the "
    "dashboard's login may not read or change accounts"
)


class UserError(ValueError):
    """The account cannot be created or changed as asked."""


class SignInUnavailable(UserError):
    """Signing in this way is not possible now (too many failures, single sign-on off)."""


@dataclass(frozen=True)
class User:
    id: int
    name: str
    has_password: bool
    created_at: datetime


def _connect(db_url: str) -> psycopg.Connection[tuple[Any, ...]]:
    return psycopg.connect(
        db_url, connect_timeout=5, autocommit=True, options=timeout_options(DASHBOARD_TIMEOUTS)
    )


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")


# -- signing in (the dashboard's login may) ---------------------------------------------------
def _typed_hash(conn: psycopg.Connection[Any], name: str, password: str) -> str:
    """The encoded argon2 hash of `password` with the parameters and salt stored for `name`."""
    row = conn.execute("SELECT params, hash_len FROM klineflow_auth_params(%s)", (name,)).fetchone()
    assert row is not None
    match = _PARAMS.match(str(row[0]))
    if match is None:
        raise UserError(f"the database gave argon2 parameters of an unknown form: {row[0]!r}")
    memory, time, lanes, salt = match.groups()
    encoded = hash_secret(
        password.encode(),
        base64.b64decode(salt + "=" * (-len(salt) % 4)),
        time_cost=int(time),
        memory_cost=int(memory),
        parallelism=int(lanes),
        hash_len=int(row[1]),
        type=Type.ID,
    )
    return encoded.decode()


def sign_in(db_url: str, name: str, password: str) -> Session | None:
    """A session when `password` is `name`'s, None when not (or no such user). Raises
    SignInUnavailable after too many failures for the name (auth_settings), and
    psycopg.Error when PostgreSQL cannot be reached."""
    name = name.strip()
    if not name or not password or len(name) > MAX_NAME_LENGTH:
        return None
    with _connect(db_url) as conn:
        typed = _typed_hash(conn, name, password)
        rehash = _hasher.hash(password) if _hasher.check_needs_rehash(typed) else None
        # autocommit: the attempt (and a failure's count) is committed before the outcome
        ticket = conn.execute(
            "SELECT klineflow_sign_in_attempt(%s, %s, %s)", (name, typed, rehash)
        ).fetchone()
        assert ticket is not None
        row = conn.execute(
            "SELECT outcome, user_id, name, token, expires_at FROM klineflow_sign_in_result(%s)",
            (ticket[0],),
        ).fetchone()
    if row is None or row[0] == "refused":
        return None
    if row[0] == "throttled":
        raise SignInUnavailable("too many failed sign-ins for this name: try again later")
    return Session(int(row[1]), str(row[2]), str(row[3]), row[4])


def sso_sign_in(db_url: str, subject: str) -> Session:
    """A session for a single sign-on identity (its e-mail, else its subject), whose account
    `oidc:<subject>` is made on first use. The dashboard vouches for the identity, so the
    database allows this only while the owner has switched single sign-on on (`set_sso`)."""
    subject = subject.strip()
    if not subject:
        raise UserError("the identity provider gave neither an e-mail nor a subject")
    try:
        with _connect(db_url) as conn:
            row = conn.execute(
                "SELECT user_id, name, token, expires_at FROM klineflow_sso_sign_in(%s)",
                (subject,),
            ).fetchone()
    except (psycopg.errors.InsufficientPrivilege, psycopg.errors.InvalidParameterValue) as e:
        hint = f" ({e.diag.message_hint})" if e.diag.message_hint else ""
        raise SignInUnavailable(f"{e.diag.message_primary}{hint}") from None
    assert row is not None
    return Session(int(row[0]), str(row[1]), str(row[2]), row[3])


def resume(db_url: str, token: str) -> Session | None:
    """The live session `token` names (kept by the browser, e.g. in a cookie), or None when
    it names none (made up, expired, signed out, password changed). sql/0010."""
    with _connect(db_url) as conn:
        row = conn.execute(
            "SELECT user_id, name, expires_at FROM klineflow_session_user(%s)", (token,)
        ).fetchone()
    return Session(int(row[0]), str(row[1]), token, row[2]) if row is not None else None


def sign_out(db_url: str, session: Session) -> bool:
    """End the session (its token stops naming the user at once); True if it was live."""
    with _connect(db_url) as conn:
        row = conn.execute("SELECT klineflow_sign_out(%s)", (session.token,)).fetchone()
    return bool(row and row[0])


def change_password(db_url: str, session: Session, old: str, new: str) -> bool:
    """Give the session's user a new password, given the old one; her other sessions end.
    False when the old password is wrong or the session is not live."""
    _check_password(new)
    with _connect(db_url) as conn:
        typed = _typed_hash(conn, session.name, old)
        row = conn.execute(
            "SELECT klineflow_change_password(%s, %s, %s)",
            (session.token, typed, _hasher.hash(new)),
        ).fetchone()
    return bool(row and row[0])


def verify(db_url: str, name: str, password: str) -> int | None:
    """The user's id when the password is right, else None (signs in and out again)."""
    session = sign_in(db_url, name, password)
    if session is None:
        return None
    sign_out(db_url, session)
    return session.user_id


# -- the owner's (klineflow users) -------------------------------------------------------------
def _as_owner(db_url: str) -> psycopg.Connection[tuple[Any, ...]]:
    return psycopg.connect(db_url, connect_timeout=5)


def add_user(db_url: str, name: str, password: str) -> int:
    """Create the account (or give a password to an existing one that has none, such as an
    owner made by `klineflow traders add --owner`); its id. Needs the owner's URL."""
    name = name.strip()
    if not name:
        raise UserError("the user name must not be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise UserError(f"the user name has more than {MAX_NAME_LENGTH} characters")
    if name.startswith(OIDC_PREFIX):
        raise UserError(f"names starting with {OIDC_PREFIX!r} are kept for single sign-on")
    _check_password(password)
    digest = _hasher.hash(password)
    try:
        with _as_owner(db_url) as conn:
            row = conn.execute(
                "INSERT INTO users (name, password_hash) VALUES (%s, %s) "
                "ON CONFLICT (name) DO UPDATE SET password_hash = EXCLUDED.password_hash "
                "WHERE users.password_hash IS NULL RETURNING id",
                (name, digest),
            ).fetchone()
    except psycopg.errors.InsufficientPrivilege:
        raise UserError(OWNER_NEEDED) from None
    if row is None:
        raise UserError(f"the user {name!r} already exists")
    return int(row[0])


def set_password(db_url: str, name: str, password: str) -> None:
    """A new password for `name`, set by the owner; the user's sessions end."""
    _check_password(password)
    try:
        with _as_owner(db_url) as conn:
            done = conn.execute(
                "UPDATE users SET password_hash = %s WHERE name = %s RETURNING id",
                (_hasher.hash(password), name),
            ).fetchone()
            if done is not None:
                conn.execute("DELETE FROM sessions WHERE user_id = %s", (done[0],))
    except psycopg.errors.InsufficientPrivilege:
        raise UserError(OWNER_NEEDED) from None
    if done is None:
        raise UserError(f"no user named {name!r}")


def list_users(db_url: str) -> list[User]:
    try:
        with _as_owner(db_url) as conn:
            rows = conn.execute(
                "SELECT id, name, password_hash IS NOT NULL, created_at FROM users ORDER BY id"
            ).fetchall()
    except psycopg.errors.InsufficientPrivilege:
        raise UserError(OWNER_NEEDED) from None
    return [User(int(r[0]), str(r[1]), bool(r[2]), r[3]) for r in rows]


def set_sso(db_url: str, enabled: bool) -> None:
    """Let the dashboard sign in single sign-on identities (or stop it). On means: whoever
    holds the dashboard's login can get a session for any `oidc:` account."""
    try:
        with _as_owner(db_url) as conn:
            conn.execute("UPDATE auth_settings SET sso_enabled = %s", (enabled,))
    except psycopg.errors.InsufficientPrivilege:
        raise UserError(OWNER_NEEDED) from None


def sso_enabled(db_url: str) -> bool:
    try:
        with _as_owner(db_url) as conn:
            row = conn.execute("SELECT sso_enabled FROM auth_settings").fetchone()
    except psycopg.errors.InsufficientPrivilege:
        raise UserError(OWNER_NEEDED) from None
    return bool(row and row[0])


DEMO_PASSWORD = "local-demo"


def demo_password(db_url: str) -> str | None:
    """The demo's user `local` gets a password when it has none, so the dashboard's Signals
    and Traders pages open at once; returns it (None when one was set before). Run with the
    owner's URL, as the demo is."""
    with _as_owner(db_url) as conn:
        row = conn.execute("SELECT password_hash FROM users WHERE name = 'local'").fetchone()
    if row is None or row[0] is not None:
        return None
    set_password(db_url, "local", DEMO_PASSWORD)
    return DEMO_PASSWORD
