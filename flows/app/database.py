"""The stores a command works on: the configured Redis and PostgreSQL or the embedded ones
(started if need be), and the database with its schema current (migrated by a login that
may, checked by one that may only read it). Every command opens them through here."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from flows.app.errors import AppError, BadInput, LoginRefused, Unreachable
from flows.app.urls import redacted, scrubbed
from flows.settings import Settings


def redis_url(settings: Settings) -> str:
    """The configured Redis, else the embedded one (started if need be)."""
    from flows.services import Services

    try:
        return Services(settings.data_dir).redis_url(settings.redis_url_value())
    except Exception as e:  # the embedded server failed to start (disk, permissions, ...)
        raise AppError(f"could not start the embedded Redis: {' '.join(str(e).split())}") from e


def database_url(settings: Settings) -> str:
    """The configured PostgreSQL, else the embedded one (started if need be)."""
    from flows.services import Services

    try:
        return Services(settings.data_dir).database_url(settings.database_url_value())
    except Exception as e:  # the embedded server failed to start
        raise AppError(f"could not start the embedded PostgreSQL: {' '.join(str(e).split())}",
                       "see the server's log under the data directory") from e  # fmt: skip


def open_database(
    settings: Settings, away_ok: bool = False, warn: Callable[[str], None] | None = None
) -> str:
    """The PostgreSQL URL, its schema current; a server that does not answer within 5 s is
    Unreachable. `away_ok` (the live flow): a configured server that does not answer is not
    an error (`warn` says so); the flow starts without it and its rules begin, migrating
    first, when it answers."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from flows.storage.migrations import MigrationError
    from flows.storage.pg_roles import ensure_schema

    url = database_url(settings)
    try:
        given = conninfo_to_dict(url)
    except psycopg.Error as e:
        raise BadInput(f"bad PostgreSQL URL {redacted(url)}: {scrubbed(str(e), url)}") from None
    checked = url if "connect_timeout" in given else make_conninfo(url, connect_timeout=5)
    try:
        ensure_schema(checked)  # a component's login only checks that the schema is current
    except MigrationError as e:
        raise AppError(str(e)) from None
    except psycopg.OperationalError as e:
        text = scrubbed(str(e), url)
        if "authentication failed" in text or ("role" in text and "does not exist" in text):
            raise LoginRefused(f"PostgreSQL at {redacted(url)} refused the login ({text})",
                               "check the user and password in --database-url or "
                               "KLINEFLOW_DATABASE_URL") from None  # fmt: skip
        if away_ok and settings.database_url_value():
            if warn is not None:
                warn("PostgreSQL does not answer; klines start now, the trader rules when it "
                     "answers")  # fmt: skip
            return url
        raise Unreachable(f"cannot reach PostgreSQL at {redacted(url)} ({text})",
                          "start it, or give another with --database-url or "
                          "KLINEFLOW_DATABASE_URL") from None  # fmt: skip
    return url


@contextlib.contextmanager
def database_errors(url: str) -> Iterator[None]:
    """PostgreSQL's failures inside the block as one line naming the server (its password
    hidden): Unreachable when it does not answer, AppError with its message otherwise."""
    import psycopg

    try:
        yield
    except psycopg.OperationalError as e:
        raise Unreachable(f"cannot reach PostgreSQL at {redacted(url)}: "
                          f"{scrubbed(str(e), url)}") from None  # fmt: skip
    except psycopg.Error as e:
        primary = e.diag.message_primary if e.diag.message_primary else str(e)
        raise AppError(f"database error: {scrubbed(primary, url)}") from None
