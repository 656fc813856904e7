"""The four kinds of endpoints a flow has, as small base classes, and how they are found.

* `TradeSource`: trades in, as batches of columns, each with the position to resume after it.
* `KlineSink`: klines out (closed or still open), keyed by (symbol, interval, open time).
* `SignalSink`: signals out, keyed by the signal's id.
* `ReportSink`: what an operator must see (dead letters, known gaps, quality notes).

Each sink has one `write_batch`, and a write must be idempotent: writing a batch again (a
restart re-delivers) leaves the store as one write did. A source's position must be a plain
value (it is pickled into the flow's snapshots) and reading from it must give exactly the
batches after it.

Every concrete subclass registers itself when its module is imported, and `discover()`
imports every module of the `flows.io` package and those named in `KLINEFLOW_IO_MODULES`
(comma-separated, for endpoints kept outside this package): so a new sink written in one file
is found by the generic contract suite (`tests/contract/`) without being listed anywhere. A
class takes part in the suite through `for_contract(env)`, which builds an instance on the
servers the tests run (`ContractEnv`); a class without one fails the suite.
"""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Self

from flows.domain.deadletter import DeadLetter
from flows.domain.kline import Kline
from flows.domain.trade_columns import TradeColumns
from flows.sources.items import GapReport, QualityNote

if TYPE_CHECKING:  # the rules engine (TA-Lib) is imported only by flows with rules
    from flows.signals.engine import Fire

MODULES_VARIABLE = "KLINEFLOW_IO_MODULES"

Position = Hashable  # a plain, picklable value: where a source stands
Report = DeadLetter | GapReport | QualityNote


class KlineRecord(NamedTuple):
    """One kline to store: closed, or open as it stands (a later record replaces it)."""

    symbol: str
    interval: str
    kline: Kline
    closed: bool


@dataclass(frozen=True)
class ContractEnv:
    """The servers the contract suite runs on (URLs of real servers) and a scratch folder;
    `namespace` is new for each test, so instances never see each other's data. A source
    built for the suite holds `trades`: one symbol's trades in id order, in batches (a file
    source writes them to a file of its format first)."""

    redis_url: str
    database_url: str
    scratch: str
    namespace: str
    trades: tuple[TradeColumns, ...] = ()


class _Registered(ABC):  # noqa: B024  (its kinds below declare the abstract methods)
    """Keeps every concrete subclass, per kind."""

    kind: ClassVar[str] = ""
    _registry: ClassVar[dict[str, list[type[Any]]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        kinds = _Registered._registry.setdefault(cls.kind, [])
        if cls not in kinds:
            kinds.append(cls)

    @classmethod
    def implementations(cls) -> list[type[Self]]:
        """Every concrete class of this kind imported so far (see `discover`)."""
        return [c for c in _Registered._registry.get(cls.kind, []) if not inspect.isabstract(c)]

    @classmethod
    def for_contract(cls, env: ContractEnv) -> Self | None:
        """An instance for the contract suite, on the given servers. Every endpoint gives
        one: the suite fails for a class that gives None."""
        return None


class TradeSource(_Registered):
    """Trades as `TradeColumns` batches, in the order they are to be applied per symbol."""

    kind = "source"

    @abstractmethod
    def read(self, after: Position | None = None) -> Iterator[tuple[TradeColumns, Position]]:
        """The batches after `after` (None: from the start), each with the position just after
        it; reading again from a position gives the same batches again."""

    def close(self) -> None:
        """Let go of files, connections."""


class _Sink(_Registered):
    @abstractmethod
    def contents(self) -> Mapping[Any, Any]:
        """What the store holds, keyed as the sink keys its writes (the contract compares it
        after each write; a sink used in production reads it back from its store)."""

    def close(self) -> None:
        """Let go of connections."""


class KlineSink(_Sink):
    kind = "klines"

    @abstractmethod
    def write_batch(self, records: Sequence[KlineRecord]) -> None:
        """Store the klines (in one round trip or transaction where the store allows): a
        record replaces the stored kline of the same (symbol, interval, open time)."""


class SignalSink(_Sink):
    kind = "signals"
    # the trader the suite's signals name: a sink whose store checks traders creates one in
    # `for_contract` and says which (id, version)
    contract_trader: tuple[int, int] = (1, 1)

    @abstractmethod
    def write_batch(self, fires: Sequence[Fire]) -> None:
        """Record the signals: a signal with an id already stored is not recorded again."""


class ReportSink(_Sink):
    kind = "reports"

    @abstractmethod
    def write_batch(self, reports: Sequence[Report]) -> None:
        """Keep the reports where an operator sees them: a report written again (the same
        value) is kept once."""


def discover(extra: str | None = None) -> list[str]:
    """Import every module of `flows.io` and those named by `extra` (default: the variable
    KLINEFLOW_IO_MODULES), so that their endpoints register; the names imported."""
    import flows.io as package

    names = [
        f"{package.__name__}.{m.name}"
        for m in pkgutil.iter_modules(package.__path__)
        if not m.name.startswith("_")
    ]
    listed = os.environ.get(MODULES_VARIABLE, "") if extra is None else extra
    names += [n.strip() for n in listed.split(",") if n.strip()]
    for name in names:
        importlib.import_module(name)
    return names
