"""The one place the environment is read: every setting is a `KLINEFLOW_*` variable.

>>> s = Settings(intervals="5m,1m", redis_url=None)
>>> s.intervals
('1m', '5m')

A secret (a `SecretStr` field: the server URLs and their passwords) may instead be given as
`KLINEFLOW_<NAME>_FILE`, the path of a file holding it (the Docker and Kubernetes secrets
convention; trailing line breaks are dropped). Giving both `KLINEFLOW_<NAME>` and
`KLINEFLOW_<NAME>_FILE` is a configuration error. A password given apart from its URL
(`KLINEFLOW_REDIS_PASSWORD`, `KLINEFLOW_DATABASE_PASSWORD`) is put into the URL by
`redis_url_value()` / `database_url_value()`, so the URL itself (server and user name) need
not be secret:

>>> Settings(redis_url="redis://flow@redis:6379/0", redis_password="s3cret").redis_url_value()
'redis://flow:s3cret@redis:6379/0'
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, get_args
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from flows.domain import defaults
from flows.domain.intervals import DEFAULT_INTERVALS, parse_intervals
from flows.domain.trade_checks import DEFAULT_FUTURE_MARGIN_MS

log = logging.getLogger(__name__)
ENV_PREFIX = "KLINEFLOW_"
FILE_SUFFIX = "_FILE"


class ConfigError(ValueError):
    """The configuration contradicts itself or names a file that cannot be read."""


class KlineflowSettings(BaseSettings):
    """What every settings class of klineflow reads from, in order: arguments first
    (command-line options), then <PREFIX>* variables, then <PREFIX>*_FILE files."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, SecretFilesSource(settings_cls), dotenv_settings)


class Settings(KlineflowSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="forbid")

    redis_url: SecretStr | None = Field(
        None, description="Redis to use; unset = start the embedded one"
    )
    database_url: SecretStr | None = Field(None, description="PostgreSQL to use; unset = embedded")
    redis_password: SecretStr | None = Field(
        None, description="password put into the Redis URL (its user names the ACL user)"
    )
    database_password: SecretStr | None = Field(
        None, description="password put into the PostgreSQL URL"
    )
    data_dir: Path = Field(Path(".klineflow"), description="where embedded servers keep their data")
    recordings_dir: Path | None = Field(
        None,
        description="recordings the dashboard's backtests offer; unset = <data_dir>/recordings",
    )
    namespace: str = Field("", description="prefix for every Redis key (scratch runs, tests)")
    intervals: Annotated[tuple[str, ...], NoDecode] = DEFAULT_INTERVALS
    open_kline_throttle_ms: int = Field(
        defaults.OPEN_KLINE_THROTTLE_MS, ge=0, description="min wall time between open-kline writes"
    )
    retention: int = Field(1000, ge=1, description="klines kept per symbol and interval")
    retention_1m: int = Field(1500, ge=1, description="1m keeps more: a rolling 24-hour window")
    dead_letter_maxlen: int = Field(defaults.DEAD_LETTER_MAXLEN, ge=100)
    max_flat_fill: int = Field(
        defaults.MAX_FLAT_FILL, ge=1, description="most flat klines emitted for one gap"
    )
    chunk_records: int = Field(8192, ge=1, description="records per source batch")
    future_margin_ms: int = Field(
        DEFAULT_FUTURE_MARGIN_MS,
        ge=0,
        description="how far past its file's reference time (receive time, a dump's day, now) "
        "a replayed trade's time may lie before it is refused as implausible",
    )
    api_cache_ttl_s: float = Field(1.0, ge=0)
    signals_retention_days: float = Field(
        defaults.SIGNALS_RETENTION_DAYS,
        ge=0,
        description="signals older than this are deleted by the live flow (0: kept)",
    )
    trader_errors_retention_days: float = Field(
        defaults.TRADER_ERRORS_RETENTION_DAYS,
        ge=0,
        description="trader errors older than this are deleted (0: kept)",
    )
    dead_letters_retention_days: float = Field(
        defaults.DEAD_LETTERS_RETENTION_DAYS,
        ge=0,
        description="dead letters older than this are trimmed (0: count cap only)",
    )
    retention_every_s: float = Field(
        defaults.RETENTION_EVERY_S, gt=0, description="how often retention runs"
    )
    rule_budget_ms: float = Field(
        defaults.RULE_BUDGET_MS,
        gt=0,
        description="one trader's evaluation on one kline; over it on 3 klines in a row, the "
        "trader is switched off for that symbol",
    )

    @field_validator("intervals", mode="before")
    @classmethod
    def _split_intervals(cls, value: Any) -> tuple[str, ...]:
        if isinstance(value, str | list | tuple):
            return parse_intervals(value)
        raise ValueError(f"intervals: expected text like '1m,5m', got {value!r}")

    @model_validator(mode="after")
    def _passwords_need_urls(self) -> Settings:
        for server in ("redis", "database"):
            url: SecretStr | None = getattr(self, f"{server}_url")
            if getattr(self, f"{server}_password") is None:
                continue
            env = f"{ENV_PREFIX}{server.upper()}"
            if url is None:
                raise ValueError(
                    f"{env}_PASSWORD is set but {env}_URL is not: a password needs the URL of "
                    "the server it is for (the embedded servers have no users)"
                )
            if _url_password(server, url.get_secret_value()):
                raise ValueError(
                    f"{env}_URL already carries a password and {env}_PASSWORD gives another: "
                    "give it in one place"
                )
        return self

    def redis_url_value(self) -> str | None:
        if self.redis_url is None:
            return None
        return _with_password(self.redis_url.get_secret_value(), self.redis_password)

    def database_url_value(self) -> str | None:
        if self.database_url is None:
            return None
        url = self.database_url.get_secret_value()
        if self.database_password is None:
            return url
        from psycopg.conninfo import make_conninfo

        return make_conninfo(url, password=self.database_password.get_secret_value())


def secret_fields(model: type[BaseSettings] = Settings) -> list[str]:
    """The settings that hold secrets (each may come from a file, <PREFIX><NAME>_FILE)."""
    return [
        name
        for name, info in model.model_fields.items()
        if info.annotation is SecretStr or SecretStr in get_args(info.annotation)
    ]


class SecretFilesSource(PydanticBaseSettingsSource):
    """`<PREFIX><NAME>_FILE` for each secret setting of the settings class (KLINEFLOW_ and
    KLINEFLOW_NOTIFY_): the value is the file's text."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # __call__ reads every secret at once

    def __call__(self) -> dict[str, Any]:
        prefix = str(self.settings_cls.model_config.get("env_prefix", ENV_PREFIX))
        env = {k.upper(): v for k, v in os.environ.items() if k.upper().startswith(prefix)}
        found: dict[str, Any] = {}
        for name in secret_fields(self.settings_cls):
            var = prefix + name.upper()
            path = env.get(var + FILE_SUFFIX)
            if path is None:
                continue
            if var in env:
                raise ConfigError(
                    f"both {var} and {var}{FILE_SUFFIX} are set: give the value or the file "
                    "holding it, not both"
                )
            found[name] = read_secret_file(Path(path), var + FILE_SUFFIX)
        return found


def read_secret_file(path: Path, what: str) -> str:
    """A secret kept in a file: its text without the trailing line break(s)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{what}: cannot read the secret file {path}: {e}") from e
    value = text.rstrip("\r\n")
    if not value:
        raise ConfigError(f"{what}: the secret file {path} is empty")
    return value


def _url_password(server: str, url: str) -> str | None:
    if server == "database":  # a URL or key=value pairs
        from psycopg import Error
        from psycopg.conninfo import conninfo_to_dict

        try:
            return str(conninfo_to_dict(url).get("password") or "") or None
        except Error:
            return None
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def _with_password(url: str, password: SecretStr | None) -> str:
    """`url` with `password` in its user part (`scheme://user:password@host...`)."""
    if password is None:
        return url
    parts = urlsplit(url)
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]  # as written (already %-encoded)
    secret = quote(password.get_secret_value(), safe="")
    return urlunsplit(parts._replace(netloc=f"{user}:{secret}@{host}"))


def handing_over(env: Mapping[str, str], **values: str) -> dict[str, str]:
    """`env` for a child process given these resolved settings (e.g. redis_url=...): their
    own variables are set, and the variables they were resolved from (the `_FILE` form, the
    password given apart) are dropped, so the child does not see the same setting twice."""
    drop: set[str] = set()
    for name in values:
        var = ENV_PREFIX + name.upper()
        drop |= {var, var + FILE_SUFFIX}
        if name.endswith("_url"):
            password = var.removesuffix("_URL") + "_PASSWORD"
            drop |= {password, password + FILE_SUFFIX}
    out = {k: v for k, v in env.items() if k.upper() not in drop}
    out.update({ENV_PREFIX + name.upper(): value for name, value in values.items()})
    return out


def unknown_env_vars(environ: dict[str, str] | None = None) -> list[str]:
    """KLINEFLOW_* variables that name no setting (a typo would otherwise go unnoticed)."""
    env = os.environ if environ is None else environ
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    known |= {ENV_PREFIX + name.upper() + FILE_SUFFIX for name in secret_fields()}
    from flows.notify.settings import known_env_vars  # the notifier's own KLINEFLOW_NOTIFY_*

    known |= known_env_vars()
    return sorted(k for k in env if k.upper().startswith(ENV_PREFIX) and k.upper() not in known)


def load_settings(**overrides: Any) -> Settings:
    for name in unknown_env_vars():
        log.warning("environment variable %s matches no klineflow setting; ignored", name)
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
