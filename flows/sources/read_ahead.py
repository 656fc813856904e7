"""Recorded files read ahead of the dataflow, from before the dataflow exists.

A replay's files do not depend on anything the flow does, so `klineflow replay` starts
reading them (`ReadAhead(replay_chunks(...))`) before it loads Bytewax, redis-py and the
kline step, and the parsing (threads that let go of the interpreter) overlaps that loading;
the flow's source then takes the chunks already read (`flows.sources.replay_source`).

`replay_chunks` is every file's chunks in order with each file's index, the one stream the
replay source reads whether or not it was read ahead. `ReadAhead` runs any iterator on a
thread of its own, at most `depth` items ahead of its consumer (memory stays bounded: a
chunk is at most `ReadOptions.column_rows` trades), and hands its items on in order; an
error of the iterator is raised to the consumer when it reaches that point.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Final, Generic, TypeVar

from flows.domain.trade_columns import TradeColumns
from flows.sources.readers import Chunk, ReadOptions, read_batches

T = TypeVar("T")
DEPTH: Final = 24  # chunks read ahead at most: about 50 MB of columns for dumps
# (file index, chunk); None: the file is done
FileChunk = tuple[int, Chunk | TradeColumns | None]


def replay_chunks(
    paths: list[Path], options: ReadOptions, file_index: int = 0, records: int = 0
) -> Iterator[FileChunk]:
    """The chunks of `paths` from file `file_index` (after its first `records` records) on,
    each with its file's index, and `(index, None)` when a file is done."""
    for index in range(file_index, len(paths)):
        skip = records if index == file_index else 0
        for chunk in read_batches(paths[index], options, skip_records=skip):
            yield index, chunk
        yield index, None


class _End:
    pass


_END: Final = _End()


class ReadAhead(Generic[T]):
    """`source` consumed on a thread, at most `depth` items ahead; an iterator of its items.
    `close` stops the thread (also when nobody ever read an item)."""

    def __init__(self, source: Iterator[T], depth: int = DEPTH) -> None:
        self._queue: queue.Queue[T | _End | BaseException] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(
            target=self._run, args=(source,), name="read-ahead", daemon=True
        )
        self._thread.start()

    def _run(self, source: Iterator[T]) -> None:
        try:
            for item in source:
                if not self._put(item):
                    return
            self._put(_END)
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(exc)
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()  # a generator's `finally` (its readers' threads) runs here

    def _put(self, item: T | _End | BaseException) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        item = self._queue.get()
        if isinstance(item, _End):
            self._done = True
            raise StopIteration
        if isinstance(item, BaseException):
            self._done = True
            raise item
        return item

    def close(self) -> None:
        self._done = True
        self._stop.set()
        while self._thread.is_alive():  # it may be blocked in a put, or inside the source
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.05)
