"""The database a command works on: the configured PostgreSQL or the embedded one, with its
schema current (migrated by a login that may, checked by one that may only read it)."""

from __future__ import annotations

from collections.abc import Callable

from flows.app.errors import AppError, LoginRefused, Unreachable
from flows.app.urls import redacted, scrubbed
from flows.settings import Settings


def open_database(
    settings: Settings, away_ok: bool = False, warn: Callable[[str], None] | None = None
) -> str:
    """The PostgreSQL URL, its schema current. `away_ok` (the live flow): a configured
    server that does not answer is not an error (`warn` says so); the flow starts without it
    and its rules begin, migrating first, when it answers."""
    import psycopg

    from flows.app.traders import database_url
    from flows.storage.migrations import MigrationError
    from flows.storage.pg_roles import ensure_schema

    url = database_url(settings)
    try:
        ensure_schema(url)  # a component's login only checks that the schema is current
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
