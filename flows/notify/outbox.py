"""The notifier's side of the outbox (sql/0013): fold waiting signals into a message, find the
messages due, record what each attempt got.

A message (a delivery row) is written, and its signals taken off the outbox, in one transaction
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


# The channels that may get a message now: signals waiting, enabled, no message of theirs
# unacknowledged (new signals wait behind it), not held back by the notifier (in flight or
# pacing); of each, its oldest waiting signals, at most `most`.
_TAKE = """
SELECT w.id, f.id, s.id, t.name, s.trader_id, s.symbol, s.interval, s.price,
       s.kline_open_ms, s.kline_close_ms, s."values"
FROM channels f
CROSS JOIN LATERAL (
    SELECT o.id, o.signal_id FROM notification_outbox o
    WHERE o.channel_id = f.id
    ORDER BY o.id LIMIT %(most)s
    FOR UPDATE SKIP LOCKED
) w
JOIN signals s ON s.id = w.signal_id
JOIN traders t ON t.id = s.trader_id
WHERE f.enabled AND NOT (f.id = ANY(%(held)s))
  AND NOT EXISTS (SELECT FROM notification_deliveries d
                  WHERE d.channel_id = f.id AND d.state = 'pending')
ORDER BY f.id, w.id
"""

_CHANNEL = "c.id, c.owner_id, c.name, c.kind, c.config, c.secret"

# the oldest message due of each channel not in flight
_DUE = f"""
SELECT DISTINCT ON (d.channel_id) d.id, d.idempotency_key, d.message, d.attempts,
       extract(epoch FROM now() - coalesce(d.retried_at, d.created_at))::float8, {_CHANNEL}
FROM notification_deliveries d JOIN channels c ON c.id = d.channel_id
WHERE d.state = 'pending' AND d.next_attempt_at <= now() AND c.enabled
  AND NOT (d.channel_id = ANY(%s))
ORDER BY d.channel_id, d.id
"""


def _channel(row: Sequence[Any]) -> Channel:
    return Channel(int(row[0]), int(row[1]), row[2], row[3], row[4] or {}, row[5] or {})


def fold(conn: Conn, held: Collection[int], settings: NotifySettings) -> int:
    """Every free channel's waiting signals (at most `digest_most` each, oldest first) made
    into one message per channel, in one transaction; how many messages were made."""
    with conn.transaction():
        rows = conn.execute(_TAKE, {"held": list(held), "most": settings.digest_most}).fetchall()
        if not rows:
            return 0
        by_channel: dict[int, list[Sequence[Any]]] = {}
        for r in rows:
            by_channel.setdefault(int(r[1]), []).append(r)
        made: list[tuple[int, str, int, Jsonb]] = []
        for channel_id, group in by_channel.items():
            notes = [
                messages.SignalNote(r[2], r[3], int(r[4]), r[5], r[6], Decimal(r[7]),
                                    int(r[8]), int(r[9]), r[10] or {})
                for r in group
            ]  # fmt: skip
            key = messages.idempotency_key([n.id for n in notes])
            message = Jsonb(messages.build(notes, settings.dashboard_url))
            made.append((channel_id, key, len(notes), message))
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO notification_deliveries (channel_id, idempotency_key, "
                "signal_count, message) VALUES (%s, %s, %s, %s)",
                made,
            )
        # taken: the message lists its signals; the outbox keeps only what waits
        conn.execute("DELETE FROM notification_outbox WHERE id = ANY(%s)",
                     ([int(r[0]) for r in rows],))  # fmt: skip
    return len(by_channel)


def due(conn: Conn, busy: Collection[int]) -> list[Delivery]:
    """Messages to (re)send now: the oldest of each channel, skipping `busy` channels."""
    return [
        Delivery(int(r[0]), _channel(r[5:]), r[1], r[2], int(r[3]), float(r[4]))
        for r in conn.execute(_DUE, (list(busy),)).fetchall()
    ]


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
