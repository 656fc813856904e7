"""Shared fixtures: real servers (embedded by default, or the ones named by
KLINEFLOW_REDIS_URL / KLINEFLOW_DATABASE_URL), a fresh key namespace per test, and the real
Binance recordings in ../shared/data/binance."""

from __future__ import annotations

import itertools
import os
import secrets
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from psycopg import sql
from psycopg.conninfo import make_conninfo

from flows.domain.keys import KeySpace
from flows.services import EmbeddedPostgres, EmbeddedRedis

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data" / "binance"
_counter = itertools.count()


@pytest.fixture(scope="session")
def server_dir() -> Iterator[Path]:
    # Short path: unix socket paths are limited to about 100 bytes.
    with tempfile.TemporaryDirectory(prefix="kf-") as d:
        yield Path(d)


def _server(env_var: str, server: EmbeddedRedis | EmbeddedPostgres) -> Iterator[str]:
    """The server named by env_var, or the embedded one, started for the session and stopped."""
    configured = os.environ.get(env_var)
    if configured:
        yield configured
        return
    url = server.start()
    yield url
    server.stop()


@pytest.fixture(scope="session")
def redis_url(server_dir: Path) -> Iterator[str]:
    yield from _server("KLINEFLOW_REDIS_URL", EmbeddedRedis(server_dir / "redis"))


@pytest.fixture(scope="session")
def database_url(server_dir: Path) -> Iterator[str]:
    yield from _server("KLINEFLOW_DATABASE_URL", EmbeddedPostgres(server_dir / "postgres"))


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def keys(redis_client: redis.Redis) -> Iterator[KeySpace]:
    """A namespace of this test's own, removed afterwards, so tests never see each other."""
    ks = KeySpace(f"t{os.getpid()}x{next(_counter)}")
    yield ks
    names = list(redis_client.scan_iter(match=f"{ks.namespace}:*", count=1000))
    if names:
        redis_client.delete(*names)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"the real Binance recordings are not at {SHARED_DATA} (a clone elsewhere)")
    return SHARED_DATA


NewDatabase = Callable[[], str]


def _create_database(server_url: str) -> tuple[str, str]:
    """A new empty database on the server: (its name, its URL)."""
    name = f"kf_db_{secrets.token_hex(6)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name, make_conninfo(server_url, dbname=name)


def _drop_databases(server_url: str, names: list[str]) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        for name in names:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            conn.execute(drop.format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def new_database(database_url: str) -> Iterator[NewDatabase]:
    """Make empty databases on the session's server; all are dropped when the module ends."""
    created: list[str] = []

    def make() -> str:
        name, url = _create_database(database_url)
        created.append(name)
        return url

    yield make
    _drop_databases(database_url, created)


@pytest.fixture
def signals_db(database_url: str) -> Iterator[str]:
    """A database of this test's own with every migration applied; dropped afterwards.
    (Roles are cluster-wide: the migrations tolerate finding them there.)"""
    from flows.storage.migrations import apply_migrations

    name, url = _create_database(database_url)
    apply_migrations(url)
    yield url
    _drop_databases(database_url, [name])
