"""Where the dashboard finds its servers: the same KLINEFLOW_* variables as every command.

Read at every script run (cheap), so the data layer notices a changed URL and reconnects
while keeping what it had already fetched.
"""

from __future__ import annotations

from dataclasses import dataclass

from flows.settings import load_settings


@dataclass(frozen=True)
class DashboardConfig:
    redis_url: str
    database_url: str
    namespace: str
    intervals: tuple[str, ...]


def load_config() -> DashboardConfig:
    """The configured servers; the embedded ones (started or reused) for what is unset."""
    settings = load_settings()
    redis_url = settings.redis_url_value()
    database_url = settings.database_url_value()
    if redis_url is None or database_url is None:
        from flows.services import Services

        services = Services(settings.data_dir)
        redis_url = services.redis_url(redis_url)
        database_url = services.database_url(database_url)
    return DashboardConfig(redis_url, database_url, settings.namespace, settings.intervals)
