"""Signals reach every subscribed channel once: the generic webhook (signature checked, keys
kept), Discord, Slack and Telegram stand-ins answering as those services do, and an SMTP
server requiring STARTTLS."""

from __future__ import annotations

import collections
import email
import json
from pathlib import Path

import psycopg

from flows.dataflows.replay import ReplayJob, run_replay
from flows.domain.keys import KeySpace
from flows.notify import channels, messages
from flows.notify.senders import signature
from tests.notify.conftest import (
    SIGNING_KEY,
    Owner,
    add_channel,
    chat_channels,
    chat_settings,
    delivery_states,
    eventually,
    fires,
    make_owner,
    notifier_running,
    settings,
    signal_ids,
    webhook,
    write,
)
from tests.notify.servers import ChatStandIn, MailServer, WebhookReceiver, linked_signals


def _all_channels(
    ana: Owner, receiver: WebhookReceiver, stand_in: ChatStandIn, mail: MailServer
) -> None:
    s = chat_settings(stand_in, mail)
    add_channel(ana, webhook("hook", receiver), s)
    for new in chat_channels(stand_in):
        add_channel(ana, new, s)
    add_channel(ana, channels.NewChannel("mail", "email", to="ana@example.org"), s)


def _each_once(ids: list[str], expected: list[str], where: str) -> None:
    counts = collections.Counter(ids)
    missing = sorted(set(expected) - set(counts))
    extra = sorted(set(counts) - set(expected))
    twice = sorted(i for i, n in counts.items() if n > 1)
    assert (missing, extra, twice) == ([], [], []), f"{where}: missing/extra/duplicated"


def _mailed_signals(mail: MailServer) -> list[str]:
    texts = []
    for m in mail.messages:
        parsed = email.message_from_string(m["data"])
        body = parsed.get_payload(decode=True)
        assert isinstance(body, bytes)
        texts.append(body.decode())
    return linked_signals(texts)


def _delivered_everywhere(
    ana: Owner,
    receiver: WebhookReceiver,
    stand_in: ChatStandIn,
    mail: MailServer,
    expected: list[str],
) -> None:
    n = len(expected)
    assert receiver.wait_until(lambda r: len({k for k in r.keys}) > 0 and
                               sum(len(b["signals"]) for b in r.bodies) >= n)  # fmt: skip
    for service in ("discord", "slack", "telegram"):
        assert stand_in.wait_until(lambda r, s=service: len(linked_signals(  # type: ignore[misc]
            [b["text"] for b in r.bodies if b["service"] == s])) >= n)  # fmt: skip
    assert mail.wait_until(lambda ms: len(_mailed_signals(mail)) >= n)
    _each_once(receiver.signal_ids(), expected, "webhook")
    for service in ("discord", "slack", "telegram"):
        _each_once(linked_signals(stand_in.texts(service)), expected, service)
    _each_once(_mailed_signals(mail), expected, "email")
    assert receiver.received.bad_signatures == 0
    assert len(receiver.received.keys) == len(set(receiver.received.keys))


def test_every_signal_reaches_each_channel_once(
    ana: Owner, receiver: WebhookReceiver, stand_in: ChatStandIn, mail: MailServer
) -> None:
    _all_channels(ana, receiver, stand_in, mail)
    s = chat_settings(stand_in, mail, digest_most=8)
    with notifier_running(ana.url, s):
        write(ana.url, fires(ana, 1))  # alone: one message of one signal
        assert receiver.wait_until(lambda r: len(r.bodies) == 1)
        for start in range(1, 41, 5):  # then bursts: folded into digests
            write(ana.url, fires(ana, 5, start))
        expected = signal_ids(ana.url, ana.trader.id)
        assert len(expected) == 41
        _delivered_everywhere(ana, receiver, stand_in, mail, expected)
        # every message acknowledged and recorded as sent
        assert receiver.wait_until(lambda r: delivery_states(ana.url) == {"sent": _sent(ana)})
    first = receiver.received.bodies[0]
    one = first["signals"][0]
    assert first["count"] == 1 and first["idempotency_key"] == one["id"]
    assert one["trader"] == "Watch" and one["symbol"] == "BTCUSDT" and one["interval"] == "1m"
    assert one["price"] == "100.50000000" and one["values"] == {"close": 100.5, "rsi_14": 27.25}
    assert one["kline_close"] == messages.iso_utc(one["kline_close_ms"])
    assert one["link"].endswith(f"/market?signal={one['id']}")


def _sent(owner: Owner) -> int:
    with psycopg.connect(owner.url) as conn:
        row = conn.execute("SELECT count(*) FROM notification_deliveries").fetchone()
    assert row is not None
    return int(row[0])


def test_a_replays_signals_reach_each_channel_once(
    signals_db: str,
    receiver: WebhookReceiver,
    stand_in: ChatStandIn,
    mail: MailServer,
    shared_data: Path,
    redis_url: str,
    keys: KeySpace,
) -> None:
    ana = make_owner(signals_db, "ana", interval="1h")
    _all_channels(ana, receiver, stand_in, mail)
    with notifier_running(ana.url, chat_settings(stand_in, mail, digest_most=8)):
        run_replay(
            ReplayJob(
                paths=[shared_data / "XRPETH-aggTrades-20191011-20191013.csv"],
                redis_url=redis_url,
                intervals=("1h",),
                keys=keys,
                database_url=ana.url,
            )
        )
        expected = signal_ids(ana.url, ana.trader.id)
        assert len(expected) > 10, "the replay's trader should fire on many klines"
        _delivered_everywhere(ana, receiver, stand_in, mail, expected)


def test_the_webhook_signature_is_hmac_sha256_over_timestamp_and_body() -> None:
    body = b'{"type":"signals"}'
    expected = (
        "sha256="
        + __import__("hmac").new(SIGNING_KEY.encode(), b"1764900000." + body, "sha256").hexdigest()
    )
    assert signature(SIGNING_KEY, "1764900000", body) == expected
    assert signature(SIGNING_KEY, "1764900001", body) != expected
    assert json.loads(messages.webhook_body({"signals": []}, "k"))["idempotency_key"] == "k"


def test_cooldown_repeats_are_not_sent_again(ana: Owner, receiver: WebhookReceiver) -> None:
    from flows.signals.engine import Fire

    s = settings()
    add_channel(ana, webhook("hook", receiver), s)
    first = fires(ana, 1)[0]
    # the next kline fires within the first one's cooldown window: a repeat of it
    repeat = Fire(f"{ana.trader.id}-BTCUSDT-1m-{first.open_ms + 60_000}", ana.trader.id, 1,
                  "BTCUSDT", "1m", first.open_ms + 60_000, first.close_ms + 60_000,
                  first.open_ms, "101.00000000", {"close": 101.0}, -1)  # fmt: skip
    after = fires(ana, 1, start=50)[0]  # past the window: a new signal
    with notifier_running(ana.url, s):
        write(ana.url, [first])
        write(ana.url, [repeat])
        write(ana.url, [after])
        assert receiver.wait_until(lambda r: after.id in receiver.signal_ids())
    with psycopg.connect(ana.url) as conn:
        counts = conn.execute("SELECT id, repeat_count FROM signals ORDER BY id").fetchall()
    assert dict(counts) == {first.id: 2, after.id: 1}  # the repeat was counted, not recorded
    assert sorted(receiver.signal_ids()) == sorted([first.id, after.id])


def test_429_answers_are_waited_out_as_each_service_says(ana: Owner, stand_in: ChatStandIn) -> None:
    s = chat_settings(stand_in)
    for new in chat_channels(stand_in):
        add_channel(ana, new, s)
    stand_in.rate_limit_next = 6  # the first six requests (two per service) answered 429
    stand_in.retry_after_s = 0.5
    with notifier_running(ana.url, s):
        write(ana.url, fires(ana, 1))
        assert stand_in.wait_until(lambda r: len(r.bodies) == 3)
        assert eventually(lambda: delivery_states(ana.url) == {"sent": 3})
    with psycopg.connect(ana.url) as conn:
        attempts = [r[0] for r in conn.execute("SELECT attempts FROM notification_deliveries")]
    assert sum(attempts) == 9 and stand_in.received.requests == 9  # 6 refused, 3 delivered
    for service in ("discord", "slack", "telegram"):
        assert len(linked_signals(stand_in.texts(service))) == 1
