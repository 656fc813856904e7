"""The generic contract every source and sink passes, run for each class `discover()` finds
(the product's own, the in-memory ones, and any module named in KLINEFLOW_IO_MODULES).

Sources: the trades read are exactly the trades given, in order; reading from any position
gives exactly the batches after it, again and again; positions survive pickling.
Sinks: a batch written twice leaves the store as one write did; a later record of the same
key replaces the earlier one; every key written is there; an empty batch changes nothing.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from typing import Any

import pytest

from flows.domain.deadletter import DeadLetter
from flows.domain.kline import Kline, Trade
from flows.io.contracts import (
    ContractEnv,
    KlineRecord,
    KlineSink,
    ReportSink,
    SignalSink,
    TradeSource,
    discover,
)
from flows.signals.engine import Fire
from flows.sources.items import GapReport, QualityNote
from tests.contract.conftest import SYMBOL, T0

discover()


def _ids(classes: list[type[Any]]) -> list[str]:
    return [f"{c.__module__}.{c.__name__}" for c in classes]


def _built(cls: type[Any], env: ContractEnv) -> Iterator[Any]:
    instance = cls.for_contract(env)
    assert instance is not None, f"{cls.__name__}.for_contract gave no instance"
    yield instance
    instance.close()


SOURCES = TradeSource.implementations()
KLINES = KlineSink.implementations()
SIGNALS = SignalSink.implementations()
REPORTS = ReportSink.implementations()


def test_the_suite_finds_every_kind_of_endpoint() -> None:
    names = {c.__name__ for c in [*SOURCES, *KLINES, *SIGNALS, *REPORTS]}
    # the in-memory ones and the product's own, none of them listed anywhere but their file
    expected = {"MemoryTrades", "FileTrades", "ArchiveTrades", "MemoryKlines", "RedisKlines",
                "MemorySignals", "PostgresSignals", "MemoryReports", "RedisReports"}  # fmt: skip
    assert expected <= names


# -- sources ---------------------------------------------------------------------------------


def _trades(batches: list[Any]) -> list[Trade]:
    return [t for cols, _ in batches for t in cols.trades()]


@pytest.fixture(params=SOURCES, ids=_ids(SOURCES))
def source(request: pytest.FixtureRequest, contract_env: ContractEnv) -> Iterator[TradeSource]:
    yield from _built(request.param, contract_env)


def test_source_gives_the_trades_it_holds(source: TradeSource, contract_env: ContractEnv) -> None:
    batches = list(source.read())
    expected = [t for cols in contract_env.trades for t in cols.trades()]
    assert _trades(batches) == expected
    assert {cols.symbol for cols, _ in batches if len(cols)} == {SYMBOL}
    assert len(batches) >= 2  # positions to resume from


def test_source_resumes_exactly_from_every_position(source: TradeSource) -> None:
    batches = list(source.read())
    for i, (_, position) in enumerate(batches):
        restored = pickle.loads(pickle.dumps(position))
        assert restored == position
        rest = list(source.read(restored))
        assert _trades(rest) == _trades(batches[i + 1 :]), f"resumed after batch {i}"
        assert [p for _, p in rest] == [p for _, p in batches[i + 1 :]]
        assert _trades(list(source.read(restored))) == _trades(rest)  # again: the same


# -- kline sinks -----------------------------------------------------------------------------


def _kline(open_ms: int, close: int, trades: int) -> Kline:
    return Kline(open_ms, open_ms + 59_999, 100, max(100, close), min(100, close), close,
                 10**8 * trades, 10**6 * trades, trades, 10**8, 10**6, 7, 6 + trades)  # fmt: skip


def _kline_records() -> list[KlineRecord]:
    out = []
    for symbol in (SYMBOL, "BTCUSDT"):
        for interval, step in (("1m", 60_000), ("5m", 300_000)):
            for i in range(4):
                out.append(KlineRecord(symbol, interval, _kline(T0 + i * step, 90 + i, 3), True))
            out.append(KlineRecord(symbol, interval, _kline(T0 + 4 * step, 95, 1), False))
    return out


@pytest.fixture(params=KLINES, ids=_ids(KLINES))
def kline_sink(request: pytest.FixtureRequest, contract_env: ContractEnv) -> Iterator[KlineSink]:
    yield from _built(request.param, contract_env)


def _kline_keys(contents: Any) -> set[tuple[str, str, int]]:
    return {k for k in contents if isinstance(k, tuple) and len(k) == 3 and isinstance(k[2], int)}


def test_kline_sink_keeps_every_kline_once_and_takes_a_batch_again(kline_sink: KlineSink) -> None:
    records = _kline_records()
    kline_sink.write_batch([])
    assert _kline_keys(kline_sink.contents()) == set()
    kline_sink.write_batch(records)
    once = kline_sink.contents()
    assert _kline_keys(once) == {(r.symbol, r.interval, r.kline.open_ms) for r in records}
    kline_sink.write_batch(records)  # re-delivered after a restart
    assert kline_sink.contents() == once
    kline_sink.write_batch([])
    assert kline_sink.contents() == once


def test_kline_sink_replaces_an_open_kline_by_its_later_state(kline_sink: KlineSink) -> None:
    records = _kline_records()
    kline_sink.write_batch(records)
    before = kline_sink.contents()
    opened = records[4]
    assert not opened.closed
    later = KlineRecord(opened.symbol, opened.interval, _kline(opened.kline.open_ms, 99, 2), True)
    kline_sink.write_batch([later])
    after = kline_sink.contents()
    assert _kline_keys(after) == _kline_keys(before)
    key = (later.symbol, later.interval, later.kline.open_ms)
    assert after[key] != before[key]
    changed = {k for k in _kline_keys(after) if after[k] != before[k]}
    assert changed == {key}


# -- signal sinks ----------------------------------------------------------------------------


def _fires(trader: tuple[int, int], count: int = 6) -> list[Fire]:
    tid, version = trader
    return [
        Fire(f"contract-{tid}-{i}", tid, version, SYMBOL, "1m", T0 + i * 60_000,
             T0 + i * 60_000 + 59_999, T0 + i * 60_000, f"0.0014{i}", {"close": 1.0}, -1)
        for i in range(count)
    ]  # fmt: skip


@pytest.fixture(params=SIGNALS, ids=_ids(SIGNALS))
def signal_sink(request: pytest.FixtureRequest, contract_env: ContractEnv) -> Iterator[SignalSink]:
    yield from _built(request.param, contract_env)


def test_signals_sink_records_each_signal_once(signal_sink: SignalSink) -> None:
    fires = _fires(signal_sink.contract_trader)
    signal_sink.write_batch(fires[:4])
    first = signal_sink.contents()
    assert set(first) == {f.id for f in fires[:4]}
    signal_sink.write_batch(fires[:4])  # re-delivered
    assert signal_sink.contents() == first
    signal_sink.write_batch(fires[2:])  # overlapping: only the new ones are added
    assert set(signal_sink.contents()) == {f.id for f in fires}
    assert {k: v for k, v in signal_sink.contents().items() if k in first} == first


# -- report sinks ----------------------------------------------------------------------------


def _reports() -> list[Any]:
    return [
        DeadLetter("malformed", "expected 8 columns", "1,2,3", "XRPETH.csv:7", SYMBOL),
        DeadLetter("implausible", "time after the day", "9,9", "XRPETH.csv:9", SYMBOL),
        GapReport(SYMBOL, 100, 180, T0, T0 + 5_000, "fetch refused"),
        QualityNote(SYMBOL, "amended", "2 kline(s) closed again", "1m", T0),
    ]


@pytest.fixture(params=REPORTS, ids=_ids(REPORTS))
def report_sink(request: pytest.FixtureRequest, contract_env: ContractEnv) -> Iterator[ReportSink]:
    yield from _built(request.param, contract_env)


def test_report_sink_keeps_each_report_once(report_sink: ReportSink) -> None:
    reports = _reports()
    report_sink.write_batch(reports[:3])
    first = report_sink.contents()
    assert first
    report_sink.write_batch(reports[:3])
    assert report_sink.contents() == first
    report_sink.write_batch(reports[2:])
    after = report_sink.contents()
    assert len(after) > len(first)  # the note is new; the gap was there already
    report_sink.write_batch(reports)
    assert report_sink.contents() == after
