"""Contract: every helper of the rule language, called from a compiled rule and fed bar by
bar, equals its declared batch reference (TA-Lib's batch function where TA-Lib has it) over
the full history, at every bar: undefined exactly where the reference is NaN.

The test walks the registry, so a helper a data engineer adds with the decorator is checked
here without touching this file; a helper without a reference fails.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from flows.domain.kline import Kline
from flows.rules import Registry
from flows.rules.block import Block
from flows.rules.evaluate import compile_rule
from flows.rules.frame import Frame, Undefined
from flows.rules.helpers import DEFAULT_REGISTRY
from flows.rules.registry import Arg, HelperSpec
from flows.rules.vector import Lanes, vectorize
from tests.contract.test_indicator_parity import random_walk

N_BARS = 700
# helpers whose incremental value replays a recurrence that the installed TA-Lib orders
# slightly differently, or that TA-Lib computes over running sums (see flows/indicators)
TOLERANT = 1e-9
SAMPLE_SERIES = ("close", "open", "high")


def sample_call(spec: HelperSpec) -> tuple[str, list[Any]]:
    """Rule text calling ``spec`` with simple arguments, and the reference's arguments."""
    texts: list[str] = []
    ref_args: list[Any] = []
    series_used = 0
    for arg in spec.args:
        if arg.kind == "period":
            value: Any = arg.default if arg.default is not None else 10
            if arg.default is None:
                texts.append(str(value))
            ref_args.append(value)
        elif arg.kind == "factor":
            value = arg.default if arg.default is not None else 2
            ref_args.append(value)
        else:
            name = SAMPLE_SERIES[series_used % len(SAMPLE_SERIES)]
            series_used += 1
            texts.append(name)
            ref_args.append(name)
    return f"{spec.name}({', '.join(texts)})", ref_args


def bars_with_times(seed: int, interval_ms: int = 60_000) -> dict[str, np.ndarray]:
    bars = random_walk(seed, N_BARS)
    start = 1_700_000_000_000 - 1_700_000_000_000 % interval_ms
    bars["time"] = start + interval_ms * np.arange(N_BARS, dtype=float)
    bars["volume"][np.random.default_rng(seed).random(N_BARS) < 0.03] = 0.0  # quiet bars
    bars["quote_volume"] = bars["volume"] * bars["close"]
    bars["trades"] = np.ones(N_BARS)
    # prices on the 1e-8 grid, as klines carry them
    for f in ("open", "high", "low", "close", "volume", "quote_volume"):
        bars[f] = np.round(bars[f] * 1e8) / 1e8
    return bars


def as_kline(bars: dict[str, np.ndarray], i: int, interval_ms: int) -> Kline:
    def u(f: str) -> int:
        return round(float(bars[f][i]) * 1e8)

    open_ms = int(bars["time"][i])
    return Kline(
        open_ms,
        open_ms + interval_ms - 1,
        u("open"),
        u("high"),
        u("low"),
        u("close"),
        u("volume"),
        u("quote_volume"),
        int(bars["trades"][i]),
        0,
        0,
    )


def reference_values(spec: HelperSpec, bars: dict[str, np.ndarray], ref_args: list[Any]) -> Any:
    assert spec.reference is not None, f"helper {spec.name} declares no reference"
    args = [bars[a] if isinstance(a, str) else a for a in ref_args]
    out = spec.reference(bars, *args)
    if spec.reference_output is not None:
        out = out[spec.reference_output]
    return np.asarray(out, dtype=float)


def run_incremental(
    text: str, bars: dict[str, np.ndarray], interval: str, interval_ms: int, registry: Registry
) -> list[float]:
    program = compile_rule(text, interval, registry, condition=False)
    frames = {iv: Frame(iv, req, registry.factories) for iv, req in program.requirements.items()}
    values: list[float] = []
    for i in range(N_BARS):
        frames[interval].on_bar(as_kline(bars, i, interval_ms))
        try:
            v = program.condition(frames, 0)
            values.append(float(v))
        except Undefined:
            values.append(math.nan)
    return values


def assert_matches(name: str, got: list[float], want: np.ndarray, tolerance: float) -> None:
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        if math.isnan(w):
            assert math.isnan(g), f"{name}: bar {i} gave {g}, the reference is undefined there"
        else:
            assert not math.isnan(g), f"{name}: bar {i} undefined, the reference gives {w}"
            assert g == pytest.approx(w, rel=tolerance, abs=tolerance), f"{name}: bar {i}"


HELPERS = [spec.name for spec in DEFAULT_REGISTRY.helpers()]


@pytest.mark.parametrize("name", HELPERS)
@pytest.mark.parametrize(("interval", "interval_ms"), [("1m", 60_000), ("1h", 3_600_000)])
def test_helper_equals_its_reference_at_every_bar(
    name: str, interval: str, interval_ms: int
) -> None:
    spec = DEFAULT_REGISTRY.get(name)
    assert spec is not None
    text, ref_args = sample_call(spec)
    for seed in (1, 2):
        bars = bars_with_times(seed, interval_ms)
        want = reference_values(spec, bars, ref_args)
        got = run_incremental(text, bars, interval, interval_ms, DEFAULT_REGISTRY)
        defined = int(np.sum(~np.isnan(want)))
        assert defined > N_BARS // 3, f"{name}: the sample leaves too few defined bars"
        assert_matches(text, got, want, TOLERANT)


def run_arrays(
    text: str, symbols: list[dict[str, np.ndarray]], interval: str, interval_ms: int
) -> list[list[float]]:
    """``text`` over several symbols at once, as the flow's engine evaluates it: one block of
    rows per interval, bars taken by all rows in one step, the rule through the array
    evaluator (a helper it does not cover, per row through the row's ``Frame`` view)."""
    program = compile_rule(text, interval, DEFAULT_REGISTRY, condition=False)
    blocks = {
        iv: Block(iv, req, DEFAULT_REGISTRY.factories) for iv, req in program.requirements.items()
    }
    rows = np.array([blocks[interval].row(f"S{i}") for i in range(len(symbols))])
    for block in blocks.values():
        for i in range(len(symbols)):
            block.row(f"S{i}")
    vector = vectorize(program)
    out: list[list[float]] = [[] for _ in symbols]
    for bar in range(N_BARS):
        blocks[interval].take_klines(
            [
                (int(r), as_kline(bars, bar, interval_ms))
                for r, bars in zip(rows, symbols, strict=True)
            ]
        )
        suspect = np.ones(len(rows), dtype=bool)
        values = np.full(len(rows), math.nan)
        if vector is not None:
            lanes = Lanes(blocks, dict.fromkeys(vector.intervals, rows), len(rows))
            with np.errstate(all="ignore"):
                v, bad = vector.condition(lanes, 0)
            values = np.where(np.broadcast_to(bad, rows.shape), math.nan, v).astype(float)
            suspect = lanes.suspect
        for i in np.flatnonzero(suspect):
            try:
                frames = {iv: b.frame(int(rows[i])) for iv, b in blocks.items()}
                values[i] = float(program.condition(frames, 0))  # type: ignore[arg-type]
            except Undefined:
                values[i] = math.nan
        for i in range(len(rows)):
            out[i].append(float(values[i]))
    return out


@pytest.mark.parametrize("name", HELPERS)
def test_helper_over_many_symbols_at_once_equals_its_reference_at_every_bar(name: str) -> None:
    spec = DEFAULT_REGISTRY.get(name)
    assert spec is not None
    text, ref_args = sample_call(spec)
    symbols = [bars_with_times(seed) for seed in (1, 2, 3)]
    got = run_arrays(text, symbols, "1m", 60_000)
    for bars, values in zip(symbols, got, strict=True):
        assert_matches(text, values, reference_values(spec, bars, ref_args), TOLERANT)


def test_the_array_evaluator_covers_the_library() -> None:
    """Every helper is evaluated as arrays (the test above would otherwise test the per-row
    path only)."""
    for name in HELPERS:
        spec = DEFAULT_REGISTRY.get(name)
        assert spec is not None
        assert vectorize(compile_rule(sample_call(spec)[0], "1m", condition=False)), name


def test_every_helper_has_a_reference_and_an_implementation() -> None:
    for spec in DEFAULT_REGISTRY.helpers():
        assert spec.reference is not None, spec.name
        assert spec.binding is not None, spec.name


def test_a_helper_added_with_the_decorator_is_computed_and_checked() -> None:
    registry = Registry()

    def batch_range(bars: dict[str, np.ndarray], n: int) -> np.ndarray:
        out = np.full(len(bars["high"]), math.nan)
        for i in range(n - 1, len(out)):
            out[i] = bars["high"][i - n + 1 : i + 1].max() - bars["low"][i - n + 1 : i + 1].min()
        return out

    @registry.function(
        "range_n", args=[Arg("period", 5)], lookback=lambda a: int(a[0] or 0) - 1,
        reference=batch_range,
    )  # fmt: skip
    def range_n(frame: Frame, back: int, n: int) -> float:
        if back + n > len(frame.series):
            raise Undefined
        highs = [frame.series.last("high", back + i) for i in range(n)]
        lows = [frame.series.last("low", back + i) for i in range(n)]
        return max(highs) - min(lows)

    spec = registry.get("range_n")
    assert spec is not None
    text, ref_args = sample_call(spec)
    assert text == "range_n()"
    bars = bars_with_times(3)
    got = run_incremental(text, bars, "1m", 60_000, registry)
    assert_matches(text, got, reference_values(spec, bars, ref_args), 0.0)
    # it takes part in the language: conditions, suggestions
    compile_rule("range_n(7) > 2 * atr(14)", "1m", _with_atr(registry))
    with pytest.raises(Exception, match="did you mean 'range_n'"):
        compile_rule("rnge_n() > 1", "1m", registry)


def _with_atr(registry: Registry) -> Registry:
    atr = DEFAULT_REGISTRY.get("atr")
    assert atr is not None and atr.binding is not None
    registry.declare(
        "atr", atr.args, returns=atr.returns, lookback=atr.lookback, binding=atr.binding,
        reference=atr.reference,
    )  # fmt: skip
    return registry
