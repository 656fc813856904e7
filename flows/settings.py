"""The one place the environment is read: every setting is a `KLINEFLOW_*` variable.

>>> s = Settings(intervals="5m,1m", redis_url=None)
>>> s.intervals
('1m', '5m')
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from flows.domain.intervals import DEFAULT_INTERVALS, parse_intervals

log = logging.getLogger(__name__)
ENV_PREFIX = "KLINEFLOW_"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="forbid")

    redis_url: SecretStr | None = Field(
        None, description="Redis to use; unset = start the embedded one"
    )
    database_url: SecretStr | None = Field(None, description="PostgreSQL to use; unset = embedded")
    data_dir: Path = Field(Path(".klineflow"), description="where embedded servers keep their data")
    recordings_dir: Path | None = Field(
        None,
        description="recordings the dashboard's backtests offer; unset = <data_dir>/recordings",
    )
    namespace: str = Field("", description="prefix for every Redis key (scratch runs, tests)")
    intervals: Annotated[tuple[str, ...], NoDecode] = DEFAULT_INTERVALS
    open_kline_throttle_ms: int = Field(
        1000, ge=0, description="min wall time between open-kline writes"
    )
    retention: int = Field(1000, ge=1, description="klines kept per symbol and interval")
    retention_1m: int = Field(1500, ge=1, description="1m keeps more: a rolling 24-hour window")
    dead_letter_maxlen: int = Field(100_000, ge=100)
    max_flat_fill: int = Field(10_000, ge=1, description="most flat klines emitted for one gap")
    chunk_records: int = Field(8192, ge=1, description="records per source batch")
    api_cache_ttl_s: float = Field(1.0, ge=0)

    @field_validator("intervals", mode="before")
    @classmethod
    def _split_intervals(cls, value: Any) -> tuple[str, ...]:
        if isinstance(value, str | list | tuple):
            return parse_intervals(value)
        raise ValueError(f"intervals: expected text like '1m,5m', got {value!r}")

    def redis_url_value(self) -> str | None:
        return self.redis_url.get_secret_value() if self.redis_url else None

    def database_url_value(self) -> str | None:
        return self.database_url.get_secret_value() if self.database_url else None


def unknown_env_vars(environ: dict[str, str] | None = None) -> list[str]:
    """KLINEFLOW_* variables that name no setting (a typo would otherwise go unnoticed)."""
    env = os.environ if environ is None else environ
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    return sorted(k for k in env if k.upper().startswith(ENV_PREFIX) and k.upper() not in known)


def load_settings(**overrides: Any) -> Settings:
    for name in unknown_env_vars():
        log.warning("environment variable %s matches no klineflow setting; ignored", name)
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
