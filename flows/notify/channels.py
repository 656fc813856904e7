"""Channels as their owner handles them: add, list, remove, send a test message, subscribe a
trader, read the delivery log, retry a failed message.

The command line (as the database owner, for a named user) and the dashboard (as its user,
under row-level security) call these same functions with their own connection; every
statement also names the owner, so the command line can never reach another user's rows
either. Secrets go in and never come out: nothing here reads `channels.secret` (the
dashboard could not: it has no right to that column).
"""

from __future__ import annotations

import re
import secrets as token_source
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg.types.json import Jsonb

from flows.app.errors import AppError, BadInput
from flows.notify import messages
from flows.notify.settings import NotifySettings

KINDS = ("webhook", "discord", "slack", "telegram", "email")
_TOKEN = re.compile(r"^[0-9]{3,20}:[A-Za-z0-9_-]{20,100}$")
_CHAT = re.compile(r"^(-?[0-9]{1,20}|@[A-Za-z][A-Za-z0-9_]{3,63})$")
_EMAIL = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$")
Conn = psycopg.Connection[Any]


@dataclass(frozen=True)
class NewChannel:
    """What the owner gives: the kind and its address/credentials."""

    name: str
    kind: str
    url: str = ""  # webhook, discord, slack
    signing_key: str = ""  # webhook: given, or made here and shown once
    token: str = ""  # telegram's bot token
    chat_id: str = ""  # telegram
    to: str = ""  # email


@dataclass(frozen=True)
class ChannelInfo:
    id: int
    name: str
    kind: str
    address: str
    enabled: bool
    traders: list[str]
    waiting: int
    sent: int
    failed: int
    last_error: str | None


@dataclass(frozen=True)
class DeliveryInfo:
    id: int
    channel: str
    state: str
    signals: int
    attempts: int
    first: str  # "trader: SYMBOL interval" of its first signal
    created_at: datetime
    sent_at: datetime | None
    last_error: str | None


def _redacted_url(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}/..."


def prepared(new: NewChannel, settings: NotifySettings) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config, secret) of a new channel, checked; BadInput says what is wrong."""
    name = new.name.strip()
    if not 1 <= len(name) <= 100:
        raise BadInput("a channel needs a name of 1 to 100 characters")
    if new.kind not in KINDS:
        raise BadInput(f"unknown channel kind {new.kind!r}; one of {', '.join(KINDS)}")
    if new.kind in ("webhook", "discord", "slack"):
        parts = urlsplit(new.url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BadInput(f"the {new.kind} channel needs an http(s) URL")
        base = {"discord": settings.discord_base, "slack": settings.slack_base}.get(new.kind)
        if base is not None and not new.url.strip().startswith(base):
            raise BadInput(f"a {new.kind} webhook URL starts with {base}")
        secret: dict[str, Any] = {"url": new.url.strip()}
        if new.kind == "webhook":
            key = new.signing_key.strip() or token_source.token_hex(32)
            if len(key) < 16:
                raise BadInput("a signing key needs at least 16 characters")
            secret["signing_key"] = key
        return {"address": _redacted_url(new.url.strip())}, secret
    if new.kind == "telegram":
        if not _TOKEN.match(new.token.strip()):
            raise BadInput("a Telegram bot token looks like 123456789:AA... (from @BotFather)")
        if not _CHAT.match(new.chat_id.strip()):
            raise BadInput("a Telegram chat id is a number (or @channelname)")
        chat = new.chat_id.strip()
        return {"chat_id": chat, "address": f"telegram chat {chat}"}, {"token": new.token.strip()}
    if not _EMAIL.match(new.to.strip()):
        raise BadInput(f"{new.to!r} is not an e-mail address")
    return {"to": new.to.strip(), "address": new.to.strip()}, {}


def add(conn: Conn, owner_id: int, new: NewChannel, settings: NotifySettings) -> dict[str, Any]:
    """The channel saved; answers its public config and, for a webhook, the signing key (the
    only time it is shown)."""
    config, secret = prepared(new, settings)
    try:
        with conn.transaction():
            row = conn.execute(
                "INSERT INTO channels (owner_id, name, kind, config, secret) "
                "VALUES (%s, %s, %s, %s, %s) RETURNING id",
                (owner_id, new.name.strip(), new.kind, Jsonb(config), Jsonb(secret)),
            ).fetchone()
    except psycopg.errors.UniqueViolation:
        raise BadInput(f"there is already a channel named {new.name.strip()!r}") from None
    assert row is not None
    shown = {"id": int(row[0]), **config}
    if "signing_key" in secret:
        shown["signing_key"] = secret["signing_key"]
    return shown


def find(conn: Conn, owner_id: int, name: str) -> int:
    row = conn.execute(
        "SELECT id FROM channels WHERE owner_id = %s AND name = %s", (owner_id, name)
    ).fetchone()
    if row is None:
        raise AppError(f"no channel named {name!r}", "see `klineflow channels list`")
    return int(row[0])


def remove(conn: Conn, owner_id: int, name: str) -> None:
    """The channel, its subscriptions and its delivery log deleted (signals stay)."""
    with conn.transaction():
        channel_id = find(conn, owner_id, name)
        conn.execute("DELETE FROM channels WHERE id = %s AND owner_id = %s", (channel_id, owner_id))


def listed(conn: Conn, owner_id: int) -> list[ChannelInfo]:
    rows = conn.execute(
        """
        SELECT c.id, c.name, c.kind, c.config, c.enabled,
          coalesce((SELECT array_agg(t.name ORDER BY t.name) FROM trader_channels tc
                    JOIN traders t ON t.id = tc.trader_id
                    WHERE tc.channel_id = c.id AND t.deleted_at IS NULL), '{}'),
          (SELECT count(*) FROM notification_outbox o WHERE o.channel_id = c.id),
          (SELECT count(*) FROM notification_deliveries d
            WHERE d.channel_id = c.id AND d.state = 'sent'),
          (SELECT count(*) FROM notification_deliveries d
            WHERE d.channel_id = c.id AND d.state = 'failed'),
          (SELECT d.last_error FROM notification_deliveries d
            WHERE d.channel_id = c.id AND d.last_error IS NOT NULL
            ORDER BY d.id DESC LIMIT 1)
        FROM channels c WHERE c.owner_id = %s ORDER BY c.name
        """,
        (owner_id,),
    ).fetchall()
    return [
        ChannelInfo(
            int(r[0]),
            r[1],
            r[2],
            (r[3] or {}).get("address", ""),
            bool(r[4]),
            list(r[5]),
            int(r[6]),
            int(r[7]),
            int(r[8]),
            r[9],
        )
        for r in rows
    ]


def _trader_id(conn: Conn, owner_id: int, trader: str) -> int:
    where = "id = %s" if trader.isdigit() else "name = %s"
    row = conn.execute(
        f"SELECT id FROM traders WHERE owner_id = %s AND deleted_at IS NULL AND {where}",
        (owner_id, int(trader) if trader.isdigit() else trader),
    ).fetchone()
    if row is None:
        raise AppError(f"no trader {trader!r}", "see `klineflow traders list`")
    return int(row[0])


def subscribe(conn: Conn, owner_id: int, trader: str, channel: str, on: bool = True) -> None:
    """The trader's new signals go to the channel (or no longer do)."""
    with conn.transaction():
        trader_id = _trader_id(conn, owner_id, trader)
        channel_id = find(conn, owner_id, channel)
        if on:
            conn.execute(
                "INSERT INTO trader_channels (trader_id, channel_id) VALUES (%s, %s) "
                "ON CONFLICT DO NOTHING",
                (trader_id, channel_id),
            )
        else:
            conn.execute(
                "DELETE FROM trader_channels WHERE trader_id = %s AND channel_id = %s",
                (trader_id, channel_id),
            )


def test_message(
    conn: Conn, owner_id: int, channel: str, settings: NotifySettings, now_ms: int
) -> int:
    """A test message queued for the notifier (which holds the secrets): its delivery id."""
    note = messages.SignalNote(
        id=f"test-{token_source.token_hex(8)}", trader=f"test of channel {channel}",
        trader_id=0, symbol="TEST", interval="1m", price=Decimal(0), kline_open_ms=now_ms,
        kline_close_ms=now_ms, values={},
    )  # fmt: skip
    with conn.transaction():
        channel_id = find(conn, owner_id, channel)
        row = conn.execute(
            "INSERT INTO notification_deliveries (channel_id, idempotency_key, signal_count, "
            "message) VALUES (%s, %s, 1, %s) RETURNING id",
            (channel_id, note.id, Jsonb(messages.build([note], settings.dashboard_url))),
        ).fetchone()
        conn.execute("SELECT pg_notify('notifications', '')")
    assert row is not None
    return int(row[0])


_LOG = """
SELECT d.id, c.name, d.state, d.signal_count, d.attempts, d.message -> 'signals' -> 0,
       d.created_at, d.sent_at, d.last_error
FROM notification_deliveries d JOIN channels c ON c.id = d.channel_id
WHERE c.owner_id = %s AND (%s::bigint IS NULL OR d.id = %s) ORDER BY d.id DESC LIMIT %s
"""


def deliveries(
    conn: Conn, owner_id: int, limit: int = 100, only: int | None = None
) -> list[DeliveryInfo]:
    """The delivery log, newest first (or the one message `only`)."""
    rows = conn.execute(_LOG, (owner_id, only, only, limit)).fetchall()
    return [
        DeliveryInfo(int(r[0]), r[1], r[2], int(r[3]), int(r[4]), _first(r[5]), r[6], r[7], r[8])
        for r in rows
    ]


def delivery(conn: Conn, owner_id: int, delivery_id: int) -> DeliveryInfo | None:
    found = deliveries(conn, owner_id, limit=1, only=delivery_id)
    return found[0] if found else None


def _first(s: Mapping[str, Any] | None) -> str:
    if not s:
        return ""
    return f"{s.get('trader', '')}: {s.get('symbol', '')} {s.get('interval', '')}"


def retry(conn: Conn, owner_id: int, delivery_id: int) -> bool:
    """A failed message tried again now (its give-up time counted afresh)."""
    with conn.transaction():
        cur = conn.execute(
            """
            UPDATE notification_deliveries d SET state = 'pending', next_attempt_at = now(),
                retried_at = now()
            FROM channels c
            WHERE d.id = %s AND d.state = 'failed' AND c.id = d.channel_id AND c.owner_id = %s
            """,
            (delivery_id, owner_id),
        )
        conn.execute("SELECT pg_notify('notifications', '')")
    return cur.rowcount == 1
