"""The columnar parsers agree with the per-row ones on every input they take, and take
Binance's own form always (so the per-row path stays the exception)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.domain.money import parse_units
from flows.sources.columnar_numbers import (
    decimal_units,
    exact_flags,
    fast_ints,
    fast_units,
    plain_ints,
)
from tests.unit.test_columnar_csv import GOOD, PARSERS, assert_same, parsed_by

digits = st.text("0123456789", min_size=0, max_size=14)
decimal_text = st.one_of(
    st.builds(lambda w, f: f"{w}.{f}", digits, digits),  # leading zeros, >8 decimals, "5."
    digits,
    st.integers(0, 2**63 - 1).map(lambda u: f"{u // 10**8}.{u % 10**8:08d}"),  # Binance's form
    st.integers(0, 10**18 - 1).map(lambda u: f"{u // 10**8}.{u % 10**8:08d}".rstrip("0")),
    st.sampled_from(["0", "0.00000000", "0.00000001", "90071992.54740993", "1e5", "-1", " 1"]),
    st.text("0123456789.-+e _", max_size=22),
)


def parse_or_none(text: str) -> int | None:
    try:
        return parse_units(text)
    except ValueError:
        return None


@settings(max_examples=400, deadline=None)
@given(st.lists(decimal_text, min_size=1, max_size=30))
def test_decimal_units_equal_parse_units(texts: list[str]) -> None:
    units, ok = decimal_units(pa.array([t.encode() for t in texts], pa.binary()))
    for text, value, taken in zip(texts, units.tolist(), ok.tolist(), strict=True):
        expected = parse_or_none(text)
        if taken:
            assert value == expected, text
        whole, _, fraction = text.partition(".")
        binance_form = whole.isdigit() and 1 <= len(whole) <= 10 and len(fraction) <= 8
        if binance_form and (fraction == "" or fraction.isdigit()):
            assert taken, text  # Binance's own form never falls back, even above 2**53 units


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(st.integers(0, 10**18 - 1).map(str), st.text("0123456789+- _", max_size=20)),
        min_size=1,
        max_size=30,
    )
)
def test_plain_ints_equal_int(texts: list[str]) -> None:
    values, ok = plain_ints(pa.array([t.encode() for t in texts], pa.binary()))
    for text, value, taken in zip(texts, values.tolist(), ok.tolist(), strict=True):
        if taken:
            assert value == int(text)
        assert taken == (text.isdigit() and len(text) <= 18)


# columns that are nearly all clean, so the cast-only paths are taken or refused by one value
near_digits = st.one_of(
    st.integers(0, 10**18 - 1).map(str),
    st.text("0123456789", min_size=1, max_size=20),
    st.sampled_from(["0x10", "0X1f", "-0", "-5", "+5", "1e5", "", "٣"]),
)
near_amounts = st.one_of(
    st.integers(0, 10**18 - 1).map(lambda u: f"{u // 10**8}.{u % 10**8:08d}"),
    st.builds(lambda w, f: f"{w}.{f}", digits, digits),
    digits,
    st.sampled_from([".5", "+.5", "5.", "1e5", "1E2", "-.0", "-1", "1..2", "1.2.3", "nan"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(near_digits, min_size=1, max_size=20))
def test_the_cast_only_int_path_takes_plain_digits_only(texts: list[str]) -> None:
    fast = fast_ints(pa.array([t.encode() for t in texts], pa.binary()))
    plain = all(t.isascii() and t.isdigit() and len(t) <= 18 for t in texts)
    assert (fast is not None) == plain, texts
    if fast is not None:
        assert fast.tolist() == [int(t) for t in texts]


@settings(max_examples=300, deadline=None)
@given(st.lists(near_amounts, min_size=1, max_size=20))
def test_the_cast_only_amount_path_takes_what_the_exact_parser_takes(texts: list[str]) -> None:
    column = pa.array([t.encode() for t in texts], pa.binary())
    fast = fast_units(column)
    _, ok = decimal_units(pa.array([b"x", *column.to_pylist()], pa.binary()))  # never fast
    strict = ok[1:].tolist()
    if all(strict):
        assert fast is not None, texts  # the strict form always takes the cast-only path
    if fast is not None:  # which may also take zeros past the 8th decimal, exactly as Decimal
        assert fast.tolist() == [parse_units(t) for t in texts]


flag_text = st.one_of(
    st.sampled_from([b"True", b"False", b"true", b"FALSE", b"Tru", b"Falsy", b"TrueX", b"", b"1"]),
    st.binary(max_size=6),
    st.none(),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(flag_text, min_size=1, max_size=30), st.integers(0, 5))
def test_exact_flags_take_binances_spelling_only(values: list[bytes | None], cut: int) -> None:
    column = pa.array(values, pa.binary()).slice(min(cut, len(values) - 1))  # an offset too
    flag, ok = exact_flags(column)
    for value, got, taken in zip(column.to_pylist(), flag.tolist(), ok.tolist(), strict=True):
        assert taken == (value in (b"True", b"False")), value
        assert got == (value == b"True"), value


field = st.one_of(
    st.sampled_from([b"0.5", b"2", b"3", b"1570752011620", b"True", b"False", b"", b"-1", b" "]),
    st.binary(max_size=6),
)
line = st.one_of(
    st.just(GOOD),
    st.lists(field, min_size=0, max_size=9).map(b",".join),
    st.binary(max_size=12),
)


@pytest.mark.parametrize("parser", PARSERS)
@settings(max_examples=60, deadline=None)
@given(st.lists(line, max_size=12), st.sampled_from([b"\n", b"\r\n"]), st.integers(1, 4))
def test_any_lines_read_as_per_row(
    parser: str, lines: list[bytes], ending: bytes, batch: int
) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d, parsed_by(parser):
        path = Path(d) / "XRPETH-aggTrades-2019-10-11.csv"
        path.write_bytes(ending.join(lines))
        assert_same(path, batch_rows=batch)


# lines at the edges of Binance's strict form, where the native parser and pyarrow's
# conversions must stop taking a value at once and leave it to the per-row rules
edge_int = st.one_of(
    st.integers(0, 10**20).map(str),
    st.integers(0, 10**6).map(lambda v: f"{v:019d}"),  # 19 digits with leading zeros
    st.sampled_from(["", "+5", "-5", " 5", "5 ", "0x1f", "1_0", "٣"]),
)
edge_amount = st.one_of(
    st.builds(
        lambda w, f: f"{w}.{f}",
        st.text("0123456789", max_size=12),
        st.text("0123456789", max_size=10),
    ),
    st.text("0123456789", min_size=1, max_size=12),
    st.sampled_from([".5", "5.", "1e5", "1..2", "-0.5", "0.5 ", "nan"]),
)
edge_flag = st.sampled_from(["True", "False", "true", "Tru", "Truee", "False\r", "FALSE", ""])


@st.composite
def edge_line(draw: st.DrawFn) -> bytes:
    fields = [
        draw(edge_int), draw(edge_amount), draw(edge_amount), draw(edge_int), draw(edge_int),
        draw(st.one_of(st.just("1570752011620"), edge_int)), draw(edge_flag), draw(edge_flag),
    ]  # fmt: skip
    cut = draw(st.sampled_from([8, 8, 8, 7, 9]))
    return ",".join(([*fields, "x"])[:cut]).encode()


@pytest.mark.parametrize("parser", PARSERS)
@settings(max_examples=80, deadline=None)
@given(st.lists(st.one_of(st.just(GOOD), edge_line()), max_size=10), st.integers(1, 4))
def test_lines_at_the_edges_of_the_strict_form_read_as_per_row(
    parser: str, lines: list[bytes], batch: int
) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d, parsed_by(parser):
        path = Path(d) / "XRPETH-aggTrades-2019-10-11.csv"
        path.write_bytes(b"\n".join(lines))
        assert_same(path, batch_rows=batch)
