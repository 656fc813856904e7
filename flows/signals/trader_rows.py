"""Rows of ``traders``: the columns read and written, and the statements every writer of
traders shares (the command line's ``TraderStore`` as the owner, the dashboard's data layer
under row-level security, the flow's ``BookWatcher`` as its role).

A trader is never deleted: ``remove_trader`` marks it removed (sql/0011), which keeps its
signals; ``load_traders`` never returns a removed one.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from flows.signals.book import TraderRow

TRADER_COLUMNS = (
    "id, owner_id, name, description, expression, interval, symbols_mode, symbols, "
    "symbols_pattern, trigger_mode, cooldown_bars, enabled, version"
)


# the columns of `traders` a user may change (the rest are keys, owner and bookkeeping)
WRITABLE_TRADER_FIELDS = frozenset(
    {
        "name",
        "description",
        "expression",
        "interval",
        "symbols_mode",
        "symbols",
        "symbols_pattern",
        "trigger_mode",
        "cooldown_bars",
        "enabled",
    }
)


def ensure_user(conn: psycopg.Connection[Any], name: str) -> int:
    """The id of the user `name`, made (without a password) if there is none."""
    row = conn.execute(
        "INSERT INTO users (name) VALUES (%s) ON CONFLICT (name) DO UPDATE "
        "SET name = EXCLUDED.name RETURNING id",
        (name,),
    ).fetchone()
    assert row is not None
    return int(row[0])


INSERT_TRADER = (
    "INSERT INTO traders (owner_id, name, description, expression, interval, symbols_mode, "
    "symbols, symbols_pattern, trigger_mode, cooldown_bars, enabled) "
    f"VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING {TRADER_COLUMNS}"
)


def trader_params(owner_id: int, row: TraderRow) -> tuple[Any, ...]:
    """The values of INSERT_TRADER for a new trader of `owner_id`."""
    return (
        owner_id,
        row.name,
        row.description,
        row.expression,
        row.interval,
        row.symbols_mode,
        list(row.symbols),
        row.symbols_pattern,
        row.trigger_mode,
        row.cooldown_bars,
        row.enabled,
    )


def row_of(record: dict[str, Any]) -> TraderRow:
    return TraderRow(
        id=int(record["id"]),
        owner_id=int(record["owner_id"]),
        name=record["name"],
        description=record["description"],
        expression=record["expression"],
        interval=record["interval"],
        symbols_mode=record["symbols_mode"],
        symbols=tuple(record["symbols"] or ()),
        symbols_pattern=record["symbols_pattern"],
        trigger_mode=record["trigger_mode"],
        cooldown_bars=int(record["cooldown_bars"]),
        enabled=bool(record["enabled"]),
        version=int(record["version"]),
    )


def load_traders(conn: psycopg.Connection[Any], enabled_only: bool = True) -> list[TraderRow]:
    """The traders the connection may see, oldest first: never removed ones."""
    where = "WHERE deleted_at IS NULL" + (" AND enabled" if enabled_only else "")
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f"SELECT {TRADER_COLUMNS} FROM traders {where} ORDER BY id")
        return [row_of(r) for r in cur.fetchall()]


REMOVE_TRADER = (
    "UPDATE traders SET deleted_at = now(), enabled = false "
    f"WHERE id = %s AND deleted_at IS NULL RETURNING {TRADER_COLUMNS}"
)


def remove_trader(conn: psycopg.Connection[Any], trader_id: int) -> TraderRow | None:
    """Remove a trader, keeping its signals (sql/0011): the row stays, marked removed and
    switched off, so the flow drops it (the UPDATE notifies `traders`) and its signals keep
    their trader and its name. The removed row, or None when the connection sees no such
    trader (another user's under row-level security, or one removed already)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(REMOVE_TRADER, (trader_id,))
        removed = cur.fetchone()
    return None if removed is None else row_of(removed)
