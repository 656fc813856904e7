"""The Redis ACL users of `klineflow access redis-acl`, on a real server (the Valkey the
project embeds, Redis 7 compatible) loaded with the generated file: each component's real code
runs as its user, and what it must not do is refused. The readers (api, dashboard) cannot
change anything: every attempt is refused, and the data is byte for byte what it was."""

from __future__ import annotations

import hashlib
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
from flows.access import USERS, rights
from flows.api import create_app
from flows.backtest.run import run_backtest
from flows.backtest.scratch import scratch_redis
from flows.cli import app
from flows.dataflows.replay import ReplayJob, run_replay
from flows.domain.deadletter import DeadLetter
from flows.domain.keys import KeySpace
from flows.domain.kline import Kline, kline_of_row
from flows.services import redis_server_binary
from flows.settings import Settings
from flows.signals.book import TraderRow, build_book
from flows.signals.store import TraderStore
from flows.sources.items import GapReport, QualityNote
from flows.storage.kline_store import KlineStore
from flows.storage.pg_roles import ensure_login
from flows.storage.redis_klines import _UPSERT_LUA as UPSERT_LUA
from flows.storage.redis_klines import KlineWriter
from tests.integration.redis_contents import contents
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
    args = ["access", "redis-acl", "--namespace", NS, "--out", str(folder / "users.acl")]
    for user, password in passwords.items():
        (folder / f"{user}.txt").write_text(password + "\n")
        args += [f"--{user}-password-file", str(folder / f"{user}.txt")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    acl = folder / "users.acl"
    assert stat.S_IMODE(acl.stat().st_mode) == 0o600
    assert not any(p in acl.read_text() for p in passwords.values())  # hashes only
    # an administrator of the test's own, to look at the data and the server's command table
    admin = secrets.token_urlsafe(24)
    with acl.open("a") as f:
        f.write(f"user admin on >{admin} ~* &* +@all\n")
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
        yield AclRedis(socket, {**passwords, "admin": admin})
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

    # what the Status page shows besides klines: one of each record, written by the flow
    writer = KlineWriter(flow, keys)
    writer.dead_letter(DeadLetter("malformed", "test", "{", "stream", symbol))
    writer.gap(GapReport(symbol, 1, 2, 60_000, 120_000, "test"))
    writer.note(QualityNote(symbol, "amended", "test", "1m", 60_000))
    first = kline_of_row(stored[0])
    writer.mismatch(symbol, first, first)
    writer.flush()

    market = MarketData(acl_redis.url("dashboard"), keys, ("1m", "3m"))
    try:
        assert market.symbols().value == sorted(want)
        status = market.status()
        assert not status.stale, status.error
        assert status.value.symbols == len(want) and status.value.heartbeat is not None
        assert status.value.heartbeat.state == "stopped"
        assert status.value.dead_letters == 1 and status.value.gaps == {symbol: 1}
        assert status.value.data_quality >= 2 and status.value.reconcile_mismatches == 1
        assert {(x.symbol, x.interval) for x in status.value.series} == {
            (s, iv) for s in want for iv in ("1m", "3m")
        }
        candles = market.candles(symbol, "1m", 100)
        assert not candles.stale and [k.to_rest() for k in candles.value.klines] == stored
        assert candles.value.last_closed == int(want[symbol]["1m"][-1][0])  # type: ignore[call-overload]
        tickers = market.tickers()
        assert not tickers.stale and {t.symbol for t in tickers.value} == set(want)
        assert set(market.last_prices(sorted(want)).value) == set(want)
        result, drawn = market.preview(ANY_BAR, "1m", symbol)  # the Traders page's preview
        assert drawn and len(result.fires) > 0
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


def test_dashboard_backtests_run_on_a_redis_of_their_own(
    acl_redis: AclRedis, shared_data: Path
) -> None:
    book = build_book([TraderRow(1, "any bar", ANY_BAR, "1m", trigger_mode="every_close",
                                 cooldown_bars=0)])  # fmt: skip
    # not on the live Redis: the dashboard's user may not write there, not even scratch keys
    with pytest.raises(redis.exceptions.NoPermissionError):
        run_backtest([shared_data / CAPTURE], book, ("1m",), acl_redis.url("dashboard"))
    with scratch_redis() as url:  # what the Backtest page runs on (dashboard.data.backtests)
        folder = Path(redis.Redis.from_url(url).config_get("dir")["dir"])
        result = run_backtest([shared_data / CAPTURE], book, ("1m",), url)
        assert result.signals and result.klines
    assert not folder.exists()  # stopped, files removed
    admin = acl_redis.client("admin")
    assert list(admin.scan_iter(match="backtest-*")) == []  # the live Redis saw nothing


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
    assert _refused(lambda: api.hgetall(keys.heartbeat))  # not its key
    # the flow writes only its keys and channel
    assert _refused(lambda: flow.set("elsewhere:key", 1))
    assert _refused(lambda: flow.publish("elsewhere", "x"))
    assert _refused(lambda: flow.sadd(KeySpace("other").symbols, "X"))
    _writer(flow, keys).flush()  # its own: allowed


# A function library whose one function writes the key it is given (FUNCTION LOAD / FCALL).
WRITING_FUNCTION = (
    "#!lua name=kfwrite\n"
    "redis.register_function('kfwrite', function(keys, args) "
    "return redis.call('SET', keys[1], 'x') end)"
)


def _attempts(reader: redis.Redis, keys: KeySpace, sha: str) -> dict[str, Callable[[], object]]:
    """Every way we know to change the data or the server, as `reader`."""
    zset, last = keys.klines("BTCUSDT", "1m"), keys.last_closed("BTCUSDT", "1m")
    blob = f"#{zset} {last} 1000 BTCUSDT 1m\n4102444800000 1 forged\n"  # the upsert's input

    def multi_exec() -> object:
        pipe = reader.pipeline(transaction=True)
        pipe.zadd(zset, {"forged": 1})
        pipe.set(last, 1)
        return pipe.execute()

    def function_call() -> object:
        reader.function_load(WRITING_FUNCTION, replace=True)
        return reader.fcall("kfwrite", 1, last)

    return {
        "ZADD a live kline": lambda: reader.zadd(zset, {"forged": 4102444800000}),
        "DEL the klines": lambda: reader.delete(zset),
        "ZREMRANGEBYRANK": lambda: reader.zremrangebyrank(zset, 0, -1),
        "SET last_closed": lambda: reader.set(last, 4102444800000),
        "EXPIRE": lambda: reader.expire(zset, 1),
        "RENAME": lambda: reader.rename(zset, zset + ":x"),
        "SADD symbols": lambda: reader.sadd(keys.symbols, "FORGED"),
        "XADD dead letters": lambda: reader.xadd(keys.dead_letters, {"x": "y"}),
        "HSET heartbeat": lambda: reader.hset(keys.heartbeat, "state", "running"),
        "PUBLISH closed": lambda: reader.publish(keys.closed_channel, "x"),
        "EVALSHA the upsert": lambda: reader.evalsha(sha, 0, "", blob),
        "EVAL the upsert": lambda: reader.eval(UPSERT_LUA, 0, "", blob),
        "EVAL a write": lambda: reader.eval("return redis.call('SET', KEYS[1], 'x')", 1, last),
        "EVAL_RO a read": lambda: reader.eval_ro("return redis.call('GET', KEYS[1])", 1, last),
        "SCRIPT LOAD": lambda: reader.script_load("return 1"),
        "SCRIPT FLUSH": reader.script_flush,
        "FUNCTION LOAD, FCALL": function_call,
        "MULTI/EXEC a write": multi_exec,
        "FLUSHALL": reader.flushall,
        "FLUSHDB": reader.flushdb,
        "CONFIG SET": lambda: reader.config_set("appendonly", "no"),
        "ACL SETUSER": lambda: reader.acl_setuser(
            "intruder", enabled=True, passwords=["+x" * 9], keys=["*"], commands=["+@all"]
        ),
        "SHUTDOWN": lambda: reader.shutdown(nosave=True),
        "SAVE": reader.save,
        "SWAPDB": lambda: reader.swapdb(0, 1),
        "the flow's writer": _writer(reader, keys).flush,
    }


@pytest.mark.parametrize("user", ["api", "dashboard"])
def test_the_readers_cannot_change_anything(acl_redis: AclRedis, user: str) -> None:
    keys = KeySpace(NS)
    flow, admin = acl_redis.client("flow"), acl_redis.client("admin")
    writer = KlineWriter(flow, keys)
    for minute in range(3):
        open_ms = 1_700_000_000_000 + minute * 60_000
        k = Kline(open_ms, open_ms + 59_999, 150, 151, 149, 150, 1, 1, 1, 1, 1)
        writer.add("BTCUSDT", "1m", k, True)
    writer.flush()  # the flow's upsert script is loaded now: its SHA is known to the server
    sha = hashlib.sha1(UPSERT_LUA.encode()).hexdigest()
    assert admin.script_exists(sha) == [True]
    before = contents(admin)
    acl_users = admin.acl_users()
    reader = acl_redis.client(user)
    allowed = {name for name, attempt in _attempts(reader, keys, sha).items()
               if not _refused(attempt)}  # fmt: skip
    assert allowed == set()
    # DEBUG is refused before the ACL is looked at (enable-debug-command): ask the ACL itself
    for command in (["DEBUG", "SLEEP", "0"], ["DEBUG", "RELOAD"], ["MODULE", "LIST"]):
        answer = admin.execute_command("ACL", "DRYRUN", user, *command)
        assert answer != b"OK" and b"no permissions" in answer, (command, answer)
    assert contents(admin) == before  # nothing changed
    assert admin.acl_users() == acl_users and admin.function_list() == []
    assert admin.config_get("appendonly") == {"appendonly": "no"}  # the fixture's, unchanged


@pytest.mark.parametrize("user", ["api", "dashboard"])
def test_the_readers_commands_are_read_commands_by_the_servers_own_table(
    acl_redis: AclRedis, user: str
) -> None:
    """Every command a reader is granted is flagged read-only by the server (PING aside), and
    its key patterns are all read-only (%R~)."""
    admin = acl_redis.client("admin")
    granted = rights(user).commands
    assert granted
    for command in granted:
        entry = admin.execute_command("COMMAND", "INFO", command)[command]
        flags, categories = set(entry["flags"]), set(entry["acl_categories"])
        assert not flags & {"write", "admin", "noscript"}, (command, flags)
        assert not categories & {"@write", "@scripting", "@dangerous", "@admin"}, command
        assert ("readonly" in flags and "@read" in categories) or command == "ping", command
    described = admin.acl_getuser(user)
    patterns = [p.decode() if isinstance(p, bytes) else p for p in described["keys"]]  # type: ignore[index]
    assert patterns and all(p.startswith("%R~") for p in patterns), patterns


def test_every_user_can_check_it_is_alive_and_nothing_more(acl_redis: AclRedis) -> None:
    for user in USERS:
        client = acl_redis.client(user)
        assert client.ping()
        assert _refused(lambda c=client: c.info())  # type: ignore[misc]
        assert _refused(lambda c=client: c.shutdown())  # type: ignore[misc]
