"""Signals page: the user's own signals (row-level security), live from the listener."""

from __future__ import annotations

from urllib.parse import urlencode

import psycopg
from streamlit.testing.v1 import AppTest
from streamlit.util import calc_hash

from dashboard.data import sources
from tests.dashboard.conftest import Filled, open_page, write_signal


def signals_page(user_id: int | None = None, name: str = "") -> AppTest:
    return open_page("views/signals.py", user_id, name)


def ids_newest_first(url: str, trader_id: int) -> list[str]:
    with psycopg.connect(url) as conn:
        return [
            r[0]
            for r in conn.execute(
                "SELECT id FROM signals WHERE trader_id = %s ORDER BY created_at DESC, id DESC "
                "LIMIT 500",
                (trader_id,),
            )
        ]


def test_signed_out_sees_an_invitation(filled: Filled, app_env: None) -> None:
    at = signals_page()
    assert [i.value for i in at.info] == ["Sign in to see your signals"]
    assert not at.dataframe


def test_table_holds_exactly_the_users_signals_newest_first(filled: Filled, app_env: None) -> None:
    at = signals_page(filled.ana, "ana")
    want = ids_newest_first(filled.database_url, filled.ana_trader.id)
    assert want  # the replay made signals for both users
    assert ids_newest_first(filled.database_url, filled.bob_trader.id)
    table = at.dataframe[0].value
    assert list(table["id"]) == want
    assert set(table["trader"]) == {"Ana up bars"}
    assert set(table["symbol"]) == {"XRPETH"} and set(table["interval"]) == {"1m"}
    # current price: the newest stored close; change since the signal from it
    row = table.iloc[0]
    assert row["current price"] > 0
    expected = (row["current price"] - row["price at signal"]) / row["price at signal"] * 100
    assert abs(row["change %"] - expected) < 1e-9
    assert row["24h volume"] > 0
    assert "Latest: Ana up bars · XRPETH · 1m" in [c.value for c in at.caption]

    bob = signals_page(filled.bob, "bob")
    table = bob.dataframe[0].value
    assert list(table["id"]) == ids_newest_first(filled.database_url, filled.bob_trader.id)
    assert set(table["trader"]) == {"Bob dips"}


def test_filters_narrow_the_table(filled: Filled, app_env: None) -> None:
    at = signals_page(filled.ana, "ana")
    at.multiselect[2].set_value(["5m"]).run()  # interval: ana's trader runs on 1m
    assert len(at.dataframe[0].value) == 0
    assert "Latest: none yet" in [c.value for c in at.caption]
    at.multiselect[2].set_value(["1m"]).run()
    at.multiselect[0].set_value(["Ana up bars"]).run()
    assert len(at.dataframe[0].value) == len(ids_newest_first(filled.database_url,
                                                               filled.ana_trader.id))  # fmt: skip


def test_a_new_signal_arrives_through_the_listener(filled: Filled, app_env: None) -> None:
    at = signals_page(filled.ana, "ana")
    lis = sources.listener()
    assert lis.connected.wait(10)
    before = lis.seq
    sid = write_signal(filled, 7)
    assert lis.seen(sid) is not None and lis.seen(sid).via == "notify"  # type: ignore[union-attr]
    assert lis.seq > before
    at.run()
    table = at.dataframe[0].value
    assert table["id"].iloc[0] == sid
    assert "Latest: Ana up bars · ETHBTC · 1m" in [c.value for c in at.caption]
    assert any("New signal" in t.value for t in at.toast)


def test_selecting_a_row_links_to_market_at_its_kline(filled: Filled, app_env: None) -> None:
    at = signals_page(filled.ana, "ana")
    first = at.dataframe[0].value.iloc[0]
    at.session_state["signals_table"] = {"selection": {"rows": [0], "columns": []}}
    at.run()
    links = at.main.get("page_link")  # the sidebar lists the pages too
    assert len(links) == 1
    link = links[0].proto
    assert link.page_script_hash == calc_hash("market")  # st.Page hashes its url_path
    assert link.query_string == urlencode(
        {"symbol": first["symbol"], "interval": first["interval"],
         "open_ms": str(int(first["id"].rsplit("-", 1)[1])), "signal": first["id"]}
    )  # fmt: skip


def test_filters_are_in_a_collapsed_expander_with_a_line_saying_what_they_hold(
    filled: Filled, app_env: None
) -> None:
    at = signals_page(filled.ana, "ana")
    (filters,) = at.expander
    assert filters.proto.label == "Filters" and not filters.proto.expanded
    assert [m.label for m in filters.multiselect] == ["Trader", "Symbol", "Interval", "Status"]
    assert [s.label for s in filters.selectbox] == ["Recorded"]
    assert len(at.multiselect) == 4 and len(at.selectbox) == 1  # no filter outside it
    assert "Showing status new, seen" in [c.value for c in at.caption]
    filters.multiselect[2].set_value(["5m"]).run()
    at.expander[0].selectbox[0].select("Last hour").run()
    assert "Showing interval 5m; recorded in the last hour; status new, seen" in [
        c.value for c in at.caption
    ]
    assert len(at.dataframe[0].value) == 0
