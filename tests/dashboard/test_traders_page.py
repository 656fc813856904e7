"""Traders page: list, toggles, the rule checked as typed, preview, create and edit."""

from __future__ import annotations

import psycopg
import pytest

from dashboard.data.market import PREVIEW_BARS
from flows.domain.clock import SYSTEM_CLOCK
from flows.rules.errors import RuleError
from flows.signals.book import TraderRow, compile_trader
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


def traders_page(user_id: int | None = None, name: str = "") -> object:
    return open_page("views/traders.py", user_id, name)


def rule_box(at: object) -> object:
    return next(t for t in at.text_area if t.label == "Rule")  # type: ignore[attr-defined]


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


def test_a_bad_rule_shows_the_message_and_a_caret(filled: Filled, app_env: None) -> None:
    at = traders_page(filled.ana, "ana")
    bad = "rsi(14) < 30 and emma(9) > close"
    rule_box(at).input(bad).run()  # type: ignore[attr-defined]
    no_exceptions(at)
    with pytest.raises(RuleError) as caught:
        compile_trader(TraderRow(0, "x", bad, "1m"))
    err = caught.value
    (shown,) = [e.value.replace("\\", "") for e in at.error]
    assert err.message in shown and f"character {err.position + 1}" in shown
    (code,) = [c.value for c in at.code]
    line, caret = code.split("\n")
    assert line == bad and caret == " " * err.position + "^"
    assert bad[err.position :].startswith("emma")
    create = next(b for b in at.button if b.label == "Create trader")
    assert create.disabled


def test_a_good_draft_is_previewed_like_the_command_line(filled: Filled, app_env: None) -> None:
    at = traders_page(filled.ana, "ana")
    rule = "rsi(14) < 35"
    rule_box(at).input(rule).run()  # type: ignore[attr-defined]
    at.radio(key="new_trigger").set_value("every_close").run()
    no_exceptions(at)
    assert not at.error
    got = at.session_state["klineflow_preview"]
    seed = redis_seeder(filled.redis_url, filled.keys)
    end = SYSTEM_CLOCK.now_ms()
    direct = preview(rule, "1m", "XRPETH", lambda iv: seed("XRPETH", iv, end, PREVIEW_BARS),
                     "every_close")  # fmt: skip
    assert direct.fires
    assert got["fires"] == len(direct.fires) and got["klines"] == direct.klines
    assert at.metric[0].value == str(len(direct.fires))
    # drawn on the chart of the newest 500 klines: a marker at each fire among them
    (chart,) = charts(at)
    assert any(n.startswith("preview") for n in view_names(chart_spec(chart)))
    tables = chart_datasets(chart)
    kline_table = next(t for t in tables.values() if "open" in t.column_names)
    first = kline_table.column("t")[0].as_py()
    markers = next(t for t in tables.values() if "label" in t.column_names)
    assert markers.column("t").to_pylist() == [
        f.open_ms for f in direct.fires if f.open_ms >= first
    ]


def test_create_toggle_and_edit_write_through_the_dashboard_role(
    filled: Filled, app_env: None
) -> None:
    at = traders_page(filled.ana, "ana")
    at.text_input(key="new_name").input("Ana dips")
    rule_box(at).input("rsi(14) < 30")  # type: ignore[attr-defined]
    at.run()
    next(b for b in at.button if b.label == "Create trader").click().run()
    no_exceptions(at)
    with psycopg.connect(filled.database_url) as conn:
        row = conn.execute(
            "SELECT id, owner_id, expression, enabled FROM traders WHERE name = 'Ana dips'"
        ).fetchone()
    assert row is not None and row[1] == filled.ana and row[2] == "rsi(14) < 30" and row[3]
    new_id = row[0]
    # disable it with its toggle
    at.toggle(key=f"trader_enabled_{new_id}_True").set_value(False).run()
    no_exceptions(at)
    with psycopg.connect(filled.database_url) as conn:
        assert conn.execute("SELECT enabled FROM traders WHERE id = %s", (new_id,)).fetchone() == (
            False,
        )
    # edit its rule: a new version
    at.selectbox(key="trader_pick").set_value(f"Ana dips (id {new_id})").run()
    at.text_area(key=f"t{new_id}_rule").input("rsi(14) < 25").run()
    next(b for b in at.button if b.label == "Save changes").click().run()
    no_exceptions(at)
    with psycopg.connect(filled.database_url) as conn:
        assert conn.execute(
            "SELECT expression, version FROM traders WHERE id = %s", (new_id,)
        ).fetchone() == ("rsi(14) < 25", 2)
