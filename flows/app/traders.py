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

from flows.app.database import database_errors, open_database, redis_url
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


@contextlib.contextmanager
def open_traders(settings: Settings) -> Iterator[TraderDb]:
    """The database (opened as every command opens it: flows.app.database) and its trader
    store; what the store refuses is one line."""

    from flows.signals.store import TraderError, TraderStore

    url = open_database(settings)
    try:
        with database_errors(url):
            yield TraderDb(url, TraderStore(url))
    except TraderError as e:
        raise AppError(str(e)) from None


def stored_klines(
    settings: Settings, symbol: str, bars: int, end_ms: int
) -> tuple[str, Callable[[str], Sequence[Kline]]]:
    """(the Redis URL, a reader of the newest `bars` klines of `symbol` per interval that
    closed before `end_ms`); a Redis that fails is Unreachable, named by its URL."""
    import redis

    from flows.signals.step import redis_seeder

    url = redis_url(settings)
    seed = redis_seeder(url, KeySpace(settings.namespace))

    def read(interval: str) -> Sequence[Kline]:
        try:
            return seed(symbol, interval, end_ms, bars)
        except redis.RedisError as e:
            raise Unreachable(f"cannot reach Redis at {redacted(url)}: "
                              f"{scrubbed(str(e), url)}") from None  # fmt: skip

    return url, read
