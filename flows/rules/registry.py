"""Which names a rule may use: price series and declared helpers, with how each is computed.

A helper is computed one of two ways, and a data engineer adds one with one decorator:

* backed by an incremental indicator (``flows.indicators``), computed once per symbol and
  shared by every rule that uses it; one class may serve several helpers, one per output::

    @registry.indicator("pvi", lookback=lambda a: 1, reference=batch_pvi)
    class Pvi(Indicator): ...

* a function of the symbol's bars and of its arguments' values at earlier bars::

    @registry.function("crosses_above", args=("number", "number"), returns="bool",
                       lookback=lambda a: 1, reference=batch_crosses_above)
    def crosses_above(frame, back, a, b): return a(back) > b(back) and a(back + 1) <= b(back + 1)

``reference`` is the batch definition of the helper (numpy arrays in, one array out, NaN
where undefined; conditions as 1.0/0.0): the contract tests run every registered helper
bar by bar through the evaluator and compare it with its reference at every bar.

Argument kinds:

* ``period``: a positive integer literal (a window length in bars), within ``[lo, hi]``,
* ``factor``: a positive number literal (a multiplier such as Bollinger's 2), within
  ``(0, hi]``,
* ``number``: any number-valued expression (a series, a helper, arithmetic),
* ``bool``: any condition.

Every helper also accepts ``tf="<Binance interval>"``. ``lookback`` receives the literal
positional values with defaults filled in (``None`` where an argument is an expression)
and returns how many earlier bars the helper needs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from flows.indicators import REGISTRY as INDICATOR_CLASSES
from flows.indicators import Indicator, Spec

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
C = TypeVar("C", bound=type[Indicator])
Reference = Callable[..., Any]
SpecOf = Callable[[LiteralArgs], Spec]


# The widest literal ranges: TA-Lib's own bound for periods, and a sane bound for
# multipliers (a standard-deviation or percent factor above it means nothing and, near
# TA-Lib's 3e37, overflows). A helper declares narrower ones where its computation needs them.
PERIOD_MAX = 100_000
FACTOR_MAX = 100.0


@dataclass(frozen=True, slots=True)
class Arg:
    """One declared argument; ``default`` makes it optional (literal kinds only).

    ``lo``/``hi`` bound a literal: a period must lie in ``[lo, hi]``, a factor in
    ``(0, hi]``. The checker rejects a value outside at the argument's position, so every
    rule it accepts constructs its indicators (``tests/property/test_rule_contract.py``)."""

    kind: ArgKind
    default: int | float | None = None
    lo: int = 1
    hi: float = 0.0  # 0: the kind's widest bound (PERIOD_MAX, FACTOR_MAX)

    @property
    def literal(self) -> bool:
        return self.kind in ("period", "factor")

    @property
    def upper(self) -> float:
        if self.hi:
            return self.hi
        return PERIOD_MAX if self.kind == "period" else FACTOR_MAX


def _no_lookback(_: LiteralArgs) -> int:
    return 0


@dataclass(frozen=True, slots=True)
class IndicatorBinding:
    """The helper's value is output ``output`` (None: the whole value) of a shared indicator."""

    spec_of: SpecOf  # literal arguments -> the indicator's spec
    output: int | None = None


@dataclass(frozen=True, slots=True)
class FunctionBinding:
    """The helper's value is ``func(frame, back, *arguments)``: literal arguments as values,
    expression arguments as callables ``arg(back) -> value``. ``needs`` names the shared
    indicators the function reads through ``frame.value``."""

    func: Callable[..., object]
    needs: Callable[[LiteralArgs], Sequence[Spec]] = lambda _: ()


@dataclass(frozen=True, slots=True)
class HelperSpec:
    name: str
    args: tuple[Arg, ...]
    kwargs: Mapping[str, Arg]  # beyond the universal tf=
    returns: ValueType
    lookback: Lookback = _no_lookback
    impl: Callable[..., object] | None = field(default=None, compare=False)
    binding: IndicatorBinding | FunctionBinding | None = field(default=None, compare=False)
    reference: Reference | None = field(default=None, compare=False)
    reference_output: int | None = None  # which output of a multi-output reference
    doc: str = ""

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
        # indicator name -> class, for the frames that compute this registry's helpers
        self.factories: dict[str, Callable[..., Indicator]] = dict(INDICATOR_CLASSES)

    def declare(
        self,
        name: str,
        args: Sequence[Arg | ArgKind] = (),
        kwargs: Mapping[str, Arg | ArgKind] | None = None,
        returns: ValueType = "number",
        lookback: Lookback = _no_lookback,
        impl: Callable[..., object] | None = None,
        binding: IndicatorBinding | FunctionBinding | None = None,
        reference: Reference | None = None,
        reference_output: int | None = None,
        doc: str = "",
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
        spec = HelperSpec(
            name,
            declared,
            keyword_args,
            returns,
            lookback,
            impl,
            binding,
            reference,
            reference_output,
            doc,
        )
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
        reference: Reference | None = None,
    ) -> Callable[[F], F]:
        """Decorator form of ``declare`` for a function helper with keyword arguments too:
        ``func(frame, back, *args, **kwargs)``."""

        def register(func: F) -> F:
            self.declare(
                name,
                args,
                kwargs,
                returns,
                lookback,
                impl=func,
                binding=FunctionBinding(func),
                reference=reference,
            )
            return func

        return register

    def indicator(
        self,
        *names: str,
        args: Sequence[Arg | ArgKind] = (),
        returns: ValueType = "number",
        lookback: Lookback = _no_lookback,
        reference: Reference | None = None,
        key: str | None = None,
        doc: str = "",
    ) -> Callable[[C], C]:
        """Decorate an ``Indicator`` class: each name becomes a helper reading one output
        (in order) of one shared instance per symbol, built as ``cls(*literal_args)``."""

        def register(cls: C) -> C:
            ind_key = key or names[0]
            if self.factories.get(ind_key, cls) is not cls:
                raise ValueError(f"indicator {ind_key!r} is already registered")
            self.factories[ind_key] = cls

            def spec_of(literals: LiteralArgs) -> Spec:
                return (ind_key, tuple(literals))

            for index, name in enumerate(names):
                output = index if len(names) > 1 else None
                self.declare(
                    name,
                    args,
                    returns=returns,
                    lookback=lookback,
                    binding=IndicatorBinding(spec_of, output),
                    reference=reference,
                    reference_output=output,
                    doc=doc,
                )
            return cls

        return register

    def function(
        self,
        name: str,
        *,
        args: Sequence[Arg | ArgKind] = (),
        returns: ValueType = "number",
        lookback: Lookback = _no_lookback,
        reference: Reference | None = None,
        needs: Callable[[LiteralArgs], Sequence[Spec]] | None = None,
        reference_output: int | None = None,
        doc: str = "",
    ) -> Callable[[F], F]:
        """Decorate ``func(frame, back, *args)`` computing the helper at ``back`` bars ago."""

        def register(func: F) -> F:
            binding = FunctionBinding(func, needs) if needs else FunctionBinding(func)
            self.declare(
                name,
                args,
                returns=returns,
                lookback=lookback,
                impl=func,
                binding=binding,
                reference=reference,
                reference_output=reference_output,
                doc=doc,
            )
            return func

        return register

    def bind_indicator(
        self,
        name: str,
        spec_of: SpecOf,
        *,
        args: Sequence[Arg | ArgKind] = (),
        returns: ValueType = "number",
        lookback: Lookback = _no_lookback,
        output: int | None = None,
        reference: Reference | None = None,
        doc: str = "",
    ) -> HelperSpec:
        """Declare a helper over an already registered indicator (e.g. one per pattern)."""
        return self.declare(
            name,
            args,
            returns=returns,
            lookback=lookback,
            binding=IndicatorBinding(spec_of, output),
            reference=reference,
            reference_output=output,
            doc=doc,
        )

    def remove(self, name: str) -> None:
        """Forget a helper (a plugin unloading, a test cleaning up)."""
        del self._helpers[name]

    def helpers(self) -> list[HelperSpec]:
        return [self._helpers[name] for name in sorted(self._helpers)]

    def get(self, name: str) -> HelperSpec | None:
        return self._helpers.get(name)

    @property
    def helper_names(self) -> frozenset[str]:
        return frozenset(self._helpers)

    @property
    def names(self) -> frozenset[str]:
        return self.series | self.helper_names
