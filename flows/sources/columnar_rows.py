"""The per-row rules of a dump's CSV line, for the rows the columnar reader cannot take at once.

`row_outcome` decides one line as `flows.sources.dumps.read_csv` does: a trade tuple, a dead
letter (malformed, invalid or implausible), or None for a line it passes over (a header on
the first line, a blank line). The columnar reader sends it only the rows outside Binance's
own form, so its cost does not matter; that it agrees with read_csv on every line does, and
the tests check it on generated lines.

>>> row_outcome(b"13519807,0.00141342,23.00000000,15373518,15373518,1570752011620,True,True",
...             2, 1_570_838_400_000, "f.csv", "XRPETH")
(15373518, 15373518, 141342, 2300000000, 1570752011620, True)
>>> row_outcome(b"a,price,qty,first,last,time,maker,best", 1, 0, "f.csv", "XRPETH") is None
True
>>> row_outcome(b"1,0,0,-1,-1,1570752011620,True,True", 5, 1_570_838_400_000, "f.csv", "X").reason
'invalid'
"""

from __future__ import annotations

from flows.binance.decode import trade_time_ms
from flows.domain import deadletter as dl
from flows.domain.deadletter import DeadLetter
from flows.domain.kline import Trade
from flows.domain.trade_checks import (
    EXCHANGE_START_MS,
    MAX_FILLS,
    MAX_TRADE_ID,
    ImplausibleAmount,
    parse_amount,
)
from flows.sources.dumps import _csv_dead, _unusable_row


def row_outcome(
    line: bytes, lineno: int, ceiling: int, name: str, symbol: str
) -> Trade | DeadLetter | None:
    """One CSV line (without or with its line ending) as the per-row reader decides it."""
    cols = line.rstrip(b"\r\n").split(b",")
    try:
        if len(cols) == 8:
            first, last = int(cols[3]), int(cols[4])
            price, qty = parse_amount(cols[1].decode()), parse_amount(cols[2].decode())
            time_ms = trade_time_ms(int(cols[5]))
        elif len(cols) == 7:
            first = last = int(cols[0])
            price, qty = parse_amount(cols[1].decode()), parse_amount(cols[2].decode())
            time_ms = trade_time_ms(int(cols[4]))
        else:
            raise ValueError(f"expected 7 (trades) or 8 (aggTrades) columns, got {len(cols)}")
        maker = cols[-2].strip().lower()
        if maker not in (b"true", b"false"):
            raise ValueError(f"isBuyerMaker is {maker!r}, expected True or False")
    except ImplausibleAmount as e:
        return _csv_dead(dl.IMPLAUSIBLE, str(e), line, name, lineno, symbol)
    except ValueError as e:
        if lineno == 1 and not cols[0].strip().lstrip(b"-").isdigit():
            return None  # a header row
        if not line.strip():
            return None
        return _csv_dead(dl.MALFORMED, str(e), line, name, lineno, symbol)
    trade = (first, last, price, qty, time_ms, maker == b"true")
    if (
        0 <= first <= last <= MAX_TRADE_ID
        and last - first < MAX_FILLS
        and EXCHANGE_START_MS <= time_ms <= ceiling
        and price
        and qty
    ):
        return trade
    return _unusable_row(trade, ceiling, line, name, lineno, symbol) or trade
