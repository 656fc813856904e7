"""Files read ahead of the dataflow (flows.sources.read_ahead): the same chunks in the same
order, an error where it happened, nothing left running when stopped early."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.domain.stats import RunStats
from flows.sources.read_ahead import ReadAhead, replay_chunks
from flows.sources.readers import ReadOptions, read_batches
from flows.sources.replay_source import ReplaySource
from tests.unit.test_columnar_csv import GOOD


def test_items_come_in_order_then_the_end() -> None:
    ahead = ReadAhead(iter(range(1000)), depth=3)
    assert list(ahead) == list(range(1000))
    assert next(ahead, None) is None
    ahead.close()


def test_an_error_is_raised_where_it_happened() -> None:
    def source() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("broken at 3")

    ahead = ReadAhead(source())
    assert next(ahead) == 1 and next(ahead) == 2
    with pytest.raises(ValueError, match="broken at 3"):
        next(ahead)
    ahead.close()


def test_close_stops_a_reader_nobody_reads_and_runs_its_finally() -> None:
    closed = threading.Event()

    def source() -> Iterator[int]:
        try:
            n = 0
            while True:  # endless: the thread waits on a full queue
                yield n
                n += 1
        finally:
            closed.set()

    ahead = ReadAhead(source(), depth=2)
    ahead.close()
    assert closed.is_set()
    assert not any(t.name == "read-ahead" and t.is_alive() for t in threading.enumerate())


def _dumps(tmp_path: Path) -> list[Path]:
    out = []
    for day in (11, 12):
        path = tmp_path / f"XRPETH-aggTrades-2019-10-{day}.csv"
        path.write_bytes(b"\n".join([GOOD] * 50 + [b"1,x,2,3,3,1570752011620,True,True"]))
        out.append(path)
    return out


def test_replay_chunks_are_every_files_batches_with_its_index(tmp_path: Path) -> None:
    paths = _dumps(tmp_path)
    options = ReadOptions(column_rows=16)
    got = list(replay_chunks(paths, options))
    expected = []
    for i, path in enumerate(paths):
        expected += [(i, c) for c in read_batches(path, options)] + [(i, None)]
    assert [(i, c is None) for i, c in got] == [(i, c is None) for i, c in expected]
    assert [c.records for _, c in got if c is not None] == [
        c.records for _, c in expected if c is not None
    ]
    resumed = list(replay_chunks(paths, options, file_index=1, records=20))
    assert {i for i, _ in resumed} == {1}  # the first file is not read again
    assert sum(len(c) for _, c in resumed if c is not None) == 30  # lines 21..50


def _read_all(source: ReplaySource, resume: object = None) -> list[int]:
    part = source.build_part("s", "replay", resume)
    counts = []
    try:
        while True:
            counts.append(len(part.next_batch()))
    except StopIteration:
        pass
    part.close()
    return counts


def test_the_replay_source_takes_chunks_read_ahead_only_from_the_start(tmp_path: Path) -> None:
    paths = _dumps(tmp_path)
    options = ReadOptions(column_rows=16)
    plain = _read_all(ReplaySource(paths, options, RunStats()))
    stats = RunStats()
    ahead = ReadAhead(replay_chunks(paths, options))
    assert _read_all(ReplaySource(paths, options, stats, ahead)) == plain
    assert stats.trades_read == 100 and stats.files_done == 2
    # resumed in the middle: the chunks read from the start are not taken
    ahead = ReadAhead(replay_chunks(paths, options))
    resumed = _read_all(ReplaySource(paths, options, RunStats(), ahead), (1, 0))
    assert resumed == _read_all(ReplaySource(paths, options, RunStats()), (1, 0))
    assert not any(t.name == "read-ahead" and t.is_alive() for t in threading.enumerate())
