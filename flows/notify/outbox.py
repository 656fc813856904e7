"""The notifier's side of the outbox (sql/0013): fold waiting signals into a message, find the
messages due, record what each attempt got.

A message (a delivery row) is written, with its signals marked as taken, in one transaction
BEFORE it is sent; it is marked sent only when the receiver acknowledged it. Whatever instant
the notifier dies at, a signal is therefore either still waiting (folded again later) or in
a message that is resent as it was, with its idempotency key, until acknowledged.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import TupleRow
from psycopg.types.json import Jsonb

from flows.notify import messages
from flows.notify.senders import Channel, Outcome
from flows.notify.settings import NotifySettings

Conn = psycopg.Connection[TupleRow]


@dataclass(frozen=True)
class Delivery:
    id: int
    channel: Channel
    key: str
    message: dict[str, Any]
    attempts: int
    age_s: float  # since it was made (or last retried by its owner)


_WAITING = """
SELECT DISTINCT o.channel_id FROM notification_outbox o
JOIN channels c ON c.id = o.channel_id
WHERE o.delivery_id IS NULL AND c.enabled
"""

_TAKE = """
SELECT o.id, s.id, t.name, s.trader_id, s.symbol, s.interval, s.price, s.kline_open_ms,
       s.kline_close_ms, s."values"
FROM notification_outbox o
JOIN signals s ON s.id = o.signal_id
JOIN traders t ON t.id = s.trader_id
WHERE o.channel_id = %s AND o.delivery_id IS NULL
ORDER BY o.id
LIMIT %s
FOR UPDATE OF o SKIP LOCKED
"""

_CHANNEL = "c.id, c.owner_id, c.name, c.kind, c.config, c.secret"

_DUE = f"""
SELECT d.id, d.idempotency_key, d.message, d.attempts,
       extract(epoch FROM now() - coalesce(d.retried_at, d.created_at))::float8, {_CHANNEL}
FROM notification_deliveries d JOIN channels c ON c.id = d.channel_id
WHERE d.state = 'pending' AND d.next_attempt_at <= now() AND c.enabled
ORDER BY d.id
"""


def _channel(row: Sequence[Any]) -> Channel:
    return Channel(int(row[0]), int(row[1]), row[2], row[3], row[4] or {}, row[5] or {})


def waiting_channels(conn: Conn) -> list[int]:
    """Enabled channels with signals not yet in a message."""
    return [int(r[0]) for r in conn.execute(_WAITING).fetchall()]


def pending_channels(conn: Conn) -> set[int]:
    """Channels with a message not yet acknowledged (new signals wait behind it)."""
    rows = conn.execute(
        "SELECT DISTINCT channel_id FROM notification_deliveries WHERE state = 'pending'"
    ).fetchall()
    return {int(r[0]) for r in rows}


def fold(conn: Conn, channel_id: int, settings: NotifySettings) -> int | None:
    """The channel's waiting signals (at most `digest_most`, oldest first) made into one
    message; its id, or None when nothing was waiting."""
    with conn.transaction():
        rows = conn.execute(_TAKE, (channel_id, settings.digest_most)).fetchall()
        if not rows:
            return None
        notes = [
            messages.SignalNote(
                r[1], r[2], int(r[3]), r[4], r[5], Decimal(r[6]), int(r[7]), int(r[8]), r[9] or {}
            )
            for r in rows
        ]
        key = messages.idempotency_key([n.id for n in notes])
        message = messages.build(notes, settings.dashboard_url)
        made = conn.execute(
            "INSERT INTO notification_deliveries (channel_id, idempotency_key, signal_count, "
            "message) VALUES (%s, %s, %s, %s) RETURNING id",
            (channel_id, key, len(notes), Jsonb(message)),
        ).fetchone()
        assert made is not None
        delivery_id = int(made[0])
        conn.execute(
            "UPDATE notification_outbox SET delivery_id = %s WHERE id = ANY(%s)",
            (delivery_id, [int(r[0]) for r in rows]),
        )
    return delivery_id


def due(conn: Conn, busy: Collection[int]) -> list[Delivery]:
    """Messages to (re)send now, one per channel (the oldest), skipping `busy` channels."""
    found: dict[int, Delivery] = {}
    for r in conn.execute(_DUE).fetchall():
        channel = _channel(r[5:])
        if channel.id in busy or channel.id in found:
            continue
        found[channel.id] = Delivery(int(r[0]), channel, r[1], r[2], int(r[3]), float(r[4]))
    return list(found.values())


def seconds_to_next(conn: Conn) -> float | None:
    """Until the earliest pending message is due (0 if one is due already)."""
    row = conn.execute(
        "SELECT greatest(0, extract(epoch FROM min(next_attempt_at) - now()))::float8 "
        "FROM notification_deliveries WHERE state = 'pending'"
    ).fetchone()
    return None if row is None or row[0] is None else float(row[0])


def retry_wait_s(attempts: int, outcome: Outcome, settings: NotifySettings) -> float:
    """The service's own wait when it gave one, else doubling from `retry_first_s`."""
    if outcome.retry_after_s is not None:
        return outcome.retry_after_s
    exponent = min(max(attempts - 1, 0), 30)
    return float(min(settings.retry_first_s * 2**exponent, settings.retry_most_s))


def record(conn: Conn, d: Delivery, outcome: Outcome, settings: NotifySettings) -> str:
    """What the attempt got, recorded; the delivery's new state."""
    attempts = d.attempts + 1
    if outcome.delivered:
        state, wait, error = "sent", 0.0, None
    elif outcome.permanent:
        state, wait, error = "failed", 0.0, outcome.error
    else:
        wait = retry_wait_s(attempts, outcome, settings)
        if d.age_s + wait > settings.give_up_s:
            state = "failed"
            error = f"gave up after {d.age_s:.0f} s and {attempts} attempts: {outcome.error}"
        else:
            state, error = "pending", outcome.error
    conn.execute(
        "UPDATE notification_deliveries SET state = %s, attempts = %s, last_error = %s, "
        "next_attempt_at = now() + make_interval(secs => %s), "
        "sent_at = CASE WHEN %s THEN now() END WHERE id = %s AND state = 'pending'",
        (state, attempts, error, wait, state == "sent", d.id),
    )
    return state
