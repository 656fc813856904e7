"""`klineflow traders`: trader rules in PostgreSQL, and a dry run of a rule on stored klines.

Every command that touches the database first applies the migrations not applied yet, so it
works on a fresh database. Rules are checked with the flow's own compiler before anything is
saved: a rule the command line accepts is a rule the flow can run (given its intervals).

Failures are one clear line on stderr and a non-zero exit: 2 for bad input (a rule that does
not compile, an unknown interval, conflicting options), 1 for everything else (an unknown
trader, a database or Redis that cannot be reached, a symbol without klines).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from flows.app.errors import BadRule
from flows.app.traders import TraderDb, check_interval, open_traders, validate
from flows.cli.boundary import GuardedGroup
from flows.cli.common import DatabaseUrl, _settings
from flows.signals.patterns import PatternError, check_glob

if TYPE_CHECKING:  # the engine, psycopg and redis load only in the commands that use them
    from flows.rules.errors import RuleError
    from flows.signals.book import TraderRow
    from flows.signals.store import SignalCounts

traders_app = typer.Typer(
    cls=GuardedGroup,
    no_args_is_help=True,
    help="Trader rules: add, list, show, edit, enable/disable, remove, and test a rule on "
    "stored klines.",
)
# user text (rules, names) may contain ":name:" sequences: never turned into emoji
console = Console(stderr=True, emoji=False)
out = Console(emoji=False)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DEFAULT_COOLDOWN = 50  # the schema's default too


class Trigger(StrEnum):
    every_close = "every_close"
    on_change = "on_change"


Ref = Annotated[str, typer.Argument(help="the trader's id or its (unique) name")]
SymbolsOpt = Annotated[
    str | None, typer.Option("--symbols", help="watch only these symbols, e.g. BTCUSDT,ETHUSDT")
]
PatternOpt = Annotated[
    str | None,
    typer.Option(
        "--pattern",
        help="watch the symbols this glob matches (* any characters, ? one), e.g. '*USDT'",
    ),
]


# ------------------------------------------------------------------------------ small helpers


def _fail(message: str, code: int = 1) -> NoReturn:
    console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True, highlight=False)
    raise typer.Exit(code)


def _say(text: str) -> None:
    """Plain text on stdout: user text is never read as markup, lines are never wrapped."""
    out.print(text, markup=False, highlight=False, soft_wrap=True)


def _utc(ms: int) -> str:
    return (EPOCH + timedelta(milliseconds=ms)).strftime("%Y-%m-%d %H:%M:%S")


def _bad_rule(expression: str, error: RuleError) -> NoReturn:
    """The rule, a caret under the offending character, and what is wrong; exit 2."""
    raise BadRule(expression, error)


def _check_name(name: str) -> None:
    if not name.strip():
        _fail("the name must not be empty", 2)
    if name.isdigit():
        _fail(f"the name {name!r} would read as an id: use some letters", 2)


def _symbol_list(text: str) -> tuple[str, ...]:
    symbols = tuple(dict.fromkeys(s.strip().upper() for s in text.split(",") if s.strip()))
    if not symbols:
        _fail("--symbols needs at least one symbol, e.g. --symbols BTCUSDT,ETHUSDT", 2)
    return symbols


def _symbol_choice(
    symbols: str | None, pattern: str | None, all_symbols: bool = False
) -> dict[str, Any] | None:
    """The symbols_mode/symbols/symbols_pattern columns for the options given, or None."""
    given = [name for name, on in (("--symbols", symbols is not None),
                                   ("--pattern", pattern is not None),
                                   ("--all-symbols", all_symbols)) if on]  # fmt: skip
    if len(given) > 1:
        _fail(f"{' and '.join(given)} exclude each other: give one", 2)
    if symbols is not None:
        return {"symbols_mode": "list", "symbols": _symbol_list(symbols), "symbols_pattern": None}
    if pattern is not None:
        try:
            glob = check_glob(pattern)
        except PatternError as e:
            _fail(f"bad --pattern {pattern!r}: {e}", 2)
        return {"symbols_mode": "pattern", "symbols": (), "symbols_pattern": glob}
    if all_symbols:
        return {"symbols_mode": "all", "symbols": (), "symbols_pattern": None}
    return None


def _symbols_text(row: TraderRow) -> str:
    if row.symbols_mode == "list":
        return ",".join(row.symbols)
    if row.symbols_mode == "pattern":
        return f"matching {row.symbols_pattern}"
    return "all"


def _label(row: TraderRow) -> str:
    return f"trader {row.id} {row.name!r}"


# ------------------------------------------------------------------------------ the database


@contextlib.contextmanager
def _database(database_url: str | None) -> Iterator[TraderDb]:
    """The migrated database (its failures are explained by the error boundary)."""
    with open_traders(_settings(database_url=database_url)) as db:
        yield db


def _row_json(row: TraderRow, counts: SignalCounts | None = None) -> str:
    record = asdict(row)  # with its signal counts (0 when none)
    record["signals"] = counts.total if counts else 0
    record["signals_24h"] = counts.last_24h if counts else 0
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False)


# ------------------------------------------------------------------------------ commands


@traders_app.command()
def add(
    name: Annotated[str, typer.Argument(help="a name, unique among the owner's traders")],
    expression: Annotated[str, typer.Argument(help='the rule, e.g. "rsi(14) < 30"')],
    interval: Annotated[str, typer.Option("--interval", help="evaluated on these klines")],
    symbols: SymbolsOpt = None,
    pattern: PatternOpt = None,
    trigger: Annotated[
        Trigger, typer.Option(help="signal on every close where it holds, or when it starts to")
    ] = Trigger.on_change,
    cooldown: Annotated[
        int, typer.Option(min=0, help="bars within which a new fire counts as a repeat")
    ] = DEFAULT_COOLDOWN,
    description: Annotated[str, typer.Option(help="free text")] = "",
    owner: Annotated[str, typer.Option(help="the user the trader belongs to")] = "local",
    disabled: Annotated[bool, typer.Option("--disabled", help="save it switched off")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Check a rule and save it as a new trader (watching every symbol unless told)."""
    from flows.signals.book import TraderRow

    _check_name(name)
    choice = _symbol_choice(symbols, pattern) or {"symbols_mode": "all"}
    row = TraderRow(
        id=0,
        name=name,
        expression=expression,
        interval=interval,
        description=description,
        trigger_mode=trigger.value,
        cooldown_bars=cooldown,
        enabled=not disabled,
        **choice,
    )
    validate(row)
    with _database(database_url) as db:
        saved = db.store.add(row, owner=owner)
    state = "" if saved.enabled else ", disabled"
    _say(f"added trader {saved.name!r}: id {saved.id}, version {saved.version}{state}")


@traders_app.command("list")
def list_traders(
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Every trader, enabled or not."""
    with _database(database_url) as db:
        rows = db.store.all()
        counts = db.store.signal_counts()
    if as_json:
        for row in rows:
            _say(_row_json(row, counts.get(row.id)))
        return
    if not rows:
        _say("no traders yet (add one with: klineflow traders add NAME EXPR --interval 1m)")
        return
    wide = _traders_table(rows, counts, with_expression=True)
    needed = Measurement.get(out, out.options.update_width(10_000), wide).maximum
    if needed <= out.width:
        out.print(wide)
        return
    # a narrow terminal: the rules below the table, one per line, rather than cut to shreds
    out.print(_traders_table(rows, counts, with_expression=False))
    _say("expressions, by id:")
    for row in rows:
        _say(f"{row.id:>4}  {row.expression}")


def _traders_table(
    rows: Sequence[TraderRow], counts: dict[int, SignalCounts], with_expression: bool
) -> Table:
    """Short headers and no padding: the table without its rules fits 80 columns."""
    table = Table(title="traders", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("id", "name", "iv", "symbols", "trigger", "cd", "on", "v", "signals",
                   "24h"):  # fmt: skip
        right = column in ("id", "cd", "v", "signals", "24h")
        table.add_column(column, overflow="fold", justify="right" if right else "left")
    if with_expression:
        table.add_column("expression", overflow="fold")
    for row in rows:
        cells: list[str | Text] = [
            str(row.id),
            Text(row.name),
            row.interval,
            Text(_symbols_text(row)),
            row.trigger_mode,
            str(row.cooldown_bars),
            "yes" if row.enabled else "no",
            str(row.version),
            f"{counts[row.id].total:,}" if row.id in counts else "0",
            f"{counts[row.id].last_24h:,}" if row.id in counts else "0",
        ]
        if with_expression:
            cells.append(Text(row.expression))
        table.add_row(*cells)
    return table


@traders_app.command()
def show(
    ref: Ref,
    signals: Annotated[int, typer.Option(min=0, help="how many recent signals to list")] = 10,
    database_url: DatabaseUrl = None,
) -> None:
    """One trader: every field, its signals and the rule errors the flow recorded."""
    with _database(database_url) as db:
        row = db.store.find(ref)
        recent = db.store.signals(row.id, limit=signals) if signals else []
        errors = db.store.errors(row.id)
        counted = db.store.signal_counts().get(row.id)
    total, fires = (counted.total, counted.fires) if counted else (0, 0)
    fields = [
        ("id", str(row.id)),
        ("name", row.name),
        ("owner id", str(row.owner_id)),
        ("description", row.description or "-"),
        ("expression", row.expression),
        ("interval", row.interval),
        ("symbols", _symbols_text(row)),
        ("trigger", row.trigger_mode),
        ("cooldown", f"{row.cooldown_bars} bars"),
        ("enabled", "yes" if row.enabled else "no"),
        ("version", str(row.version)),
        ("signals", f"{total} ({fires} fires counting repeats)"),
        ("rule errors", str(len(errors))),
    ]
    for label, value in fields:
        _say(f"{label + ':':<13} {value}")
    if recent:
        table = Table(title=f"last {len(recent)} signals")
        table.add_column("kline open (UTC)")
        table.add_column("symbol")
        table.add_column("price", justify="right")
        table.add_column("repeats", justify="right")
        for s in recent:
            table.add_row(
                _utc(int(s["kline_open_ms"])),
                Text(str(s["symbol"])),
                str(s["price"]),
                str(s["repeat_count"]),
            )
        out.print(table)
    if errors:
        table = Table(title="rule errors (that version of the rule is off for the symbol)")
        table.add_column("version", justify="right")
        table.add_column("symbol")
        table.add_column("kline open (UTC)")
        table.add_column("error", overflow="fold")
        for e in errors:
            table.add_row(
                f"{e['trader_version']}{'' if e['trader_version'] == row.version else ' (old)'}",
                Text(str(e["symbol"])),
                _utc(int(e["kline_open_ms"])) if int(e["kline_open_ms"]) > 0 else "when loaded",
                Text(str(e["error"])),
            )
        out.print(table)


def _switch(ref: str, enabled: bool, database_url: str | None) -> None:
    with _database(database_url) as db:
        row = db.store.find(ref)
        was = row.enabled
        if was != enabled:
            row = db.store.update(row.id, enabled=enabled)
    state = "enabled" if enabled else "disabled"
    _say(f"{_label(row)} {'was already' if was == enabled else 'is now'} {state}")


@traders_app.command()
def enable(ref: Ref, database_url: DatabaseUrl = None) -> None:
    """Switch a trader on (the running flow picks it up at once)."""
    _switch(ref, True, database_url)


@traders_app.command()
def disable(ref: Ref, database_url: DatabaseUrl = None) -> None:
    """Switch a trader off; its signals stay."""
    _switch(ref, False, database_url)


@traders_app.command()
def remove(ref: Ref, database_url: DatabaseUrl = None) -> None:
    """Remove a trader for good (the running flow drops it at once); its signals stay."""
    with _database(database_url) as db:
        row = db.store.find(ref)
        counted = db.store.signal_counts().get(row.id)
        db.store.remove(row.id)
    kept = counted.total if counted else 0
    _say(f"{_label(row)} removed; its {kept} signal{'' if kept == 1 else 's'} stay")


@traders_app.command()
def edit(
    ref: Ref,
    expr: Annotated[str | None, typer.Option("--expr", help="a new rule")] = None,
    interval: Annotated[str | None, typer.Option(help="a new interval")] = None,
    symbols: SymbolsOpt = None,
    pattern: PatternOpt = None,
    all_symbols: Annotated[bool, typer.Option("--all-symbols", help="watch every symbol")] = False,
    trigger: Annotated[Trigger | None, typer.Option(help="every_close or on_change")] = None,
    cooldown: Annotated[int | None, typer.Option(min=0, help="bars of cooldown")] = None,
    name: Annotated[str | None, typer.Option(help="a new name")] = None,
    description: Annotated[str | None, typer.Option(help="a new description")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Change a trader. A new rule or interval is checked first and makes a new version."""

    from flows.signals.book import TraderRow

    changes: dict[str, Any] = {}
    if expr is not None:
        changes["expression"] = expr
    if interval is not None:
        changes["interval"] = interval
    changes.update(_symbol_choice(symbols, pattern, all_symbols) or {})
    if trigger is not None:
        changes["trigger_mode"] = trigger.value
    if cooldown is not None:
        changes["cooldown_bars"] = cooldown
    if name is not None:
        _check_name(name)
        changes["name"] = name
    if description is not None:
        changes["description"] = description
    if not changes:
        _fail("nothing to change: give at least one option (see --help)", 2)
    if interval is not None:
        check_interval(interval)
    with _database(database_url) as db:
        before = db.store.find(ref)
        after = TraderRow(**{**asdict(before), **changes})
        validate(after)
        saved = db.store.update(before.id, **changes)
    if saved.version != before.version:
        _say(f"{_label(saved)} saved: version {saved.version} (was {before.version})")
    else:
        _say(f"{_label(saved)} saved: version {saved.version} (the rule is unchanged)")


from flows.cli import traders_test  # noqa: E402, F401  (registers `traders test`)

__all__ = ["traders_app"]
