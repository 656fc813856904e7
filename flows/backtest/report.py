"""What a backtest reports: forward returns of each signal and statistics per trader and
symbol, and the deterministic exports (CSV, Parquet) of both.

Forward return after N bars: close N bars after the signal's kline / the signal's price - 1.
Maximum favourable (adverse) excursion within N bars: the highest high (lowest low) of the
next N bars against the signal's price. A horizon past the end of the data is left empty.
"""

from __future__ import annotations

import csv
import json
import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from flows.backtest.run import Signal
from flows.domain.kline import Kline

HORIZONS = (1, 5, 15, 60)
DAY_MS = 86_400_000


@dataclass(frozen=True)
class SignalOutcome:
    signal: Signal
    returns: dict[int, float | None]  # horizon -> forward return (fraction)
    mfe: dict[int, float | None]
    mae: dict[int, float | None]


def outcomes(
    signals: Sequence[Signal], klines: Mapping[tuple[str, str], Sequence[Kline]]
) -> list[SignalOutcome]:
    index = {key: {k.open_ms: i for i, k in enumerate(ks)} for key, ks in klines.items()}
    out = []
    for s in signals:
        f = s.fire
        bars = klines.get((f.symbol, f.interval), ())
        i = index.get((f.symbol, f.interval), {}).get(f.open_ms)
        rets: dict[int, float | None] = {}
        mfe: dict[int, float | None] = {}
        mae: dict[int, float | None] = {}
        for n in HORIZONS:
            if i is None or i + n >= len(bars) or bars[i].close == 0:
                rets[n] = mfe[n] = mae[n] = None
                continue
            base = bars[i].close
            ahead = bars[i + 1 : i + n + 1]
            rets[n] = bars[i + n].close / base - 1.0
            mfe[n] = max(k.high for k in ahead) / base - 1.0
            mae[n] = min(k.low for k in ahead) / base - 1.0
        out.append(SignalOutcome(s, rets, mfe, mae))
    return out


def span_ms(klines: Mapping[tuple[str, str], Sequence[Kline]]) -> int:
    """The longest stretch of klines a run's signals were on: signals per day count over it."""
    return max((ks[-1].close_ms - ks[0].open_ms for ks in klines.values() if ks), default=0)


def summary(
    rows: Sequence[SignalOutcome], span_ms: int
) -> list[dict[str, float | int | str | None]]:
    """Per trader and symbol: count, signals per day, and per horizon the mean and median
    forward return, the hit rate (share above zero) and the mean MFE / MAE."""
    groups: dict[tuple[int, str], list[SignalOutcome]] = defaultdict(list)
    for r in rows:
        groups[(r.signal.fire.trader_id, r.signal.fire.symbol)].append(r)
    out: list[dict[str, float | int | str | None]] = []
    days = max(span_ms / DAY_MS, 1e-9)
    for (trader, symbol), items in sorted(groups.items()):
        line: dict[str, float | int | str | None] = {
            "trader_id": trader,
            "symbol": symbol,
            "signals": len(items),
            "signals_per_day": len(items) / days,
        }
        for n in HORIZONS:
            got = [r.returns[n] for r in items if r.returns[n] is not None]
            vals = [v for v in got if v is not None]
            fav = [r.mfe[n] for r in items if r.mfe[n] is not None]
            adv = [r.mae[n] for r in items if r.mae[n] is not None]
            line[f"ret{n}_mean"] = statistics.fmean(vals) if vals else None
            line[f"ret{n}_median"] = statistics.median(vals) if vals else None
            line[f"ret{n}_hit_rate"] = sum(v > 0 for v in vals) / len(vals) if vals else None
            line[f"mfe{n}_mean"] = (
                statistics.fmean(v for v in fav if v is not None) if fav else None
            )
            line[f"mae{n}_mean"] = (
                statistics.fmean(v for v in adv if v is not None) if adv else None
            )
        out.append(line)
    return out


COLUMNS = [
    "id", "trader_id", "trader_version", "symbol", "interval", "kline_open_ms",
    "kline_close_ms", "price", "repeat_count", "values",
    *(f"ret{n}" for n in HORIZONS), *(f"mfe{n}" for n in HORIZONS),
    *(f"mae{n}" for n in HORIZONS),
]  # fmt: skip


def signal_table(rows: Sequence[SignalOutcome]) -> list[dict[str, object]]:
    table = []

    def order(r: SignalOutcome) -> tuple[int, str, str, int]:
        f = r.signal.fire
        return (f.trader_id, f.symbol, f.interval, f.open_ms)

    for r in sorted(rows, key=order):
        f = r.signal.fire
        line: dict[str, object] = {
            "id": f.id,
            "trader_id": f.trader_id,
            "trader_version": f.trader_version,
            "symbol": f.symbol,
            "interval": f.interval,
            "kline_open_ms": f.open_ms,
            "kline_close_ms": f.close_ms,
            "price": f.price,
            "repeat_count": r.signal.repeat_count,
            "values": json.dumps(f.values, sort_keys=True, allow_nan=False),
        }
        for n in HORIZONS:
            line[f"ret{n}"] = r.returns[n]
            line[f"mfe{n}"] = r.mfe[n]
            line[f"mae{n}"] = r.mae[n]
        table.append(line)
    return table


def export(rows: Sequence[SignalOutcome], path: Path) -> None:
    """Write the signals with their outcomes: .parquet, else CSV. Same input, same bytes."""
    table = signal_table(rows)
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = {c: [t[c] for t in table] for c in COLUMNS}
        pq.write_table(pa.table(columns), path, compression="zstd")
        return
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for t in table:
            writer.writerow({k: ("" if v is None else v) for k, v in t.items()})
