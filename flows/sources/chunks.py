"""What every recorded-file reader shares: the chunk it yields, the options it takes.

`Chunk` holds a slice of a file's trades grouped by symbol, with the dead letters and counts
of that slice and the resume position; `ReadOptions` says which symbols to keep, how large a
chunk is and how far in the future a trade may lie; `FormatError` is a file no reader can
read at all. The per-format readers (`flows.sources.captures`, `flows.sources.dumps`,
`flows.sources.rest_json`) and their dispatch (`flows.sources.readers`) build on these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from flows.domain import deadletter as dl
from flows.domain.clock import SYSTEM_CLOCK, Clock
from flows.domain.deadletter import DeadLetter
from flows.domain.kline import Trade
from flows.domain.trade_checks import DEFAULT_FUTURE_MARGIN_MS

DEFAULT_CHUNK_RECORDS: Final = 8192
DEFAULT_COLUMN_ROWS: Final = 65_536  # columns cost per batch, not per row: larger batches


class FormatError(ValueError):
    """A file this reader cannot read at all (as opposed to a bad record inside it)."""


@dataclass(slots=True)
class Chunk:
    trades: dict[str, list[Trade]] = field(default_factory=dict)
    dead: list[DeadLetter] = field(default_factory=list)
    ignored: int = 0  # well-formed records of streams klines do not use
    filtered: int = 0  # trades of symbols not asked for
    torn: int = 0  # a last line cut short (a recording being written, or cut by a crash)
    truncated: int = 0  # 1 in the last chunk of a compressed file cut short
    records: int = 0  # records consumed in this file so far (the resume position)
    bytes_done: int = 0  # bytes of the file on disk consumed so far (progress)

    @property
    def trade_count(self) -> int:
        return sum(len(v) for v in self.trades.values())


@dataclass(frozen=True, slots=True)
class ReadOptions:
    symbol: str | None = None  # for dumps whose name does not say
    symbols: frozenset[str] | None = None  # keep only these
    chunk_records: int = DEFAULT_CHUNK_RECORDS
    column_rows: int = DEFAULT_COLUMN_ROWS  # rows per batch of a dump read as columns
    # how far past its reference time (receive time, end of a dump's period, now) a trade's
    # time may lie before it is refused as implausible
    future_margin_ms: int = DEFAULT_FUTURE_MARGIN_MS
    clock: Clock = SYSTEM_CLOCK  # "now", for files that carry no time of their own

    def now_ceiling_ms(self) -> int:
        """The latest trade time a file without a reference time may hold."""
        return self.clock.now_ms() + self.future_margin_ms


def report_cut(chunk: Chunk, path: Path, whole_lines: int, symbol: str, note: str = "") -> None:
    """Mark the chunk as the end of a file cut short, with a dead letter saying where."""
    chunk.truncated += 1
    detail = f"{path} is truncated after line {whole_lines}{note}"
    chunk.dead.append(DeadLetter(dl.TRUNCATED, detail, "", f"{path}:{whole_lines}", symbol))


def raw_text(raw: bytes | str) -> str:
    return raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
