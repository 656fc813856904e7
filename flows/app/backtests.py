"""Run a backtest and keep its record: the one way the command line and the dashboard do it.

Two sources: recorded trades replayed through the live dataflow (``run_and_record``), or the
klines already stored in Redis, evaluated by the same rules engine (``run_stored_and_record``,
``flows.backtest.stored``). A stored run is recorded as started before anything is read and
ends `done` or `failed` on every path: an exception anywhere (a file missing, Redis away, a
bug), and input that gave nothing, end it `failed`, so no run stays `running` for ever. Input
that gave nothing is a failure a person can act on (``NothingUsable``, with the hint).

Every finished run records what it covered in its parameters (``RunFacts``): its source
(``recordings`` or ``stored klines``), the symbols it had klines of, and the open time of its
first kline and the close time of its last one, so a list of runs can say what each was.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows.app.errors import NothingUsable, Unreachable, nothing_read
from flows.app.urls import redacted, scrubbed
from flows.backtest import SCRATCH_PREFIX
from flows.backtest.report import SignalOutcome, outcomes, span_ms
from flows.backtest.run import (
    BacktestResult,
    drop_namespace,
    input_hashes,
    needed_intervals,
    run_backtest,
)
from flows.backtest.store import Target, finish_run, start_run
from flows.backtest.stored import main_intervals, run_over_klines
from flows.domain.intervals import get_interval
from flows.domain.keys import KeySpace
from flows.domain.kline import Kline, kline_of_row
from flows.domain.stats import RunStats
from flows.domain.trade_checks import DEFAULT_FUTURE_MARGIN_MS
from flows.signals.book import Book

if TYPE_CHECKING:
    from flows.settings import Settings
    from flows.storage.kline_store import KlineStore

RECORDINGS = "recordings"  # a run's source: recorded trades
STORED_KLINES = "stored klines"  # ... the klines stored in Redis


@dataclass(frozen=True)
class Recorded:
    run_id: int | None  # None: not stored
    result: BacktestResult
    rows: list[SignalOutcome]
    span_ms: int
    seconds: float


def recordings_dir(settings: Settings) -> Path:
    """Where the recordings a backtest offers are: KLINEFLOW_RECORDINGS_DIR, else
    `recordings` in the data directory (the demo records there too)."""
    if settings.recordings_dir is not None:
        return settings.recordings_dir.expanduser()
    return settings.data_dir / "recordings"


@dataclass(frozen=True)
class RunFacts:
    """What a run covered, kept in its parameters for the list of runs."""

    source: str
    symbols: tuple[str, ...]  # the symbols it had klines of
    first_open_ms: int | None  # its first kline's open time
    last_close_ms: int | None  # its last kline's close time

    def params(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "symbols_seen": list(self.symbols),
            "first_open_ms": self.first_open_ms,
            "last_close_ms": self.last_close_ms,
        }


def facts_of(source: str, klines: Mapping[tuple[str, str], Sequence[Kline]]) -> RunFacts:
    """The facts of the klines a run read (every series of its traders' intervals)."""
    series = [ks for ks in klines.values() if ks]
    return RunFacts(
        source,
        tuple(sorted({symbol for (symbol, _), ks in klines.items() if ks})),
        min((ks[0].open_ms for ks in series), default=None),
        max((ks[-1].close_ms for ks in series), default=None),
    )


def _store_of(url: str, keys: KeySpace) -> KlineStore:
    from flows.services import connect_redis
    from flows.storage.kline_store import KlineStore

    return KlineStore(connect_redis(url), keys, ttl_s=0)


@contextlib.contextmanager
def _redis_named(url: str) -> Iterator[None]:
    """A Redis that fails is Unreachable, named by its URL (password hidden)."""
    import redis

    try:
        yield
    except redis.RedisError as e:
        raise Unreachable(f"cannot reach Redis at {redacted(url)}: "
                          f"{scrubbed(str(e), url)}") from None  # fmt: skip


def _namespace_facts(url: str, keys: KeySpace, intervals: Sequence[str]) -> RunFacts:
    """The facts of the klines a replay built under `keys` (its scratch namespace)."""
    store = _store_of(url, keys)
    symbols: list[str] = []
    first: list[int] = []
    last: list[int] = []
    for symbol in sorted(store.symbols()):
        for interval in intervals:
            newest = store.last_closed(symbol, interval)
            oldest = store.get_klines(symbol, interval, 0, None, 1)
            if newest is None or not oldest:
                continue
            final = store.get_klines(symbol, interval, newest, newest, 1)
            symbols.append(symbol)
            first.append(int(oldest[0][0]))
            last.append(int((final or oldest)[0][6]))
    return RunFacts(RECORDINGS, tuple(sorted(set(symbols))), min(first, default=None),
                    max(last, default=None))  # fmt: skip


def run_and_record(
    paths: Sequence[Path],
    book: Book,
    redis_url: str,
    store: Target | None,
    *,
    symbols: frozenset[str] | None = None,
    start_ms: int | None = None,
    end_ms: int | None = None,
    params: dict[str, Any] | None = None,
    owner_id: int | None = None,
    stats: RunStats | None = None,
    future_margin_ms: int = DEFAULT_FUTURE_MARGIN_MS,
    on_run: Callable[[int], None] | None = None,
) -> Recorded:
    """Replay `paths` with `book`'s traders (see ``flows.backtest.run``); with `store`, the
    run is recorded there and always finished. `store` is a URL or a connection factory (the
    dashboard's: a transaction acting for the signed-in user); `on_run` hears the run's id as
    soon as it is recorded (a page showing the run while it goes)."""
    stats = stats if stats is not None else RunStats()
    intervals = needed_intervals(book)
    asked = {**(params or {}), "intervals": list(intervals), "source": RECORDINGS}
    run_id = _start(store, book, asked, owner_id, on_run)
    started = time.monotonic()
    keys = KeySpace(f"{SCRATCH_PREFIX}{uuid.uuid4().hex[:12]}")
    hashing = input_hashes(paths) if store is not None else None
    try:
        try:
            result = run_backtest(list(paths), book, tuple(intervals), redis_url, symbols,
                                  start_ms, end_ms, keep_klines=True, namespace=keys.namespace,
                                  stats=stats, future_margin_ms=future_margin_ms)  # fmt: skip
            empty = nothing_read(stats)
            if empty is not None:
                raise empty
            facts = _namespace_facts(redis_url, keys, main_intervals(book))
        finally:
            with contextlib.suppress(Exception):  # a Redis gone away is told by the run
                drop_namespace(redis_url, keys)
        rows = outcomes(result.signals, result.klines)
        span = span_ms(result.klines)
        seconds = time.monotonic() - started
        if store is not None and run_id is not None:
            closed = sum(stats.klines_closed.values())
            finish_run(store, run_id, rows, stats.trades_read, closed, seconds,
                       inputs=hashing.result() if hashing is not None else {}, span_ms=span,
                       more=facts.params())  # fmt: skip
    except BaseException:
        _failed(store, run_id, stats, started)
        raise
    return Recorded(run_id, result, rows, span, seconds)


def run_stored_and_record(
    redis_url: str,
    keys: KeySpace,
    book: Book,
    symbols: Sequence[str],
    store: Target | None,
    *,
    span_ms_asked: int | None = None,
    params: dict[str, Any] | None = None,
    owner_id: int | None = None,
    stats: RunStats | None = None,
    on_run: Callable[[int], None] | None = None,
) -> Recorded:
    """Evaluate `book`'s traders over the klines stored in Redis (`keys`): of `symbols`
    (empty: every stored symbol), the closed klines of the last `span_ms_asked` before the
    newest closed kline of the traders' intervals (None: all that is stored). The rules warm
    up on the klines stored before the span, as the live flow's do after a start. Recorded
    in `store` like a recording run, with no input files."""
    from flows.signals.step import redis_seeder

    stats = stats if stats is not None else RunStats()
    mains = main_intervals(book)
    with _redis_named(redis_url):
        kstore = _store_of(redis_url, keys)
        wanted = sorted({s.strip().upper() for s in symbols if s.strip()}) or sorted(
            kstore.symbols()
        )
        asked = {**(params or {}), "intervals": list(needed_intervals(book)),
                 "source": STORED_KLINES, "symbols": wanted, "span_ms_asked": span_ms_asked,
                 "namespace": keys.namespace}  # fmt: skip
    run_id = _start(store, book, asked, owner_id, on_run)
    started = time.monotonic()
    try:
        with _redis_named(redis_url):
            ends = [
                last + get_interval(iv).length_ms
                for s in wanted
                for iv in mains
                if (last := kstore.last_closed(s, iv)) is not None
            ]
            if not ends:
                raise NothingUsable(
                    f"no closed {', '.join(mains)} klines stored for "
                    f"{', '.join(wanted) or 'any symbol'}",
                    "run the live flow (klineflow up or demo) or replay a file first",
                )
            read_too = [iv for iv in needed_intervals(book) if iv not in mains]
            missing = [iv for iv in read_too
                       if all(kstore.last_closed(s, iv) is None for s in wanted)]  # fmt: skip
            if missing:
                raise NothingUsable(
                    f"the rules read {', '.join(missing)} klines (tf=) and none are stored",
                    "have the flow build those intervals (KLINEFLOW_INTERVALS) or use recordings",
                )
            end_ms = max(ends)
            start_ms = 0 if span_ms_asked is None else end_ms - span_ms_asked

            def read(symbol: str, interval: str) -> list[Kline]:
                return closed_klines(kstore, symbol, interval, start_ms, end_ms)

            result = run_over_klines(book, wanted, read, redis_seeder(redis_url, keys), stats)
        if not result.klines:
            raise NothingUsable(f"no closed klines stored for {', '.join(wanted)} in the span",
                                "pick a longer span or other symbols")  # fmt: skip
        rows = outcomes(result.signals, result.klines)
        span = span_ms(result.klines)
        seconds = time.monotonic() - started
        trades = sum(k.trades for ks in result.klines.values() for k in ks)
        if store is not None and run_id is not None:
            read_count = sum(stats.klines_closed.values())
            finish_run(store, run_id, rows, trades, read_count, seconds, span_ms=span,
                       more=facts_of(STORED_KLINES, result.klines).params())  # fmt: skip
    except BaseException:
        _failed(store, run_id, stats, started)
        raise
    return Recorded(run_id, result, rows, span, seconds)


def closed_klines(
    store: KlineStore, symbol: str, interval: str, start_ms: int, end_ms: int
) -> list[Kline]:
    """The closed klines of a series that open at or after `start_ms` and close before
    `end_ms`, oldest first (read 1,000 at a time)."""
    from flows.storage.kline_store import MAX_LIMIT

    last = store.last_closed(symbol, interval)
    if last is None:
        return []
    out: list[Kline] = []
    lo = start_ms
    while lo <= last:
        rows = store.get_klines(symbol, interval, lo, last, MAX_LIMIT)
        out.extend(k for k in map(kline_of_row, rows) if k.close_ms < end_ms)
        if len(rows) < MAX_LIMIT:
            break
        lo = int(rows[-1][0]) + 1
    return out


def stored_series(
    redis_url: str, keys: KeySpace, symbol: str, interval: str, start_ms: int, end_ms: int
) -> list[Kline]:
    """A series' closed klines stored in Redis within [start_ms, end_ms) (a run's chart)."""
    with _redis_named(redis_url):
        return closed_klines(_store_of(redis_url, keys), symbol, interval, start_ms, end_ms)


def rebuilt_series(
    paths: Sequence[Path], symbol: str, interval: str, redis_url: str
) -> list[Kline]:
    """A series' klines built again from recordings, by the replay a run made (into a
    scratch namespace of `redis_url`, removed afterwards): a recording run's chart."""
    from flows.backtest.run import KEEP_ALL
    from flows.dataflows.replay import ReplayJob, run_replay
    from flows.sources.readers import ReadOptions

    keys = KeySpace(f"{SCRATCH_PREFIX}{uuid.uuid4().hex[:12]}")
    job = ReplayJob(paths=list(paths), redis_url=redis_url, intervals=(interval,), keys=keys,
                    read=ReadOptions(symbols=frozenset({symbol})), retention=KEEP_ALL,
                    fresh=True)  # fmt: skip
    try:
        with _redis_named(redis_url):
            run_replay(job)
            return closed_klines(_store_of(redis_url, keys), symbol, interval, 0, 2**62)
    finally:
        with contextlib.suppress(Exception):
            drop_namespace(redis_url, keys)


def _start(
    store: Target | None,
    book: Book,
    params: dict[str, Any],
    owner_id: int | None,
    on_run: Callable[[int], None] | None,
) -> int | None:
    if store is None:
        return None
    run_id = start_run(store, {}, book, params, owner_id=owner_id)
    if on_run is not None:
        on_run(run_id)
    return run_id


def _failed(store: Target | None, run_id: int | None, stats: RunStats, started: float) -> None:
    if store is not None and run_id is not None:
        with contextlib.suppress(Exception):  # the store may be what failed
            finish_run(store, run_id, [], stats.trades_read, 0, time.monotonic() - started,
                       failed=True)  # fmt: skip
