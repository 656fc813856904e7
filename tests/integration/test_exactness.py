"""Exactness against Binance's own klines, on real recordings (../shared/data/binance).

- Every official XRPETH 1m (3,560) and 5m (712) kline is reproduced in Redis by replaying the
  aggTrades dump through the full dataflow (O, H, L, C, V; empty minutes flat at the
  previous close with zero volume).
- Every kline_1m frame of the WebSocket captures whose trades were all captured is rebuilt
  field by field (o h l c v q V Q n, and t T f L), and so is every update-to-update delta.
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pytest
import redis

from flows.binance.decode import AggTradeEvent, KlineEvent, agg_trade_to_trade, decode_frame
from flows.dataflows.replay import ReplayJob, run_replay
from flows.domain.keys import KeySpace
from flows.domain.kline import Kline, Trade
from flows.domain.money import SCALE, parse_units
from flows.klines.builder import build_klines
from flows.storage.redis_klines import RetentionPolicy

NO_TRIM = RetentionPolicy(default=100_000, by_interval={})
CAPTURES = {
    # file: (kline states fully covered by captured trades, update-to-update deltas covered)
    "ws-capture-2021-04-04-btc-eth-dot.txt": 51,
    "ws-capture-2021-04-17-illiquid10.txt": 6,
    "ws-capture-2021-08-14-ftm-sxp-badger-xmr.txt": 2,
    "ws-capture-2021-10-12-nkn-blz-lrc-rune.txt": 1,
}


def _stored(client: redis.Redis, keys: KeySpace, symbol: str, interval: str) -> dict[int, list]:
    members = client.zrange(keys.klines(symbol, interval), 0, -1)
    return {row[0]: row for row in (json.loads(m) for m in members)}


def _replay(paths: list[Path], redis_url: str, keys: KeySpace, intervals: tuple[str, ...]) -> None:
    run_replay(
        ReplayJob(
            paths=paths, redis_url=redis_url, intervals=intervals, keys=keys, retention=NO_TRIM
        )
    )


@pytest.mark.parametrize(
    "interval, expected_count, expected_empty", [("1m", 3560, 1091), ("5m", 712, 6)]
)
def test_xrpeth_official_klines_reproduced_through_the_flow(
    shared_data: Path, redis_url: str, redis_client: redis.Redis, keys: KeySpace,
    interval: str, expected_count: int, expected_empty: int,
) -> None:  # fmt: skip
    _replay([shared_data / "XRPETH-aggTrades-20191011-20191013.csv"], redis_url, keys, (interval,))
    official = json.loads((shared_data / f"XRPETH-klines-{interval}-ohlcv.json").read_text())
    stored = _stored(redis_client, keys, "XRPETH", interval)
    assert len(official) == expected_count
    assert sorted(stored) == [row[0] for row in official]
    empty = 0
    for open_ms, o, h, low, c, v in official:
        row = stored[open_ms]
        want = [Decimal(repr(x)) for x in (o, h, low, c, v)]
        got = [Decimal(x) for x in row[1:6]]
        assert got == want, (open_ms, row, want)
        if v == 0:
            empty += 1
            assert row[8] == 0 and row[7] == "0.00000000"
    assert empty == expected_empty


def test_rest_json_and_csv_dump_give_identical_redis(
    shared_data: Path, redis_url: str, redis_client: redis.Redis, keys: KeySpace
) -> None:
    other = KeySpace(keys.namespace + "b")
    _replay([shared_data / "XRPETH-aggTrades-20191011-20191013.csv"], redis_url, keys, ("1m", "1h"))
    _replay([shared_data / "XRPETH-aggTrades-ccxt.json.gz"], redis_url, other, ("1m", "1h"))
    try:
        for interval in ("1m", "1h"):
            a = redis_client.zrange(keys.klines("XRPETH", interval), 0, -1, withscores=True)
            b = redis_client.zrange(other.klines("XRPETH", interval), 0, -1, withscores=True)
            assert a == b and len(a) > 50
    finally:
        names = list(redis_client.scan_iter(match=f"{other.namespace}:*"))
        redis_client.delete(*names)


def _capture(path: Path) -> tuple[dict[str, list[Trade]], list[KlineEvent]]:
    trades: dict[str, list[Trade]] = defaultdict(list)
    frames: list[KlineEvent] = []
    for i, line in enumerate(path.read_bytes().split(b"\n")):
        head, sep, raw = line.partition(b": ")
        if i == 0 or not sep or b" -> " in head:
            continue
        ev = decode_frame(raw)
        if isinstance(ev, AggTradeEvent):
            trades[ev.s].append(agg_trade_to_trade(ev))
        elif isinstance(ev, KlineEvent):
            frames.append(ev)
    return trades, frames


def _covered(trades: list[Trade], first_id: int, last_id: int) -> list[Trade] | None:
    """The captured trades with ids in [first_id, last_id], if they cover every id."""
    inside = [t for t in trades if t[0] >= first_id and t[1] <= last_id]
    if sum(t[1] - t[0] + 1 for t in inside) != last_id - first_id + 1:
        return None
    return inside


def _frame_fields(ev: KlineEvent) -> list[int]:
    k = ev.k
    return [parse_units(x) for x in (k.o, k.h, k.l, k.c, k.v, k.q, k.V, k.Q)] + [
        k.n,
        k.t,
        k.T,
        k.f,
        k.L,
    ]


def _kline_fields(k: Kline) -> list[int]:
    return [k.open, k.high, k.low, k.close, k.volume, k.quote_volume, k.taker_buy_volume,
            k.taker_buy_quote_volume, k.trades, k.open_ms, k.close_ms, k.first_trade_id,
            k.last_trade_id]  # fmt: skip


@pytest.mark.parametrize("name", sorted(CAPTURES))
def test_every_fully_captured_kline_state_is_reproduced(shared_data: Path, name: str) -> None:
    trades, frames = _capture(shared_data / name)
    compared = 0
    for ev in frames:
        k = ev.k
        inside = _covered(trades[k.s], k.f, k.L) if k.n else None
        if inside is None:
            continue
        (built,) = build_klines(inside, ("1m",))["1m"]
        assert _kline_fields(built) == _frame_fields(ev), (k.s, k.t, ev.E)
        compared += 1
    assert compared == CAPTURES[name]


def test_update_to_update_deltas_are_reproduced(shared_data: Path) -> None:
    """Between two pushes of one kline, the trades in between explain every change."""
    deltas = 0
    for name in CAPTURES:
        trades, frames = _capture(shared_data / name)
        previous: dict[tuple[str, int], KlineEvent] = {}
        for ev in frames:
            k = ev.k
            before = previous.get((k.s, k.t))
            previous[(k.s, k.t)] = ev
            if before is None or before.k.L < 0 or k.L == before.k.L:
                continue
            inside = _covered(trades[k.s], before.k.L + 1, k.L)
            if inside is None:
                continue
            b = before.k
            assert parse_units(k.v) - parse_units(b.v) == sum(t[3] for t in inside)
            assert parse_units(k.q) - parse_units(b.q) == sum(t[2] * t[3] // SCALE for t in inside)
            assert parse_units(k.V) - parse_units(b.V) == sum(t[3] for t in inside if not t[5])
            assert parse_units(k.Q) - parse_units(b.Q) == sum(
                t[2] * t[3] // SCALE for t in inside if not t[5]
            )
            assert k.n - b.n == sum(t[1] - t[0] + 1 for t in inside)
            assert parse_units(k.c) == inside[-1][2]
            assert parse_units(k.h) == max(parse_units(b.h), *(t[2] for t in inside))
            assert parse_units(k.l) == min(parse_units(b.l), *(t[2] for t in inside))
            deltas += 1
    assert deltas >= 100  # the data README counts 96 + 12 such deltas in the first two files


def test_quote_volume_truncates_each_product(shared_data: Path) -> None:
    """XMRBTC: each price*qty is truncated to 8 decimals before summing; rounding would
    give a different quote volume (0.005773 x 0.045 = 0.000259785 adds 0.00025978)."""
    trades, frames = _capture(shared_data / "ws-capture-2021-08-14-ftm-sxp-badger-xmr.txt")
    updates = [ev.k for ev in frames if ev.k.s == "XMRBTC"]
    checked = 0
    differs = False
    for before, after in itertools.pairwise(updates):
        inside = _covered(trades["XMRBTC"], before.L + 1, after.L)
        assert inside is not None
        delta = parse_units(after.q) - parse_units(before.q)
        truncated = sum(t[2] * t[3] // SCALE for t in inside)
        rounded = sum((t[2] * t[3] + SCALE // 2) // SCALE for t in inside)
        assert delta == truncated
        differs = differs or truncated != rounded
        checked += 1
    assert checked == 2 and differs


def test_fully_captured_klines_through_the_flow_match_binance_in_redis(
    shared_data: Path, tmp_path: Path, redis_url: str, redis_client: redis.Redis, keys: KeySpace
) -> None:
    """For the last fully captured state of each kline, replay exactly the frames of its trades
    (as a capture file) through the dataflow: the stored member is Binance's kline."""
    checked = 0
    for name in CAPTURES:
        path = shared_data / name
        lines = path.read_bytes().split(b"\n")
        trades, frames = _capture(path)
        last_state: dict[tuple[str, int], KlineEvent] = {}
        for ev in frames:
            if ev.k.n and _covered(trades[ev.k.s], ev.k.f, ev.k.L) is not None:
                last_state[(ev.k.s, ev.k.t)] = ev
        for n, ((symbol, open_ms), ev) in enumerate(sorted(last_state.items())):
            k = ev.k
            wanted = [lines[0]]
            for line in lines[1:]:
                head, sep, raw = line.partition(b": ")
                if sep and b" -> " not in head and b"@aggTrade" in raw:
                    agg = decode_frame(raw)
                    if (
                        isinstance(agg, AggTradeEvent)
                        and agg.s == symbol
                        and k.f <= agg.f
                        and agg.l <= k.L
                    ):
                        wanted.append(line)
            capture = tmp_path / f"{symbol}-{open_ms}.txt"
            capture.write_bytes(b"\n".join(wanted) + b"\n")
            space = KeySpace(f"{keys.namespace}:{n}{name[11:21]}")
            _replay([capture], redis_url, space, ("1m",))
            row = _stored(redis_client, space, symbol, "1m")[open_ms]
            assert row == [k.t, k.o, k.h, k.l, k.c, k.v, k.T, k.q, k.n, k.V, k.Q, "0"]
            checked += 1
    assert checked == 8  # distinct klines whose trades the four captures hold in full
