"""The REST client against a real local HTTP server, and universe selection on real exchangeInfo.

The server is `http.server` in a thread, answering from a per-test script of responses and
recording every request. Time is a `ManualClock`; the client's `sleep` records each wait
(and, where a test needs it, moves the clock on), so nothing here really waits.
"""

from __future__ import annotations

import gzip
import json
import random
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from flows.binance.rest import (
    BinanceError,
    ExchangeUnreachable,
    HttpError,
    RateLimited,
    RestAggTrade,
    RestClient,
)
from flows.binance.universe import (
    DEFAULT_STABLECOINS,
    UniverseError,
    is_leveraged_token,
    partition_streams,
    select_universe,
    stream_names,
)
from flows.domain.clock import ManualClock

# 2021-10-11 22:00:00 UTC plus 30 s: a test clock 30 s into a calendar minute
T0_MS = 1_633_989_630_000


# -- the local server ---------------------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    body: Any = field(default_factory=list)  # JSON-encoded unless bytes
    headers: dict[str, str] = field(default_factory=dict)
    gzip: bool = False


@dataclass
class Seen:
    path: str
    query: dict[str, str]
    headers: dict[str, str]


class FakeBinance:
    """Scripted answers, one per request (the last one repeats); every request recorded."""

    def __init__(self) -> None:
        self.script: list[Reply] = []
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        self.url = ""

    def next_reply(self) -> Reply:
        with self.lock:
            return self.script.pop(0) if len(self.script) > 1 else self.script[0]


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    state = FakeBinance()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            with state.lock:
                state.seen.append(
                    Seen(parts.path, dict(parse_qsl(parts.query)), dict(self.headers.items()))
                )
            reply = state.next_reply()
            body = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
            if reply.gzip:
                body = gzip.compress(body)
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if reply.gzip:
                self.send_header("Content-Encoding", "gzip")
            for k, v in reply.headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join(5)


class Sleeps:
    """The client's sleep: records each wait, and moves a ManualClock on by it if given."""

    def __init__(self, clock: ManualClock | None = None) -> None:
        self.calls: list[float] = []
        self.clock = clock

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        if self.clock is not None:
            self.clock.advance(round(seconds * 1000))


def client(url: str, clock: ManualClock, sleeps: Sleeps, **kw: Any) -> RestClient:
    return RestClient(url, clock=clock, sleep=sleeps, rng=random.Random(7), **kw)


AGG = [
    {"a": 26129, "p": "0.01633102", "q": "4.70443515", "f": 27781, "l": 27781,
     "T": 1498793709153, "m": True, "M": True},
    {"a": 26130, "p": "0.01633103", "q": "1.00000000", "f": 27782, "l": 27784,
     "T": 1498793709160, "m": False, "M": True},
]  # fmt: skip


# -- RestClient -----------------------------------------------------------------------------


def test_agg_trades_sends_binance_params_and_decodes(fake: FakeBinance) -> None:
    fake.script = [Reply(body=AGG, headers={"X-MBX-USED-WEIGHT-1M": "4"})]
    clock, sleeps = ManualClock(T0_MS), Sleeps()
    rest = client(fake.url, clock, sleeps)
    got = rest.agg_trades("ltcbtc", from_id=26129, limit=2)
    assert got == [
        RestAggTrade(26129, "0.01633102", "4.70443515", 27781, 27781, 1498793709153, True),
        RestAggTrade(26130, "0.01633103", "1.00000000", 27782, 27784, 1498793709160, False),
    ]
    rest.agg_trades("LTCBTC", start_ms=1498793709000, end_ms=1498793710000)
    assert [s.path for s in fake.seen] == ["/api/v3/aggTrades"] * 2
    assert fake.seen[0].query == {"symbol": "LTCBTC", "fromId": "26129", "limit": "2"}
    assert fake.seen[1].query == {
        "symbol": "LTCBTC",
        "startTime": "1498793709000",
        "endTime": "1498793710000",
        "limit": "1000",
    }
    assert (rest.requests, rest.retries, rest.rate_limited, rest.weight_used) == (2, 0, 0, 8)
    assert rest.server_used_weight == 4
    assert sleeps.calls == []
    with pytest.raises(ValueError, match="limit"):
        rest.agg_trades("LTCBTC", limit=1001)
    with pytest.raises(ValueError, match="before"):
        rest.agg_trades("LTCBTC", start_ms=2, end_ms=1)


def test_klines_exchange_info_and_tickers(fake: FakeBinance, shared_data: Path) -> None:
    info = load_exchange_info(shared_data)
    row = [1499040000000, "0.01634790", "0.80000000", "0.01575800", "0.01577100",
           "148976.11427815", 1499644799999, "2434.19055334", 308, "1756.87402397",
           "28.46694368", "0"]  # fmt: skip
    fake.script = [
        Reply(body=[row]),
        Reply(body=info, gzip=True),
        Reply(body=[{"symbol": "BTCUSDT", "quoteVolume": "1.5"}]),
        Reply(body={"symbol": "ETHUSDT", "quoteVolume": "2.5"}),
    ]
    rest = client(fake.url, ManualClock(T0_MS), Sleeps())
    assert rest.klines("BTCUSDT", "1m", start_ms=1499040000000, limit=1) == [row]
    assert fake.seen[0].query == {
        "symbol": "BTCUSDT", "interval": "1m", "startTime": "1499040000000", "limit": "1"
    }  # fmt: skip
    got = rest.exchange_info()  # sent gzipped: the client asks for it and unpacks it
    assert len(got["symbols"]) == len(info["symbols"]) == 1695
    assert "gzip" in fake.seen[1].headers.get("Accept-Encoding", "")
    assert rest.ticker_24hr() == [{"symbol": "BTCUSDT", "quoteVolume": "1.5"}]
    assert rest.ticker_24hr("ethusdt") == [{"symbol": "ETHUSDT", "quoteVolume": "2.5"}]
    assert fake.seen[3].query == {"symbol": "ETHUSDT"}
    assert rest.weight_used == 2 + 20 + 80 + 2
    with pytest.raises(ValueError, match="interval"):
        rest.klines("BTCUSDT", "7m")


@pytest.mark.parametrize(("status", "retry_after", "waited"), [(429, "7", 7.0), (418, None, 60.0)])
def test_rate_limit_answers_are_waited_out_and_retried(
    fake: FakeBinance, status: int, retry_after: str | None, waited: float
) -> None:
    headers = {"Retry-After": retry_after} if retry_after else {}
    limited = Reply(status, {"code": -1003, "msg": "Too much request weight used"}, headers)
    fake.script = [limited, Reply(body=AGG)]
    clock = ManualClock(T0_MS)
    sleeps = Sleeps(clock)
    rest = client(fake.url, clock, sleeps)
    assert len(rest.agg_trades("BTCUSDT")) == 2
    assert sleeps.calls == [pytest.approx(waited)]
    assert (rest.requests, rest.retries, rest.rate_limited) == (2, 1, 1)


def test_rate_limit_gives_up_after_max_retries(fake: FakeBinance) -> None:
    fake.script = [Reply(429, {"code": -1003, "msg": "slow down"}, {"Retry-After": "3"})]
    sleeps = Sleeps()  # the clock does not move: each retry waits the full Retry-After
    rest = client(fake.url, ManualClock(T0_MS), sleeps, max_retries=2)
    with pytest.raises(RateLimited, match="429") as err:
        rest.klines("BTCUSDT", "1m")
    assert err.value.retry_after_s == 3.0
    assert sleeps.calls == [3.0, 3.0]
    assert (rest.requests, rest.rate_limited) == (3, 3)


def test_a_long_ban_is_raised_at_once(fake: FakeBinance) -> None:
    fake.script = [Reply(418, {"code": -1003, "msg": "banned"}, {"Retry-After": "86400"})]
    sleeps = Sleeps()
    rest = client(fake.url, ManualClock(T0_MS), sleeps)
    with pytest.raises(RateLimited, match="IP banned"):
        rest.exchange_info()
    assert sleeps.calls == [] and rest.requests == 1
    with pytest.raises(RateLimited, match="IP banned"):  # still banned: no request is sent
        rest.agg_trades("BTCUSDT")
    assert rest.requests == 1 and len(fake.seen) == 1


def test_binance_error_body_raises_binance_error_without_retry(fake: FakeBinance) -> None:
    fake.script = [Reply(400, {"code": -1121, "msg": "Invalid symbol."})]
    rest = client(fake.url, ManualClock(T0_MS), Sleeps())
    with pytest.raises(BinanceError, match="Invalid symbol") as err:
        rest.agg_trades("NOPE")
    assert (err.value.code, err.value.msg, err.value.status) == (-1121, "Invalid symbol.", 400)
    assert rest.requests == 1 and rest.retries == 0


def test_other_http_errors(fake: FakeBinance) -> None:
    fake.script = [Reply(503, b"busy"), Reply(body=AGG), Reply(403, b"<html>WAF</html>")]
    sleeps = Sleeps()
    rest = client(fake.url, ManualClock(T0_MS), sleeps)
    assert len(rest.agg_trades("BTCUSDT")) == 2  # a 5xx is retried after a backoff
    assert len(sleeps.calls) == 1 and rest.retries == 1
    with pytest.raises(HttpError, match="403"):
        rest.agg_trades("BTCUSDT")


def test_server_down_raises_exchange_unreachable_after_backoff() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps = Sleeps()
    rest = client(f"http://127.0.0.1:{port}", ManualClock(T0_MS), sleeps, max_retries=4)
    with pytest.raises(ExchangeUnreachable) as err:
        rest.exchange_info()
    message = str(err.value)
    assert message.startswith(f"cannot reach http://127.0.0.1:{port}/api/v3/exchangeInfo: ")
    assert "refused" in message.lower()
    assert rest.requests == 5 and rest.retries == 4
    # exponential backoff with jitter: each wait in [base*2^k / 2, base*2^k]
    assert len(sleeps.calls) == 4
    for k, waited in enumerate(sleeps.calls):
        assert 0.5 * 2**k / 2 <= waited <= 0.5 * 2**k


def test_weight_budget_delays_a_burst(fake: FakeBinance) -> None:
    fake.script = [Reply(body=AGG)]
    clock = ManualClock(T0_MS)
    sleeps = Sleeps(clock)
    rest = client(fake.url, clock, sleeps, weight_per_minute=100)
    for _ in range(25):  # 25 x 4 = the whole budget, at once
        rest.agg_trades("BTCUSDT")
    assert sleeps.calls == []
    clock.advance(10_000)
    rest.agg_trades("BTCUSDT")  # must wait for the first call to leave the minute window
    assert sleeps.calls == [pytest.approx(50.0)]
    assert rest.budget_waits == 1 and rest.weight_used == 104
    clock.advance(1_000)
    rest.agg_trades("BTCUSDT")  # the second of the burst, gone at the same instant
    assert len(sleeps.calls) == 1


def test_server_weight_figure_is_trusted_when_higher(fake: FakeBinance) -> None:
    # another process on this IP has spent almost the whole minute
    busy = {"X-MBX-USED-WEIGHT-1M": "5990"}
    fake.script = [Reply(body=AGG, headers=busy), Reply(body=AGG, headers=busy), Reply(body={})]
    clock = ManualClock(T0_MS)
    sleeps = Sleeps(clock)
    rest = client(fake.url, clock, sleeps)
    rest.agg_trades("BTCUSDT")
    assert rest.server_used_weight == 5990
    rest.agg_trades("BTCUSDT")  # 5990 + 4 fits in 6000
    assert sleeps.calls == []
    rest.exchange_info()  # 5990 + 20 does not: wait for the calendar minute to turn
    assert sleeps.calls == [pytest.approx(30.0)]


def test_constructor_checks() -> None:
    with pytest.raises(ValueError, match="weight_per_minute"):
        RestClient("http://x", weight_per_minute=10)
    with pytest.raises(ValueError, match="max_retries"):
        RestClient("http://x", max_retries=-1)


# -- select_universe on the real 2021 exchangeInfo -----------------------------------------


def load_exchange_info(shared_data: Path) -> dict[str, Any]:
    line = (shared_data / "rest-exchangeInfo-2021-10-12.txt").read_text().split("\n", 1)[0]
    _url, _, rest = line.partition(" -> ")
    _time, _, raw = rest.partition(": ")
    info: dict[str, Any] = json.loads(raw)
    return info


@pytest.fixture(scope="module")
def info(shared_data: Path) -> dict[str, Any]:
    return load_exchange_info(shared_data)


def by_name(info: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["symbol"]: s for s in info["symbols"]}


def tickers_for(volumes: dict[str, str], info: dict[str, Any]) -> list[dict[str, Any]]:
    """A ticker per listed symbol: the given quoteVolume, else a small one by list order."""
    return [
        {"symbol": s["symbol"], "quoteVolume": volumes.get(s["symbol"], f"{i}.5")}
        for i, s in enumerate(info["symbols"])
    ]


def test_the_fixture_has_what_the_tests_rely_on(info: dict[str, Any]) -> None:
    names = by_name(info)
    assert names["BTCUPUSDT"]["baseAsset"] == "BTCUP"
    assert names["BTCUPUSDT"]["status"] == names["BTCDOWNUSDT"]["status"] == "TRADING"
    assert names["ETHBULLUSDT"]["status"] == "BREAK"
    assert names["USDCUSDT"]["status"] == names["BUSDUSDT"]["status"] == "TRADING"
    assert names["EURUSDT"]["status"] == names["PAXGUSDT"]["status"] == "TRADING"
    assert names["BCCUSDT"]["status"] == "BREAK"


def test_top_n_by_quote_volume_without_stables_leveraged_or_halted(info: dict[str, Any]) -> None:
    big = {
        "BTCUPUSDT": "9000000000",  # leveraged
        "BTCDOWNUSDT": "8900000000",  # leveraged
        "USDCUSDT": "8800000000",  # stablecoin base
        "BUSDUSDT": "8700000000",  # stablecoin base
        "BCCUSDT": "8600000000",  # BREAK
        "BTCBUSD": "8500000000",  # another quote asset
        "ETHUSDT": "7000000000",
        "BTCUSDT": "6000000000.00000001",
        "EURUSDT": "6000000000",  # fiat, not a stablecoin: kept
        "DOTUSDT": "5000000000",
        "ADAUSDT": "5000000000",  # a tie with DOTUSDT: by symbol
    }
    got = select_universe(info, tickers_for(big, info), top=5)
    assert got == ["ETHUSDT", "BTCUSDT", "EURUSDT", "ADAUSDT", "DOTUSDT"]
    # all of them when top is None; every one TRADING, USDT-quoted, neither stable nor leveraged
    everything = select_universe(info, tickers_for(big, info), top=None)
    names = by_name(info)
    assert everything[:5] == got
    assert len(everything) == len(set(everything))
    for sym in everything:
        s = names[sym]
        assert s["status"] == "TRADING" and s["quoteAsset"] == "USDT"
        assert s["baseAsset"] not in DEFAULT_STABLECOINS
        assert not s["baseAsset"].endswith(("UP", "DOWN", "BULL", "BEAR"))
    # the filters can be turned off
    loose = select_universe(
        info, tickers_for(big, info), top=4, exclude_bases=(), exclude_leveraged=False
    )
    assert loose == ["BTCUPUSDT", "BTCDOWNUSDT", "USDCUSDT", "BUSDUSDT"]
    btc_quoted = select_universe(info, tickers_for(big, info), top=1, quote="busd")
    assert btc_quoted == ["BTCBUSD"]


def test_symbols_without_a_ticker_rank_last(info: dict[str, Any]) -> None:
    got = select_universe(info, [{"symbol": "XRPUSDT", "quoteVolume": "1"}], top=3)
    assert got[0] == "XRPUSDT"
    assert got[1] < got[2]  # the rest at volume 0, by symbol


def test_leveraged_rule_needs_a_listed_underlying() -> None:
    bases = {"BTC", "ETH", "SUPER", "JUP"}
    assert is_leveraged_token("BTCUP", bases)
    assert is_leveraged_token("ETHBEAR", bases)
    assert is_leveraged_token("BULL", bases)  # BTC's first 3x tokens
    assert not is_leveraged_token("JUP", bases)  # "J" is not a base asset
    assert not is_leveraged_token("SUPER", bases)
    assert not is_leveraged_token("SETUP", bases)
    info = {
        "symbols": [
            {"symbol": f"{b}USDT", "baseAsset": b, "quoteAsset": "USDT", "status": "TRADING"}
            for b in ("BTC", "BTCUP", "JUP", "SUPER", "ETHDOWN")  # ETH not listed here
        ]
    }
    got = select_universe(info, [], top=None)
    assert got == ["BTCUSDT", "ETHDOWNUSDT", "JUPUSDT", "SUPERUSDT"]


def test_named_symbols_are_checked_against_the_exchange(info: dict[str, Any]) -> None:
    assert select_universe(info, [], top=None, symbols=["btcusdt", " ETHBTC", "BTCUSDT"]) == [
        "BTCUSDT",
        "ETHBTC",
    ]
    # a stablecoin or leveraged token asked for by name is taken
    assert select_universe(info, [], top=3, symbols=["USDCUSDT", "BTCUPUSDT"]) == [
        "USDCUSDT",
        "BTCUPUSDT",
    ]
    with pytest.raises(UniverseError) as err:
        select_universe(info, [], top=None, symbols=["BTCUSTD", "ETHUSDT", "BCCUSDT", "ZZZZZZ"])
    message = str(err.value)
    assert "BTCUSTD (did you mean BTCUSDT" in message
    assert "ZZZZZZ" in message and "ZZZZZZ (did you mean" not in message
    assert "BCCUSDT (status BREAK)" in message
    assert err.value.unknown == ["BTCUSTD", "ZZZZZZ"]
    assert err.value.not_trading == ["BCCUSDT"]
    with pytest.raises(ValueError, match="top"):
        select_universe(info, [], top=0)


def test_stream_names_and_partitions() -> None:
    assert stream_names(["BTCUSDT", "ethusdt"]) == ["btcusdt@aggTrade", "ethusdt@aggTrade"]
    assert stream_names(["BTCUSDT"], "kline_1m") == ["btcusdt@kline_1m"]
    with pytest.raises(ValueError):
        stream_names(["BTCUSDT"], "a/b")
    streams = [f"s{i:04d}usdt@aggTrade" for i in range(2500)]
    parts = partition_streams(streams, per_connection=1024)
    assert [len(p) for p in parts] == [1024, 1024, 452]
    assert [s for p in parts for s in p] == streams
    assert [len(p) for p in partition_streams(streams[:450])] == [200, 200, 50]
    assert partition_streams([]) == []
    assert partition_streams(["a@trade", "b@trade", "a@trade"], per_connection=1) == [
        ["a@trade"],
        ["b@trade"],
    ]
    with pytest.raises(ValueError, match="max_per_connection"):
        partition_streams(streams, per_connection=1024, max_per_connection=1025)
    with pytest.raises(ValueError, match="per_connection"):
        partition_streams(streams, per_connection=300, max_per_connection=256)
    with pytest.raises(ValueError, match="per_connection"):
        partition_streams(streams, per_connection=0)
    with pytest.raises(ValueError, match="stream names"):
        partition_streams(["btcusdt"])
