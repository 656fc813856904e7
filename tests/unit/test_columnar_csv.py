"""The columnar dump reader yields exactly what the per-row reader (read_csv) yields."""

from __future__ import annotations

import contextlib
import gzip
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import flows.sources.columnar_csv as columnar_csv
from flows.domain.deadletter import DeadLetter
from flows.domain.kline import Trade
from flows.sources.chunks import ReadOptions
from flows.sources.columnar_csv import read_columns
from flows.sources.columnar_lines import LONG_LINE
from flows.sources.dumps import read_csv
from flows.sources.readers import sniff_format

REAL_DUMP = "XRPETH-aggTrades-20191011-20191013.csv"
PARSERS = ("native", "pyarrow")
OPTIONS = ReadOptions(symbol="XRPETH")
Outcome = tuple[list[Trade], list[DeadLetter], int, int]


@contextlib.contextmanager
def parsed_by(parser: str) -> Iterator[None]:
    """The columnar reader with the native line parser (which must have been built with the
    package) or with pyarrow's CSV reader."""
    native = columnar_csv.dump_lines
    assert native is not None, "the native dump parser was not built at install"
    columnar_csv.dump_lines = native if parser == "native" else None  # type: ignore[misc]
    try:
        yield
    finally:
        columnar_csv.dump_lines = native  # type: ignore[misc]


@pytest.fixture(params=PARSERS, autouse=True)
def parser(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test of this module runs with both parsers."""
    with parsed_by(request.param):
        yield request.param


def per_row(path: Path, options: ReadOptions = OPTIONS, skip: int = 0) -> Outcome:
    trades: list[Trade] = []
    dead: list[DeadLetter] = []
    truncated = records = 0
    for chunk in read_csv(path, options, skip):
        for rows in chunk.trades.values():
            trades.extend(rows)
        dead.extend(chunk.dead)
        truncated += chunk.truncated
        records = chunk.records
    return trades, dead, truncated, records


def columnar(
    path: Path, options: ReadOptions = OPTIONS, skip: int = 0, batch_rows: int = 65_536
) -> Outcome:
    trades: list[Trade] = []
    dead: list[DeadLetter] = []
    truncated = records = 0
    for batch in read_columns(path, options, skip, batch_rows):
        # rows of a wrong column count that still make trades come on top; no real dump has any
        assert len(batch) <= batch_rows or options.symbol != "XRPETH" or "odd" in str(path)
        trades.extend(batch.trades())
        dead.extend(batch.dead)
        truncated += batch.truncated
        records = batch.records
    return trades, dead, truncated, records


def assert_same(path: Path, skip: int = 0, batch_rows: int = 65_536) -> Outcome:
    expected = per_row(path, skip=skip)
    got = columnar(path, skip=skip, batch_rows=batch_rows)
    assert got[0] == expected[0]
    assert got[1] == expected[1]
    assert got[2:] == expected[2:]
    return got


def test_every_real_dump_reads_as_per_row(shared_data: Path) -> None:
    dumps = [
        p
        for p in sorted(shared_data.iterdir())
        if p.is_file() and p.suffix != ".md" and sniff_format(p) == "csv"
    ]
    assert any(p.name == REAL_DUMP for p in dumps)
    for path in dumps:
        trades, _, _, _ = assert_same(path)
        if path.name == REAL_DUMP:
            assert len(trades) == 12_477


@pytest.mark.parametrize("batch_rows", [7, 1000, 7_919])
def test_real_dump_in_small_batches_and_resumed(shared_data: Path, batch_rows: int) -> None:
    path = shared_data / REAL_DUMP
    assert_same(path, batch_rows=batch_rows)
    assert_same(path, skip=5_000, batch_rows=batch_rows)


def test_real_dump_gzipped_zipped_and_cut(shared_data: Path, tmp_path: Path) -> None:
    data = (shared_data / REAL_DUMP).read_bytes()
    gz = tmp_path / f"{REAL_DUMP}.gz"
    gz.write_bytes(gzip.compress(data))
    zipped = tmp_path / REAL_DUMP.replace(".csv", ".zip")
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(REAL_DUMP, data)
    for path in (gz, zipped):
        whole = assert_same(path)
        assert whole[2] == 0 and whole[0]
        cut = tmp_path / f"cut-{path.name}"
        cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        half = assert_same(cut)
        assert half[2] == 1 and 0 < len(half[0]) < len(whole[0])
    plain_cut = tmp_path / "XRPETH-aggTrades-2019-10-12.csv"
    plain_cut.write_bytes(data[: len(data) // 2])  # a plain file ends inside a line
    assert_same(plain_cut)


GOOD = b"13519807,0.00141342,23.00000000,15373518,15373518,1570752011620,True,True"
# rows the per-row reader decides one by one: each must come out the same, in place
ODD_ROWS = [
    b"a,price,qty,first_id,last_id,time,isBuyerMaker,isBestMatch",  # a header (line 1 only)
    b"",
    b"   ",
    b"\r",
    b"1,0.5,+2,1,1,1570752011620,True,True",
    b"1,0.5,2, 3,3,1570752011620,true,True",
    b"1,0.5,2,3,3,1570752011620, TRUE ,x",
    b"1,0.5,2,3,3,1570752011620,yes,True",
    b"1,0.5,2,3_0,30,1570752011620,False,True",
    b"1,0,0,-1,-1,1570752011620,True,True",  # Binance's invalid marker
    b"1,-0.5,2,3,3,1570752011620,True,True",
    b"1,0.5,2,3,3,1570752011620000,True,True",  # microseconds
    b"1,0.5,2,3,3,9999999999999,True,True",  # far in the future
    b"1,0.5,2,3,3,1000,True,True",  # before Binance
    b"1,0.5,2,5,3,1570752011620,True,True",
    b"1,0.5,2,3,3000000,1570752011620,True,True",
    b"1,0.5,2,3,10000000000000,1570752011620,True,True",
    b"1,0.123456789,2,3,3,1570752011620,True,True",
    b"1,0.123456780,2,3,3,1570752011620,True,True",
    b"1,.5,5.,3,3,1570752011620,True,True",
    b"1,1e2,2,3,3,1570752011620,True,True",
    b"1,00000000000001.5,92233720368.54775807,3,3,1570752011620,True,True",
    b"1,0.5,92233720368.54775808,3,3,1570752011620,True,True",
    b"1,0.5,99999999999999999999,3,3,1570752011620,True,True",
    b"1,0.5,9999999999.99999999,3,3,1570752011620,True,True",
    b"1,NaN,2,3,3,1570752011620,True,True",
    b"1,0.5,2,3,3,1570752011620,True,True,extra",
    b"7,0.5,2,1.0,1570752011620,False,True",  # a trades row inside an aggTrades file
    b"1,0.5,2\r3,3,1570752011620,True,True",  # a bare carriage return
    b"1,0.5,2\x00,3,3,1570752011620,True,True",
    b"1,0.5,2\xff,3,3,1570752011620,True,True",
    b"1,0.5,2,3,3,1570752011620,True,\xe9t\xe9",
    b'1,"0.5",2,3,3,1570752011620,True,True',
    b"1,0.5,2,3,3,1570752011620,True,True\r\r",
    b"x" * (3 * LONG_LINE),
    b"1,0.5,2,3,3,1570752011620,True," + b"y" * (2 * LONG_LINE),
]


def write(path: Path, lines: list[bytes], ending: bytes = b"\n") -> Path:
    path.write_bytes(ending.join(lines) + ending)
    return path


@pytest.mark.parametrize("ending", [b"\n", b"\r\n"])
def test_odd_rows_between_good_ones(tmp_path: Path, ending: bytes) -> None:
    lines = [ODD_ROWS[0]]
    for row in ODD_ROWS:
        lines += [GOOD, row]
    path = write(tmp_path / "XRPETH-aggTrades-2019-10-11.csv", lines, ending)
    trades, dead, _, _ = assert_same(path)
    assert len(dead) > 15 and len(trades) > len(ODD_ROWS)
    assert_same(path, batch_rows=3)
    assert_same(path, skip=4, batch_rows=5)


def test_trades_format_with_header_and_microseconds(tmp_path: Path) -> None:
    lines = [b"id,price,qty,quoteQty,time,isBuyerMaker,isBestMatch"]
    lines += [
        b"%d,0.%08d,%d.5,1.0,%d,%s,True"
        % (i, i, i, 1735689600010866 + i, (b"True", b"False")[i % 2])
        for i in range(1, 3000)
    ]
    lines += [b"", b"3000,1,2,2,1735689600010866,False,True", b"3001,1,2,2,17356896000,False,True"]
    path = write(tmp_path / "BTCUSDT-trades-2025-01-01.csv", lines)
    trades, dead, _, _ = assert_same(path, batch_rows=1024)
    assert len(trades) == 3000 and len(dead) == 1
    assert trades[0] == (1, 1, 1, 150_000_000, 1735689600010, False)
    assert trades[1] == (2, 2, 2, 250_000_000, 1735689600010, True)


def test_no_header_no_final_newline_and_empty(tmp_path: Path) -> None:
    path = tmp_path / "XRPETH-aggTrades-2019-10-11.csv"
    path.write_bytes(GOOD + b"\n" + GOOD)
    assert len(assert_same(path)[0]) == 2
    path.write_bytes(b"")
    assert assert_same(path)[0] == []
    path.write_bytes(b"\n\n\n")
    assert assert_same(path)[3] == 3


def test_unknown_symbol_and_filtered_symbol(tmp_path: Path) -> None:
    path = write(tmp_path / "dump.csv", [GOOD])
    assert columnar(path, ReadOptions())[:3] == per_row(path, ReadOptions())[:3]
    path = write(tmp_path / "XRPETH-aggTrades-2019-10-11.csv", [GOOD])
    only = ReadOptions(symbols=frozenset({"BTCUSDT"}))
    assert columnar(path, only) == per_row(path, only) == ([], [], 0, 0)


def test_zip_cut_inside_its_header(tmp_path: Path) -> None:
    path = tmp_path / "XRPETH-aggTrades-2019-10-11.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("XRPETH-aggTrades-2019-10-11.csv", GOOD * 100)
    path.write_bytes(path.read_bytes()[:20])
    got = assert_same(path, skip=3)
    assert got[2] == 1
