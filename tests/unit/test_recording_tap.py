"""The recorder's tee on the live feed (flows.recorder.RecordingTap) when its disk fails:
frames are counted as not written, no file is left without its header, the flushing goes on,
closing never raises, and it records again once the disk takes writes."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

import flows.recorder as recorder
from flows.recorder import RecordingTap
from flows.sources.readers import read_all
from flows.sources.recording import RecordingWriter
from tests.integration.test_live import _wait

FRAME = (b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1617566591315,"s":"BTCUSDT",'
         b'"a":1,"p":"58001.03000000","q":"0.08620500","f":2,"l":2,"T":1617566591314,'
         b'"m":true,"M":true}}')  # fmt: skip
RECV = 1_617_566_591_326


class Disk:
    full = False


class FlakyWriter(RecordingWriter):
    """The real writer, on a disk the test can fill (every write and flush then fails)."""

    def __init__(self, path: Path, created_ms: int, source: str = "") -> None:
        if Disk.full:
            path.write_bytes(b"\x1f\x8b")  # a piece of a file, as a full disk leaves
            raise OSError(errno.ENOSPC, "No space left on device")
        super().__init__(path, created_ms, source)

    def write(self, recv_ms: int, frame: bytes) -> None:
        if Disk.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        super().write(recv_ms, frame)

    def flush(self) -> None:
        if Disk.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        super().flush()

    def close(self) -> None:
        super().close()
        if Disk.full:  # the trailer did not make it
            raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_is_counted_and_recording_goes_on_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recorder, "RecordingWriter", FlakyWriter)
    Disk.full = True
    tap = RecordingTap(tmp_path, "test", flush_every_s=0.01)
    for i in range(3000):  # 3 s of frames at 1,000 a second, all refused
        tap(FRAME, RECV + i)
    assert tap.stats.write_failures == 3000 and tap.stats.frames == 0
    assert list(tmp_path.iterdir()) == []  # tried once a second; no piece of a file kept
    assert "No space left" in tap.stats.last_error
    Disk.full = False
    for i in range(3000, 3100):
        tap(FRAME, RECV + i)
    (path,) = tmp_path.iterdir()
    Disk.full = True  # the flusher meets a full disk, is counted, and goes on
    assert _wait(lambda: tap.stats.write_failures > 3000, 10)
    Disk.full = False
    for i in range(3100, 3200):
        tap(FRAME, RECV + i)
    # the flusher's next flush makes all 200 readable while the file is still open
    assert _wait(lambda: sum(len(t) for t in read_all(path).trades.values()) == 200, 10)
    tap.close()  # the last file closed whole
    assert sum(len(t) for t in read_all(path).trades.values()) == tap.stats.frames == 200


def test_close_never_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recorder, "RecordingWriter", FlakyWriter)
    Disk.full = False
    tap = RecordingTap(tmp_path, "test", flush_every_s=60)
    tap(FRAME, RECV)
    Disk.full = True
    tap.close()
    Disk.full = False
    assert tap.stats.write_failures >= 1 and "No space left" in tap.stats.last_error
