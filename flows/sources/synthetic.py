"""A seeded synthetic market: many symbols, random-walk prices, bursts and quiet spells.

Pure and deterministic: each symbol draws from a generator of its own, so the trades depend
only on the seed, the symbols, the rate and the time span, never on how the market is advanced
(in one step or many). Used by the exchange simulator and the benchmarks.

>>> m = SyntheticMarket(symbols=3, seed=1, start_ms=1_700_000_000_000, rate=50.0)
>>> batch = m.advance_to(1_700_000_060_000)
>>> sorted(batch) == sorted(m.symbols) and all(batch.values())
True
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from flows.domain.kline import Trade
from flows.domain.money import SCALE

_BASES = (
    ("BTC", 60_000.0), ("ETH", 3_000.0), ("BNB", 550.0), ("SOL", 150.0), ("XRP", 0.55),
    ("ADA", 0.45), ("DOGE", 0.12), ("AVAX", 35.0), ("DOT", 7.0), ("LINK", 15.0),
    ("TRX", 0.12), ("MATIC", 0.7), ("LTC", 80.0), ("ATOM", 9.0), ("UNI", 8.0),
    ("ETC", 25.0), ("XLM", 0.11), ("NEAR", 6.0), ("APT", 9.0), ("FIL", 5.0),
    ("ARB", 1.1), ("OP", 2.2), ("INJ", 25.0), ("SUI", 1.2), ("AAVE", 95.0),
    ("ALGO", 0.18), ("SAND", 0.45), ("MANA", 0.42), ("AXS", 7.0), ("FTM", 0.6),
)  # fmt: skip

_NORMAL, _BURST, _QUIET = 0, 1, 2
_REGIME_RATE = {_NORMAL: 1.0, _BURST: 12.0, _QUIET: 0.05}
_REGIME_VOL = {_NORMAL: 1.0, _BURST: 3.0, _QUIET: 0.5}
_HOURLY_VOL = 0.01


def symbol_names(count: int) -> list[str]:
    names = [f"{base}USDT" for base, _ in _BASES[:count]]
    names.extend(f"SYN{i:04d}USDT" for i in range(len(names), count))
    return names


@dataclass(slots=True)
class _SymbolState:
    name: str
    price: float
    tick_units: int
    lot_units: int
    rate_per_ms: float  # base trades per ms
    next_ms: float
    trade_id: int
    agg_id: int
    regime: int
    regime_end_ms: float
    rng: random.Random
    last_ms: float = 0.0  # time of the previous trade (volatility scales with the gap)


class SyntheticMarket:
    def __init__(self, symbols: int, seed: int, start_ms: int, rate: float) -> None:
        if symbols < 1 or rate <= 0:
            raise ValueError("a synthetic market needs at least one symbol and a positive rate")
        self._rng = random.Random(seed)
        self.symbols = symbol_names(symbols)
        weights = [1.0 / (i + 1) ** 0.8 for i in range(symbols)]  # a few busy symbols, a long tail
        total = sum(weights)
        self._states: list[_SymbolState] = []
        for i, name in enumerate(self.symbols):
            base_price = _BASES[i][1] if i < len(_BASES) else 10 ** self._rng.uniform(-2, 2)
            tick = max(1, int(base_price * SCALE / 100_000))  # about 1e-5 of the price
            tick = 10 ** max(0, len(str(tick)) - 1)  # a power of ten, as Binance tick sizes are
            lot = max(1, int(SCALE / base_price))  # a lot is worth about 1 USDT
            lot = 10 ** max(0, len(str(lot)) - 1)
            per_ms = rate * weights[i] / total / 1000.0
            own = random.Random(self._rng.getrandbits(64))  # this symbol's own draws
            first_ms = start_ms + own.expovariate(per_ms)
            self._states.append(
                _SymbolState(name, base_price, tick, lot, per_ms, first_ms,
                             1_000_000 * (i + 1), 100_000 * (i + 1), _NORMAL,
                             start_ms + own.expovariate(1 / 600_000), own)
            )  # fmt: skip
        self.now_ms = start_ms

    def advance_to(self, end_ms: int) -> dict[str, list[Trade]]:
        """Every trade with time in (now, end_ms], grouped by symbol, in time order."""
        out: dict[str, list[Trade]] = {}
        for st in self._states:
            rng = st.rng
            trades: list[Trade] = []
            while st.next_ms <= end_ms:
                t = int(st.next_ms)
                if t >= st.regime_end_ms:
                    self._switch_regime(st, t)
                # Brownian in time: about 1% an hour, whatever the trade rate
                gap_ms = max(st.next_ms - st.last_ms, 1.0) if st.last_ms else 1.0
                vol = _HOURLY_VOL * _REGIME_VOL[st.regime] * math.sqrt(gap_ms / 3_600_000)
                st.last_ms = st.next_ms
                st.price *= math.exp(rng.gauss(0.0, vol))
                price = max(st.tick_units, round(st.price * SCALE / st.tick_units) * st.tick_units)
                fills = 1 if rng.random() < 0.7 else rng.randint(2, 5)
                qty = max(1, int(rng.lognormvariate(0.0, 1.2) * 20)) * st.lot_units
                trades.append(
                    (st.trade_id, st.trade_id + fills - 1, price, qty, t, rng.random() < 0.5)
                )
                st.trade_id += fills
                st.agg_id += 1
                st.next_ms += rng.expovariate(st.rate_per_ms * _REGIME_RATE[st.regime])
            if trades:
                out[st.name] = trades
        self.now_ms = end_ms
        return out

    def _switch_regime(self, st: _SymbolState, t: int) -> None:
        roll = st.rng.random()
        st.regime = _BURST if roll < 0.15 else _QUIET if roll < 0.35 else _NORMAL
        mean_ms = {_NORMAL: 900_000, _BURST: 60_000, _QUIET: 600_000}[st.regime]
        st.regime_end_ms = t + st.rng.expovariate(1 / mean_ms)

    def agg_id(self, symbol_index: int) -> int:
        return self._states[symbol_index].agg_id


def agg_trade_frame(symbol: str, agg_id: int, trade: Trade) -> bytes:
    """A trade as the combined-stream aggTrade frame Binance would send."""
    f, last, price, qty, t, maker = trade
    return (
        b'{"stream":"%s@aggTrade","data":{"e":"aggTrade","E":%d,"s":"%s","a":%d,"p":"%d.%08d",'
        b'"q":"%d.%08d","f":%d,"l":%d,"T":%d,"m":%s,"M":true}}'
        % (symbol.lower().encode(), t + 1, symbol.encode(), agg_id, price // SCALE, price % SCALE,
           qty // SCALE, qty % SCALE, f, last, t, b"true" if maker else b"false")
    )  # fmt: skip
