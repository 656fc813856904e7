"""A local exchange that speaks Binance's spot market-data protocol (BINANCE.md A1, A2).

No machine here reaches Binance, so the live pipeline, its tests, the demo and the
benchmarks run against this: one port serving the WebSocket streams (``/ws``, ``/stream``;
``@aggTrade``, ``@trade``, ``@kline_<interval>``; SUBSCRIBE and friends; pings; the
5-messages-a-second and 1024-streams limits; ``serverShutdown`` and the connection age
limit) and the REST market-data endpoints (ping, time, exchangeInfo, ticker/24hr,
aggTrades, klines; weights and 429), plus faults on command under ``/_sim/``.

The market is the seeded `flows.sources.synthetic.SyntheticMarket` or a recording file,
played at `SimConfig.speed` times the wall clock. Modules:

- `config`: `SimConfig`, `ScheduledFault`, `parse_schedule`
- `market`: `SimMarket` (trades, aggTrade ids, history), `MarketClock`
- `frames`: stream names, payloads, `KlineFeed` (kline pushes)
- `control`: SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS / SET_PROPERTY / GET_PROPERTY
- `hub`: connections, delivery, slow consumers, faults
- `rest`: the REST endpoints
- `app`: the ASGI application and the ``/_sim/`` controls
- `server`: `Simulator` (background thread) and `serve` (blocking)
"""

from flows.simulator.app import build_app, make_market
from flows.simulator.config import FAULTS, ScheduledFault, SimConfig, parse_schedule
from flows.simulator.market import AggRow, MarketClock, SimMarket, split_fills
from flows.simulator.server import Simulator, serve

__all__ = [
    "FAULTS",
    "AggRow",
    "MarketClock",
    "ScheduledFault",
    "SimConfig",
    "SimMarket",
    "Simulator",
    "build_app",
    "make_market",
    "parse_schedule",
    "serve",
    "split_fills",
]
