"""Dashboard accounts: argon2 password hashes in ``users.password_hash``.

These functions connect as the process's login role (the dashboard role may not read
password hashes). `verify` spends the same argon2 work whether or not the name exists, so
its timing does not tell which names are taken.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from flows.signals.store import ensure_user

_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("klineflow: no such user")
OIDC_PREFIX = "oidc:"  # names of accounts made from a single sign-on identity


class UserError(ValueError):
    """The account cannot be created or changed as asked."""


@dataclass(frozen=True)
class User:
    id: int
    name: str
    has_password: bool
    created_at: datetime


def _connect(db_url: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(db_url, connect_timeout=5)


def add_user(db_url: str, name: str, password: str) -> int:
    """Create the account (or give a password to an existing one that has none, such as an
    owner made by `klineflow traders add --owner`); its id."""
    name = name.strip()
    if not name:
        raise UserError("the user name must not be empty")
    if name.startswith(OIDC_PREFIX):
        raise UserError(f"names starting with {OIDC_PREFIX!r} are kept for single sign-on")
    if len(password) < 8:
        raise UserError("the password needs at least 8 characters")
    digest = _hasher.hash(password)
    with _connect(db_url) as conn:
        row = conn.execute(
            "INSERT INTO users (name, password_hash) VALUES (%s, %s) "
            "ON CONFLICT (name) DO UPDATE SET password_hash = EXCLUDED.password_hash "
            "WHERE users.password_hash IS NULL RETURNING id",
            (name, digest),
        ).fetchone()
        if row is None:
            raise UserError(f"the user {name!r} already exists")
        return int(str(row[0]))


def set_password(db_url: str, name: str, password: str) -> None:
    if len(password) < 8:
        raise UserError("the password needs at least 8 characters")
    with _connect(db_url) as conn:
        done = conn.execute(
            "UPDATE users SET password_hash = %s WHERE name = %s RETURNING id",
            (_hasher.hash(password), name),
        ).fetchone()
    if done is None:
        raise UserError(f"no user named {name!r}")


def verify(db_url: str, name: str, password: str) -> int | None:
    """The user's id when the password is right, else None."""
    with _connect(db_url) as conn:
        row = conn.execute(
            "SELECT id, password_hash FROM users WHERE name = %s", (name.strip(),)
        ).fetchone()
        digest = str(row[1]) if row is not None and row[1] is not None else None
        try:
            _hasher.verify(digest or _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            return None
        if row is None or digest is None:
            return None
        user_id = int(str(row[0]))
        if _hasher.check_needs_rehash(digest):
            conn.execute(
                "UPDATE users SET password_hash = %s WHERE id = %s",
                (_hasher.hash(password), user_id),
            )
        return user_id


def oidc_user(db_url: str, subject: str) -> tuple[int, str]:
    """The account of a single sign-on identity (its e-mail, else its subject), created on
    first sign-in without a password: (id, name)."""
    name = OIDC_PREFIX + subject.strip()
    if name == OIDC_PREFIX:
        raise UserError("the identity provider gave neither an e-mail nor a subject")
    with _connect(db_url) as conn:
        return ensure_user(conn, name), name


def list_users(db_url: str) -> list[User]:
    with _connect(db_url) as conn:
        rows = conn.execute(
            "SELECT id, name, password_hash IS NOT NULL, created_at FROM users ORDER BY id"
        ).fetchall()
    return [User(int(str(r[0])), str(r[1]), bool(r[2]), r[3]) for r in rows]  # type: ignore[arg-type]
