"""The HTTP API against a real Redis filled by a real replay of Binance trades."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from starlette.testclient import TestClient

from flows.api import create_app
from flows.dataflows.replay import ReplayJob, run_replay
from flows.domain.clock import ManualClock
from flows.domain.keys import KeySpace
from flows.storage.kline_store import KlineStore
from flows.storage.redis_klines import RetentionPolicy

SYMBOL = "XRPETH"
RECORDING = "XRPETH-aggTrades-20191011-20191013.csv"
KLINES = "/api/v3/klines"


@pytest.fixture
def replayed(shared_data: Path, redis_url: str, keys: KeySpace) -> KeySpace:
    run_replay(
        ReplayJob(
            paths=[shared_data / RECORDING],
            redis_url=redis_url,
            intervals=("1m", "5m"),
            keys=keys,
            retention=RetentionPolicy(default=5000, by_interval={}),
            open_throttle_ms=0,
        )
    )
    return keys


@pytest.fixture
def api(redis_client: redis.Redis, replayed: KeySpace) -> Iterator[TestClient]:
    with TestClient(create_app(KlineStore(redis_client, replayed))) as client:
        yield client


@pytest.fixture
def empty_api(redis_client: redis.Redis, keys: KeySpace) -> Iterator[TestClient]:
    """An API over a namespace with nothing stored: enough for requests refused before Redis."""
    with TestClient(create_app(KlineStore(redis_client, keys))) as client:
        yield client


def stored_rows(client: redis.Redis, keys: KeySpace, interval: str) -> list[list[Any]]:
    members = cast(list[bytes], client.zrange(keys.klines(SYMBOL, interval), 0, -1))
    return [json.loads(m) for m in members]


def get_klines(api: TestClient, **params: str | int) -> list[list[Any]]:
    response = api.get(KLINES, params={"symbol": SYMBOL, **params})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    rows: list[list[Any]] = response.json()
    return rows


def test_windows_match_what_redis_holds(
    api: TestClient, redis_client: redis.Redis, replayed: KeySpace
) -> None:
    rows = stored_rows(redis_client, replayed, "1m")
    assert len(rows) > 1000  # the recording spans about two and a half days
    opens = [r[0] for r in rows]
    assert opens == sorted(opens)
    start = rows[100][0] + 1  # inside kline 100: the window starts at kline 101
    end = rows[1700][0]

    assert get_klines(api, interval="1m") == rows[-500:]
    assert get_klines(api, interval="1m", limit=1000) == rows[-1000:]
    assert get_klines(api, interval="1m", startTime=start) == rows[101:601]
    assert get_klines(api, interval="1m", endTime=end) == rows[1201:1701]
    assert (
        get_klines(api, interval="1m", startTime=start, endTime=end, limit=1000) == (rows[101:1101])
    )
    assert get_klines(api, interval="1m", startTime=start, endTime=rows[120][0]) == rows[101:121]
    assert get_klines(api, interval="1m", startTime=rows[-1][0] + 60_000) == []

    five = stored_rows(redis_client, replayed, "5m")
    assert get_klines(api, interval="5m", limit=7, startTime=five[3][0]) == five[3:10]


def test_body_is_the_stored_json_with_binance_row_shape(
    api: TestClient, redis_client: redis.Redis, replayed: KeySpace
) -> None:
    members = cast(list[bytes], redis_client.zrange(replayed.klines(SYMBOL, "1m"), 0, 2))
    first_open = json.loads(members[0])[0]
    response = api.get(
        KLINES, params={"symbol": SYMBOL, "interval": "1m", "startTime": first_open, "limit": 3}
    )
    assert response.content == b"[" + b",".join(members) + b"]"
    first = response.json()[0]
    assert first == [
        1570752000000,
        "0.00141342",
        "0.00141557",
        "0.00141266",
        "0.00141418",
        "1482.00000000",
        1570752059999,
        "2.09550564",
        9,
        "1182.00000000",
        "1.67111936",
        "0",
    ]
    for row in response.json():
        assert len(row) == 12
        assert [type(v) for v in row] == [int, *[str] * 5, int, str, int, str, str, str]
        assert row[6] == row[0] + 59_999
        for price in row[1:5]:
            assert len(price.split(".")[1]) == 8
        assert row[11] == "0"


def test_microsecond_bounds_read_as_milliseconds(
    api: TestClient, redis_client: redis.Redis, replayed: KeySpace
) -> None:
    rows = stored_rows(redis_client, replayed, "1m")
    start_ms, end_ms = rows[10][0] + 1, rows[40][0]
    in_ms = get_klines(api, interval="1m", startTime=start_ms, endTime=end_ms)
    assert in_ms == rows[11:41]
    start_us, end_us = start_ms * 1000 + 999, end_ms * 1000
    assert start_us >= 10**14
    assert get_klines(api, interval="1m", startTime=start_us, endTime=end_us) == in_ms
    assert get_klines(api, interval="1m", startTime=start_us, limit=5) == rows[11:16]


def test_start_after_end_gives_empty_list(api: TestClient) -> None:
    assert get_klines(api, interval="1m", startTime=1570800000000, endTime=1570790000000) == []


@pytest.mark.parametrize("zone", ["0", "+0", "00:00", "+00:00", "-00:00"])
def test_utc_spellings_of_time_zone_accepted(
    api: TestClient, redis_client: redis.Redis, replayed: KeySpace, zone: str
) -> None:
    rows = stored_rows(redis_client, replayed, "1m")
    assert get_klines(api, interval="1m", limit=3, timeZone=zone) == rows[-3:]


def _mandatory(name: str) -> tuple[int, str]:
    return -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."


def _illegal(name: str) -> tuple[int, str]:
    legal = "^[A-Z0-9-_.]{1,20}$" if name == "symbol" else "^[0-9]{1,20}$"
    return -1100, f"Illegal characters found in parameter '{name}'; legal range is '{legal}'."


def _not_valid(name: str) -> tuple[int, str]:
    return -1130, f"Data sent for parameter '{name}' is not valid."


INVALID_INTERVAL = (-1120, "Invalid interval.")
OK = {"symbol": SYMBOL, "interval": "1m"}

ERROR_CASES: list[tuple[dict[str, str], tuple[int, str]]] = [
    ({}, _mandatory("symbol")),
    ({"interval": "1m"}, _mandatory("symbol")),
    ({"symbol": "", "interval": "1m"}, _mandatory("symbol")),
    ({"symbol": "xrpeth", "interval": "1m"}, _illegal("symbol")),
    ({"symbol": "XRP ETH", "interval": "1m"}, _illegal("symbol")),
    ({"symbol": "A" * 21, "interval": "1m"}, _illegal("symbol")),
    ({"symbol": "BAD!"}, _illegal("symbol")),  # symbol checked before the missing interval
    ({"symbol": SYMBOL}, _mandatory("interval")),
    ({"symbol": SYMBOL, "interval": ""}, _mandatory("interval")),
    ({"symbol": SYMBOL, "interval": "1H"}, INVALID_INTERVAL),
    ({"symbol": SYMBOL, "interval": "2m"}, INVALID_INTERVAL),
    ({"symbol": SYMBOL, "interval": "1mo", "limit": "x"}, INVALID_INTERVAL),
    ({**OK, "startTime": "abc"}, _illegal("startTime")),
    ({**OK, "startTime": "-5"}, _illegal("startTime")),
    ({**OK, "endTime": "1.5"}, _illegal("endTime")),
    ({**OK, "limit": ""}, _illegal("limit")),
    ({**OK, "limit": "1" * 21}, _illegal("limit")),
    ({**OK, "limit": "0"}, _not_valid("limit")),
    ({**OK, "limit": "1001"}, _not_valid("limit")),
    ({**OK, "limit": "1001", "timeZone": "+08:00"}, _not_valid("limit")),
    ({**OK, "timeZone": "+08:00"}, _not_valid("timeZone")),
    ({**OK, "timeZone": "1"}, _not_valid("timeZone")),
    ({**OK, "timeZone": ""}, _not_valid("timeZone")),
    ({"symbol": "NOPE", "interval": "7m"}, INVALID_INTERVAL),  # before the unknown symbol
    ({"symbol": "NOPE", "interval": "1m", "limit": "0"}, _not_valid("limit")),
]


@pytest.mark.parametrize(("params", "expected"), ERROR_CASES)
def test_invalid_requests_answered_like_binance(
    empty_api: TestClient, params: dict[str, str], expected: tuple[int, str]
) -> None:
    response = empty_api.get(KLINES, params=params)
    assert response.status_code == 400
    code, msg = expected
    assert response.json() == {"code": code, "msg": msg}


def test_unknown_symbol(api: TestClient) -> None:
    assert len(get_klines(api, interval="1m", limit=1)) == 1
    for symbol in ("BTCUSDT", "XRPETH.", "XRP-ETH"):
        response = api.get(KLINES, params={"symbol": symbol, "interval": "1m"})
        assert response.status_code == 400
        assert response.json() == {"code": -1121, "msg": "Invalid symbol."}


def test_ping_time_and_health(redis_client: redis.Redis, keys: KeySpace) -> None:
    clock = ManualClock(now_ms=1_700_000_000_123)
    with TestClient(create_app(KlineStore(redis_client, keys), clock=clock)) as client:
        ping = client.get("/api/v3/ping")
        assert (ping.status_code, ping.json()) == (200, {})
        assert client.get("/api/v3/time").json() == {"serverTime": 1_700_000_000_123}
        clock.advance(5)
        assert client.get("/api/v3/time").json() == {"serverTime": 1_700_000_000_128}
        health = client.get("/healthz")
        assert (health.status_code, health.json()) == (200, {"status": "ok"})


def test_redis_unreachable(
    tmp_path: Path, keys: KeySpace, caplog: pytest.LogCaptureFixture
) -> None:
    # No retries: redis-py would otherwise back off for seconds before giving up.
    dead = redis.Redis(unix_socket_path=str(tmp_path / "absent.sock"), retry=Retry(NoBackoff(), 0))
    with TestClient(create_app(KlineStore(dead, keys))) as client, caplog.at_level(logging.INFO):
        response = client.get(KLINES, params={"symbol": SYMBOL, "interval": "1m"})
        assert response.status_code == 503
        assert response.json() == {
            "code": -1001,
            "msg": "Internal error; unable to process your request. Please try again.",
        }
        assert any("Redis unreachable" in r.getMessage() for r in caplog.records)
        invalid = client.get(KLINES, params={"symbol": SYMBOL, "interval": "9m"})
        assert invalid.status_code == 400  # refused before Redis is needed
        health = client.get("/healthz")
        assert (health.status_code, health.json()) == (503, {"status": "redis unreachable"})
        ping = client.get("/api/v3/ping")
        assert ping.status_code == 200
    dead.close()
