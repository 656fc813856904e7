"""The Status page's judgement of the flow and its signal counts, through the application
service every reader shares (``flows.app.health``, ``flows.app.status``).

The heartbeat itself is read with the rest of Redis's status (``MarketData.status``); here it
is judged, and the signed-in user's traders are counted (in all and in the last 24 h) under
row-level security: the query is the one `klineflow status` runs, and PostgreSQL shows this
login only the user's own traders.
"""

from __future__ import annotations

from datetime import UTC, datetime

from flows.app.health import Health
from flows.app.status import DAY_MS, SIGNAL_COUNTS, TraderSignals

from .db import Database, Session
from .market import RedisStatus
from .stale import Fetched


def flow_health(status: RedisStatus) -> Health | None:
    """The flow's health as of when `status` was read from Redis (None: no heartbeat)."""
    if status.heartbeat is None:
        return None
    return status.heartbeat.health(status.now_ms)


def signal_counts(db: Database, who: Session, now_ms: int) -> Fetched[list[TraderSignals]]:
    """The user's traders with their signals, in all and since a day before `now_ms`."""
    since = datetime.fromtimestamp((now_ms - DAY_MS) / 1000, UTC)
    key = ("signal_counts", who.user_id)
    return db.user_rows(key, who, SIGNAL_COUNTS, (since,), TraderSignals.of_row)
