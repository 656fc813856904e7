"""The signed-in user's channels, subscriptions and delivery log, through the same service the
command line uses (flows.notify.channels), each call in a transaction as the dashboard role
for that user: row-level security decides what is visible, and the channels' secrets are
written but can never be read back (the role has no right to that column).

Reads answer a `Fetched` (the last good answer while PostgreSQL is away); writes raise
`WriteRefused` with a sentence when the service or the database refuses.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg

from dashboard.data.db import DB_ERRORS, Database, Session, WriteRefused
from dashboard.data.stale import Fetched
from flows.app.errors import AppError
from flows.domain.clock import SYSTEM_CLOCK
from flows.notify import channels
from flows.notify.channels import ChannelInfo, DeliveryInfo, NewChannel
from flows.notify.settings import NotifySettings


@contextlib.contextmanager
def _refused() -> Iterator[None]:
    try:
        yield
    except AppError as e:
        raise WriteRefused(e.message) from None
    except psycopg.errors.InsufficientPrivilege as e:
        raise WriteRefused(f"not allowed: {e.diag.message_primary}") from None


class Notifications:
    def __init__(self, db: Database, settings: NotifySettings | None = None) -> None:
        self.db = db
        self.settings = settings or NotifySettings()

    def channels(self, who: Session) -> Fetched[list[ChannelInfo]]:
        def read() -> list[ChannelInfo]:
            with self.db.user_tx(who) as conn:
                return channels.listed(conn, who.user_id)

        return self.db.last_good.fetch(("channels", who.user_id), read, [], DB_ERRORS)

    def log(self, who: Session, limit: int = 100) -> Fetched[list[DeliveryInfo]]:
        def read() -> list[DeliveryInfo]:
            with self.db.user_tx(who) as conn:
                return channels.deliveries(conn, who.user_id, limit)

        return self.db.last_good.fetch(("deliveries", who.user_id), read, [], DB_ERRORS)

    def delivery(self, who: Session, delivery_id: int) -> DeliveryInfo | None:
        with self.db.user_tx(who) as conn:
            return channels.delivery(conn, who.user_id, delivery_id)

    def add(self, who: Session, new: NewChannel) -> dict[str, Any]:
        """Saved; its public part, and a webhook's signing key (shown this once)."""
        with _refused(), self.db.user_tx(who) as conn:
            return channels.add(conn, who.user_id, new, self.settings)

    def remove(self, who: Session, name: str) -> None:
        with _refused(), self.db.user_tx(who) as conn:
            channels.remove(conn, who.user_id, name)

    def subscribe(self, who: Session, trader: str, channel: str, on: bool) -> None:
        with _refused(), self.db.user_tx(who) as conn:
            channels.subscribe(conn, who.user_id, trader, channel, on)

    def test(self, who: Session, channel: str) -> int:
        """A test message queued for the notifier; its delivery id."""
        with _refused(), self.db.user_tx(who) as conn:
            return channels.test_message(conn, who.user_id, channel, self.settings,
                                         SYSTEM_CLOCK.now_ms())  # fmt: skip

    def retry(self, who: Session, delivery_id: int) -> bool:
        with _refused(), self.db.user_tx(who) as conn:
            return channels.retry(conn, who.user_id, delivery_id)
