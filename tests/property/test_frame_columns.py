"""Captures and recordings read as columns (the native frame parser) give exactly what the
line-by-line reader gives: every trade of every symbol in order, every dead letter in order,
the same counts and the same end position."""

from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.domain.kline import Trade
from flows.sources import frame_columns
from flows.sources.captures import read_frames
from flows.sources.chunks import ReadOptions
from flows.sources.frame_columns import read_frame_columns
from flows.sources.readers import frame_columns_available

pytestmark = pytest.mark.skipif(
    not frame_columns_available(), reason="needs the native parser built"
)

CAPTURE = "ws-capture-2021-04-04-btc-eth-dot.txt"
RECV = 1_617_566_591_326
Outcome = tuple[dict[str, list[Trade]], list[object], tuple[int, ...]]


def by_rows(path: Path, options: ReadOptions, skip: int, recorded: bool) -> Outcome:
    trades: dict[str, list[Trade]] = {}
    dead: list[object] = []
    counts = [0, 0, 0, 0, 0]
    for chunk in read_frames(path, options, skip, recorded):
        for sym, rows in chunk.trades.items():
            trades.setdefault(sym, []).extend(rows)
        dead.extend(chunk.dead)
        for i, n in enumerate((chunk.ignored, chunk.filtered, chunk.torn, chunk.truncated)):
            counts[i] += n
        counts[4] = chunk.records
    return trades, dead, tuple(counts)


def by_columns(path: Path, options: ReadOptions, skip: int, recorded: bool) -> Outcome:
    trades: dict[str, list[Trade]] = {}
    dead: list[object] = []
    counts = [0, 0, 0, 0, 0]
    for chunk in read_frame_columns(path, options, skip, recorded):
        for cols in chunk.columns:
            trades.setdefault(cols.symbol, []).extend(cols.trades())
        dead.extend(chunk.dead)
        for i, n in enumerate((chunk.ignored, chunk.filtered, chunk.torn, chunk.truncated)):
            counts[i] += n
        counts[4] = chunk.records
    return trades, dead, tuple(counts)


def assert_same(path: Path, recorded: bool, skip: int = 0, **options: object) -> Outcome:
    opts = ReadOptions(**options)  # type: ignore[arg-type]
    expected = by_rows(path, opts, skip, recorded)
    got = by_columns(path, opts, skip, recorded)
    assert got[0] == expected[0]
    assert got[1] == expected[1]
    assert got[2] == expected[2]
    return got


def test_the_real_capture_reads_as_line_by_line(shared_data: Path) -> None:
    trades, _, counts = assert_same(shared_data / CAPTURE, recorded=False)
    assert sum(len(t) for t in trades.values()) > 100 and counts[0] > 100  # depth, klines
    assert_same(shared_data / CAPTURE, recorded=False, skip=50)
    assert_same(shared_data / CAPTURE, recorded=False, symbols=frozenset({"BTCUSDT"}))


def agg(
    symbol: str = "BTCUSDT", a: int = 7, p: str = "58001.03000000", q: str = "0.08620500",
    f: int = 745522877, last: int = 745522877, t: int = RECV - 1, m: str = "true",
) -> dict[str, object]:  # fmt: skip
    return {"e": "aggTrade", "E": t + 1, "s": symbol, "a": a, "p": p, "q": q, "f": f,
            "l": last, "T": t, "m": m, "M": True}  # fmt: skip


def frame(event: dict[str, object], stream: str = "btcusdt@aggTrade") -> str:
    body = ",".join(
        f'"{k}":{v if k == "m" else json.dumps(v, separators=(",", ":"))}' for k, v in event.items()
    )
    return f'{{"stream":"{stream}","data":{{{body}}}}}'


GOOD = frame(agg())
# lines the native parser must leave to the line rules, or take exactly as they decide
EDGES = [
    frame(agg(p="58001.030000001")),  # a 9th decimal
    frame(agg(p="0.00000000")),  # Binance's invalid marker
    frame(agg(q="99999999999.5")),  # 11 integer digits
    frame(agg(p="9999999.99999999")),  # beyond the fast path's range
    frame(agg(t=RECV * 1000)),  # microseconds
    frame(agg(t=RECV + 120_000)),  # past the receive time + margin
    frame(agg(t=1000)),  # before Binance
    frame(agg(f=5, last=3)),
    frame(agg(last=745522877 + 2_000_000)),  # too many fills
    frame(agg(f=10**13, last=10**13)),  # an id beyond Binance's
    frame(agg(symbol="btcusdt")),
    frame(agg(symbol="A" * 17)),
    frame(agg(m="null")),
    frame(agg(a=-1)),
    frame({**agg(), "x": {"nested": 1}}),
    frame({**agg(), "E": 1.5}),
    GOOD.replace('"s":"BTCUSDT"', '"s":"BTC\\u0055SDT"'),
    GOOD.replace('"p":', '"p" :'),
    GOOD.replace('"f":', '"t":1,"f":'),
    GOOD.replace('"m":true', '"m":true,"m":false'),
    GOOD.replace('"p":"58001.03000000"', '"p":58001.03'),
    frame({k: v for k, v in agg().items() if k != "q"}),
    frame(
        {
            "e": "trade",
            "E": RECV,
            "s": "ETHUSDT",
            "t": 9,
            "p": "1.5",
            "q": "2",
            "b": 1,
            "a": 2,
            "T": RECV - 5,
            "m": "false",
            "M": True,
        },
        "ethusdt@trade",
    ),
    frame(
        {
            "e": "trade",
            "E": RECV,
            "s": "ETHUSDT",
            "t": -9,
            "p": "1.5",
            "q": "2",
            "T": RECV - 5,
            "m": "false",
        },
        "ethusdt@trade",
    ),
    '{"stream":"btcusdt@kline_1m","data":{"e":"kline","E":1,"s":"BTCUSDT","k":{"t":1}}}',
    '{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade"',  # cut short
    json.dumps(json.loads(GOOD)),  # spaces
    '{"data":' + json.dumps(agg()) + ',"stream":"x"}',  # the keys the other way round
    "not json",
    "",
    GOOD.replace('"f":745522877', '"f":0745522877'),  # a leading zero: not JSON
    GOOD.replace('"E":', '"E":0'),
    GOOD.replace('"a":7', '"a":-07'),
    GOOD.replace('"a":7', '"a":-0'),
    GOOD.replace('"stream":"btcusdt@aggTrade"', '"stream":"btc\udcffusdt@aggTrade"'),
    GOOD.replace('"M":true', '"M":"\u00e9t\u00e9"'),
    frame(agg(symbol="ETHUSDT", p="1800.5", q="3.25")),
    frame(agg(symbol="DOTUSDT", p="43.5", q="7")),
]


def recording_lines(frames: list[str], recv: list[int]) -> list[bytes]:
    out = [b'{"format":"klineflow-recording","version":1,"created_ms":1,"source":"t"}']
    for text, r in zip(frames, recv, strict=True):
        try:
            json.loads(text)
        except ValueError:
            out.append(b'{"r":%d,"x":%s}' % (r, json.dumps(text).encode()))
        else:
            out.append(b'{"r":%d,"d":%s}' % (r, text.encode("utf-8", "surrogateescape")))
    return out


def capture_lines(frames: list[str], recv: list[int]) -> list[bytes]:
    out = [b"wss://stream.binance.com:9443/stream?streams=btcusdt@aggTrade <-> 1617566590.37"]
    for text, r in zip(frames, recv, strict=True):
        raw = text.encode("utf-8", "surrogateescape")
        out.append(b"%d.%06d: %s" % (r // 1000, (r % 1000) * 1000 + 123, raw))
    return out


@pytest.mark.parametrize("recorded", [True, False])
def test_edge_lines_between_good_ones(tmp_path: Path, recorded: bool) -> None:
    frames = [x for edge in EDGES for x in (GOOD, edge)]
    recv = [RECV + i for i in range(len(frames))]
    lines = (recording_lines if recorded else capture_lines)(frames, recv)
    path = tmp_path / ("rec.jsonl.gz" if recorded else "cap.txt")
    data = b"\n".join(lines) + b"\n"
    path.write_bytes(gzip.compress(data) if recorded else data)
    trades, dead, _ = assert_same(path, recorded)
    assert len(trades["BTCUSDT"]) > len(EDGES) and len(dead) > 10 and "ETHUSDT" in trades
    assert_same(path, recorded, skip=7)
    assert_same(path, recorded, symbols=frozenset({"ETHUSDT", "DOTUSDT"}))
    # a recording being written: its last line torn; any file cut short
    if recorded:
        path.write_bytes(gzip.compress(data[:-40]))
        assert assert_same(path, recorded)[2][2] == 1
        path.write_bytes(gzip.compress(data)[:-300])
        assert assert_same(path, recorded)[2][3] == 1


edge = st.sampled_from(EDGES)
line_frame = st.one_of(st.just(GOOD), edge, st.text(max_size=30))


@pytest.mark.parametrize("block_bytes", [frame_columns.BLOCK_BYTES, 1, 200])
@settings(max_examples=60, deadline=None)
@given(st.lists(line_frame, max_size=40), st.booleans(), st.integers(0, 5), st.booleans())
def test_any_lines_read_as_line_by_line(
    block_bytes: int, frames: list[str], recorded: bool, skip: int, torn: bool
) -> None:
    """Also with blocks cut anywhere (a byte, a few lines): the reader's blocks end at line
    ends whatever the reads return."""
    frame_columns.BLOCK_BYTES, kept = block_bytes, frame_columns.BLOCK_BYTES
    try:
        _any_lines(frames, recorded, skip, torn)
    finally:
        frame_columns.BLOCK_BYTES = kept


def _any_lines(frames: list[str], recorded: bool, skip: int, torn: bool) -> None:
    recv = [RECV + 10 * i for i in range(len(frames))]
    lines = (recording_lines if recorded else capture_lines)(frames, recv)
    data = b"\n".join(lines) + (b"" if torn else b"\n")
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "f"
        path.write_bytes(gzip.compress(data) if recorded else data)
        assert_same(path, recorded, skip=skip)


def test_a_recording_as_a_trade_source_resumes_exactly_from_every_position(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`flows.io.files.FileTrades` over a recording read as columns, in blocks of a few lines
    holding several symbols: reading from any position it gave yields exactly the batches
    after it."""
    from flows.io.files import FileTrades

    monkeypatch.setattr(frame_columns, "BLOCK_BYTES", 600)
    symbols = ["BTCUSDT", "ETHUSDT", "DOTUSDT"]
    frames = [frame(agg(symbol=symbols[i % 3], f=100 + i, last=100 + i)) for i in range(60)]
    frames[17] = EDGES[1]  # a dead letter among them
    path = tmp_path / "rec.jsonl.gz"
    path.write_bytes(gzip.compress(b"\n".join(recording_lines(frames, [RECV] * 60)) + b"\n"))
    source = FileTrades([path])
    whole = [(cols.trades(), cols.dead, position) for cols, position in source.read()]
    assert sum(len(t) for t, _, _ in whole) == 59 and len(whole) > 6
    for k, (_, _, position) in enumerate(whole):
        after = [(cols.trades(), cols.dead, p) for cols, p in source.read(position)]
        assert after == whole[k + 1 :], k
