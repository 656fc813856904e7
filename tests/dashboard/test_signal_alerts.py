"""New-signal toasts on every page (ui.alerts, in the app's frame), seen / dismiss on the
Signals page (signals.status under row-level security), and one time per signal."""

from __future__ import annotations

import psycopg

from dashboard.data import sources
from dashboard.data.db import SignalFilter
from dashboard.ui.common import signal_time_text
from tests.dashboard.conftest import (
    Filled,
    as_user,
    make_app,
    no_exceptions,
    open_page,
    write_signal,
)


def status_of(url: str, sid: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT status FROM signals WHERE id = %s", (sid,)).fetchone()
    assert row is not None
    return str(row[0])


def test_a_new_signal_raises_a_toast_on_a_page_that_is_not_signals(
    filled: Filled, app_env: None
) -> None:
    at = open_page("views/screener.py", filled.ana, "ana")
    assert not at.toast  # the signals there before are not news
    assert sources.listener().connected.wait(10)
    sid = write_signal(filled, 7)
    at.run()
    no_exceptions(at)
    want = f"kline closed {signal_time_text(1_570_752_000_000 + 8 * 60_000 - 1)}"
    toasts = [t.value for t in at.toast]
    assert any(t.startswith("New signal: Ana up bars · ETHBTC · 1m") and want in t
               for t in toasts), toasts  # fmt: skip
    at.run()
    assert not at.toast  # once
    assert sid


def test_no_toast_when_switched_off(filled: Filled, app_env: None) -> None:
    at = as_user(make_app(), filled.ana, "ana").run()
    at.sidebar.toggle[0].set_value(False).run()
    assert sources.listener().connected.wait(10)
    write_signal(filled, 8)
    at.run()
    assert not at.toast


def test_seen_and_dismiss_change_the_rows_status(filled: Filled, app_env: None) -> None:
    at = open_page("views/signals.py", filled.ana, "ana")
    first = at.dataframe[0].value.iloc[0]
    sid = first["id"]
    assert first["status"] == "new"
    at.session_state["signals_table"] = {"selection": {"rows": [0], "columns": []}}
    at.run()
    assert [b.label for b in at.main.button] == ["Mark seen", "Dismiss", "Mark new"]
    at.main.button[0].click().run()
    no_exceptions(at)
    assert status_of(filled.database_url, sid) == "seen"
    row = at.dataframe[0].value.set_index("id").loc[sid]
    assert row["status"] == "seen"
    at.session_state["signals_table"] = {"selection": {"rows": [0], "columns": []}}
    at.run()
    at.main.button[1].click().run()
    no_exceptions(at)
    assert status_of(filled.database_url, sid) == "dismissed"
    assert sid not in set(at.dataframe[0].value["id"])  # hidden unless asked for
    at.multiselect[3].set_value(["dismissed"]).run()
    assert list(at.dataframe[0].value["id"]) == [sid]


def test_another_users_signal_cannot_be_marked(filled: Filled, app_env: None) -> None:
    from tests.dashboard.conftest import session_for

    bob = session_for(filled.database_url, filled.bob)
    ana = session_for(filled.database_url, filled.ana)
    db = sources.database()
    anas = db.signals(ana, SignalFilter(limit=1)).value[0].id
    assert db.set_status(bob, [anas], "dismissed") == 0
    assert status_of(filled.database_url, anas) == "new"


def test_a_signal_has_one_time_the_kline_close(filled: Filled, app_env: None) -> None:
    at = open_page("views/signals.py", filled.ana, "ana")
    first = at.dataframe[0].value.iloc[0]
    open_ms = int(first["id"].rsplit("-", 1)[1])
    assert first["time"].strftime("%Y-%m-%d %H:%M:%S UTC") == signal_time_text(open_ms + 59_999)
    at.session_state["signals_table"] = {"selection": {"rows": [0], "columns": []}}
    at.run()
    link = at.main.get("page_link")[0].proto
    assert link.label.endswith(f"at the kline closed {signal_time_text(open_ms + 59_999)}")
