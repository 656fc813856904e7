"""The demo's history recording holds the market's trades exactly as the readers take them
back, is never left half-written, and only the newest demo folders are kept."""

from __future__ import annotations

import threading
from pathlib import Path

from flows.dataflows.demo_recording import KEEP, prune, write_history
from flows.simulator.market import SimMarket
from flows.sources.readers import read_file

START_MS = 1_700_000_000_000


def test_the_history_reads_back_as_the_markets_trades(tmp_path: Path) -> None:
    market = SimMarket.synthetic(symbols=4, seed=5, rate=30.0, start_ms=START_MS)
    market.advance(START_MS + 1_800_000)
    path = tmp_path / "0-history.jsonl.gz"
    count = write_history(market, path, START_MS + 1_800_000, "test")
    held = {s: [t for _, t in market.trades(s)] for s in market.symbols}
    assert count == sum(len(ts) for ts in held.values()) > 1000
    back: dict[str, list[tuple[int, int, int, int, int, bool]]] = {}
    for chunk in read_file(path):
        assert not chunk.dead
        for symbol, trades in chunk.trades.items():
            back.setdefault(symbol, []).extend(trades)
    assert back == held
    assert list(tmp_path.iterdir()) == [path]


def test_an_abandoned_history_leaves_nothing(tmp_path: Path) -> None:
    market = SimMarket.synthetic(symbols=2, seed=5, rate=30.0, start_ms=START_MS)
    market.advance(START_MS + 600_000)
    stop = threading.Event()
    stop.set()  # Ctrl-C before the history was written
    assert write_history(market, tmp_path / "0-history.jsonl.gz", START_MS, "", stop) == 0
    assert list(tmp_path.iterdir()) == []


def test_only_the_newest_demo_folders_are_kept(tmp_path: Path) -> None:
    stamps = [f"2026010{d}-120000" for d in range(1, KEEP + 3)]
    for stamp in reversed(stamps):
        (tmp_path / stamp).mkdir()
    (tmp_path / "mine").mkdir()  # not a demo start's folder: left alone
    gone = prune(tmp_path)
    assert sorted(p.name for p in gone) == stamps[: len(stamps) - KEEP]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*stamps[-KEEP:], "mine"])
