"""Which names a rule may use: price series and declared helpers.

A data engineer adds a helper by decorating its implementation::

    @registry.helper(name="rsi", args=(Arg("period", 14),), returns="number",
                     lookback=lambda a: int(a[0]) + 1)
    def rsi(...): ...

Argument kinds:

* ``period``: a positive integer literal (a window length in bars),
* ``factor``: a positive number literal (a multiplier such as Bollinger's 2),
* ``number``: any number-valued expression (a series, a helper, arithmetic),
* ``bool``: any condition.

Every helper also accepts ``tf="<Binance interval>"``. ``lookback`` receives the literal
positional values with defaults filled in (``None`` where an argument is an expression)
and returns how many earlier bars the helper needs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar

ValueType = Literal["number", "bool"]
ArgKind = Literal["period", "factor", "number", "bool"]
LiteralArgs = Sequence[int | float | None]
Lookback = Callable[[LiteralArgs], int]

SERIES: frozenset[str] = frozenset(
    {
        "open",
        "high",
        "low",
        "close",
        "volume",
        "quote_volume",
        "trades",
        "price_change_pct_24h",
        "quote_volume_24h",
    }
)

F = TypeVar("F", bound=Callable[..., object])


@dataclass(frozen=True, slots=True)
class Arg:
    """One declared argument; ``default`` makes it optional (literal kinds only)."""

    kind: ArgKind
    default: int | float | None = None

    @property
    def literal(self) -> bool:
        return self.kind in ("period", "factor")


def _no_lookback(_: LiteralArgs) -> int:
    return 0


@dataclass(frozen=True, slots=True)
class HelperSpec:
    name: str
    args: tuple[Arg, ...]
    kwargs: Mapping[str, Arg]  # beyond the universal tf=
    returns: ValueType
    lookback: Lookback = _no_lookback
    impl: Callable[..., object] | None = field(default=None, compare=False)

    @property
    def min_args(self) -> int:
        required = [i for i, a in enumerate(self.args) if a.default is None]
        return required[-1] + 1 if required else 0

    @property
    def max_args(self) -> int:
        return len(self.args)

    @property
    def keywords(self) -> frozenset[str]:
        return frozenset(self.kwargs) | {"tf"}


def _as_arg(arg: Arg | ArgKind) -> Arg:
    return arg if isinstance(arg, Arg) else Arg(arg)


class Registry:
    """Series names plus helper declarations, looked up by the checker."""

    def __init__(self, series: frozenset[str] = SERIES) -> None:
        self.series = series
        self._helpers: dict[str, HelperSpec] = {}

    def declare(
        self,
        name: str,
        args: Sequence[Arg | ArgKind] = (),
        kwargs: Mapping[str, Arg | ArgKind] | None = None,
        returns: ValueType = "number",
        lookback: Lookback = _no_lookback,
        impl: Callable[..., object] | None = None,
    ) -> HelperSpec:
        if not name.isidentifier() or not name.isascii() or name.startswith("_"):
            raise ValueError(f"invalid helper name {name!r}")
        if name in self._helpers or name in self.series:
            raise ValueError(f"helper {name!r} is already declared")
        declared = tuple(_as_arg(a) for a in args)
        for arg in declared:
            if arg.default is not None and not arg.literal:
                raise ValueError(f"{name}: only period/factor arguments may have defaults")
        keyword_args = {k: _as_arg(v) for k, v in (kwargs or {}).items()}
        if "tf" in keyword_args:
            raise ValueError(f"{name}: tf= is implicit, do not declare it")
        spec = HelperSpec(name, declared, keyword_args, returns, lookback, impl)
        self._helpers[name] = spec
        return spec

    def helper(
        self,
        *,
        name: str,
        args: Sequence[Arg | ArgKind] = (),
        kwargs: Mapping[str, Arg | ArgKind] | None = None,
        returns: ValueType = "number",
        lookback: Lookback = _no_lookback,
    ) -> Callable[[F], F]:
        """Decorator form of ``declare`` that also records the implementation."""

        def register(func: F) -> F:
            self.declare(name, args, kwargs, returns, lookback, impl=func)
            return func

        return register

    def get(self, name: str) -> HelperSpec | None:
        return self._helpers.get(name)

    @property
    def helper_names(self) -> frozenset[str]:
        return frozenset(self._helpers)

    @property
    def names(self) -> frozenset[str]:
        return self.series | self.helper_names


def _first(values: LiteralArgs) -> int:
    return int(values[0] or 0)


def _second(values: LiteralArgs) -> int:
    return int(values[1] or 0)


def _total(values: LiteralArgs) -> int:
    return sum(int(v) for v in values if v is not None)


def _macd_lookback(values: LiteralArgs) -> int:
    fast, slow, signal = (int(v or 0) for v in values)
    return max(fast, slow) + signal


def _one(_: LiteralArgs) -> int:
    return 1


def _default_registry() -> Registry:
    reg = Registry()
    period = Arg("period")

    def with_default(value: int) -> Arg:
        return Arg("period", value)

    for ma in ("sma", "ema", "wma"):
        reg.declare(ma, [period], lookback=_first)
    reg.declare("rsi", [with_default(14)], lookback=lambda a: _first(a) + 1)
    macd_args = [with_default(12), with_default(26), with_default(9)]
    for name in ("macd", "macd_signal", "macd_hist"):
        reg.declare(
            name, macd_args, lookback=lambda a: int(max(a[0] or 0, a[1] or 0) + (a[2] or 0))
        )
    for name in ("bb_upper", "bb_middle", "bb_lower"):
        reg.declare(name, [with_default(20), Arg("factor", 2)], lookback=_first)
    reg.declare("stoch_k", [with_default(14), with_default(3)], lookback=_total)
    reg.declare("stoch_d", [with_default(14), with_default(3), with_default(3)], lookback=_total)
    stochrsi = [with_default(14), with_default(14), with_default(3)]
    reg.declare("stochrsi_k", stochrsi, lookback=lambda a: _total(a) + 1)
    reg.declare("stochrsi_d", [*stochrsi, with_default(3)], lookback=lambda a: _total(a) + 1)
    reg.declare("adx", [with_default(14)], lookback=lambda a: 2 * _first(a))
    reg.declare("atr", [with_default(14)], lookback=lambda a: _first(a) + 1)
    reg.declare("cci", [with_default(20)], lookback=_first)
    reg.declare("mfi", [with_default(14)], lookback=lambda a: _first(a) + 1)
    reg.declare("obv", [], lookback=_one)
    for name in ("highest", "lowest"):
        reg.declare(name, ["number", period], lookback=_second)
    reg.declare("avg_volume", [period], lookback=_first)
    reg.declare("vwap", [])
    for name in ("vwap_upper", "vwap_lower"):
        reg.declare(name, [], kwargs={"mult": Arg("factor", 1)})
    reg.declare("pvi", [], lookback=_one)
    reg.declare("hvn_near", [with_default(100)], returns="bool", lookback=_first)
    reg.declare("hvn_above", [with_default(100)], lookback=_first)
    reg.declare("hvn_below", [with_default(100)], lookback=_first)
    reg.declare("hvn_count", [with_default(100)], lookback=_first)
    for name in ("rsi_bullish_divergence", "rsi_bearish_divergence"):
        reg.declare(name, [with_default(14), with_default(30)], returns="bool", lookback=_total)
    reg.declare("engulfing", [], returns="bool", lookback=_one)
    for name in ("crosses_above", "crosses_below"):
        reg.declare(name, ["number", "number"], returns="bool", lookback=_one)
    for name in ("change", "pct_change"):
        reg.declare(name, ["number", with_default(1)], lookback=_second)
    return reg


DEFAULT_REGISTRY = _default_registry()
