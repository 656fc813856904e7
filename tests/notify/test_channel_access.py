"""A user's channels are theirs alone, and their secrets go in but never come out: checked as
the dashboard reaches them (its role, under row-level security, with a real session) and as
the command line does (the owner's login, acting for a named user)."""

from __future__ import annotations

import psycopg
import pytest

from dashboard.data.db import Database
from flows.app.errors import AppError, BadInput
from flows.notify import channels
from flows.notify.senders import Channel, send
from tests.dashboard.conftest import session_for
from tests.notify.conftest import Owner, add_channel, make_owner, settings

SECRET_URL = "https://hooks.example.invalid/T000/B000/very-secret-token"


@pytest.fixture
def two(signals_db: str) -> tuple[Owner, Owner]:
    ana, bob = make_owner(signals_db, "ana"), make_owner(signals_db, "bob", "Bob watch")
    s = settings()
    add_channel(ana, channels.NewChannel("ana hook", "webhook", url=SECRET_URL), s)
    add_channel(bob, channels.NewChannel("bob mail", "email", to="bob@example.org"), s)
    return ana, bob


def _ids(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return {r[0]: int(r[1]) for r in conn.execute("SELECT name, id FROM channels")}


def test_the_dashboard_sees_and_uses_only_its_users_channels(two: tuple[Owner, Owner]) -> None:
    ana, bob = two
    ids = _ids(ana.url)
    db = Database(ana.url)
    try:
        who = session_for(ana.url, bob.user_id)
        with db.user_tx(who) as conn:
            assert [c.name for c in channels.listed(conn, bob.user_id)] == ["bob mail"]
            assert channels.listed(conn, ana.user_id) == []  # naming ana's id shows nothing
            count = conn.execute("SELECT count(*) FROM channels").fetchone()
            assert count is not None and count[0] == 1
        with pytest.raises(AppError, match="no channel named 'ana hook'"), db.user_tx(who) as conn:
            channels.subscribe(conn, bob.user_id, "Bob watch", "ana hook")
        with pytest.raises(psycopg.errors.InsufficientPrivilege), db.user_tx(who) as conn:
            conn.execute("SELECT secret FROM channels")  # not even bob's own
        with pytest.raises(psycopg.errors.InsufficientPrivilege), db.user_tx(who) as conn:
            conn.execute("INSERT INTO trader_channels (trader_id, channel_id) VALUES (%s, %s)",
                         (bob.trader.id, ids["ana hook"]))  # fmt: skip
        with pytest.raises(psycopg.errors.InsufficientPrivilege), db.user_tx(who) as conn:
            conn.execute(
                "INSERT INTO notification_deliveries (channel_id, idempotency_key, "
                "signal_count, message) VALUES (%s, 'x', 1, '{}')",
                (ids["ana hook"],),
            )
        with db.user_tx(who) as conn:
            updated = conn.execute("UPDATE channels SET enabled = false").rowcount
            assert updated == 1  # bob's own only
            assert conn.execute("DELETE FROM channels WHERE id = %s",
                                (ids["ana hook"],)).rowcount == 0  # fmt: skip
        with db.user_tx(who) as conn:  # what bob may do with his own, through the service
            delivery_id = channels.test_message(conn, bob.user_id, "bob mail", settings(), 0)
            assert channels.delivery(conn, bob.user_id, delivery_id) is not None
    finally:
        db.close()
    assert set(_ids(ana.url)) == {"ana hook", "bob mail"}


def test_the_command_line_reaches_only_the_named_users_channels(
    two: tuple[Owner, Owner],
) -> None:
    ana, bob = two
    with psycopg.connect(ana.url, autocommit=True) as conn:
        with pytest.raises(AppError, match="no channel"):
            channels.subscribe(conn, bob.user_id, "Bob watch", "ana hook")
        with pytest.raises(AppError, match="no trader"):
            channels.subscribe(conn, bob.user_id, "Watch", "bob mail")  # ana's trader
        with pytest.raises(AppError, match="no channel"):
            channels.remove(conn, bob.user_id, "ana hook")
        assert [c.name for c in channels.listed(conn, bob.user_id)] == ["bob mail"]
        assert "very-secret-token" not in repr(channels.listed(conn, ana.user_id))


@pytest.mark.parametrize(
    ("new", "message"),
    [
        (channels.NewChannel("x", "discord", url="https://evil.example/api/webhooks/1/t"),
         "starts with"),
        (channels.NewChannel("x", "slack", url="http://127.0.0.1:6379/"), "starts with"),
        (channels.NewChannel("x", "webhook", url="file:///etc/passwd"), "http"),
        (channels.NewChannel("x", "telegram", token="nope", chat_id="1"), "bot token"),
        (channels.NewChannel("x", "telegram", token="1234:" + "a" * 30, chat_id="x y"), "chat"),
        (channels.NewChannel("x", "email", to="not an address"), "e-mail"),
        (channels.NewChannel("x", "sms", to="1"), "unknown channel kind"),
        (channels.NewChannel("", "email", to="a@b.org"), "name"),
    ],
)  # fmt: skip
def test_bad_channels_are_refused_with_a_reason(new: channels.NewChannel, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        channels.prepared(new, settings())


def test_errors_never_carry_the_secret() -> None:
    """An unreachable webhook and a refused Telegram token: the errors name the host only."""
    token = "123456:" + "S" * 30
    secret = {"url": "http://127.0.0.1:9/path/with/very-secret-token", "signing_key": "k" * 32}
    unreachable = Channel(1, 1, "x", "webhook", {}, secret)
    outcome = send(unreachable, {"signals": []}, "key", settings(timeout_s=2.0), 0)
    assert not outcome.delivered and "127.0.0.1" in outcome.error
    assert "very-secret-token" not in outcome.error
    telegram = Channel(2, 1, "t", "telegram", {"chat_id": "1"}, {"token": token})
    outcome = send(telegram, {"signals": []}, "key",
                   settings(telegram_api="http://127.0.0.1:9", timeout_s=2.0), 0)  # fmt: skip
    assert not outcome.delivered and token not in outcome.error and "SSSS" not in outcome.error
