"""Failures a person can act on: what went wrong in one line, what to do, and an exit code.

Exit codes of every `klineflow` command:

- 0: done.
- 1 (``EXIT_FAILURE``): the command ran and failed: a server unreachable, a login refused,
  a port taken, a migration refused, input that gave nothing usable.
- 2 (``EXIT_USAGE``): the command was given something it cannot use: an unknown option, a bad
  setting, interval, URL, rule or file.
- 130 (``EXIT_INTERRUPTED``): a one-off command (replay, backtest, migrate, ...) interrupted
  by Ctrl-C. The long-running ones (up, demo, dashboard) take Ctrl-C and SIGTERM as the way
  to stop: they finish what is in flight, stop their children, print their summary and
  exit 0 (a second Ctrl-C stops at once).

``explain`` turns the exceptions of the libraries underneath (redis, psycopg, pydantic, the
readers, the rule checker, sockets) into an ``AppError``; the command line's boundary
(``flows.cli.common.GuardedGroup``) prints it as one line, and a traceback only with
``--debug``.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flows.domain.stats import RunStats
    from flows.rules.errors import RuleError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class AppError(Exception):
    """A known failure: ``message`` says what, ``hint`` what to do (may be empty)."""

    code = EXIT_FAILURE
    label = "error"  # how the line starts

    def __init__(self, message: str, hint: str = "", detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.detail = detail  # shown under the line (a rule with its caret)

    def line(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


class Unreachable(AppError):
    """A server does not answer."""


class LoginRefused(AppError):
    """A server answered and refused the credentials."""


class PortTaken(AppError):
    """An address to listen on is in use."""


class NothingUsable(AppError):
    """The input gave nothing: an empty, binary or unrecognised file."""


class BadInput(AppError):
    """An option, setting, URL, rule or file the command cannot use."""

    code = EXIT_USAGE


class BadRule(BadInput):
    """A rule the checker refused, shown with a caret under the offending character."""

    label = "bad rule"

    def __init__(self, text: str, error: RuleError) -> None:
        super().__init__(error.message, detail=error.caret(text))
        self.error = error


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _redis(exc: BaseException) -> AppError | None:
    try:
        import redis
    except ImportError:  # pragma: no cover - a dependency
        return None
    text = _first_line(exc)
    if isinstance(exc, redis.AuthenticationError) or (
        isinstance(exc, redis.ResponseError) and text.startswith(("WRONGPASS", "NOAUTH"))
    ):
        return LoginRefused(
            f"Redis refused the login ({text})",
            "check the user and password in --redis-url or KLINEFLOW_REDIS_URL",
        )
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return Unreachable(
            f"cannot reach Redis ({text})",
            "start it, or give another with --redis-url or KLINEFLOW_REDIS_URL",
        )
    if isinstance(exc, ValueError) and "Redis URL" in text:
        return BadInput(
            f"malformed Redis URL: {text}",
            "use redis://[user:password@]host:port/db or unix:///path/to/socket",
        )
    return None


def _postgres(exc: BaseException) -> AppError | None:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - a dependency
        return None
    if not isinstance(exc, psycopg.Error):
        return None
    text = _first_line(exc)
    if isinstance(exc, psycopg.OperationalError):
        if (
            "authentication failed" in text
            or "no password supplied" in text
            or ("role" in text and "does not exist" in text)
        ):
            return LoginRefused(f"PostgreSQL refused the login ({text})",
                                "check the user and password in --database-url or "
                                "KLINEFLOW_DATABASE_URL")  # fmt: skip
        if "does not exist" in text and "database" in text:
            return Unreachable(f"PostgreSQL has no such database ({text})",
                               "create it, or name another in the URL")  # fmt: skip
        return Unreachable(f"cannot reach PostgreSQL ({text})",
                           "start it, or give another with --database-url or "
                           "KLINEFLOW_DATABASE_URL")  # fmt: skip
    if isinstance(exc, psycopg.ProgrammingError) and (
        "invalid dsn" in text or "conninfo" in text or "missing" in text
    ):
        return BadInput(f"malformed PostgreSQL URL ({text})",
                        "use postgresql://user:password@host:port/database")  # fmt: skip
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return LoginRefused(f"PostgreSQL refused the operation ({text})",
                            "this login lacks the right: use the owner's URL")  # fmt: skip
    return AppError(f"PostgreSQL: {text}")


def _settings(exc: BaseException) -> AppError | None:
    try:
        from pydantic import ValidationError
    except ImportError:  # pragma: no cover - a dependency
        return None
    if not isinstance(exc, ValidationError):
        return None
    parts = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(x) for x in err.get("loc", ())) or "a setting"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return BadInput("bad setting " + "; ".join(parts),
                    "see `klineflow --help` and the README's Configuration")  # fmt: skip


def _ours(exc: BaseException) -> AppError | None:
    from flows.binance.rest import RestError
    from flows.binance.universe import UniverseError
    from flows.domain.intervals import IntervalError
    from flows.rules.errors import RuleError
    from flows.services import ServiceError
    from flows.signals.store import TraderError
    from flows.sources.readers import FormatError
    from flows.storage.migrations import MigrationError

    text = _first_line(exc)
    if isinstance(exc, RuleError):
        return BadInput(f"bad rule: {exc.message} (at character {exc.position + 1})")
    if isinstance(exc, IntervalError | UniverseError | FormatError):
        return BadInput(text)
    if isinstance(exc, TraderError | ServiceError | MigrationError):
        return AppError(text)
    if isinstance(exc, RestError):
        return Unreachable(f"the exchange's REST API failed ({text})",
                           "check --exchange-url, or try again later")  # fmt: skip
    return None


def _system(exc: BaseException) -> AppError | None:
    if isinstance(exc, FileNotFoundError):
        return BadInput(f"no such file: {exc.filename or _first_line(exc)}")
    if isinstance(exc, IsADirectoryError):
        return BadInput(f"a directory, not a file: {exc.filename}")
    if isinstance(exc, PermissionError):
        return AppError(f"permission denied: {exc.filename or _first_line(exc)}")
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return PortTaken(f"the address is taken ({_first_line(exc)})",
                         "stop what listens there, or choose another port")  # fmt: skip
    return None


def explain(exc: BaseException) -> AppError | None:
    """The known failure `exc` is, as an AppError; None for a failure nobody foresaw."""
    if isinstance(exc, AppError):
        return exc
    for reader in (_ours, _redis, _postgres, _settings, _system):
        found = reader(exc)
        if found is not None:
            return found
    return None


def nothing_read(stats: RunStats, what: str = "the input") -> NothingUsable | None:
    """Why a run over files gave no trade, with what to do; None when it read trades."""
    if stats.trades_read:
        return None
    dead = stats.dead_letters
    if stats.bytes_total == 0:
        return NothingUsable(f"no trades read: {what} is empty",
                             "give a file with trades in it")  # fmt: skip
    if dead["no_symbol"]:
        return NothingUsable(
            f"no trades read: the symbol of {dead['no_symbol']} file(s) cannot be told from "
            "their names",
            "pass --symbol SYMBOL (e.g. --symbol BTCUSDT)",
        )
    if dead["malformed"] or dead["unknown"] or dead["implausible"] or dead["invalid"]:
        refused = sum(dead[r] for r in ("malformed", "unknown", "implausible", "invalid"))
        return NothingUsable(
            f"no trades read: {refused:,} record(s) of {what} were not trades klineflow can use",
            "see the dead letters (`klineflow status`) and the README's input formats",
        )
    if stats.trades_filtered:
        return NothingUsable(f"no trades read: all {stats.trades_filtered:,} trades were of "
                             "other symbols", "check --symbols")  # fmt: skip
    return NothingUsable(
        f"no trades read: {what} is empty or holds no trades",
        "give captures, recordings, aggTrades/trades dumps or REST JSON",
    )
