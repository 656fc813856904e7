"""Traders page: list, toggles, the rule checked as typed (the error right under the rule,
with its column and a caret), the helper reference, the preview over every watched symbol
with the rule's indicators, create (the form empties), edit, and delete (signals stay).

The rule box is a component (its JavaScript runs only in a browser: tests/e2e); here its
value is its key's session state, which is what the browser's messages set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
from streamlit.testing.v1 import AppTest

from dashboard.data.indicators import compute
from dashboard.data.market import PREVIEW_BARS
from dashboard.data.rule_indicators import column_name, rule_layers
from dashboard.ui.rule_input import check_rule
from dashboard.ui.rule_reference import FEATURED, helper_entries
from flows.dataflows.replay import ReplayJob, run_replay
from flows.domain.clock import SYSTEM_CLOCK
from flows.rules.errors import RuleError
from flows.rules.helpers import DEFAULT_REGISTRY
from flows.signals.book import TraderRow, compile_trader
from flows.signals.patterns import glob_match
from flows.signals.preview import preview
from flows.signals.step import redis_seeder
from tests.dashboard.conftest import (
    Filled,
    chart_datasets,
    chart_spec,
    charts,
    no_exceptions,
    open_page,
    view_names,
)

INTERVALS = ("1m", "5m")  # what app_env gives the dashboard (KLINEFLOW_INTERVALS)


def traders_page(user_id: int | None = None, name: str = "") -> AppTest:
    return open_page("views/traders.py", user_id, name)


def type_rule(at: AppTest, text: str, form: str = "new0") -> AppTest:
    """What the rule box does in a browser: its text becomes its key's state, then a run."""
    at.session_state[f"{form}_rule"] = text
    return at.run()


def main_elements(at: AppTest) -> list[Any]:
    """The page's elements in order (not the sidebar's), blocks flattened."""
    out: list[Any] = []

    def walk(node: Any) -> None:
        for child in getattr(node, "children", {}).values():
            if getattr(child, "type", None) not in (None, "flex_container", "column", "expander"):
                out.append(child)
            walk(child)

    walk(at.main)
    return out


def shown_errors(at: AppTest) -> list[str]:
    return [e.value.replace("\\", "") for e in at.error]


def rule_error_at(text: str) -> RuleError:
    with pytest.raises(RuleError) as caught:
        compile_trader(TraderRow(0, "x", text, "1m"), INTERVALS)
    return caught.value


def test_signed_out_sees_an_invitation(filled: Filled, app_env: None) -> None:
    at = traders_page()
    assert [i.value for i in at.info] == ["Sign in to manage your traders"]


def test_lists_only_the_users_traders(filled: Filled, app_env: None) -> None:
    at = traders_page(filled.ana, "ana")
    texts = [t.value for t in at.text]
    assert any("Ana up bars" in t and "close > open" in t for t in texts)
    assert not any("Bob dips" in t for t in texts)
    assert at.selectbox(key="trader_pick").options == [
        "New trader",
        f"Ana up bars (id {filled.ana_trader.id})",
    ]


# ---------------------------------------------------------------- the rule, checked as typed


def test_check_rule_is_the_applications_check() -> None:
    assert check_rule("rsi(14) < 30", "1m", INTERVALS) is None
    assert check_rule("", "1m", INTERVALS) is None  # nothing to say yet
    problem = check_rule("rsi(14 > 30", "1m", INTERVALS)
    assert problem is not None
    assert problem.message == "missing ')' to close '(' at column 4 (the call of rsi)"
    assert (problem.line, problem.column, problem.where) == (1, 12, "column 12")
    assert problem.caret == "rsi(14 > 30\n" + " " * 11 + "^"
    # the flow's intervals count: a tf= the flow does not build is refused, as by the CLI
    problem = check_rule('rsi(14, tf="4h") < 30', "1m", INTERVALS)
    assert problem is not None and "interval 4h is not built" in problem.message
    problem = check_rule("close > open\nand emma(9) > 1", "1m", INTERVALS)
    assert problem is not None and problem.where == "line 2, column 5"


@pytest.mark.parametrize(
    "bad",
    ["rsi(14 > 30", "rsi(14) < 30 and emma(9) > close", "rsi(14)) < 30", "close > ema(close, 20"],
)
def test_a_rule_error_shows_right_under_the_rule_with_its_column(
    filled: Filled, app_env: None, bad: str
) -> None:
    at = type_rule(traders_page(filled.ana, "ana"), bad)
    no_exceptions(at)
    err = rule_error_at(bad)
    column = err.position - bad.rfind("\n", 0, err.position)
    (shown,) = shown_errors(at)
    assert shown == f"Rule error at column {column}: {err.message}"
    # right under the rule: the box, the error, the caret, before any other field
    kinds = [(e.type, getattr(e, "label", None)) for e in main_elements(at)]
    box = kinds.index(("component_instance", None))
    assert [k for k, _ in kinds[box + 1 : box + 3]] == ["error", "code"]
    assert kinds.index(("text_input", "Description")) > box + 2
    assert kinds.index(("selectbox", "Interval")) > box + 2
    (code,) = [c.value for c in at.code if "^" in c.value]
    assert code.split("\n") == [bad, " " * err.position + "^"]
    assert next(b for b in at.button if b.label == "Create trader").disabled
    # fixed: the error goes, the rule compiles
    at = type_rule(at, "rsi(14) < 30")
    assert not at.error
    assert "The rule compiles." in [s.value for s in at.success]


def test_a_missing_paren_is_named_not_a_missing_comma(filled: Filled, app_env: None) -> None:
    at = type_rule(traders_page(filled.ana, "ana"), "rsi(14 > 30")
    (shown,) = shown_errors(at)
    assert "missing ')' to close '(' at column 4" in shown and "expected ','" not in shown


def test_the_plain_box_is_checked_the_same_way(filled: Filled, app_env: None) -> None:
    at = traders_page(filled.ana, "ana")
    at.toggle(key="traders_plain_rule_box").set_value(True).run()
    box = next(t for t in at.text_area if t.label == "Rule")
    box.input("rsi(14 > 30").run()
    (shown,) = shown_errors(at)
    assert (
        shown == "Rule error at column 12: missing ')' to close '(' at column 4 (the call of rsi)"
    )
    # the draft follows the box back to the live one
    at.toggle(key="traders_plain_rule_box").set_value(False).run()
    (box,) = [e for e in main_elements(at) if e.type == "component_instance"]
    assert '"initial": "rsi(14 > 30"' in box.proto.json_args
    assert shown_errors(at) == [shown]


# ---------------------------------------------------------------- the reference


def test_the_reference_lists_every_helper_with_an_example_the_checker_accepts(
    filled: Filled, app_env: None
) -> None:
    at = traders_page(filled.ana, "ana")
    (table,) = [d.value for d in at.dataframe if "helper" in d.value.columns]
    assert list(table["helper"]) == sorted(DEFAULT_REGISTRY.helper_names)
    for row in table.itertuples():
        assert check_rule(row.example, "1m", INTERVALS) is None, (row.helper, row.example)
        assert row.helper + "(" in row.example
    # the declared ranges and defaults, as the registry has them
    rsi = table.set_index("helper").loc["rsi"]
    spec = DEFAULT_REGISTRY.get("rsi")
    assert spec is not None
    (arg,) = spec.args
    assert rsi["parameters"] == (
        f"period: bars, {arg.lo} to {arg.upper:,.0f}, default {arg.default}"
    )
    assert rsi["returns"] == "a number" and rsi["what it is"] == spec.doc
    for _, rule in FEATURED:
        assert check_rule(rule, "1m", ("1m", "5m", "1h")) is None, rule
    assert len(helper_entries()) == len(DEFAULT_REGISTRY.helpers())


# ---------------------------------------------------------------- the preview


@pytest.fixture
def more_symbols(filled: Filled, shared_data: Path) -> Filled:
    """Besides XRPETH's two days: a few minutes of BTCUSDT, ETHUSDT and DOTUSDT."""
    run_replay(
        ReplayJob(
            paths=[shared_data / "ws-capture-2021-04-04-btc-eth-dot.txt"],
            redis_url=filled.redis_url,
            intervals=INTERVALS,
            keys=filled.keys,
        )
    )
    return filled


def direct_preview(filled: Filled, rule: str, symbol: str) -> Any:
    seed = redis_seeder(filled.redis_url, filled.keys)
    end = SYSTEM_CLOCK.now_ms()
    return preview(rule, "1m", symbol, lambda iv: seed(symbol, iv, end, PREVIEW_BARS),
                   "every_close")  # fmt: skip


def test_the_preview_covers_every_watched_symbol_and_draws_the_rules_indicators(
    more_symbols: Filled, app_env: None
) -> None:
    filled = more_symbols
    rule = "close > 0"  # every closed kline: a count of its own per symbol
    at = type_rule(traders_page(filled.ana, "ana"), rule)
    at.radio(key="new0_trigger").set_value("every_close").run()
    no_exceptions(at)
    stored = sorted({"XRPETH", "BTCUSDT", "ETHUSDT", "DOTUSDT"})
    got = at.session_state["klineflow_preview"]
    assert got["watched"] == stored
    want = {s: len(direct_preview(filled, rule, s).fires) for s in stored}
    assert got["symbols"] == want
    assert want["XRPETH"] > 0 and any(want[s] > 0 for s in stored if s != "XRPETH")
    (counts,) = [d.value for d in at.dataframe if "would have fired" in d.value.columns]
    assert dict(zip(counts["symbol"], counts["would have fired"], strict=True)) == want
    assert at.selectbox(key="new0_preview_on").options == [f"{s} · {want[s]} fires"
                                                           for s in stored]  # fmt: skip

    # a pattern: only the symbols it matches, as the flow matches them
    at.radio(key="new0_mode").set_value("pattern").run()
    at.text_input(key="new0_pattern").input("*usdt").run()
    got = at.session_state["klineflow_preview"]
    assert got["watched"] == [s for s in stored if glob_match("*USDT", s)] == [
        "BTCUSDT", "DOTUSDT", "ETHUSDT"]  # fmt: skip

    # XRPETH's chart: markers at the fires, the rule's EMA over the candles, RSI in a panel
    rule = "rsi(14) < 35 or crosses_above(close, ema(20))"
    type_rule(at, rule)
    at.radio(key="new0_mode").set_value("all").run()
    at.selectbox(key="new0_preview_on").set_value("XRPETH").run()
    no_exceptions(at)
    direct = direct_preview(filled, rule, "XRPETH")
    assert at.metric[0].value == str(len(direct.fires))
    (chart,) = charts(at)
    names = view_names(chart_spec(chart))
    for layer in ("overlay ema(20)", "panel RSI", "preview"):  # (views may get a suffix)
        assert any(n == layer or n.startswith(f"{layer}_") for n in names), (layer, names)
    tables = chart_datasets(chart)
    klines = tables["klines"]
    first = klines.column("t")[0].as_py()
    assert tables["preview"].column("t").to_pylist() == [
        f.open_ms for f in direct.fires if f.open_ms >= first
    ]
    # the drawn values are the rule language's own, computed over every kline read
    layers = rule_layers(rule, "1m")
    assert layers.expressions == ["ema(20)", "rsi(14)"]
    seed = redis_seeder(filled.redis_url, filled.keys)
    read = seed("XRPETH", "1m", SYSTEM_CLOCK.now_ms(), PREVIEW_BARS)
    values = compute(layers.expressions, "1m", read)
    for text in layers.expressions:
        drawn = klines.column(column_name(text)).to_pylist()
        assert drawn == values[text][-len(drawn) :]
        assert any(v is not None for v in drawn)


# ---------------------------------------------------------------- create, edit, delete


def fill_new_trader(at: AppTest, name: str, rule: str) -> AppTest:
    at.text_input(key="new0_name").input(name)
    return type_rule(at, rule)


def test_create_empties_the_form_and_says_so(filled: Filled, app_env: None) -> None:
    at = fill_new_trader(traders_page(filled.ana, "ana"), "Ana dips", "rsi(14) < 30")
    at.text_input(key="new0_description").input("buy the dip").run()
    next(b for b in at.button if b.label == "Create trader").click().run()
    no_exceptions(at)
    with psycopg.connect(filled.database_url) as conn:
        row = conn.execute(
            "SELECT id, owner_id, expression, description, enabled FROM traders "
            "WHERE name = 'Ana dips'"
        ).fetchone()
    assert row is not None and row[1:] == (filled.ana, "rsi(14) < 30", "buy the dip", True)
    (success,) = [s.value for s in at.success]
    assert success.startswith(f"Created Ana dips (id {row[0]})")
    assert "The form is empty" in success
    # a fresh form: nothing typed, so nothing to create twice
    assert at.text_input(key="new1_name").value == ""
    assert at.text_input(key="new1_description").value == ""
    (box,) = [e for e in main_elements(at) if e.type == "component_instance"]
    assert '"initial": ""' in box.proto.json_args and '"checked": ""' in box.proto.json_args
    assert next(b for b in at.button if b.label == "Create trader").disabled
    assert not at.error
    assert any("Ana dips" in t.value for t in at.text)  # listed
    # the next run drops the message, the form stays empty
    at.run()
    assert not at.success and at.text_input(key="new1_name").value == ""


def test_toggle_and_edit_write_through_the_dashboard_role(filled: Filled, app_env: None) -> None:
    t = filled.ana_trader
    at = traders_page(filled.ana, "ana")
    at.toggle(key=f"trader_enabled_{t.id}_True").set_value(False).run()
    no_exceptions(at)
    with psycopg.connect(filled.database_url) as conn:
        assert conn.execute("SELECT enabled FROM traders WHERE id = %s", (t.id,)).fetchone() == (
            False,
        )
    at.selectbox(key="trader_pick").set_value(f"Ana up bars (id {t.id})").run()
    (box,) = [e for e in main_elements(at) if e.type == "component_instance"]
    assert '"initial": "close > open"' in box.proto.json_args
    type_rule(at, "close < open", form=f"t{t.id}")
    next(b for b in at.button if b.label == "Save changes").click().run()
    no_exceptions(at)
    with psycopg.connect(filled.database_url) as conn:
        assert conn.execute(
            "SELECT expression, version FROM traders WHERE id = %s", (t.id,)
        ).fetchone() == ("close < open", 2)
    assert "Saved Ana up bars (version 2)." in [s.value for s in at.success]


def signal_ids(url: str, trader_id: int) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT id FROM signals WHERE trader_id = %s ORDER BY id", (trader_id,)
        ).fetchall()
    return [str(r[0]) for r in rows]


def test_delete_asks_first_then_removes_the_trader_and_keeps_its_signals(
    filled: Filled, app_env: None
) -> None:
    t = filled.ana_trader
    before = signal_ids(filled.database_url, t.id)
    assert before  # the replay made signals
    at = traders_page(filled.ana, "ana")
    at.selectbox(key="trader_pick").set_value(f"Ana up bars (id {t.id})").run()
    at.button(key=f"trader_remove_{t.id}").click().run()
    (warning,) = [w.value.replace("\\", "") for w in at.warning]
    assert "Delete **Ana up bars** for good?" in warning
    assert f"its {len(before)} signals stay on the Signals page" in warning
    at.button(key=f"trader_remove_no_{t.id}").click().run()  # cancel: nothing happens
    assert not at.warning and any("Ana up bars" in x.value for x in at.text)
    at.button(key=f"trader_remove_{t.id}").click().run()
    at.button(key=f"trader_remove_yes_{t.id}").click().run()
    no_exceptions(at)
    (success,) = [s.value for s in at.success]
    assert success.startswith("Deleted Ana up bars")
    assert not any("Ana up bars" in x.value for x in at.text)
    assert at.selectbox(key="trader_pick").options == ["New trader"]
    assert at.selectbox(key="trader_pick").value == "New trader"
    with psycopg.connect(filled.database_url) as conn:
        row = conn.execute(
            "SELECT enabled, deleted_at IS NOT NULL FROM traders WHERE id = %s", (t.id,)
        ).fetchone()
    assert row == (False, True)
    assert signal_ids(filled.database_url, t.id) == before
    # still on the Signals page, under the trader's name
    signals = open_page("views/signals.py", filled.ana, "ana")
    table = signals.dataframe[0].value
    assert set(table["trader"]) == {"Ana up bars"}
    assert set(table["id"]) <= set(before) and len(table) == min(len(before), 500)
    # and the Trader filter still offers it, marked removed
    label = f"Ana up bars (removed, #{t.id})"
    signals.multiselect[0].select(label).run()
    filtered = signals.dataframe[0].value
    assert len(filtered) == len(table) and set(filtered["trader"]) == {"Ana up bars"}
    # its name is free again
    at = fill_new_trader(traders_page(filled.ana, "ana"), "Ana up bars", "close > open")
    next(b for b in at.button if b.label == "Create trader").click().run()
    assert not at.error and at.success[0].value.startswith("Created Ana up bars")
