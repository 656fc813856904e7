"""Read REST trade lists (``/api/v3/aggTrades``, ``historicalTrades``) into chunks of trades.

A file is a JSON list, optionally gzipped: plain REST elements (whose symbol comes from the
file name or the caller), or ccxt trades whose ``info`` is the raw element. A list cut short
is read up to its last whole element and reported once as truncated.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Final

import msgspec

from flows.binance.decode import (
    InvalidTrade,
    RestAggTrade,
    TradeEvent,
    agg_trade_to_trade,
    trade_event_to_trade,
)
from flows.domain import deadletter as dl
from flows.domain.deadletter import DeadLetter
from flows.domain.kline import Trade
from flows.domain.trade_checks import implausible
from flows.sources.chunks import Chunk, FormatError, ReadOptions, raw_text
from flows.sources.compressed import open_text_stream, read_all_bytes
from flows.sources.dumps import dump_symbol


class _RestTrade(msgspec.Struct):
    id: int
    price: str
    qty: str
    time: int
    isBuyerMaker: bool  # noqa: N815 - Binance's field name


class _CcxtTrade(msgspec.Struct):
    info: msgspec.Raw
    symbol: str | None = None


def read_rest_json(path: Path, options: ReadOptions, skip: int) -> Iterator[Chunk]:
    name = str(path)
    with open_text_stream(path) as stream:
        data, cut = read_all_bytes(stream)
    disk_size = path.stat().st_size
    try:
        elements = msgspec.json.decode(data, type=list[msgspec.Raw])
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        if not cut:
            raise FormatError(f"{path}: expected a JSON list of trades: {e}") from e
        elements = _whole_elements(data)
    symbol = dump_symbol(path, options.symbol)
    if symbol is None and elements and b'"info":' not in bytes(elements[0])[:200]:
        # plain REST elements carry no symbol: one dead letter for the file, as for CSV dumps
        yield Chunk(
            dead=[
                DeadLetter(
                    dl.NO_SYMBOL, f"cannot tell the symbol of {path.name}; pass --symbol", "", name
                )
            ]
        )
        return
    ceiling = options.now_ceiling_ms()
    chunk = Chunk()
    for index, raw in enumerate(elements, 1):
        if index <= skip:
            continue
        position = f"{name}:{index}"
        body = bytes(raw)
        sym, trade, dead = _rest_element(body, symbol, position)
        if dead is not None:
            chunk.dead.append(dead)
        elif trade is not None and sym is not None:
            if options.symbols is not None and sym not in options.symbols:
                chunk.filtered += 1
            elif (why := implausible(trade, ceiling)) is not None:
                chunk.dead.append(DeadLetter(dl.IMPLAUSIBLE, why, raw_text(body), position, sym))
            else:
                chunk.trades.setdefault(sym, []).append(trade)
        if index % options.chunk_records == 0:
            chunk.records = index
            chunk.bytes_done = disk_size * index // max(len(elements), 1)
            yield chunk
            chunk = Chunk()
    chunk.records = len(elements)
    chunk.bytes_done = disk_size
    if cut:
        chunk.truncated += 1
        detail = f"{path} is truncated after element {len(elements)}"
        chunk.dead.append(
            DeadLetter(dl.TRUNCATED, detail, "", f"{name}:{len(elements)}", symbol or "")
        )
    yield chunk


_MAX_CLOSE_TRIES: Final = 64


def _whole_elements(data: bytes) -> list[msgspec.Raw]:
    """The whole elements at the start of a JSON list cut short.

    Closes the list after each of the last `}` in turn until it decodes; an element is an
    object (a ccxt one nests a few more), so a few tries reach the end of the last whole one.
    """
    end = len(data)
    for _ in range(_MAX_CLOSE_TRIES):
        end = data.rfind(b"}", 0, end)
        if end < 0:
            break
        try:
            return msgspec.json.decode(data[: end + 1] + b"]", type=list[msgspec.Raw])
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
    return []


def _rest_element(
    raw: bytes, symbol: str | None, position: str
) -> tuple[str | None, Trade | None, DeadLetter | None]:
    body = raw
    if raw.startswith(b'{"info"') or b'"info":' in raw[:200]:
        try:
            wrapped = msgspec.json.decode(raw, type=_CcxtTrade)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            return None, None, DeadLetter(dl.MALFORMED, str(e), raw_text(raw), position)
        body = bytes(wrapped.info)
        if symbol is None and wrapped.symbol:
            symbol = wrapped.symbol.replace("/", "").upper()
    if symbol is None:
        return (
            None,
            None,
            DeadLetter(
                dl.NO_SYMBOL, "cannot tell the symbol; pass --symbol", raw_text(raw), position
            ),
        )
    try:
        if b'"a":' in body:
            ev = msgspec.json.decode(body, type=RestAggTrade).event(symbol)
            return symbol, agg_trade_to_trade(ev), None
        tr = msgspec.json.decode(body, type=_RestTrade)
        return (
            symbol,
            trade_event_to_trade(
                TradeEvent(symbol, tr.id, tr.price, tr.qty, tr.time, tr.isBuyerMaker)
            ),
            None,
        )
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        return None, None, DeadLetter(dl.MALFORMED, str(e), raw_text(raw), position, symbol)
    except InvalidTrade as e:
        return None, None, DeadLetter(e.reason, str(e), raw_text(raw), position, symbol)
