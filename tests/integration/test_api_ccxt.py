"""ccxt's binance class, unmodified, against `klineflow api` served over real HTTP (uvicorn on
127.0.0.1) from a real Redis filled by a real replay of Binance trades."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import ccxt
import pytest
import redis
import uvicorn

from flows.api import create_app
from flows.domain.clock import ManualClock
from flows.domain.keys import KeySpace
from flows.storage.kline_store import KlineStore
from tests.integration.test_api import replay

SYMBOL = "XRPETH"
OTHER_SYMBOLS = ("BTCUSDT", "ETHBTC", "1000SATSFDUSD")  # listed, no klines
NOW_MS = 1_700_000_000_000  # the server's clock: weights count in this one minute


def ccxt_config(base_url: str) -> dict[str, Any]:
    """What a user configures (the README's example): the spot URL, and spot markets only."""
    return {
        "urls": {"api": {"public": f"{base_url}/api/v3"}},
        "options": {
            "fetchMarkets": {"types": ["spot"]},
            "fetchCurrencies": False,
            "fetchMargins": False,
        },
    }


class Server:
    """The API app under uvicorn in a background thread, on a port of its own."""

    def __init__(self, app: Any) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=lambda: self._server.run(sockets=[self._sock]), daemon=True
        )

    def __enter__(self) -> Server:
        self._thread.start()
        started = threading.Event()
        for _ in range(500):  # wait for the state "started", at most about 10 s
            if self._server.started or not self._thread.is_alive():
                break
            started.wait(0.02)
        assert self._server.started, "uvicorn did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()


def stored_rows(client: redis.Redis, keys: KeySpace, interval: str) -> list[list[Any]]:
    members = cast(list[bytes], client.zrange(keys.klines(SYMBOL, interval), 0, -1))
    return [json.loads(m) for m in members]


def ohlcv(row: list[Any]) -> list[float]:
    """What ccxt makes of a stored row: open time, then open/high/low/close/volume as floats."""
    return [row[0], *(float(v) for v in row[1:6])]


@pytest.fixture
def served(
    shared_data: Path, redis_url: str, redis_client: redis.Redis, keys: KeySpace
) -> Iterator[tuple[str, KeySpace]]:
    replay(shared_data, redis_url, keys, retention=5000)
    redis_client.sadd(keys.symbols, *OTHER_SYMBOLS)
    app = create_app(KlineStore(redis_client, keys), clock=ManualClock(now_ms=NOW_MS))
    with Server(app) as server:
        yield server.base_url, keys


def test_load_markets_lists_the_stored_symbols(served: tuple[str, KeySpace]) -> None:
    base_url, _ = served
    exchange = ccxt.binance(ccxt_config(base_url))
    markets = exchange.load_markets()
    assert sorted(markets) == ["1000SATS/FDUSD", "BTC/USDT", "ETH/BTC", "XRP/ETH"]
    xrp = markets["XRP/ETH"]
    assert (xrp["id"], xrp["base"], xrp["quote"], xrp["type"]) == ("XRPETH", "XRP", "ETH", "spot")
    assert xrp["spot"] and xrp["active"] and not xrp["margin"]
    assert xrp["precision"] == {"amount": 1e-08, "price": 1e-08, "base": 1e-08, "quote": 1e-08}
    assert xrp["limits"]["price"]["min"] == 1e-08
    assert exchange.last_response_headers["X-MBX-USED-WEIGHT-1M"] == "20"  # exchangeInfo only


def test_fetch_ohlcv_returns_exactly_the_stored_klines(
    served: tuple[str, KeySpace], redis_client: redis.Redis
) -> None:
    base_url, keys = served
    rows = stored_rows(redis_client, keys, "1m")
    five = stored_rows(redis_client, keys, "5m")
    exchange = ccxt.binance(ccxt_config(base_url))

    assert exchange.fetch_ohlcv("XRP/ETH", "1m", since=rows[100][0], limit=1000) == [
        ohlcv(r) for r in rows[100:1100]
    ]
    assert exchange.fetch_ohlcv("XRP/ETH", "5m") == [ohlcv(r) for r in five[-500:]]
    assert exchange.fetch_ohlcv("XRP/ETH", "5m", limit=3, params={"until": five[9][0]}) == [
        ohlcv(r) for r in five[7:10]
    ]
    # every field, as ccxt's raw call to the endpoint hands it over
    raw = exchange.publicGetKlines(
        {"symbol": SYMBOL, "interval": "1m", "startTime": rows[5][0], "limit": 1000}
    )
    assert raw == rows[5:1005]
    assert exchange.last_response_headers["X-MBX-USED-WEIGHT-1M"] == str(20 + 4 * 2)
    assert exchange.last_response_headers["X-Klineflow-Oldest-Open-Time"] == str(rows[0][0])

    # ccxt's own pagination from before the oldest kline reads every stored kline once
    everything = exchange.fetch_ohlcv(
        "XRP/ETH",
        "1m",
        since=rows[0][0] - 3_600_000,
        params={"paginate": True, "until": rows[-1][0]},
    )
    assert everything == [ohlcv(r) for r in rows]
    assert exchange.fetch_ohlcv("BTC/USDT", "1m") == []  # listed, nothing stored


def test_a_range_older_than_the_stored_klines(
    shared_data: Path, redis_url: str, redis_client: redis.Redis, keys: KeySpace
) -> None:
    """The tester's case: retention dropped the oldest klines; asking for them gives the klines
    of that window that are held (here none), never the later ones."""
    replay(shared_data, redis_url, keys, retention=1000)
    rows = stored_rows(redis_client, keys, "1m")
    assert len(rows) == 1000
    recording_start = 1570752000000  # the first kline of the recording, trimmed away
    assert rows[0][0] > recording_start + 1000 * 60_000
    app = create_app(KlineStore(redis_client, keys), clock=ManualClock(now_ms=NOW_MS))
    with Server(app) as server:
        exchange = ccxt.binance(ccxt_config(server.base_url))
        assert exchange.fetch_ohlcv("XRP/ETH", "1m", since=recording_start, limit=1000) == []
        headers = exchange.last_response_headers
        assert headers["X-Klineflow-Oldest-Open-Time"] == str(rows[0][0])
        # from the time the header gives, the stored klines
        since = int(headers["X-Klineflow-Oldest-Open-Time"])
        got = exchange.fetch_ohlcv("XRP/ETH", "1m", since=since, limit=10)
        assert got == [ohlcv(r) for r in rows[:10]]
        # a window reaching into what is held: its held part only
        got = exchange.fetch_ohlcv("XRP/ETH", "1m", since=rows[0][0] - 5 * 60_000, limit=8)
        assert got == [ohlcv(r) for r in rows[:3]]


def test_weight_limit_refuses_ccxt_as_binance_does(
    redis_client: redis.Redis, keys: KeySpace
) -> None:
    redis_client.sadd(keys.symbols, SYMBOL)
    clock = ManualClock(now_ms=NOW_MS)  # 20 s into a minute
    app = create_app(KlineStore(redis_client, keys), clock=clock, weight_limit=21)
    with Server(app) as server:
        exchange = ccxt.binance(ccxt_config(server.base_url))
        exchange.load_markets()  # 20
        with pytest.raises(ccxt.DDoSProtection, match="-1003"):  # as ccxt takes a Binance 429
            exchange.fetch_ohlcv("XRP/ETH", "1m")  # 22 > 21
        assert exchange.last_response_headers["Retry-After"] == "40"
        clock.advance(40_000)  # the next minute
        assert exchange.fetch_ohlcv("XRP/ETH", "1m") == []
        assert exchange.last_response_headers["X-MBX-USED-WEIGHT-1M"] == "2"
