"""Channels and the notifier as the command line runs them: the database opened as every
command opens it, the owner named, and PostgreSQL's failures made into one line."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flows.app.database import database_errors, open_database
from flows.settings import Settings

if TYPE_CHECKING:
    import psycopg

    from flows.notify.channels import DeliveryInfo
    from flows.notify.notifier import Notifier
    from flows.notify.settings import NotifySettings


@dataclass(frozen=True)
class OwnerDb:
    """A connection of the database's owner, acting for one user (`owner_id`)."""

    url: str
    conn: psycopg.Connection[Any]
    owner_id: int


def notify_settings() -> NotifySettings:
    from flows.notify.settings import NotifySettings

    return NotifySettings()


@contextlib.contextmanager
def as_owner(settings: Settings, owner: str) -> Iterator[OwnerDb]:
    """The database, for the user named `owner` (made if it does not exist, as the
    traders commands do)."""
    import psycopg

    from flows.signals.trader_rows import ensure_user

    url = open_database(settings)
    with database_errors(url), psycopg.connect(url, autocommit=True) as conn:
        with conn.transaction():
            owner_id = ensure_user(conn, owner)
        yield OwnerDb(url, conn, owner_id)


def wait_for_delivery(
    db: OwnerDb, delivery_id: int, stop: threading.Event, most_s: float
) -> DeliveryInfo | None:
    """The message once the notifier has tried it (sent, failed or retrying), or None
    when no notifier touched it within `most_s`."""
    from flows.notify.channels import delivery

    waited = 0.0
    while waited < most_s and not stop.is_set():
        found = delivery(db.conn, db.owner_id, delivery_id)
        if found is not None and (found.state != "pending" or found.attempts > 0):
            return found
        stop.wait(0.2)
        waited += 0.2
    return None


def run_notifier(settings: Settings, stop: threading.Event) -> None:
    """The notifier until `stop` (see flows.notify.notifier)."""
    from flows.notify.notifier import Notifier

    Notifier(open_database(settings), notify_settings()).run(stop)


@dataclass
class RunningNotifier:
    """A notifier on a thread of a long-running command (`up`, `demo`)."""

    notifier: Notifier
    stop: threading.Event
    thread: threading.Thread

    def close(self) -> str:
        """Stopped (the messages in flight finished and recorded); a summary line."""
        self.stop.set()
        self.thread.join(self.notifier.settings.timeout_s + 10)
        s = self.notifier.stats
        return f"notifications: {s.delivered} message(s) delivered, {s.failed} failed"


def start_notifier(database_url: str) -> RunningNotifier:
    """The notifier of this process's database, on its own thread. With several processes
    on one database (a cluster), one delivers and the others stand by."""
    from flows.notify.notifier import Notifier

    notifier = Notifier(database_url, notify_settings())
    stop = threading.Event()
    thread = threading.Thread(target=notifier.run, args=(stop,), name="notifier", daemon=True)
    thread.start()
    return RunningNotifier(notifier, stop, thread)
