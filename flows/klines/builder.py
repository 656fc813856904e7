"""Build Binance-exact klines for one symbol, every configured interval at once.

Only the smallest interval (the *base*: 1s when 1s is wanted, else 1m) is updated per
trade; every longer interval is rolled up from closed base bars, which is exact because all
interval boundaries are base boundaries and every field is a sum, a first, a last, a max or
a min. The rules (BINANCE.md A3):

- a trade belongs to the kline containing its trade time;
- o/c = first/last trade price, h/l = max/min, v = sum qty, q = sum of trunc8(price*qty),
  taker-buy V/Q from trades whose buyer is not the maker, n = number of trades (l - f + 1);
- an interval with no trades between two trades is a flat kline at the previous close.

A kline closes when a trade of a later interval arrives; the caller closes the rest at end
of input (`final_klines`) or with a watermark (`advance`: every trade before it has been
delivered). Trades whose first id is not above the last id seen are duplicates (dropped,
counted).

A trade whose first id jumps further past the previous trade's last id than any market can
trade in the time between them (`flows.domain.trade_checks.implausible_jump`) is *refused*
(`refused`, with the reason) and changes nothing: one poisoned id would otherwise make every
later trade of the symbol look like a duplicate.

A trade older than the open base bar is *late*. Trades reach the builder in id order, and
Binance's ids follow trade time, so a late trade can only follow a watermark that closed
klines too early (a stall that outlasted the grace): every kline closed since the last
accepted trade is empty. The builder keeps the state it had before that first early close
(the *rewind point*); a late trade rewinds to it, is merged, and the klines are closed again
up to the same watermark: the re-closed klines come back as *amendments* (the caller
replaces them where they were stored). A late trade that no rewind point covers (replays,
which never use watermarks, or a trade older than the rewind point) is returned to the
caller, never merged.
"""

from __future__ import annotations

from typing import Any

from flows.domain.intervals import INTERVALS, Interval
from flows.domain.kline import Kline, Trade
from flows.domain.money import SCALE
from flows.domain.trade_checks import JUMP_BASE, JUMP_PER_MS, implausible_jump

STATE_VERSION = 2
_OLD_VERSIONS = (1,)
DEFAULT_MAX_FILL = 10_000


class _Bar:
    """An accumulating bar; n == 0 means no trade yet."""

    __slots__ = ("bq", "bv", "c", "first_id", "h", "l", "last_id", "n", "o", "open_ms", "q", "v")

    def __init__(self, open_ms: int) -> None:
        self.open_ms = open_ms
        self.o = self.h = self.l = self.c = 0
        self.v = self.q = self.bv = self.bq = 0
        self.n = 0
        self.first_id = self.last_id = -1

    def absorb(self, b: _Bar) -> None:
        if b.n == 0:
            return
        if self.n == 0:
            self.o, self.h, self.l, self.first_id = b.o, b.h, b.l, b.first_id
        else:
            self.h = max(self.h, b.h)
            self.l = min(self.l, b.l)
        self.c = b.c
        self.last_id = b.last_id
        self.v += b.v
        self.q += b.q
        self.bv += b.bv
        self.bq += b.bq
        self.n += b.n

    def copy(self) -> _Bar:
        other = _Bar(self.open_ms)
        other.absorb(self)
        return other

    def copy_all(self) -> _Bar:
        return _Bar.load(self.dump())

    def to_kline(self, interval: Interval, prev_close: int) -> Kline:
        if self.n == 0:
            return flat_kline(interval, self.open_ms, prev_close)
        return Kline(
            self.open_ms,
            interval.close_time(self.open_ms),
            self.o,
            self.h,
            self.l,
            self.c,
            self.v,
            self.q,
            self.n,
            self.bv,
            self.bq,
            self.first_id,
            self.last_id,
        )

    def dump(self) -> list[int]:
        return [
            self.open_ms,
            self.o,
            self.h,
            self.l,
            self.c,
            self.v,
            self.q,
            self.bv,
            self.bq,
            self.n,
            self.first_id,
            self.last_id,
        ]

    @classmethod
    def of_kline(cls, k: Kline) -> _Bar:
        """A closed kline as a bar to absorb (trade ids as the kline has them)."""
        bar = cls(k.open_ms)
        bar.o, bar.h, bar.l, bar.c = k.open, k.high, k.low, k.close
        bar.v, bar.q, bar.bv, bar.bq = (
            k.volume,
            k.quote_volume,
            k.taker_buy_volume,
            k.taker_buy_quote_volume,
        )
        bar.n, bar.first_id, bar.last_id = k.trades, k.first_trade_id, k.last_trade_id
        return bar

    @classmethod
    def load(cls, fields: list[int]) -> _Bar:
        bar = cls(fields[0])
        (_, bar.o, bar.h, bar.l, bar.c, bar.v, bar.q, bar.bv, bar.bq, bar.n, bar.first_id,
         bar.last_id) = fields  # fmt: skip
        return bar


def flat_kline(interval: Interval, open_ms: int, price: int) -> Kline:
    """A kline with no trades: flat at the previous close, zero volume and count."""
    return Kline(open_ms, interval.close_time(open_ms), price, price, price, price, 0, 0, 0, 0, 0)


def base_interval_for(intervals: tuple[str, ...]) -> str:
    return "1s" if "1s" in intervals else "1m"


class SymbolKlines:
    """Kline state of one symbol across all configured intervals."""

    def __init__(self, intervals: tuple[str, ...], max_fill: int = DEFAULT_MAX_FILL) -> None:
        if not intervals:
            raise ValueError("at least one interval is needed")
        self.intervals = tuple(intervals)
        self.max_fill = max_fill
        base_name = base_interval_for(self.intervals)
        self.base = INTERVALS[base_name]
        self.emit_base = base_name in self.intervals
        self.levels: list[Interval] = [INTERVALS[n] for n in self.intervals if n != base_name]
        self.bar: _Bar | None = None
        self.up: list[_Bar] = []
        self.last_id = -1
        self.last_ms = -1  # time of the trade with `last_id`
        self.prev_close = 0
        self.refused: list[tuple[Trade, str]] = []  # set by `process`: implausible id jumps
        # the state before the first watermark close since the last accepted trade, and the
        # newest watermark applied since (see the module docstring: amendments)
        self._rewind: tuple[_Bar, list[_Bar], int] | None = None
        self.advanced_to = -1
        # set by `process` when a late trade rewound: closed klines of an interval opening
        # before this open time were closed before (amendments)
        self.amended_before: dict[str, int] | None = None

    @classmethod
    def resumed(
        cls,
        intervals: tuple[str, ...],
        next_open_ms: int,
        prev_close: int,
        stored: dict[str, list[Kline]],
        max_fill: int = DEFAULT_MAX_FILL,
    ) -> SymbolKlines:
        """The state a builder had when the base kline opening at `next_open_ms` opened, made
        from stored closed klines: an empty base bar there (empty intervals up to the next
        trade become flat klines at `prev_close`), and each longer interval's open bar made
        of the stored klines (any interval) that tile it up to `next_open_ms`, largest first.
        `prev_close` 0: nothing is known before; the first trade opens the bars."""
        sk = cls(intervals, max_fill)
        if prev_close <= 0:
            return sk
        sk.prev_close = prev_close
        sk.bar = _Bar(sk.base.open_time(next_open_ms))
        by_open = {name: {k.open_ms: k for k in ks} for name, ks in stored.items()}
        pieces = sorted(
            (INTERVALS[name] for name in by_open), key=lambda i: i.length_ms, reverse=True
        )
        for level in sk.levels:
            up = _Bar(level.open_time(next_open_ms))
            t = up.open_ms
            while t < next_open_ms:
                for piece in pieces:
                    if piece.length_ms >= level.length_ms or piece.open_time(t) != t:
                        continue
                    end = piece.next_open(t)
                    k = by_open[piece.name].get(t)
                    if end <= next_open_ms and k is not None:
                        up.absorb(_Bar.of_kline(k))
                        t = end
                        break
                else:
                    t = sk.base.next_open(t)  # nothing stored here: no trade known
            sk.up.append(up)
        return sk

    # -- the hot path ------------------------------------------------------------------
    def process(
        self, trades: list[Trade], closed: list[tuple[str, Kline]]
    ) -> tuple[list[Trade], int]:
        """Apply trades in order; append closed klines to `closed`.

        Returns (late trades, duplicate count); `amended_before` says which of the closed
        klines were closed before (a late trade rewound, see the module docstring).
        """
        self.amended_before = None
        self.refused = []
        late: list[Trade] = []
        dups = 0
        taken = False  # a trade of this batch was applied: no rewind past it any more
        last_id = self.last_id
        last_ms = self.last_ms
        bar = self.bar
        if bar is None:
            open_ms, end = 0, -(1 << 62)  # any trade opens the first bar
            o = h = lo = c = v = qv = bv = bq = n = 0
            fid = lid = -1
        else:
            open_ms = bar.open_ms
            end = self.base.next_open(open_ms)
            o, h, lo, c, v, qv, bv, bq, n = (
                bar.o,
                bar.h,
                bar.l,
                bar.c,
                bar.v,
                bar.q,
                bar.bv,
                bar.bq,
                bar.n,
            )
            fid, lid = bar.first_id, bar.last_id
        for t in trades:
            f, last, p, q, ts, m = t
            if f <= last_id:
                dups += 1
                continue
            if (
                f - last_id > JUMP_BASE
                and last_id >= 0
                and (f - last_id > JUMP_BASE + JUMP_PER_MS * (ts - last_ms))
            ):
                self.refused.append((t, implausible_jump(f, last_id, ts - last_ms) or ""))
                continue
            if ts < open_ms:
                rewind = self._rewind
                if rewind is None or taken or ts < rewind[0].open_ms or bar is None:
                    # (after a trade of this batch was applied, a rewind would drop it)
                    late.append(t)
                    continue
                # closed too early by a watermark: back to the state before that close
                self._note_amendments(bar)
                bar, self.up, self.prev_close = rewind[0], rewind[1], rewind[2]
                self._rewind = None
                open_ms = bar.open_ms
                end = self.base.next_open(open_ms)
                o, h, lo, c, v, qv, bv, bq, n = (
                    bar.o, bar.h, bar.l, bar.c, bar.v, bar.q, bar.bv, bar.bq, bar.n,
                )  # fmt: skip
                fid, lid = bar.first_id, bar.last_id
            if ts >= end:
                if bar is not None:
                    bar.o, bar.h, bar.l, bar.c, bar.v, bar.q = o, h, lo, c, v, qv
                    bar.bv, bar.bq, bar.n, bar.first_id, bar.last_id = bv, bq, n, fid, lid
                bar = self._roll(bar, ts, closed)
                open_ms = bar.open_ms
                end = self.base.next_open(open_ms)
                o = h = lo = c = p
                v = qv = bv = bq = n = 0
                fid = f
            else:
                if n == 0:  # a bar opened empty by `advance` (or resumed) gets its first trade
                    o = h = lo = p
                    fid = f
                elif p > h:
                    h = p
                elif p < lo:
                    lo = p
                c = p
            qq = p * q // SCALE
            v += q
            qv += qq
            n += last - f + 1
            if not m:
                bv += q
                bq += qq
            last_id = lid = last
            last_ms = ts
            taken = True
        if bar is not None:
            bar.o, bar.h, bar.l, bar.c, bar.v, bar.q = o, h, lo, c, v, qv
            bar.bv, bar.bq, bar.n, bar.first_id, bar.last_id = bv, bq, n, fid, lid
        self.bar = bar
        self.last_ms = last_ms
        if last_id != self.last_id:
            self._rewind = None  # a trade was taken: no earlier trade can come any more
            self.last_id = last_id
            if self.amended_before is not None and self.advanced_to >= 0:
                self.advance(self.advanced_to, closed)  # close again what was closed before
        return late, dups

    def _note_amendments(self, bar: _Bar) -> None:
        """Remember, before a rewind, which klines were closed so far (their re-closes are
        amendments)."""
        frontier = {self.base.name: bar.open_ms}
        for level, up in zip(self.levels, self.up, strict=True):
            frontier[level.name] = up.open_ms
        if self.amended_before is None:
            self.amended_before = frontier
        else:
            for name, open_ms in frontier.items():
                self.amended_before[name] = max(self.amended_before[name], open_ms)

    def advance(self, watermark_ms: int, closed: list[tuple[str, Kline]]) -> None:
        """Close every kline that ends at or before `watermark_ms` (every trade before it has
        been seen): the live flow's watermark for quiet symbols. Empty intervals become flat
        klines. The state before the first such close since the last trade is kept as the
        rewind point, so a trade that still comes for a closed kline amends it."""
        bar = self.bar
        self.advanced_to = max(self.advanced_to, watermark_ms)
        if bar is None or self.base.next_open(bar.open_ms) > watermark_ms:
            return
        if self._rewind is None:
            self._rewind = (bar.copy_all(), [u.copy_all() for u in self.up], self.prev_close)
        self.bar = self._roll(bar, watermark_ms, closed)

    def base_end_ms(self) -> int | None:
        """When the open base kline ends (None before the first trade)."""
        return None if self.bar is None else self.base.next_open(self.bar.open_ms)

    # -- rollover ----------------------------------------------------------------------
    def _roll(self, bar: _Bar | None, ts: int, closed: list[tuple[str, Kline]]) -> _Bar:
        """Close the base bar (and any longer bar) that ends before ts; open ts's bars."""
        new_open = self.base.open_time(ts)
        if bar is None:
            self.up = [_Bar(level.open_time(ts)) for level in self.levels]
            return _Bar(new_open)
        if self.emit_base:
            closed.append((self.base.name, bar.to_kline(self.base, self.prev_close)))
        if bar.n:
            self.prev_close = bar.c
        for up in self.up:
            up.absorb(bar)
        if self.emit_base:
            self._fill(self.base, self.base.next_open(bar.open_ms), new_open, closed)
        for i, level in enumerate(self.levels):
            up = self.up[i]
            level_open = level.open_time(ts)
            if level_open != up.open_ms:
                closed.append((level.name, up.to_kline(level, self.prev_close)))
                self._fill(level, level.next_open(up.open_ms), level_open, closed)
                self.up[i] = _Bar(level_open)
        return _Bar(new_open)

    def _fill(
        self, interval: Interval, first_open: int, end: int, closed: list[tuple[str, Kline]]
    ) -> None:
        """Flat klines for the empty intervals in [first_open, end), the newest max_fill."""
        count = interval.count_between(first_open, end)
        if count <= 0:
            return
        t = first_open
        if count > self.max_fill:
            t = interval.advance(first_open, count - self.max_fill)
        while t < end:
            closed.append((interval.name, flat_kline(interval, t, self.prev_close)))
            t = interval.next_open(t)

    # -- views -------------------------------------------------------------------------
    def open_klines(self) -> list[tuple[str, Kline]]:
        """The klines still open, as they stand now (for live charts and end of input)."""
        bar = self.bar
        if bar is None:
            return []
        out: list[tuple[str, Kline]] = []
        if self.emit_base:
            out.append((self.base.name, bar.to_kline(self.base, self.prev_close)))
        for level, up in zip(self.levels, self.up, strict=True):
            merged = up.copy()
            merged.absorb(bar)
            out.append((level.name, merged.to_kline(level, self.prev_close)))
        return out

    # -- state for recovery and replay continuation ------------------------------------
    def snapshot(self) -> dict[str, Any]:
        rewind = self._rewind
        return {
            "v": STATE_VERSION,
            "intervals": list(self.intervals),
            "last_id": self.last_id,
            "last_ms": self.last_ms,
            "prev_close": self.prev_close,
            "bar": self.bar.dump() if self.bar is not None else None,
            "up": [u.dump() for u in self.up],
            "advanced_to": self.advanced_to,
            "rewind": None
            if rewind is None
            else [rewind[0].dump(), [u.dump() for u in rewind[1]], rewind[2]],
        }

    @classmethod
    def restore(cls, state: dict[str, Any], max_fill: int = DEFAULT_MAX_FILL) -> SymbolKlines:
        version = state.get("v")
        if version != STATE_VERSION and version not in _OLD_VERSIONS:
            raise ValueError(f"kline state version {version!r} is not {STATE_VERSION}")
        sk = cls(tuple(state["intervals"]), max_fill)
        sk.last_id = state["last_id"]
        sk.last_ms = state.get("last_ms", -1)
        sk.prev_close = state["prev_close"]
        sk.bar = _Bar.load(state["bar"]) if state["bar"] is not None else None
        sk.up = [_Bar.load(u) for u in state["up"]]
        sk.advanced_to = state.get("advanced_to", -1)
        rewind = state.get("rewind")
        if rewind is not None:
            sk._rewind = (_Bar.load(rewind[0]), [_Bar.load(u) for u in rewind[1]], rewind[2])
        return sk


def build_klines(trades: list[Trade], intervals: tuple[str, ...]) -> dict[str, list[Kline]]:
    """All klines of one symbol's trades, the last ones closed at end of input (an oracle)."""
    sk = SymbolKlines(intervals)
    closed: list[tuple[str, Kline]] = []
    sk.process(trades, closed)
    closed.extend(sk.open_klines())
    out: dict[str, list[Kline]] = {name: [] for name in intervals}
    for name, k in closed:
        out[name].append(k)
    return out
