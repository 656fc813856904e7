"""Secrets from files (KLINEFLOW_<NAME>_FILE) and passwords given apart from their URLs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from flows.settings import (
    ConfigError,
    Settings,
    handing_over,
    load_settings,
    secret_fields,
    unknown_env_vars,
)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No KLINEFLOW_* variable from the outer environment (CI may set the server URLs)."""
    for name in list(os.environ):
        if name.upper().startswith("KLINEFLOW_"):
            monkeypatch.delenv(name)
    return monkeypatch


def _secret(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


def test_every_secret_setting_can_come_from_a_file(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert secret_fields() == ["redis_url", "database_url", "redis_password", "database_password"]
    env.setenv("KLINEFLOW_REDIS_URL_FILE", str(_secret(tmp_path, "r", "redis://h:6390/0\n")))
    env.setenv(
        "KLINEFLOW_DATABASE_URL_FILE", str(_secret(tmp_path, "d", "postgresql://o:pw@h/db\r\n"))
    )
    settings = Settings()
    assert settings.redis_url_value() == "redis://h:6390/0"  # the line break is dropped
    assert settings.database_url_value() == "postgresql://o:pw@h/db"
    assert "6390" not in repr(settings)


def test_a_value_that_ends_in_spaces_keeps_them(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env.setenv("KLINEFLOW_REDIS_URL", "redis://flow@h:6379/0")
    env.setenv("KLINEFLOW_REDIS_PASSWORD_FILE", str(_secret(tmp_path, "p", " pass word \n\n")))
    assert Settings().redis_url_value() == "redis://flow:%20pass%20word%20@h:6379/0"


def test_value_and_file_together_are_refused(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env.setenv("KLINEFLOW_DATABASE_URL", "postgresql://h/db")
    env.setenv("KLINEFLOW_DATABASE_URL_FILE", str(_secret(tmp_path, "d", "postgresql://h/x")))
    with pytest.raises(
        ConfigError, match="both KLINEFLOW_DATABASE_URL and KLINEFLOW_DATABASE_URL_FILE"
    ):
        Settings()


def test_a_lower_case_variable_counts_too(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env.setenv("klineflow_redis_url", "redis://h/0")
    env.setenv("KLINEFLOW_REDIS_URL_FILE", str(_secret(tmp_path, "r", "redis://h/1")))
    with pytest.raises(ConfigError, match="not both"):
        Settings()


@pytest.mark.parametrize(("text", "expected"), [(None, "cannot read"), ("\n", "is empty")])
def test_a_missing_or_empty_file_is_a_clear_error(
    env: pytest.MonkeyPatch, tmp_path: Path, text: str | None, expected: str
) -> None:
    path = tmp_path / "secret.txt" if text is None else _secret(tmp_path, "secret.txt", text)
    env.setenv("KLINEFLOW_REDIS_PASSWORD_FILE", str(path))
    env.setenv("KLINEFLOW_REDIS_URL", "redis://api@h/0")
    with pytest.raises(ConfigError, match=f"KLINEFLOW_REDIS_PASSWORD_FILE: .*{expected}"):
        Settings()


def test_a_command_line_value_wins_over_the_file(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env.setenv("KLINEFLOW_REDIS_URL_FILE", str(_secret(tmp_path, "r", "redis://from-file/0")))
    assert load_settings(redis_url="redis://given/0").redis_url_value() == "redis://given/0"
    assert load_settings(redis_url=None).redis_url_value() == "redis://from-file/0"


def test_only_secrets_have_a_file_form(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env.setenv("KLINEFLOW_NAMESPACE_FILE", str(_secret(tmp_path, "n", "scratch")))
    assert Settings().namespace == ""
    assert unknown_env_vars() == ["KLINEFLOW_NAMESPACE_FILE"]


def test_file_variables_are_not_reported_as_unknown() -> None:
    env = {
        "KLINEFLOW_REDIS_URL_FILE": "/run/secrets/a",
        "KLINEFLOW_DATABASE_PASSWORD_FILE": "/run/secrets/b",
        "klineflow_redis_password_file": "/run/secrets/c",
        "KLINEFLOW_REDIS_URL_FLIE": "/run/secrets/d",
    }
    assert unknown_env_vars(env) == ["KLINEFLOW_REDIS_URL_FLIE"]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://flow@redis:6379/0", "redis://flow:p%40ss%3Aw%2Fd@redis:6379/0"),
        ("rediss://fl%40w@redis:6380/1", "rediss://fl%40w:p%40ss%3Aw%2Fd@redis:6380/1"),
        ("redis://redis:6379/0", "redis://:p%40ss%3Aw%2Fd@redis:6379/0"),
        ("unix:///run/redis.sock?db=0", "unix://:p%40ss%3Aw%2Fd@/run/redis.sock?db=0"),
    ],
)
def test_a_redis_password_goes_into_the_url(
    env: pytest.MonkeyPatch, url: str, expected: str
) -> None:
    settings = Settings(redis_url=url, redis_password="p@ss:w/d")
    assert settings.redis_url_value() == expected
    import redis

    pool = redis.ConnectionPool.from_url(expected)  # redis-py reads it back exactly
    assert pool.connection_kwargs["password"] == "p@ss:w/d"


def test_a_database_password_goes_into_the_conninfo(env: pytest.MonkeyPatch) -> None:
    from psycopg.conninfo import conninfo_to_dict

    settings = Settings(database_url="postgresql://flow@pg:5432/kf", database_password="a b'c")
    value = settings.database_url_value()
    assert value is not None
    assert conninfo_to_dict(value) == {
        "user": "flow", "host": "pg", "port": "5432", "dbname": "kf", "password": "a b'c"
    }  # fmt: skip


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"redis_password": "x"}, "KLINEFLOW_REDIS_PASSWORD is set but KLINEFLOW_REDIS_URL is not"),
        (
            {"redis_url": "redis://u:old@h/0", "redis_password": "x"},
            "KLINEFLOW_REDIS_URL already carries a password",
        ),
        (
            {"database_url": "host=h user=u password=old", "database_password": "x"},
            "KLINEFLOW_DATABASE_URL already carries a password",
        ),
    ],
)
def test_a_password_needs_a_url_without_one(
    env: pytest.MonkeyPatch, fields: dict[str, str], expected: str
) -> None:
    with pytest.raises(ValidationError, match=expected):
        Settings(**fields)  # type: ignore[arg-type]


def test_a_child_process_gets_each_setting_once(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    parent = {
        "KLINEFLOW_REDIS_URL_FILE": str(_secret(tmp_path, "r", "redis://dash@h/0")),
        "klineflow_redis_password_file": str(_secret(tmp_path, "p", "pw")),
        "KLINEFLOW_DATABASE_URL": "postgresql://dash@h/kf",
        "KLINEFLOW_DATABASE_PASSWORD": "dbpw",
        "KLINEFLOW_NAMESPACE": "ns",
        "PATH": "/bin",
    }
    child = handing_over(parent, redis_url="redis://dash:pw@h/0")
    assert child == {
        "KLINEFLOW_REDIS_URL": "redis://dash:pw@h/0",
        "KLINEFLOW_DATABASE_URL": "postgresql://dash@h/kf",  # not handed over: as it was
        "KLINEFLOW_DATABASE_PASSWORD": "dbpw",
        "KLINEFLOW_NAMESPACE": "ns",
        "PATH": "/bin",
    }
    for name, value in child.items():
        env.setenv(name, value)
    assert Settings().redis_url_value() == "redis://dash:pw@h/0"
