"""The Notifications page: add a channel (the form empties, the secret is never shown back),
choose a trader's channels, send a test message and see the service's answer in the
delivery log, retry a failed message; another user sees none of it. Against real
PostgreSQL, a notifier and a local webhook receiver."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import psycopg
import pytest
from streamlit.testing.v1 import AppTest

from dashboard.data.users import add_user
from flows.signals.book import TraderRow
from flows.signals.store import TraderStore
from tests.dashboard.conftest import PASSWORD, no_exceptions, open_page
from tests.notify.conftest import (
    SIGNING_KEY,
    Owner,
    eventually,
    fires,
    notifier_running,
    settings,
    write,
)
from tests.notify.servers import WebhookReceiver

PAGE = "views/notifications.py"


@pytest.fixture
def users(signals_db: str, app_env: None) -> tuple[Owner, Owner]:
    made = []
    for name in ("ana", "bob"):
        user_id = add_user(signals_db, name, PASSWORD)
        trader = TraderStore(signals_db).add(
            TraderRow(0, f"{name} watch", "close > open", "1m", trigger_mode="every_close",
                      cooldown_bars=0), owner=name)  # fmt: skip
        made.append(Owner(signals_db, name, user_id, trader))
    return made[0], made[1]


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver(SIGNING_KEY)
    yield server
    server.close()


def _add_webhook(at: AppTest, name: str, url: str) -> AppTest:
    try:  # the form's generation: each channel added gives the next, empty form
        gen = int(at.session_state["notifications_form_generation"])
    except KeyError:
        gen = 0
    at.text_input(key=f"notifications_{gen}_name").input(name)
    at.text_input(key=f"notifications_{gen}_url").input(url)
    at.text_input(key=f"notifications_{gen}_key").input(SIGNING_KEY)
    at.button(key=f"notifications_add_{gen}").click().run()
    no_exceptions(at)
    return at


def _text(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [m.value for m in at.success]
    parts += [m.value for m in at.error] + [m.value for m in at.caption]
    parts += [df.value.to_csv() for df in at.dataframe]
    return "\n".join(str(p) for p in parts)


def _state(url: str, delivery_id: int) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT state FROM notification_deliveries WHERE id = %s",
                           (delivery_id,)).fetchone()  # fmt: skip
    return "" if row is None else str(row[0])


def test_a_channel_added_on_the_page_gets_its_traders_signals(
    users: tuple[Owner, Owner], receiver: WebhookReceiver
) -> None:
    ana, bob = users
    at = open_page(PAGE, ana.user_id, "ana")
    assert "No channels yet" in _text(at)
    _add_webhook(at, "desk", receiver.url + "/hook/secret-path")
    text = _text(at)
    assert "Added 'desk'" in text and "secret-path" not in text  # the URL is never shown back
    assert at.text_input(key="notifications_1_name").value == ""  # a fresh, empty form
    at.multiselect(key=f"notifications_subs_{ana.trader.id}").select("desk").run()
    no_exceptions(at)
    assert "ana watch" in at.dataframe[0].value.to_csv()  # the channel lists its trader
    with notifier_running(ana.url, settings()):
        at.button(key="notifications_test").click().run()
        delivery_id = at.session_state["notifications_test_id"]
        assert eventually(lambda: _state(ana.url, delivery_id) == "sent")
        assert receiver.received.bodies[0]["signals"][0]["trader"] == "test of channel desk"
        write(ana.url, fires(ana, 3))
        assert receiver.wait_until(lambda r: sum(len(b["signals"]) for b in r.bodies) == 4)
    at.run()
    log = at.dataframe[-1].value
    assert list(log["state"]) == ["sent"] * len(log) and len(log) >= 2
    assert receiver.received.bad_signatures == 0
    # bob: none of ana's channels, messages or traders
    other = open_page(PAGE, bob.user_id, "bob")
    assert "No channels yet" in _text(other) and "desk" not in _text(other)


def test_a_failed_message_is_shown_and_can_be_tried_again(users: tuple[Owner, Owner]) -> None:
    ana, _ = users
    with socket.socket() as closed:  # bound, not listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        at = open_page(PAGE, ana.user_id, "ana")
        _add_webhook(at, "gone", f"http://127.0.0.1:{closed.getsockname()[1]}/hook")
        with notifier_running(ana.url, settings(give_up_s=1.0, retry_first_s=0.2)):
            at.button(key="notifications_test").click().run()
            delivery_id = at.session_state["notifications_test_id"]
            assert eventually(lambda: _state(ana.url, delivery_id) == "failed")
            at.run()
            assert "connection refused" in _text(at) and "gave up after" in _text(at)
            assert at.selectbox(key="notifications_failed").value == delivery_id
            failed_after = _attempts(ana.url, delivery_id)  # stable: nothing retries it
            at.button(key="notifications_retry").click().run()
            no_exceptions(at)
            assert f"Message {delivery_id} will be tried again" in _text(at)
            with psycopg.connect(ana.url) as conn:
                row = conn.execute("SELECT retried_at IS NOT NULL FROM "
                                   "notification_deliveries WHERE id = %s",
                                   (delivery_id,)).fetchone()  # fmt: skip
            assert row == (True,)
            assert eventually(lambda: _attempts(ana.url, delivery_id) > failed_after)
            assert eventually(lambda: _state(ana.url, delivery_id) == "failed")


def _attempts(url: str, delivery_id: int) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT attempts FROM notification_deliveries WHERE id = %s",
                           (delivery_id,)).fetchone()  # fmt: skip
    return 0 if row is None else int(row[0])


def test_bad_input_on_the_form_is_a_sentence(users: tuple[Owner, Owner]) -> None:
    ana, _ = users
    at = open_page(PAGE, ana.user_id, "ana")
    _add_webhook(at, "x", "ftp://example.org/")
    assert any("http(s) URL" in e.value for e in at.error)
    at.selectbox(key="nk_0").select("email").run()
    at.text_input(key="notifications_0_name").input("mail")
    at.text_input(key="notifications_0_to").input("not-an-address")
    at.button(key="notifications_add_0").click().run()
    assert any("not an e-mail address" in e.value for e in at.error)
