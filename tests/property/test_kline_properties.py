"""Property tests of the kline builder and of replays into Redis (Hypothesis, derandomized).

Trades are generated for one symbol: aggTrades covering 1..4 consecutive ids, times that
never go backwards with gaps from 0 ms to hours (or weeks for the long-interval profile),
start times between 2017 and 2030 (often just before a day, week or month boundary), amounts
from 1 unit up to 10**16 units. Every property is checked against values computed here,
directly from the trades, never against the builder's own helpers alone.
"""

from __future__ import annotations

import itertools
import pickle
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from flows.dataflows.replay import ReplayJob, run_replay
from flows.domain.intervals import INTERVALS
from flows.domain.keys import KeySpace
from flows.domain.kline import Kline, Trade
from flows.domain.stats import RunStats
from flows.domain.trade_checks import EXCHANGE_START_MS, MAX_TRADE_ID
from flows.klines.builder import SymbolKlines, build_klines
from flows.sources.readers import ReadOptions
from flows.sources.recording import RecordingWriter
from flows.sources.synthetic import agg_trade_frame
from flows.storage.redis_klines import KlineWriter, RetentionPolicy, load_replay_states

# -- time, computed independently of flows.domain.intervals -----------------------------

SEC = 1_000
MIN = 60 * SEC
HOUR = 60 * MIN
DAY = 24 * HOUR
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MS = timedelta(milliseconds=1)


def _ms(dt: datetime) -> int:
    return (dt - EPOCH) // ONE_MS


def _dt(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


# trades start when Binance opened (2017-07-01): replays refuse older ones as implausible
T_2017 = EXCHANGE_START_MS
T_2030 = _ms(datetime(2030, 1, 1, tzinfo=UTC))
FIRST_MONDAY_2017 = _ms(datetime(2017, 1, 2, tzinfo=UTC))

_FIXED_LENGTH = {
    "1s": SEC,
    "1m": MIN,
    "3m": 3 * MIN,
    "5m": 5 * MIN,
    "15m": 15 * MIN,
    "30m": 30 * MIN,
    "1h": HOUR,
    "2h": 2 * HOUR,
    "4h": 4 * HOUR,
    "6h": 6 * HOUR,
    "8h": 8 * HOUR,
    "12h": 12 * HOUR,
    "1d": DAY,
    "3d": 3 * DAY,
}


def naive_open(name: str, ts: int) -> int:
    """Open time of the kline of `name` holding ts, from calendar arithmetic."""
    if name == "1M":
        d = _dt(ts)
        return _ms(datetime(d.year, d.month, 1, tzinfo=UTC))
    if name == "1w":
        day = _dt(ts).date()
        monday = day - timedelta(days=day.weekday())
        return _ms(datetime(monday.year, monday.month, monday.day, tzinfo=UTC))
    length = _FIXED_LENGTH[name]
    return ts - ts % length


def naive_next(name: str, open_ms: int) -> int:
    if name == "1M":
        d = _dt(open_ms)
        year, month = (d.year + 1, 1) if d.month == 12 else (d.year, d.month + 1)
        return _ms(datetime(year, month, 1, tzinfo=UTC))
    if name == "1w":
        return open_ms + 7 * DAY
    return open_ms + _FIXED_LENGTH[name]


def quote(t: Trade) -> int:
    return t[2] * t[3] // 100_000_000


def naive_klines(trades: list[Trade], name: str) -> list[Kline]:
    """Group the trades by kline, fill the empty klines between them flat at the last close."""
    groups: dict[int, list[Trade]] = {}
    for t in trades:
        groups.setdefault(naive_open(name, t[4]), []).append(t)
    out: list[Kline] = []
    open_ms, last_open = min(groups), max(groups)
    prev_close = 0
    while open_ms <= last_open:
        nxt = naive_next(name, open_ms)
        group = groups.get(open_ms)
        if group is None:
            p = prev_close
            out.append(Kline(open_ms, nxt - 1, p, p, p, p, 0, 0, 0, 0, 0))
        else:
            prices = [t[2] for t in group]
            takers = [t for t in group if not t[5]]
            out.append(
                Kline(
                    open_ms,
                    nxt - 1,
                    prices[0],
                    max(prices),
                    min(prices),
                    prices[-1],
                    sum(t[3] for t in group),
                    sum(quote(t) for t in group),
                    sum(t[1] - t[0] + 1 for t in group),
                    sum(t[3] for t in takers),
                    sum(quote(t) for t in takers),
                    group[0][0],
                    group[-1][1],
                )
            )
            prev_close = prices[-1]
        open_ms = nxt
    return out


# -- strategies --------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """Which intervals to build and how far apart trades may be (flats stay bounded)."""

    name: str
    intervals: tuple[str, ...]
    max_gap_ms: int
    max_lead_ms: int  # how far before a day/week/month boundary a list may start
    max_trades: int


SHORT = Profile(
    "short", ("1s", "1m", "3m", "5m", "15m", "1h", "1d", "1w", "1M"), 2 * MIN, 5 * MIN, 40
)
MEDIUM = Profile(
    "medium",
    ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "1d", "1w", "1M"),
    6 * HOUR,
    12 * HOUR,
    40,
)
WIDE = Profile("wide", ("1h", "4h", "12h", "1d", "3d", "1w", "1M"), 45 * DAY, 40 * DAY, 25)
PROFILES = (SHORT, MEDIUM, WIDE)

amounts = st.one_of(
    st.sampled_from([1, 100, 100_000_000, 10**15]),  # repeated values: ties for high and low
    st.integers(1, 10_000),
    st.integers(1, 10**10),
    st.integers(10**14, 10**16),
)
# Small enough that every sum over 30 trades stays below 2**64 (see the overflow tests).
moderate_prices = st.one_of(st.sampled_from([1, 100_000_000]), st.integers(1, 10**15))
moderate_qtys = st.one_of(st.sampled_from([1, 100_000_000]), st.integers(1, 10**10))


@st.composite
def start_times(draw: st.DrawFn, max_lead_ms: int) -> int:
    kind = draw(st.sampled_from(("anywhere", "month", "week", "day")))
    if kind == "anywhere":
        return draw(st.integers(T_2017, T_2030))
    if kind == "month":
        year, month = draw(st.integers(2017, 2029)), draw(st.integers(1, 12))
        boundary = _ms(datetime(year, month, 1, tzinfo=UTC))
    elif kind == "week":
        boundary = FIRST_MONDAY_2017 + 7 * DAY * draw(st.integers(0, 670))
    else:
        boundary = T_2017 + DAY * draw(st.integers(0, 4700))
    return max(T_2017, boundary - draw(st.integers(0, max_lead_ms)))


def gaps(max_gap_ms: int) -> st.SearchStrategy[int]:
    return st.one_of(
        st.just(0),
        st.integers(0, 999),
        st.integers(0, min(max_gap_ms, 2 * MIN)),
        st.integers(0, max_gap_ms),
    )


@st.composite
def trade_lists(
    draw: st.DrawFn,
    profile: Profile,
    min_trades: int = 1,
    max_trades: int = 0,
    prices: st.SearchStrategy[int] = amounts,
    qtys: st.SearchStrategy[int] = amounts,
) -> list[Trade]:
    count = draw(st.integers(min_trades, max_trades or profile.max_trades))
    ts = draw(start_times(profile.max_lead_ms))
    next_id = draw(st.integers(0, MAX_TRADE_ID - 1000))  # ids stay plausible, as times do
    gap = gaps(profile.max_gap_ms)
    trades: list[Trade] = []
    for i in range(count):
        if i:
            ts += draw(gap)
        span = draw(st.integers(1, 4))
        trades.append(
            (next_id, next_id + span - 1, draw(prices), draw(qtys), ts, draw(st.booleans()))
        )
        next_id += span
    return trades


@st.composite
def cases(
    draw: st.DrawFn, profiles: tuple[Profile, ...] = PROFILES, min_trades: int = 1
) -> tuple[Profile, list[Trade]]:
    profile = draw(st.sampled_from(profiles))
    return profile, draw(trade_lists(profile, min_trades))


def pure(max_examples: int) -> settings:
    return settings(
        derandomize=True,
        database=None,
        deadline=None,
        max_examples=max_examples,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# -- helpers -----------------------------------------------------------------------------

Totals = tuple[int, int, int, int, int]  # volume, quote, trades, taker volume, taker quote


def trade_totals(trades: list[Trade]) -> Totals:
    return (
        sum(t[3] for t in trades),
        sum(quote(t) for t in trades),
        sum(t[1] - t[0] + 1 for t in trades),
        sum(t[3] for t in trades if not t[5]),
        sum(quote(t) for t in trades if not t[5]),
    )


def kline_totals(klines: list[Kline]) -> Totals:
    return (
        sum(k.volume for k in klines),
        sum(k.quote_volume for k in klines),
        sum(k.trades for k in klines),
        sum(k.taker_buy_volume for k in klines),
        sum(k.taker_buy_quote_volume for k in klines),
    )


def run_all(
    intervals: tuple[str, ...], trades: list[Trade]
) -> tuple[SymbolKlines, list[tuple[str, Kline]]]:
    sk = SymbolKlines(intervals)
    closed: list[tuple[str, Kline]] = []
    late, dups = sk.process(trades, closed)
    assert late == [] and dups == 0
    return sk, closed


def grouped(intervals: tuple[str, ...], pairs: list[tuple[str, Kline]]) -> dict[str, list[Kline]]:
    out: dict[str, list[Kline]] = {name: [] for name in intervals}
    for name, k in pairs:
        out[name].append(k)
    return out


def base_of(intervals: tuple[str, ...]) -> str:
    return "1s" if "1s" in intervals else "1m"


# -- 1. conservation ---------------------------------------------------------------------


@pure(200)
@given(case=cases())
def test_every_interval_conserves_volume_quote_and_count(case: tuple[Profile, list[Trade]]) -> None:
    profile, trades = case
    built = build_klines(trades, profile.intervals)
    expected = trade_totals(trades)
    per_interval = {name: kline_totals(built[name]) for name in profile.intervals}
    for name, totals in per_interval.items():
        assert totals == expected, name
    assert len(set(per_interval.values())) == 1


# -- 2. shape of every kline -------------------------------------------------------------


@pure(200)
@given(case=cases())
def test_every_kline_is_well_formed_and_empty_ones_are_flat(
    case: tuple[Profile, list[Trade]],
) -> None:
    profile, trades = case
    built = build_klines(trades, profile.intervals)
    for name in profile.intervals:
        previous: Kline | None = None
        for k in built[name]:
            assert k.low <= k.open <= k.high, (name, k)
            assert k.low <= k.close <= k.high, (name, k)
            if k.trades == 0:
                assert previous is not None, (name, "the first kline must hold a trade")
                assert k.open == k.high == k.low == k.close == previous.close, (name, k)
                assert (k.volume, k.quote_volume, k.taker_buy_volume, k.taker_buy_quote_volume) == (
                    0,
                    0,
                    0,
                    0,
                ), (name, k)
            else:
                assert k.low >= 1 and k.volume >= 1, (name, k)
                assert k.taker_buy_volume <= k.volume and k.taker_buy_quote_volume <= k.quote_volume
                # ids are consecutive in the generated trades, so a kline's range is its count
                assert k.last_trade_id - k.first_trade_id + 1 == k.trades, (name, k)
            previous = k


# -- 3. alignment and contiguity ---------------------------------------------------------


@pure(200)
@given(case=cases())
def test_klines_are_aligned_contiguous_and_cover_the_trades(
    case: tuple[Profile, list[Trade]],
) -> None:
    profile, trades = case
    built = build_klines(trades, profile.intervals)
    first_ts, last_ts = trades[0][4], trades[-1][4]
    for name in profile.intervals:
        interval = INTERVALS[name]
        ks = built[name]
        assert ks, name
        for k in ks:
            assert k.open_ms == interval.open_time(k.open_ms), (name, k)
            assert k.open_ms == naive_open(name, k.open_ms), (name, k)  # independent check
            assert k.close_ms == interval.next_open(k.open_ms) - 1, (name, k)
        for a, b in itertools.pairwise(ks):
            assert a.open_ms < b.open_ms, name
            assert b.open_ms == interval.next_open(a.open_ms), (name, a.open_ms, b.open_ms)
        assert ks[0].open_ms <= first_ts <= ks[0].close_ms, name
        assert ks[-1].open_ms <= last_ts <= ks[-1].close_ms, name
        assert ks[0].trades > 0 and ks[-1].trades > 0, name


# -- 4. an independent oracle ------------------------------------------------------------


@pure(200)
@given(case=cases())
def test_builder_equals_a_naive_grouping_oracle(case: tuple[Profile, list[Trade]]) -> None:
    profile, trades = case
    built = build_klines(trades, profile.intervals)
    for name in profile.intervals:
        assert built[name] == naive_klines(trades, name), name


@pure(60)
@given(case=cases(profiles=(MEDIUM, WIDE)), data=st.data())
def test_an_interval_does_not_depend_on_the_others_configured(
    case: tuple[Profile, list[Trade]], data: st.DataObject
) -> None:
    profile, trades = case
    built = build_klines(trades, profile.intervals)
    subset = data.draw(
        st.lists(st.sampled_from(profile.intervals), min_size=1, max_size=3, unique=True).map(
            lambda names: tuple(n for n in profile.intervals if n in names)
        )
    )
    alone = build_klines(trades, subset)
    for name in subset:
        assert alone[name] == built[name], (subset, name)
        assert alone[name] == naive_klines(trades, name), (subset, name)


# -- 5. incremental = batch, snapshot/restore --------------------------------------------


@pure(150)
@given(case=cases(), data=st.data())
def test_chunked_processing_equals_one_call(
    case: tuple[Profile, list[Trade]], data: st.DataObject
) -> None:
    profile, trades = case
    intervals = profile.intervals
    batch, batch_closed = run_all(intervals, trades)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(trades)), max_size=6), label="cuts"))
    sk = SymbolKlines(intervals)
    closed: list[tuple[str, Kline]] = []
    for a, b in itertools.pairwise([0, *cuts, len(trades)]):
        late, dups = sk.process(trades[a:b], closed)
        assert late == [] and dups == 0
        if b:  # at every split the state equals a batch over the prefix
            assert grouped(intervals, closed + sk.open_klines()) == build_klines(
                trades[:b], intervals
            )
    assert closed == batch_closed
    assert sk.open_klines() == batch.open_klines()
    assert sk.snapshot() == batch.snapshot()


@pure(150)
@given(case=cases(), data=st.data())
def test_snapshot_restore_continues_identically(
    case: tuple[Profile, list[Trade]], data: st.DataObject
) -> None:
    profile, trades = case
    intervals = profile.intervals
    batch, batch_closed = run_all(intervals, trades)
    split = data.draw(st.integers(0, len(trades)), label="split")
    head = SymbolKlines(intervals)
    head_closed: list[tuple[str, Kline]] = []
    head.process(trades[:split], head_closed)
    state = head.snapshot()
    state_copy = pickle.loads(pickle.dumps(state))
    assert state_copy == state
    # the original goes on first: a snapshot must be a value, not a view of live state
    rest: list[tuple[str, Kline]] = []
    head.process(trades[split:], rest)
    assert head_closed + rest == batch_closed
    for source in (state, state_copy):
        restored = SymbolKlines.restore(source)
        assert restored.snapshot() == state
        closed = list(head_closed)
        # the restored builder remembers which ids it has seen
        assert restored.process(trades[:split], closed) == ([], split)
        assert closed == head_closed
        late, dups = restored.process(trades[split:], closed)
        assert late == [] and dups == 0
        assert closed == batch_closed
        assert restored.open_klines() == batch.open_klines()
        assert restored.snapshot() == batch.snapshot()


# -- 6. duplicates -----------------------------------------------------------------------


@pure(150)
@given(case=cases(), data=st.data())
def test_resent_trades_are_duplicates_and_change_nothing(
    case: tuple[Profile, list[Trade]], data: st.DataObject
) -> None:
    profile, trades = case
    intervals = profile.intervals
    n = len(trades)
    sk, closed = run_all(intervals, trades)
    before = (list(closed), sk.open_klines(), sk.snapshot())

    prefix = data.draw(st.integers(1, n), label="prefix")
    late, dups = sk.process(trades[:prefix], closed)
    assert (late, dups) == ([], prefix)
    lo = data.draw(st.integers(0, n), label="lo")
    hi = data.draw(st.integers(lo, n), label="hi")
    late, dups = sk.process(trades[lo:hi], closed)
    assert (late, dups) == ([], hi - lo)
    assert (closed, sk.open_klines(), sk.snapshot()) == before

    # an overlapping window: trades[:hi] then trades[lo:] is one clean pass
    sk2 = SymbolKlines(intervals)
    closed2: list[tuple[str, Kline]] = []
    assert sk2.process(trades[:hi], closed2) == ([], 0)
    assert sk2.process(trades[lo:], closed2) == ([], hi - lo)
    assert (closed2, sk2.open_klines(), sk2.snapshot()) == before


# -- 7. late trades ----------------------------------------------------------------------


@pure(150)
@given(case=cases(), data=st.data())
def test_a_trade_before_the_open_base_bar_is_late_and_changes_nothing(
    case: tuple[Profile, list[Trade]], data: st.DataObject
) -> None:
    profile, trades = case
    intervals = profile.intervals
    k = data.draw(st.integers(1, len(trades)), label="k")
    sk, closed = run_all(intervals, trades[:k])
    before = (list(closed), sk.open_klines(), sk.snapshot())

    bar_open = naive_open(base_of(intervals), trades[k - 1][4])
    late_ts = data.draw(
        st.one_of(st.just(bar_open - 1), st.integers(bar_open - 3 * DAY, bar_open - 1)),
        label="late_ts",
    )
    span = data.draw(st.integers(1, 4), label="span")
    first = trades[k - 1][1] + 1  # a new id, above every id seen
    late_trade = (first, first + span - 1, data.draw(amounts), data.draw(amounts), late_ts, False)
    late, dups = sk.process([late_trade], closed)
    assert (late, dups) == ([late_trade], 0)
    assert (closed, sk.open_klines(), sk.snapshot()) == before

    # the trades after it (ids moved past the late one) go on as if it never came
    rest = [(f + span, last + span, p, q, ts, m) for f, last, p, q, ts, m in trades[k:]]
    assert sk.process(rest, closed) == ([], 0)
    clean, clean_closed = run_all(intervals, trades[:k] + rest)
    assert closed == clean_closed
    assert sk.open_klines() == clean.open_klines()


# -- 8. replays into Redis ---------------------------------------------------------------

SYMBOL = "BTCUSDT"
REDIS_INTERVALS = ("1m", "5m", "1h", "1d")
NO_TRIM = RetentionPolicy(default=100_000, by_interval={})
_namespaces = itertools.count()


def _write(path: Path, trades: list[Trade], first_agg_id: int) -> Path:
    with RecordingWriter(path, created_ms=T_2017, source="property-test") as w:
        w.write_many(
            [(t[4] + 7, agg_trade_frame(SYMBOL, first_agg_id + i, t)) for i, t in enumerate(trades)]
        )
    return path


def _replay(url: str, ks: KeySpace, path: Path, chunk: int) -> RunStats:
    job = ReplayJob(
        paths=[path],
        redis_url=url,
        intervals=REDIS_INTERVALS,
        keys=ks,
        read=ReadOptions(chunk_records=chunk),
        retention=NO_TRIM,
    )
    return run_replay(job)


def _stored(client: redis.Redis, ks: KeySpace) -> dict[str, object]:
    out: dict[str, object] = {
        name: client.zrange(ks.klines(SYMBOL, name), 0, -1, withscores=True)
        for name in REDIS_INTERVALS
    }
    for name in REDIS_INTERVALS:
        out[f"last_closed:{name}"] = client.get(ks.last_closed(SYMBOL, name))
    out["state"] = load_replay_states(client, ks).get(SYMBOL)
    return out


@settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=15,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    trades=trade_lists(MEDIUM, 2, 30, prices=moderate_prices, qtys=moderate_qtys),
    data=st.data(),
)
def test_repeated_and_overlapping_replays_equal_one_clean_replay(
    trades: list[Trade],
    data: st.DataObject,
    redis_url: str,
    redis_client: redis.Redis,
    keys: KeySpace,
    tmp_path: Path,
) -> None:
    n = next(_namespaces)
    clean, twice, split = (KeySpace(f"{keys.namespace}e{n}{tag}") for tag in ("c", "t", "s"))
    work = tmp_path / f"e{n}"
    work.mkdir()
    count = len(trades)
    a_end = data.draw(st.integers(1, count), label="a_end")
    b_start = data.draw(st.integers(0, a_end), label="b_start")
    chunk = data.draw(st.integers(1, 8), label="chunk_records")
    whole = _write(work / "all.jsonl.gz", trades, 5_000)
    part_a = _write(work / "a.jsonl.gz", trades[:a_end], 5_000)
    part_b = _write(work / "b.jsonl.gz", trades[b_start:], 5_000 + b_start)
    try:
        stats = _replay(redis_url, clean, whole, chunk)
        assert (stats.trades_read, stats.duplicates) == (count, 0)
        reference = _stored(redis_client, clean)

        # the clean replay holds exactly the builder's klines, as REST members scored by open time
        sk, closed = run_all(REDIS_INTERVALS, trades)
        expected = grouped(REDIS_INTERVALS, closed + sk.open_klines())
        for name in REDIS_INTERVALS:
            assert reference[name] == [(k.member(), float(k.open_ms)) for k in expected[name]], name
            assert reference[f"last_closed:{name}"] == str(expected[name][-1].open_ms).encode()
        assert reference["state"] == sk.snapshot()

        # (a) the same file twice
        _replay(redis_url, twice, whole, chunk)
        again = _replay(redis_url, twice, whole, chunk)
        assert (again.trades_read, again.duplicates) == (count, count)
        assert _stored(redis_client, twice) == reference

        # (b) a prefix, then an overlapping suffix
        first = _replay(redis_url, split, part_a, chunk)
        assert first.duplicates == 0
        second = _replay(redis_url, split, part_b, chunk)
        assert (second.trades_read, second.duplicates) == (count - b_start, a_end - b_start)
        assert _stored(redis_client, split) == reference
    finally:
        _drop(redis_client, clean, twice, split)


def _drop(client: redis.Redis, *spaces: KeySpace) -> None:
    for ks in spaces:
        names = list(client.scan_iter(match=f"{ks.namespace}:*", count=1000))
        if names:
            client.delete(*names)


# -- the builder state as Redis stores it between replays --------------------------------


@settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=60,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: each attempt talks to Redis
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=cases(), data=st.data())
def test_builder_state_round_trips_through_redis(
    case: tuple[Profile, list[Trade]],
    data: st.DataObject,
    redis_client: redis.Redis,
    keys: KeySpace,
) -> None:
    """The state a replay leaves for the next one must survive Redis for any amounts.

    An open bar's volume or quote volume (sums of 1e-8 units) passes 2**64 easily, which
    msgpack, the first encoding used here, could not hold.
    """
    profile, trades = case
    intervals = profile.intervals
    batch, batch_closed = run_all(intervals, trades)
    split = data.draw(st.integers(0, len(trades)), label="split")
    head, closed = run_all(intervals, trades[:split])
    ks = KeySpace(f"{keys.namespace}e{next(_namespaces)}w")
    try:
        writer = KlineWriter(redis_client, keys=ks, retention=NO_TRIM)
        writer.save_state(SYMBOL, head.snapshot())
        writer.flush()
        loaded = load_replay_states(redis_client, ks)
    finally:
        _drop(redis_client, ks)
    assert loaded == {SYMBOL: head.snapshot()}
    restored = SymbolKlines.restore(loaded[SYMBOL])
    assert restored.process(trades[split:], closed) == ([], 0)
    assert closed == batch_closed
    assert restored.open_klines() == batch.open_klines()


def test_replays_of_a_high_volume_day_continue_each_other(
    redis_url: str, redis_client: redis.Redis, keys: KeySpace, tmp_path: Path
) -> None:
    """A SHIBUSDT-like day: 240 aggTrades of 10**10 SHIB at 0.000024 USDT within one day.

    The day's volume is 2.4e12 SHIB = 2.4e20 units, above 2**64 - 1 (about 1.8e19). The
    replay of the first part must still store its state so the overlapping second part
    continues it (with msgpack, the first state encoding, saving raised OverflowError).
    """
    t0 = _ms(datetime(2024, 3, 5, tzinfo=UTC))
    trades: list[Trade] = [
        (2 * i, 2 * i + 1, 2_400 + i % 7, 10**10 * 100_000_000, t0 + 5 * MIN * i, i % 3 == 0)
        for i in range(240)
    ]
    assert sum(t[3] for t in trades) > 2**64
    part_a = _write(tmp_path / "a.jsonl.gz", trades[:150], 1)
    part_b = _write(tmp_path / "b.jsonl.gz", trades[100:], 101)
    ks = KeySpace(f"{keys.namespace}e{next(_namespaces)}v")
    try:
        for part in (part_a, part_b):
            try:
                _replay(redis_url, ks, part, 64)
            except Exception as e:
                pytest.fail(f"replay of {part.name} failed: {e!r}, caused by {e.__cause__!r}")
        stored = _stored(redis_client, ks)
    finally:
        _drop(redis_client, ks)
    sk, closed = run_all(REDIS_INTERVALS, trades)
    expected = grouped(REDIS_INTERVALS, closed + sk.open_klines())
    for name in REDIS_INTERVALS:
        assert stored[name] == [(k.member(), float(k.open_ms)) for k in expected[name]], name
    assert stored["state"] == sk.snapshot()
