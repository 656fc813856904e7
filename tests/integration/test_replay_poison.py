"""Poisoned and truncated files, replayed end to end with `klineflow replay` into a real Redis.

Each poisoned file is a copy of a real Binance file with one line made impossible; each cut
file is a real file compressed and cut in half. The replay must dead-letter the poison (or
report the cut) and store exactly what a replay of the same file without the poisoned line
(or of the whole lines before the cut) stores: every kline of every interval, the closed
markers, the symbols and the replay state.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import zipfile
import zlib
from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

from flows.cli import app
from flows.domain.clock import SYSTEM_CLOCK
from flows.domain.keys import KeySpace
from flows.sources.recording import RecordingWriter

runner = CliRunner()
XRPETH_CSV = "XRPETH-aggTrades-20191011-20191013.csv"
CAPTURE = "ws-capture-2021-04-04-btc-eth-dot.txt"
# every interval but 1s (three days of seconds would be mostly flat klines)
INTERVALS = "1m,3m,5m,15m,30m,1h,2h,4h,6h,8h,12h,1d,3d,1w,1M"
POISONED_LINE = 6000  # of 12,477


def replay(paths: list[Path], redis_url: str, ks: KeySpace) -> dict[str, str]:
    """Run `klineflow replay` and return its summary as {row label: value}."""
    args = ["replay", *map(str, paths), "--intervals", INTERVALS, "--no-progress"]
    result = runner.invoke(app, [*args, "--redis-url", redis_url, "--namespace", ks.namespace])
    assert result.exit_code == 0, result.output
    rows = {}
    for line in result.output.splitlines():
        cells = [c.strip() for c in re.split(r"[│|]", line) if c.strip()]
        if len(cells) == 2:
            rows[cells[0]] = cells[1]
    return rows


def stored(client: redis.Redis, ks: KeySpace) -> dict[str, object]:
    """Everything a replay stored under the namespace but the dead letters."""
    out: dict[str, object] = {}
    prefix = f"{ks.namespace}:"
    for key in client.scan_iter(match=prefix + "*", count=1000):
        name = key.decode().removeprefix(prefix)
        if key.decode() == ks.dead_letters:
            continue
        kind = client.type(key).decode()
        if kind == "zset":
            out[name] = client.zrange(key, 0, -1, withscores=True)
        elif kind == "hash":
            out[name] = client.hgetall(key)
        elif kind == "set":
            out[name] = client.smembers(key)
        else:
            out[name] = client.get(key)
    return out


def dead_letters(client: redis.Redis, ks: KeySpace) -> list[dict[str, str]]:
    return [
        {k.decode(): v.decode() for k, v in fields.items()}
        for _, fields in client.xrange(ks.dead_letters)
    ]


def namespaces(keys: KeySpace) -> tuple[KeySpace, KeySpace]:
    return KeySpace(keys.namespace + "p"), KeySpace(keys.namespace + "c")


def test_the_reference_replay_stores_every_interval(
    shared_data: Path, redis_url: str, redis_client: redis.Redis, keys: KeySpace
) -> None:
    summary = replay([shared_data / XRPETH_CSV], redis_url, keys)
    assert summary["trades read"] == "12,477"
    assert summary["implausible trades"] == "0"
    assert "files truncated (read up to the cut)" not in summary
    state = stored(redis_client, keys)
    for interval in INTERVALS.split(","):
        assert state[f"klines:XRPETH:{interval}"], interval
    assert dead_letters(redis_client, keys) == []


# column of each field in an aggTrades row: a, price, qty, first, last, time, maker, best
POISONS = {
    "time in 2286": (5, "9999999999999", "trade time 9999999999999 (2286-11-20 17:46:39 UTC)"),
    "time before 2017": (5, "1400000000000", "when Binance opened"),
    "first id 10**15": (3, str(10**15), "first trade id 1000000000000000 is above"),
    "last id 10**15": (4, str(10**15), "last trade id 1000000000000000 is above"),
    "price 1e400": (1, "1e400", "amount '1e400' is above 92233720368.54775807"),
    "quantity 1e400": (2, "1e400", "amount '1e400' is above 92233720368.54775807"),
}


@pytest.mark.parametrize("poison", list(POISONS))
def test_a_poisoned_line_is_refused_and_changes_nothing_else(
    poison: str,
    shared_data: Path,
    tmp_path: Path,
    redis_url: str,
    redis_client: redis.Redis,
    keys: KeySpace,
) -> None:
    column, value, detail = POISONS[poison]
    lines = (shared_data / XRPETH_CSV).read_text().splitlines()
    cols = lines[POISONED_LINE - 1].split(",")
    cols[column] = value
    bad_line = ",".join(cols)
    poisoned = tmp_path / "poisoned" / XRPETH_CSV
    clean = tmp_path / "clean" / XRPETH_CSV
    for path, content in (
        (poisoned, [*lines[: POISONED_LINE - 1], bad_line, *lines[POISONED_LINE:]]),
        (clean, [*lines[: POISONED_LINE - 1], *lines[POISONED_LINE:]]),
    ):
        path.parent.mkdir()
        path.write_text("\n".join(content) + "\n")
    with_poison, without = namespaces(keys)

    summary = replay([poisoned], redis_url, with_poison)
    reference = replay([clean], redis_url, without)

    assert summary["trades read"] == reference["trades read"] == "12,476"
    assert summary["implausible trades"] == "1"
    for row in ("duplicate trades", "invalid trades", "late trades"):
        assert summary[row] == reference[row] == "0", row
    assert summary["malformed / unknown frames"] == "0 / 0"
    (letter,) = dead_letters(redis_client, with_poison)
    assert letter["reason"] == "implausible"
    assert letter["position"] == f"{poisoned}:{POISONED_LINE}"
    assert letter["raw"] == bad_line
    assert letter["symbol"] == "XRPETH"
    assert detail in letter["detail"]
    assert stored(redis_client, with_poison) == stored(redis_client, without)
    assert dead_letters(redis_client, without) == []


def whole_lines(data: bytes, wbits: int) -> list[bytes]:
    """The complete lines a decompressor recovers from `data`, computed with zlib alone."""
    return zlib.decompressobj(wbits).decompress(data).split(b"\n")[:-1]


def zipped(content: bytes, member: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(member, content)
    return buffer.getvalue()


def check_cut(
    cut: Path,
    reference: Path,
    whole: int,
    redis_url: str,
    redis_client: redis.Redis,
    keys: KeySpace,
    symbols: int = 1,
) -> dict[str, str]:
    with_cut, without = namespaces(keys)
    summary = replay([cut], redis_url, with_cut)
    expected = replay([reference], redis_url, without)
    assert summary["trades read"] == expected["trades read"]
    assert summary["files truncated (read up to the cut)"] == "1"
    assert "files truncated (read up to the cut)" not in expected
    (letter,) = dead_letters(redis_client, with_cut)
    assert letter["reason"] == "truncated"
    assert letter["detail"] == f"{cut} is truncated after line {whole}"
    assert letter["position"] == f"{cut}:{whole}"
    state = stored(redis_client, with_cut)
    assert state == stored(redis_client, without)
    assert len([k for k in state if k.startswith("klineflow:replay_state:")]) == symbols
    return summary


def cut_dump_in_half(
    data: bytes, header: int, wbits: int, name: str, tmp_path: Path, redis_url: str,
    redis_client: redis.Redis, keys: KeySpace,
) -> None:  # fmt: skip
    """Replay the first half of a compressed dump (`header` bytes before its deflate data,
    `wbits` its zlib framing) and check it equals a replay of the whole lines in it."""
    cut = tmp_path / name
    cut.write_bytes(data[: len(data) // 2])
    lines = whole_lines(data[header : len(data) // 2], wbits)
    assert 3000 < len(lines) < 10_000
    reference = tmp_path / "prefix" / XRPETH_CSV
    reference.parent.mkdir()
    reference.write_bytes(b"\n".join(lines) + b"\n")
    summary = check_cut(cut, reference, len(lines), redis_url, redis_client, keys)
    assert summary["trades read"] == f"{len(lines):,}"


def test_a_gzipped_csv_cut_in_half(
    shared_data: Path, tmp_path: Path, redis_url: str, redis_client: redis.Redis, keys: KeySpace
) -> None:
    data = gzip.compress((shared_data / XRPETH_CSV).read_bytes())
    cut_dump_in_half(data, 0, 16 + zlib.MAX_WBITS, XRPETH_CSV + ".gz", tmp_path, redis_url,
                     redis_client, keys)  # fmt: skip


def test_a_zip_cut_in_half(
    shared_data: Path, tmp_path: Path, redis_url: str, redis_client: redis.Redis, keys: KeySpace
) -> None:
    data = zipped((shared_data / XRPETH_CSV).read_bytes(), XRPETH_CSV)
    header = 30 + len(XRPETH_CSV)  # the member's local header (no extra field)
    cut_dump_in_half(data, header, -zlib.MAX_WBITS, XRPETH_CSV.replace(".csv", ".zip"),
                     tmp_path, redis_url, redis_client, keys)  # fmt: skip


def test_a_gzipped_recording_cut_in_half(
    shared_data: Path, tmp_path: Path, redis_url: str, redis_client: redis.Redis, keys: KeySpace
) -> None:
    """The real BTC/ETH/DOT capture as a klineflow recording (frames with their receive
    times), cut in half; the reference is the same recording's whole lines, uncompressed."""
    recording = tmp_path / "btc-eth-dot.jsonl.gz"
    with RecordingWriter(recording, created_ms=1617566590378, source="capture") as writer:
        for line in (shared_data / CAPTURE).read_bytes().split(b"\n")[1:]:
            head, sep, frame = line.partition(b": ")
            if sep and b" -> " not in head:
                writer.write(int(float(head) * 1000), frame)
    data = recording.read_bytes()
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(data[: len(data) // 2])
    lines = whole_lines(data[: len(data) // 2], 16 + zlib.MAX_WBITS)
    assert json.loads(lines[0])["format"] == "klineflow-recording"
    assert 1000 < len(lines) < 4000
    reference = tmp_path / "prefix.jsonl"
    reference.write_bytes(b"\n".join(lines) + b"\n")
    summary = check_cut(cut, reference, len(lines), redis_url, redis_client, keys, symbols=3)
    assert int(summary["trades read"].replace(",", "")) > 500


def test_the_margin_past_now_is_a_setting(tmp_path: Path, redis_url: str, keys: KeySpace) -> None:
    """REST JSON and undated dumps are checked against the clock now plus
    KLINEFLOW_FUTURE_MARGIN_MS: a trade half an hour ahead passes the default hour, not 0."""
    ahead_ms = SYSTEM_CLOCK.now_ms() + 30 * 60_000
    path = tmp_path / "XRPETH-aggTrades-recent.csv"
    path.write_text(
        "13519807,0.00141342,23.00000000,15373518,15373518,1570752011620,True,True\n"
        f"13519808,0.00141266,54.00000000,15373519,15373519,{ahead_ms},True,True\n"
    )
    assert replay([path], redis_url, KeySpace(keys.namespace + "d"))["implausible trades"] == "0"
    args = ["replay", str(path), "--intervals", "1m", "--no-progress", "--redis-url", redis_url]
    result = runner.invoke(
        app,
        [*args, "--namespace", keys.namespace + "z"],
        env={"KLINEFLOW_FUTURE_MARGIN_MS": "0"},
    )
    assert result.exit_code == 0, result.output
    assert re.search(r"implausible trades\s*[│|]\s*1\b", result.output), result.output
