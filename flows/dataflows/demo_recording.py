"""The demo's recordings: the market `klineflow demo` plays, kept as recordings a backtest
can read at once.

Each demo start records into a folder of its own, ``<recordings dir>/demo/<UTC start>/``
(the recordings directory the dashboard's Backtest page lists), in the klineflow recording
format (``flows.sources.recording``):

- ``0-history.jsonl.gz``: every trade of the market's past hours (what the live flow
  fetches over REST at start), as the aggTrade frames the exchange sends, each stamped as
  received just after its trade. Written in the background once the live recording has its
  first frame, up to the market's time then, under a temporary name renamed when whole (a
  page never lists half a file). A few seconds for six hours of a 50-trades-a-second market.
- ``klineflow-YYYYMMDD-HH.jsonl.gz``: the frames streamed from the start on, written by the
  recorder ``klineflow record`` runs (``flows.recorder``, on a connection of its own to the
  demo's exchange), one file an
  hour, readable while it grows.

Read in name order the files are the market the demo played: the trades both hold are
duplicates to a replay (by trade id) and dropped. Only the newest ``KEEP`` demo folders are
kept; older ones are removed at start.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from flows.domain.clock import SYSTEM_CLOCK, Clock
from flows.recorder import RecorderStats
from flows.simulator.market import SimMarket
from flows.sources.recording import RecordingWriter
from flows.sources.synthetic import agg_trade_frame

log = logging.getLogger(__name__)

DEMO_FOLDER: Final = "demo"
HISTORY_NAME: Final = "0-history.jsonl.gz"
KEEP: Final = 3  # demo folders kept (each holds the history, tens of MB for six hours)
FIRST_FRAME_WAIT_S: Final = 30.0  # the history waits this long at most for the live recording
_BATCH: Final = 20_000
_STAMP: Final = re.compile(r"^\d{8}-\d{6}$")


def start_recorder(
    ws_url: str,
    streams: list[str],
    out_dir: Path,
    stats: RecorderStats | None = None,
    archive: Path | None = None,
) -> Callable[[], None]:
    """The recorder (``flows.recorder.record``) on a connection and thread of its own;
    returns a function that stops it (its current file closed whole, and archived when
    `archive` is given: the stop then waits up to a minute for that)."""
    from flows.recorder import record as record_frames

    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    def run() -> None:
        loop.run_until_complete(
            record_frames(ws_url, streams, out_dir, stop=stop, stats=stats, archive=archive)
        )

    thread = threading.Thread(target=run, name="recorder", daemon=True)
    thread.start()

    def halt() -> None:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10 if archive is None else 60)

    return halt


def write_history(
    market: SimMarket,
    path: Path,
    created_ms: int,
    source: str = "",
    abandon: threading.Event | None = None,
) -> int:
    """Every trade `market` holds, in time order, as a recording at `path` (written as
    ``<path>.part``, renamed when whole); the number of trades, 0 when `abandon` was set
    before the end (nothing is left behind then)."""
    rows = [(t[4], symbol, a, t) for symbol in market.symbols for a, t in market.trades(symbol)]
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    part = path.with_name(path.name + ".part")
    path.parent.mkdir(parents=True, exist_ok=True)
    with RecordingWriter(part, created_ms, source) as writer:
        for i in range(0, len(rows), _BATCH):
            if abandon is not None and abandon.is_set():
                break
            writer.write_many(
                [(t + 1, agg_trade_frame(s, a, trade)) for t, s, a, trade in rows[i : i + _BATCH]]
            )
    if abandon is not None and abandon.is_set():
        part.unlink(missing_ok=True)
        return 0
    part.replace(path)
    return len(rows)


def prune(parent: Path, keep: int = KEEP) -> list[Path]:
    """Remove all but the newest `keep` demo folders under `parent`; the ones removed."""
    if not parent.is_dir():
        return []
    folders = sorted(p for p in parent.iterdir() if p.is_dir() and _STAMP.match(p.name))
    gone = folders[: max(len(folders) - keep, 0)]
    for folder in gone:
        shutil.rmtree(folder, ignore_errors=True)
    return gone


class DemoRecording:
    """The demo's recording of one start: the live recorder, and the history written
    alongside once the recorder has its first frame."""

    def __init__(
        self,
        market: SimMarket,
        ws_url: str,
        recordings_dir: Path,
        clock: Clock = SYSTEM_CLOCK,
        abandon: threading.Event | None = None,
    ) -> None:
        stamp = datetime.fromtimestamp(clock.now_ms() / 1000, tz=UTC).strftime("%Y%m%d-%H%M%S")
        self.folder = recordings_dir / DEMO_FOLDER / stamp
        self.history = self.folder / HISTORY_NAME
        self.stats = RecorderStats()
        self.history_trades = 0
        self._market = market
        self._ws_url = ws_url
        self._clock = clock
        self._abandon = abandon
        self._ending = threading.Event()
        self._halt: Callable[[], None] | None = None
        self._writer: threading.Thread | None = None

    def start(self) -> None:
        from flows.binance.universe import stream_names

        self.folder.mkdir(parents=True, exist_ok=True)
        prune(self.folder.parent)
        streams = stream_names(self._market.symbols, "aggTrade")
        self._halt = start_recorder(self._ws_url, streams, self.folder, self.stats)
        self._writer = threading.Thread(target=self._write, name="demo-history", daemon=True)
        self._writer.start()

    def _write(self) -> None:
        waited = 0.0
        while not self.stats.frames and waited < FIRST_FRAME_WAIT_S:
            if self._ending.wait(0.1):  # the demo ends: the history is written now
                break
            waited += 0.1
        try:
            self.history_trades = write_history(
                self._market, self.history, self._clock.now_ms(), "klineflow demo (history)",
                self._abandon,
            )  # fmt: skip
        except Exception:  # a full disk must not stop the demo
            log.exception("writing the demo's history recording failed")

    def close(self) -> None:
        """Stop the recorder; wait for the history (unless abandoned: a Ctrl-C)."""
        self._ending.set()
        if self._halt is not None:
            self._halt()
        if self._writer is not None:
            self._writer.join()
