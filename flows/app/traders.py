"""Traders as the command line and the dashboard handle them: the database opened and
migrated, a trader validated as the flow will, the stored klines a dry run reads, and the
signal counts per trader.

Failures are ``AppError``s naming the server by its URL with the password hidden
(``flows.app.urls``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flows.app.errors import AppError, BadInput, BadRule, Unreachable
from flows.app.urls import redacted, scrubbed
from flows.domain.intervals import IntervalError, get_interval
from flows.domain.keys import KeySpace
from flows.settings import Settings
from flows.signals.patterns import PatternError, glob_of

if TYPE_CHECKING:
    from flows.domain.kline import Kline
    from flows.signals.book import TraderRow
    from flows.signals.store import TraderStore


@dataclass(frozen=True)
class TraderDb:
    url: str
    store: TraderStore


def check_interval(interval: str) -> None:
    try:
        get_interval(interval)
    except IntervalError as e:
        raise BadInput(str(e)) from None


def validate(row: TraderRow, intervals: Sequence[str] | None = None) -> None:
    """Everything the flow will check about a trader, before it is saved: its interval,
    its symbols pattern, its rule (BadRule, with the caret) and, given the flow's intervals,
    that it needs none the flow does not build."""
    from flows.rules.errors import RuleError
    from flows.signals.book import compile_trader

    check_interval(row.interval)
    if row.symbols_mode == "pattern":
        try:
            glob_of(row.symbols_pattern or "")
        except PatternError as e:
            raise BadInput(f"bad --pattern {row.symbols_pattern!r}: {e}") from None
    try:
        compile_trader(row, intervals)
    except RuleError as e:
        raise BadRule(row.expression, e) from None


def database_url(settings: Settings) -> str:
    """The configured PostgreSQL, else the embedded one (started if need be)."""
    from flows.services import Services

    configured = settings.database_url_value()
    if configured:
        return configured
    try:
        return Services(settings.data_dir).database_url(None)
    except Exception as e:  # the embedded server failed to start (disk, permissions, ...)
        raise AppError(f"could not start the embedded PostgreSQL: {' '.join(str(e).split())}",
                       "see the server's log under the data directory") from e  # fmt: skip


@contextlib.contextmanager
def open_traders(settings: Settings) -> Iterator[TraderDb]:
    """The migrated database and its trader store; a connection fails within 5 s."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from flows.signals.store import TraderError, TraderStore
    from flows.storage.migrations import MigrationError, apply_migrations

    url = database_url(settings)
    try:
        given = conninfo_to_dict(url)
    except psycopg.Error as e:
        raise BadInput(f"bad PostgreSQL URL {redacted(url)}: {scrubbed(str(e), url)}") from None
    migrate_url = url if "connect_timeout" in given else make_conninfo(url, connect_timeout=5)
    try:
        apply_migrations(migrate_url)
        yield TraderDb(url, TraderStore(url))
    except TraderError as e:
        raise AppError(str(e)) from None
    except MigrationError as e:
        raise AppError(f"cannot migrate the database: {e}") from None
    except psycopg.OperationalError as e:
        raise Unreachable(f"cannot reach PostgreSQL at {redacted(url)}: "
                          f"{scrubbed(str(e), url)}") from None  # fmt: skip
    except psycopg.Error as e:
        primary = e.diag.message_primary if e.diag.message_primary else str(e)
        raise AppError(f"database error: {scrubbed(primary, url)}") from None


def stored_klines(
    settings: Settings, symbol: str, bars: int, end_ms: int
) -> tuple[str, Callable[[str], Sequence[Kline]]]:
    """(the Redis URL, a reader of the newest `bars` klines of `symbol` per interval that
    closed before `end_ms`); a Redis that fails is Unreachable, named by its URL."""
    import redis

    from flows.services import Services
    from flows.signals.step import redis_seeder

    configured = settings.redis_url_value()
    try:
        url = configured or Services(settings.data_dir).redis_url(None)
    except Exception as e:  # the embedded server failed to start
        raise AppError(f"could not start the embedded Redis: {' '.join(str(e).split())}") from e
    seed = redis_seeder(url, KeySpace(settings.namespace))

    def read(interval: str) -> Sequence[Kline]:
        try:
            return seed(symbol, interval, end_ms, bars)
        except redis.RedisError as e:
            raise Unreachable(f"cannot reach Redis at {redacted(url)}: "
                              f"{scrubbed(str(e), url)}") from None  # fmt: skip

    return url, read
