"""The process's data sources, made once and shared by every session and page.

`market()`, `database()` and `listener()` read the configuration at each call (cheap) and
follow a changed URL: Redis keeps what it fetched and reconnects; a new PostgreSQL URL gets
a new pool and listener. `reset()` closes everything (tests, between apps).
"""

from __future__ import annotations

import threading

from flows.domain.keys import KeySpace

from .config import DashboardConfig, load_config
from .db import Database
from .listener import SignalListener, stop_listener
from .market import MarketData
from .stale import LastGood

_lock = threading.Lock()
_markets: dict[tuple[str, tuple[str, ...]], MarketData] = {}
_databases: dict[str, Database] = {}
_listeners: dict[str, SignalListener] = {}
# what PostgreSQL last answered, kept across a change of URL (keys name the user)
_db_last_good: list[LastGood] = [LastGood("PostgreSQL")]
_db_current: list[str] = [""]


def config() -> DashboardConfig:
    return load_config()


def market(cfg: DashboardConfig | None = None) -> MarketData:
    cfg = cfg or load_config()
    key = (cfg.namespace, cfg.intervals)
    with _lock:
        found = _markets.get(key)
        if found is None:
            found = MarketData(cfg.redis_url, KeySpace(cfg.namespace), cfg.intervals)
            _markets[key] = found
    found.connect(cfg.redis_url)  # a no-op unless the URL changed
    return found


def database(cfg: DashboardConfig | None = None) -> Database:
    cfg = cfg or load_config()
    with _lock:
        found = _databases.get(cfg.database_url)
        if found is None:
            found = Database(cfg.database_url, last_good=_db_last_good[0])
            _databases[cfg.database_url] = found
        if _db_current[0] != cfg.database_url:
            _db_current[0] = cfg.database_url
            found.last_good.server_changed()  # back to another server: try it at once
        return found


def listener(cfg: DashboardConfig | None = None) -> SignalListener:
    cfg = cfg or load_config()
    with _lock:
        found = _listeners.get(cfg.database_url)
        if found is None or not found.is_alive():
            found = _listeners[cfg.database_url] = SignalListener(cfg.database_url)
            found.start()
        return found


def reset() -> None:
    """Close every pool, client and listener of this process, forget every answer."""
    with _lock:
        _db_last_good[0] = LastGood("PostgreSQL")
        markets, dbs, listeners = (
            list(_markets.values()),
            list(_databases.values()),
            list(_listeners.values()),
        )
        _markets.clear()
        _databases.clear()
        _listeners.clear()
    for lis in listeners:
        stop_listener(lis)
    for db in dbs:
        db.close()
    for m in markets:
        m.close()
