"""`klineflow record`: write Binance WebSocket frames, as received, to hourly recordings.

Every frame of the combined streams is written with its receive time (`Clock.now_ms`) through
`flows.sources.recording.RecordingWriter`, into ``klineflow-YYYYMMDD-HH.jsonl.gz`` named after
the UTC hour of the receive time; a new file starts when that hour changes. A file that
already exists (a restart within the hour) is never appended to: the recorder takes the
next free ``...-HH.1.jsonl.gz``, ``...-HH.2.jsonl.gz`` and so on, each a whole gzip file
with its own header that a reader takes as it is.

The open file is sync-flushed every ``flush_every_s`` seconds, so `flows.sources.readers`
can read it while it grows (it stops cleanly at the missing gzip trailer).

Connections follow BINANCE.md A1: at most 1024 streams each (more streams are split across
several connections, all writing to the same file), permessage-deflate off, pings answered by
the `websockets` library, and a dropped connection re-opened after an exponential backoff
with jitter, capped at ``reconnect_max_s`` (Binance allows 300 connection attempts per 5
minutes per IP). Every frame is kept, including ``serverShutdown`` notices and anything that
is not JSON (the recording format stores it as text).

File writes happen on the event loop: a gzip line is microseconds of work, far below the
5-frames-per-second-per-stream pace of the exchange.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from websockets.asyncio.client import connect
from websockets.exceptions import InvalidURI

from flows.binance.universe import MAX_STREAMS_PER_CONNECTION, partition_streams
from flows.domain.clock import SYSTEM_CLOCK, Clock
from flows.sources.recording import RecordingWriter

log = logging.getLogger(__name__)

MAX_FRAME_BYTES: Final = 4 * 1024 * 1024
HOUR_MS: Final = 3_600_000
MINUTE_MS: Final = 60_000
FILE_PREFIX: Final = "klineflow-"
FILE_SUFFIX: Final = ".jsonl.gz"
# the header line must stay short: readers recognise a recording by its first 512 bytes
_MAX_SOURCE_CHARS: Final = 300


@dataclass
class RecorderStats:
    """Progress of a recorder; pass one in to watch it while the recorder runs."""

    frames: int = 0  # frames written
    files: int = 0  # recording files opened
    reconnects: int = 0  # connection attempts after the first, over all connections
    connections: int = 0  # connections opened successfully
    bytes_received: int = 0  # frame payload bytes
    last_error: str = ""  # why the last connection ended or failed
    paths: list[Path] = field(default_factory=list)  # the files, in the order opened
    archived: list[Path] = field(default_factory=list)  # trade archive files written
    archive_failures: int = 0  # recordings whose archiving failed (the raw files are whole)
    write_failures: int = 0  # frames the tee could not write (the flow went on without them)


def recording_name(
    period_start_ms: int, rotate_every_ms: int = HOUR_MS, index: int = 0, part: str = ""
) -> str:
    """``klineflow-YYYYMMDD-HH.jsonl.gz`` (``-HHMM`` when files are shorter than hours).

    `index` > 0 gives the name of a later file for the same period: ``...-HH.1.jsonl.gz``;
    `part` names a cluster member's own files: ``klineflow-p0of2-YYYYMMDD-HH.jsonl.gz``.
    """
    start = datetime.fromtimestamp(period_start_ms / 1000, tz=UTC)
    stamp = start.strftime("%Y%m%d-%H" if rotate_every_ms % HOUR_MS == 0 else "%Y%m%d-%H%M")
    return f"{FILE_PREFIX}{part}{stamp}{f'.{index}' if index else ''}{FILE_SUFFIX}"


class _RotatingRecording:
    """The current recording file, replaced when the receive time enters a new period."""

    def __init__(
        self,
        out_dir: Path,
        rotate_every_ms: int,
        source: str,
        stats: RecorderStats,
        archive: Path | None = None,
        part: str = "",
    ):
        self._part = part
        self._out_dir = out_dir
        self._archive = archive
        self._archiving: list[threading.Thread] = []
        self._path: Path | None = None
        self._rotate_every_ms = rotate_every_ms
        self._source = source
        self._stats = stats
        self._writer: RecordingWriter | None = None
        self._period = -1
        self._dirty = False

    def write(self, recv_ms: int, frame: bytes) -> None:
        period = recv_ms // self._rotate_every_ms
        # a clock stepped back stays in the current file: files never go back in time
        if self._writer is None or period > self._period:
            self._open(period, recv_ms)
        assert self._writer is not None
        self._writer.write(recv_ms, frame)
        self._dirty = True
        self._stats.frames += 1
        self._stats.bytes_received += len(frame)

    def _open(self, period: int, recv_ms: int) -> None:
        self.close()
        self._out_dir.mkdir(parents=True, exist_ok=True)
        start_ms = period * self._rotate_every_ms
        index = 0
        while True:
            path = self._out_dir / recording_name(start_ms, self._rotate_every_ms, index,
                                                  self._part)  # fmt: skip
            if not path.exists():
                break
            index += 1
        try:
            writer = RecordingWriter(path, recv_ms, self._source)
            writer.flush()  # the header: a reader recognises the file from the start
        except BaseException:  # no file without its header is left behind (a full disk)
            path.unlink(missing_ok=True)
            raise
        self._writer = writer
        self._path = path
        self._period = period
        self._stats.files += 1
        self._stats.paths.append(path)
        log.info("recording to %s", path)

    def flush(self) -> None:
        if self._writer is not None and self._dirty:
            self._writer.flush()
            self._dirty = False

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            self._dirty = False
            if self._archive is not None and self._path is not None:
                self._archive_later(self._path, self._archive)

    def _archive_later(self, path: Path, root: Path) -> None:
        """The closed recording's trades into the trade archive, on a thread of its own."""

        def run() -> None:
            from flows.sources.trade_archive import archive_file

            try:
                written = archive_file(path, root)
            except Exception:  # the raw recording is whole: it can be archived again later
                log.exception("archiving %s failed; run `klineflow archive %s --out %s`",
                              path, path, root)  # fmt: skip
                self._stats.archive_failures += 1
                return
            self._stats.archived.extend(written)

        thread = threading.Thread(target=run, name=f"archive {path.name}")
        thread.start()
        self._archiving.append(thread)

    def finish(self) -> None:
        """Close the current file and wait for the archiving of every closed one."""
        self.close()
        for thread in self._archiving:
            thread.join()
        self._archiving.clear()


class RecordingTap:
    """The recorder as a tee on the live feed (`klineflow up --record`): the live source hands
    it every frame it takes, with the receive time it gave the frame, so a recording holds
    exactly the frames the flow read, from the flow's own connections (no second set of
    connections to the exchange). Frames are written as `record` writes them: hourly files,
    never appended to, sync-flushed every `flush_every_s` by a thread of its own so a reader
    can follow; `close` ends the current file whole (and waits for its archiving).

    The feed's threads call `write` (one lock: a gzip line is microseconds). Answers to the
    feed's own SUBSCRIBE/UNSUBSCRIBE messages are not stream frames and are not recorded."""

    def __init__(
        self,
        out_dir: Path,
        source: str,
        *,
        part: str = "",
        rotate_every_ms: int = HOUR_MS,
        flush_every_s: float = 1.0,
        archive: Path | None = None,
        stats: RecorderStats | None = None,
    ) -> None:
        self.stats = stats if stats is not None else RecorderStats()
        self._sink = _RotatingRecording(out_dir, rotate_every_ms, source[:_MAX_SOURCE_CHARS],
                                        self.stats, archive, part)  # fmt: skip
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._retry_ms = -1  # after a failure, frames until this receive time are not tried
        self._flusher = threading.Thread(
            target=self._flush_every, args=(flush_every_s,), name="recording-flush", daemon=True
        )
        self._flusher.start()

    def __call__(self, frame: bytes, recv_ms: int) -> None:
        with self._lock:
            if self._closed.is_set():
                return
            if recv_ms < self._retry_ms:  # failing: tried again once a second, not per frame
                self.stats.write_failures += 1
                return
            try:
                self._sink.write(recv_ms, frame)
            except Exception as e:  # a full disk must not stop the flow: counted and told
                self._failed(e)
                self._retry_ms = recv_ms + 1000

    def _failed(self, e: BaseException) -> None:
        self.stats.write_failures += 1
        self.stats.last_error = f"{type(e).__name__}: {e}"
        if self.stats.write_failures in (1, 10) or self.stats.write_failures % 10_000 == 0:
            log.error("recording failed (%d frames not written so far): %s",
                      self.stats.write_failures, self.stats.last_error)  # fmt: skip

    def _flush_every(self, seconds: float) -> None:
        while not self._closed.wait(seconds):
            with self._lock:
                try:
                    self._sink.flush()
                except Exception as e:  # told, and tried again next time
                    self._failed(e)

    def close(self) -> None:
        """End the current file whole (and its archiving); never raises (a failure is in
        `stats.last_error`, and logged)."""
        with self._lock:
            self._closed.set()
        self._flusher.join()
        try:
            self._sink.finish()
        except Exception as e:
            self._failed(e)


def _source_label(base: str, groups: list[list[str]]) -> str:
    """What the header names as the source, short enough for readers to sniff the header."""
    if len(groups) == 1:
        url = f"{base}/stream?streams={'/'.join(groups[0])}"
        if len(url) <= _MAX_SOURCE_CHARS:
            return url
    count = sum(len(g) for g in groups)
    label = f"{base}/stream ({count} streams on {len(groups)} connection"
    label += "s)" if len(groups) > 1 else ")"
    return label[:_MAX_SOURCE_CHARS]


async def record(
    ws_base_url: str,
    streams: list[str],
    out_dir: Path,
    *,
    clock: Clock = SYSTEM_CLOCK,
    rotate_every_ms: int = HOUR_MS,
    flush_every_s: float = 1.0,
    stop: asyncio.Event | None = None,
    reconnect_max_s: float = 60.0,
    reconnect_base_s: float = 1.0,
    per_connection: int = MAX_STREAMS_PER_CONNECTION,
    open_timeout_s: float = 10.0,
    rng: random.Random | None = None,
    stats: RecorderStats | None = None,
    archive: Path | None = None,
) -> RecorderStats:
    """Record `streams` from ``<ws_base_url>/stream?streams=...`` until `stop` is set.

    Without `stop` it records until cancelled. The current file is closed whole on the way
    out. `stats` (optional) is updated as frames arrive and returned. `archive`: also write
    each recording's trades, once it is closed, into this trade archive
    (`flows.sources.trade_archive`).
    """
    if rotate_every_ms < MINUTE_MS or rotate_every_ms % MINUTE_MS:
        raise ValueError(
            f"rotate_every_ms must be a whole number of minutes, got {rotate_every_ms}"
        )
    if reconnect_base_s <= 0 or reconnect_max_s < reconnect_base_s:
        raise ValueError("need 0 < reconnect_base_s <= reconnect_max_s")
    groups = partition_streams(streams, per_connection=per_connection)
    if not groups:
        raise ValueError("no streams to record")
    base = ws_base_url.rstrip("/")
    if base.endswith("/stream"):
        base = base[: -len("/stream")]
    stats = stats if stats is not None else RecorderStats()
    rng = rng if rng is not None else random.Random()
    sink = _RotatingRecording(out_dir, rotate_every_ms, _source_label(base, groups), stats,
                              archive)  # fmt: skip

    async def run_connection(url: str) -> None:
        attempt = 0  # failures since the last connection that delivered frames
        first = True
        while True:
            if not first:
                stats.reconnects += 1
            first = False
            got_frames = False
            try:
                async with connect(
                    url,
                    compression=None,
                    max_size=MAX_FRAME_BYTES,
                    open_timeout=open_timeout_s,
                ) as ws:
                    stats.connections += 1
                    log.info("connected to %s", _short(url))
                    while True:
                        frame = await ws.recv(decode=False)
                        recv_ms = clock.now_ms()
                        data = frame if isinstance(frame, bytes) else frame.encode()
                        sink.write(recv_ms, data)
                        got_frames = True
                        if flush_every_s <= 0:
                            sink.flush()
            except asyncio.CancelledError:
                raise
            except InvalidURI:
                raise  # a wrong URL never gets better
            except Exception as e:  # ConnectionClosed, OSError, handshake errors, timeouts
                stats.last_error = f"{type(e).__name__}: {e}".rstrip(": ")
                log.warning("connection to %s ended: %s", _short(url), stats.last_error)
            if got_frames:
                attempt = 0
            delay = min(reconnect_max_s, reconnect_base_s * 2**attempt)
            delay *= 0.5 + 0.5 * rng.random()  # jitter: spread the reconnects of a restart
            attempt += 1
            await asyncio.sleep(delay)

    async def flush_periodically() -> None:
        while True:
            await asyncio.sleep(flush_every_s if flush_every_s > 0 else 1.0)
            sink.flush()

    urls = [f"{base}/stream?streams={'/'.join(g)}" for g in groups]
    tasks = [asyncio.create_task(run_connection(u), name=f"record-{i}") for i, u in enumerate(urls)]
    tasks.append(asyncio.create_task(flush_periodically(), name="record-flush"))
    stopper = asyncio.create_task(stop.wait()) if stop is not None else None
    try:
        waiting = [*tasks, stopper] if stopper is not None else tasks
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopper:
                task.result()  # a connection task only ends by an error: raise it
    finally:
        for task in [*tasks, *([stopper] if stopper is not None else [])]:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if stopper is not None:
            await asyncio.gather(stopper, return_exceptions=True)
        await asyncio.to_thread(sink.finish)  # the last file closed, every archiving done
    return stats


def _short(url: str) -> str:
    return url if len(url) <= 120 else url[:117] + "..."
