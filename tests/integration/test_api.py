"""The HTTP API against a real Redis filled by a real replay of Binance trades."""

from __future__ import annotations

import doctest
import json
import logging
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from starlette.testclient import TestClient

import flows.api
import flows.api_exchange_info
import flows.api_weights
from flows.api import BINANCE_OPENED_MS, create_app
from flows.dataflows.replay import ReplayJob, run_replay
from flows.domain.clock import ManualClock
from flows.domain.keys import KeySpace
from flows.storage.kline_store import KlineStore
from flows.storage.redis_klines import RetentionPolicy

SYMBOL = "XRPETH"
RECORDING = "XRPETH-aggTrades-20191011-20191013.csv"
KLINES = "/api/v3/klines"
EXCHANGE_INFO = "/api/v3/exchangeInfo"


def replay(shared_data: Path, redis_url: str, keys: KeySpace, retention: int) -> None:
    """The XRPETH dump into Redis under `keys`, keeping `retention` klines per key."""
    run_replay(
        ReplayJob(
            paths=[shared_data / RECORDING],
            redis_url=redis_url,
            intervals=("1m", "5m"),
            keys=keys,
            retention=RetentionPolicy(default=retention, by_interval={}),
            open_throttle_ms=0,
        )
    )


@pytest.fixture
def replayed(shared_data: Path, redis_url: str, keys: KeySpace) -> KeySpace:
    replay(shared_data, redis_url, keys, retention=5000)
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
        assert response.headers["X-MBX-USED-WEIGHT-1M"] == "2"  # on every answer
        info_response = client.get(EXCHANGE_INFO)
        assert info_response.status_code == 503
        assert info_response.json()["code"] == -1001
        invalid = client.get(KLINES, params={"symbol": SYMBOL, "interval": "9m"})
        assert invalid.status_code == 400  # refused before Redis is needed
        health = client.get("/healthz")
        assert (health.status_code, health.json()) == (503, {"status": "redis unreachable"})
        ping = client.get("/api/v3/ping")
        assert ping.status_code == 200
    dead.close()


# -- exchangeInfo --------------------------------------------------------------------------

LISTED = ["1000SATSFDUSD", "BTCTUSD", "BTCUSDT", "TUSDT", "TRXXRP", SYMBOL]


@pytest.fixture
def listed_api(redis_client: redis.Redis, replayed: KeySpace) -> Iterator[TestClient]:
    """The replayed XRPETH, and symbols listed in the stored-symbols set without klines."""
    redis_client.sadd(replayed.symbols, *LISTED)
    clock = ManualClock(now_ms=1_700_000_000_123)
    with TestClient(create_app(KlineStore(redis_client, replayed), clock=clock)) as client:
        yield client


def info(api: TestClient, **params: str) -> dict[str, Any]:
    response = api.get(EXCHANGE_INFO, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_exchange_info_lists_the_stored_symbols_in_binance_shape(
    listed_api: TestClient, redis_client: redis.Redis, replayed: KeySpace
) -> None:
    body = info(listed_api)
    assert body["timezone"] == "UTC"
    assert body["serverTime"] == 1_700_000_000_123
    assert body["rateLimits"] == [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000}
    ]
    assert body["exchangeFilters"] == []
    symbols = body["symbols"]
    assert [s["symbol"] for s in symbols] == sorted(LISTED)
    assert {s["symbol"]: (s["baseAsset"], s["quoteAsset"]) for s in symbols} == {
        "1000SATSFDUSD": ("1000SATS", "FDUSD"),
        "BTCTUSD": ("BTC", "TUSD"),  # the longest quote: TUSD, not USD
        "BTCUSDT": ("BTC", "USDT"),
        "TUSDT": ("T", "USDT"),
        "TRXXRP": ("TRX", "XRP"),
        "XRPETH": ("XRP", "ETH"),
    }
    xrp = symbols[-1]
    assert xrp["status"] == "TRADING"
    for field in ("baseAssetPrecision", "quotePrecision", "quoteAssetPrecision"):
        assert xrp[field] == 8
    assert xrp["orderTypes"] == [
        "LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"
    ]  # fmt: skip
    assert (xrp["permissions"], xrp["permissionSets"]) == ([], [["SPOT"]])
    assert xrp["isSpotTradingAllowed"] is True
    assert xrp["isMarginTradingAllowed"] is False
    filters = {f["filterType"]: f for f in xrp["filters"]}
    price, lot = filters["PRICE_FILTER"], filters["LOT_SIZE"]
    assert (price["tickSize"], lot["stepSize"]) == ("0.00000001", "0.00000001")
    # every stored price and volume is a multiple of the steps, inside the bounds
    rows = stored_rows(redis_client, replayed, "1m")
    tick, step = Decimal(price["tickSize"]), Decimal(lot["stepSize"])
    for row in rows:
        for p in map(Decimal, row[1:5]):
            assert p % tick == 0
            assert Decimal(price["minPrice"]) <= p <= Decimal(price["maxPrice"])
        volume = Decimal(row[5])
        assert volume % step == 0
        assert volume <= Decimal(lot["maxQty"])
    assert Decimal(price["maxPrice"]) * 10**8 == 2**63 - 1


def test_exchange_info_parameters(listed_api: TestClient) -> None:
    def names(**params: str) -> list[str]:
        return [s["symbol"] for s in info(listed_api, **params)["symbols"]]

    assert names(symbol=SYMBOL) == [SYMBOL]
    assert names(symbols='["XRPETH","BTCUSDT"]') == [SYMBOL, "BTCUSDT"]  # in the order asked
    assert names(symbols='["XRPETH", "XRPETH"]') == [SYMBOL]
    assert names(symbolStatus="TRADING") == sorted(LISTED)
    assert names(symbolStatus="HALT") == []
    assert names(symbolStatus="BREAK") == []
    assert names(permissions="SPOT") == sorted(LISTED)
    assert names(permissions='["MARGIN","SPOT"]') == sorted(LISTED)
    assert names(permissions='["MARGIN"]') == []
    hidden = info(listed_api, symbol=SYMBOL, showPermissionSets="false")["symbols"][0]
    assert hidden["permissionSets"] == []


COMBINATION = (-1128, "Combination of optional parameters invalid.")
INFO_ERRORS: list[tuple[dict[str, str], tuple[int, str]]] = [
    ({"symbol": "BTCBUSD"}, (-1121, "Invalid symbol.")),
    ({"symbols": '["XRPETH","NOPE"]'}, (-1121, "Invalid symbol.")),
    ({"symbol": "xrpeth"}, _illegal("symbol")),
    ({"symbol": SYMBOL, "symbols": '["XRPETH"]'}, COMBINATION),
    ({"symbol": SYMBOL, "symbolStatus": "TRADING"}, COMBINATION),
    ({"symbols": '["XRPETH"]', "permissions": "SPOT"}, COMBINATION),
    ({"symbolStatus": "OPEN"}, (-1122, "Invalid symbolStatus.")),
    ({"permissions": "spot"}, (-1100, "Illegal characters found in parameter 'permissions'.")),
    ({"showPermissionSets": "yes"}, _not_valid("showPermissionSets")),
]


@pytest.mark.parametrize(("params", "expected"), INFO_ERRORS)
def test_exchange_info_invalid_requests(
    listed_api: TestClient, params: dict[str, str], expected: tuple[int, str]
) -> None:
    response = listed_api.get(EXCHANGE_INFO, params=params)
    assert response.status_code == 400
    assert response.json() == {"code": expected[0], "msg": expected[1]}


def test_exchange_info_symbols_malformed(listed_api: TestClient) -> None:
    for symbols in ("XRPETH", '["xrpeth"]', '["XRPETH",]', "[XRPETH]"):
        response = listed_api.get(EXCHANGE_INFO, params={"symbols": symbols})
        assert response.status_code == 400
        assert response.json()["code"] == -1100


# -- request weight ------------------------------------------------------------------------


def used(response: Any) -> int:
    assert response.headers["X-MBX-USED-WEIGHT"] == response.headers["X-MBX-USED-WEIGHT-1M"]
    return int(response.headers["X-MBX-USED-WEIGHT-1M"])


def test_weight_header_counts_per_ip_per_minute(
    redis_client: redis.Redis, replayed: KeySpace
) -> None:
    clock = ManualClock(now_ms=1_700_000_000_000)  # 20 s into a minute
    app = create_app(KlineStore(redis_client, replayed), clock=clock, weight_limit=40)
    one = {"symbol": SYMBOL, "interval": "1m", "limit": 1}
    with TestClient(app) as a, TestClient(app, client=("10.0.0.2", 40000)) as b:
        assert used(a.get("/api/v3/ping")) == 1
        assert used(a.get("/api/v3/time")) == 2
        assert used(a.get(KLINES, params=one)) == 4
        assert used(a.get(EXCHANGE_INFO)) == 24
        assert used(a.get("/healthz")) == 24  # weighs nothing, says what was used
        assert used(a.get(KLINES, params={"symbol": SYMBOL})) == 26  # a 400 counts too
        assert used(a.get("/nowhere")) == 27  # so does a 404, with weight 1
        assert used(b.get(KLINES, params=one)) == 2  # another IP, its own count
        for expected in (29, 31, 33, 35, 37, 39):
            assert used(a.get(KLINES, params=one)) == expected
        refused = a.get(KLINES, params=one)
        assert refused.status_code == 429
        assert used(refused) == 41
        assert refused.headers["Retry-After"] == "40"  # seconds to the next minute
        assert refused.json() == {
            "code": -1003,
            "msg": "Too much request weight used; current limit is 40 request weight per "
            "1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API.",
        }
        assert a.get("/api/v3/ping").status_code == 429  # even the lightest call
        assert used(b.get(KLINES, params=one)) == 4  # the other IP is not refused
        clock.advance(39_999)
        assert a.get("/api/v3/ping").headers["Retry-After"] == "1"
        clock.advance(1)  # the next minute: everyone starts again
        response = a.get(KLINES, params=one)
        assert (response.status_code, used(response)) == (200, 2)
        assert used(b.get("/api/v3/ping")) == 1


# -- a range older than what is stored -----------------------------------------------------


def test_window_before_the_oldest_stored_kline(
    api: TestClient, redis_client: redis.Redis, replayed: KeySpace
) -> None:
    rows = stored_rows(redis_client, replayed, "1m")
    oldest = rows[0][0]
    minute = 60_000

    def answer(**params: int) -> tuple[list[list[Any]], str | None]:
        response = api.get(KLINES, params={"symbol": SYMBOL, "interval": "1m", **params})
        assert response.status_code == 200
        return response.json(), response.headers.get("X-Klineflow-Oldest-Open-Time")

    # Binance's window from startTime: `limit` klines; here only those held, never later ones
    start_2019 = 1546300800000  # 2019-01-01, long before the recording
    assert answer(startTime=start_2019) == ([], str(oldest))
    assert answer(startTime=start_2019, limit=1000)[0] == []
    # before Binance had any kline: "from the beginning", the first held (python-binance's
    # probe for a series' start: startTime=0, limit=1)
    assert answer(startTime=0, limit=1) == (rows[:1], str(oldest))
    assert answer(startTime=BINANCE_OPENED_MS - 1)[0] == rows[:500]
    assert answer(startTime=BINANCE_OPENED_MS)[0] == []
    assert answer(startTime=oldest - 10 * minute, limit=15)[0] == rows[0:5]
    assert answer(startTime=oldest - 10 * minute + 1, limit=15)[0] == rows[0:6]  # from -9 min
    assert answer(startTime=oldest - 10 * minute, limit=10)[0] == []
    assert answer(startTime=oldest - 10 * minute, limit=15, endTime=rows[2][0])[0] == rows[0:3]
    assert answer(startTime=oldest - 1, limit=2) == (rows[0:2], str(oldest))
    # endTime alone: the newest up to it, as Binance; before the oldest, none
    assert answer(endTime=oldest - 1) == ([], str(oldest))
    assert answer(endTime=rows[3][0], limit=10)[0] == rows[0:4]
    # the header is on every answer of a series with klines; without any, absent
    assert answer(limit=1) == (rows[-1:], str(oldest))
    response = api.get(KLINES, params={"symbol": SYMBOL, "interval": "15m"})
    assert (response.json(), response.headers.get("X-Klineflow-Oldest-Open-Time")) == ([], None)


def test_window_semantics_follow_binance_after_retention(
    shared_data: Path, redis_url: str, redis_client: redis.Redis, keys: KeySpace
) -> None:
    """Retention trimmed the oldest klines: startTime alone gives the first `limit` klines
    from there among those held, endTime alone the last `limit` before it."""
    run_replay(
        ReplayJob(
            paths=[shared_data / RECORDING],
            redis_url=redis_url,
            intervals=("5m",),
            keys=keys,
            retention=RetentionPolicy(default=300, by_interval={}),
            open_throttle_ms=0,
        )
    )
    rows = stored_rows(redis_client, keys, "5m")
    assert len(rows) == 300
    with TestClient(create_app(KlineStore(redis_client, keys))) as client:

        def klines(**params: int) -> list[list[Any]]:
            response = client.get(KLINES, params={"symbol": SYMBOL, "interval": "5m", **params})
            assert response.status_code == 200
            assert response.headers["X-Klineflow-Oldest-Open-Time"] == str(rows[0][0])
            return cast(list[list[Any]], response.json())

        recording_start = 1570752000000
        assert rows[0][0] > recording_start + 100 * 300_000
        assert klines(startTime=recording_start, limit=100) == []  # all trimmed away
        window_end = recording_start + 500 * 300_000  # Binance's 500 klines from there
        held = [r for r in rows if r[0] < window_end]
        assert 0 < len(held) < 300
        assert klines(startTime=recording_start) == held  # their held part, no later one
        assert klines(startTime=rows[10][0], limit=5) == rows[10:15]
        assert klines(endTime=rows[10][0], limit=5) == rows[6:11]
        assert klines(endTime=rows[-1][0] + 1) == rows
        assert klines() == rows


@pytest.mark.parametrize("module", [flows.api, flows.api_exchange_info, flows.api_weights])
def test_docstring_examples(module: Any) -> None:
    # tests/unit/test_doc_examples.py leaves out every flows.api* module
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert (result.failed, result.attempted > 0) == (0, True)
