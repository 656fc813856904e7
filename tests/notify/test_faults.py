"""The notifier under faults: a receiver down for two minutes, the notifier killed with
SIGKILL at random moments, a burst of 500 signals, bad channels beside good ones.

The pass is always the same: every signal in exactly one acknowledged message per channel
(0 missing, 0 extra, 0 in two messages); a message sent again after a crash carries its
first key, which the receiver has seen (kept as a count, not hidden)."""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from flows.notify import channels
from tests.notify.conftest import (
    Owner,
    add_channel,
    chat_channels,
    chat_settings,
    delivery_states,
    eventually,
    fires,
    notifier_running,
    settings,
    signal_ids,
    webhook,
    write,
)
from tests.notify.servers import ChatStandIn, WebhookReceiver

DOWN_S = 120  # how long the receiver stays down (the fault's length, not a check)


def _exactly_once(receiver: WebhookReceiver, expected: list[str]) -> None:
    counts = collections.Counter(receiver.signal_ids())
    assert sorted(set(expected) - set(counts)) == [], "missing"
    assert sorted(set(counts) - set(expected)) == [], "extra"
    assert sorted(i for i, n in counts.items() if n > 1) == [], "a signal in two messages"


def _all_received(receiver: WebhookReceiver, n: int, timeout: float = 120) -> bool:
    return receiver.wait_until(lambda r: len({sid for b in r.bodies for sid in
                                              (s["id"] for s in b["signals"])}) >= n,
                               timeout)  # fmt: skip


def test_a_receiver_down_for_two_minutes_gets_everything_once_when_back(
    ana: Owner, receiver: WebhookReceiver
) -> None:
    s = settings(retry_most_s=5.0)
    add_channel(ana, webhook("hook", receiver), s)
    with notifier_running(ana.url, s) as notifier:
        write(ana.url, fires(ana, 3))
        assert _all_received(receiver, 3)
        receiver.down()
        write(ana.url, fires(ana, 10, 3))
        deadline = time.monotonic() + DOWN_S
        start = 13
        while time.monotonic() < deadline:  # signals keep coming while it is down
            write(ana.url, fires(ana, 2, start))
            start += 2
            time.sleep(10)
        assert notifier.stats.retried > 0, "the notifier should have been retrying"
        assert delivery_states(ana.url).get("failed", 0) == 0
        receiver.up()
        expected = signal_ids(ana.url, ana.trader.id)
        assert _all_received(receiver, len(expected))
        _exactly_once(receiver, expected)
        assert len(receiver.received.keys) == len(set(receiver.received.keys))
    assert receiver.received.bad_signatures == 0


def _start_notifier(url: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "notify", "--database-url", url],
        env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )  # fmt: skip


def test_kill_9_of_the_notifier_at_random_moments_loses_and_repeats_nothing(
    ana: Owner, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    s = settings()
    add_channel(ana, webhook("hook", receiver), s)
    env = {**os.environ, "KLINEFLOW_NOTIFY_RETRY_FIRST_S": "0.2",
           "KLINEFLOW_NOTIFY_RETRY_MOST_S": "1"}  # fmt: skip
    log = tmp_path / "notifier.log"
    rng = random.Random(int(os.environ.get("KLINEFLOW_TEST_SEED", "16")))
    stop_writing = threading.Event()
    written = [0]

    def writer() -> None:  # signals keep arriving, in small batches, throughout
        while not stop_writing.is_set() and written[0] < 400:
            write(ana.url, fires(ana, 4, written[0]))
            written[0] += 4
            stop_writing.wait(0.05)

    feeder = threading.Thread(target=writer, daemon=True)
    feeder.start()
    proc = _start_notifier(ana.url, env, log)
    try:
        for _ in range(5):  # killed at a random moment: the first second included
            time.sleep(rng.uniform(0.0, 2.5))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            proc = _start_notifier(ana.url, env, log)
        feeder.join(120)
        stop_writing.set()
        expected = signal_ids(ana.url, ana.trader.id)
        assert len(expected) == written[0] > 0
        assert _all_received(receiver, len(expected), timeout=180), log.read_text()[-2000:]
    finally:
        stop_writing.set()
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    _exactly_once(receiver, expected)
    resent = len(receiver.received.keys) - len(set(receiver.received.keys))
    print(f"messages {len(set(receiver.received.keys))}, sent again after a kill: {resent}")


def test_a_burst_of_500_signals_is_folded_into_digests(
    ana: Owner, stand_in: ChatStandIn, receiver: WebhookReceiver
) -> None:
    s = chat_settings(stand_in, pace_slack_s=1.0)
    slack = chat_channels(stand_in)[1]
    add_channel(ana, slack, s)
    add_channel(ana, webhook("hook", receiver), s)
    with notifier_running(ana.url, s):
        write(ana.url, fires(ana, 500))  # 500 signals in one transaction: one burst
        assert stand_in.wait_until(lambda r: len(r.bodies) >= 5)
        assert _all_received(receiver, 500)
        assert eventually(lambda: delivery_states(ana.url) == {"sent": 10})
        # then 100 more in ten quick transactions, while the channel's pace holds
        for i in range(10):
            write(ana.url, fires(ana, 10, 500 + 10 * i))
        assert _all_received(receiver, 600)
        assert stand_in.wait_until(lambda r: sum(_count(b["text"]) for b in r.bodies) >= 600)
    texts = stand_in.texts("slack")
    # the burst: 5 digests of 100 (digest_most), each naming its count
    assert [_count(t) for t in texts[:5]] == [100] * 5
    assert sum(_count(t) for t in texts) == 600
    assert len(texts) <= 5 + 3, "the ten quick transactions should fold into a few digests"
    _exactly_once(receiver, signal_ids(ana.url, ana.trader.id))


def _count(text: str) -> int:
    first = text.split("\n", 1)[0]
    if " signals" in first:
        return int(first.split("klineflow: ", 1)[1].split(" ", 1)[0])
    return 1


@pytest.fixture
def closed_port() -> Iterator[int]:
    import socket

    with socket.socket() as s:  # bound, never listening: connections are refused
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def test_bad_channels_fail_visibly_and_delay_nobody(
    ana: Owner, receiver: WebhookReceiver, stand_in: ChatStandIn, closed_port: int
) -> None:
    s = chat_settings(stand_in, give_up_s=3.0, retry_most_s=0.5)
    add_channel(ana, webhook("good", receiver), s)
    add_channel(ana, chat_channels(stand_in, token="999:wrong-token-abcdefghijklmnopqrst")[2], s)
    add_channel(ana, channels.NewChannel("gone", "webhook",
                url=f"http://127.0.0.1:{closed_port}/hook"), s)  # fmt: skip
    with notifier_running(ana.url, s):
        write(ana.url, fires(ana, 30))
        assert _all_received(receiver, 30)
        # the good channel has everything while the unreachable one is still trying
        gone = _channel(ana, "gone")
        assert gone.failed == 0 and gone.waiting + gone.sent == 0
        assert eventually(lambda: _channel(ana, "gone").last_error is not None)
        assert "connection refused" in (_channel(ana, "gone").last_error or "")
        assert eventually(lambda: _channel(ana, "telegram").failed >= 1)
        assert "Unauthorized" in (_channel(ana, "telegram").last_error or "")
        assert eventually(lambda: _channel(ana, "gone").failed >= 1)
    assert "gave up after" in (_channel(ana, "gone").last_error or "")
    _exactly_once(receiver, signal_ids(ana.url, ana.trader.id))


def _channel(owner: Owner, name: str) -> channels.ChannelInfo:
    with psycopg.connect(owner.url) as conn:
        found = {c.name: c for c in channels.listed(conn, owner.user_id)}
    return found[name]


def test_a_message_sent_but_not_recorded_is_sent_again_with_its_first_key(
    ana: Owner, receiver: WebhookReceiver
) -> None:
    """The one window a crash can leave: the receiver took the message, the notifier died
    before recording it. The next notifier sends it again, unchanged, with the same key."""
    from flows.notify import outbox, senders

    s = settings()
    add_channel(ana, webhook("hook", receiver), s)
    write(ana.url, fires(ana, 3))
    with psycopg.connect(ana.url, autocommit=True) as conn:
        assert outbox.fold(conn, held=(), settings=s) == 1
        [d] = outbox.due(conn, busy=())
    assert senders.send(d.channel, d.message, d.key, s, now_s=1_764_900_000).delivered
    assert delivery_states(ana.url) == {"pending": 1}  # acknowledged, never recorded
    with notifier_running(ana.url, s):
        assert eventually(lambda: delivery_states(ana.url) == {"sent": 1})
    assert receiver.received.keys == [d.key, d.key]
    first, again = receiver.received.bodies
    assert first == again, "a message is resent exactly as it was first sent"
    _exactly_once(receiver, signal_ids(ana.url, ana.trader.id))
