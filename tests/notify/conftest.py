"""Shared pieces of the notification tests: a user with a trader, channels made through the
service the command line and the dashboard use, signals written as the flow writes them,
and a notifier running in a thread (or, for kill tests, as its own process)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from flows.notify import channels
from flows.notify.notifier import Notifier
from flows.notify.settings import NotifySettings
from flows.signals.book import TraderRow
from flows.signals.engine import Fire
from flows.signals.store import SignalWriter, TraderStore
from flows.signals.trader_rows import ensure_user
from tests.notify.servers import ChatStandIn, MailServer, WebhookReceiver

SIGNING_KEY = "test-signing-key-0123456789abcdef"
BOT_TOKEN = "123456789:AAtest-token-abcdefghijklmnopqrstu"
BASE_OPEN_MS = 1_764_892_800_000  # 2025-12-05 00:00 UTC


@dataclass
class Owner:
    url: str
    name: str
    user_id: int
    trader: TraderRow


def make_owner(url: str, name: str, trader: str = "Watch", interval: str = "1m") -> Owner:
    row = TraderStore(url).add(
        TraderRow(0, trader, "close > open", interval, trigger_mode="every_close", cooldown_bars=0),
        owner=name,
    )
    with psycopg.connect(url, autocommit=True) as conn:
        user_id = ensure_user(conn, name)
    return Owner(url, name, user_id, row)


@pytest.fixture
def ana(signals_db: str) -> Owner:
    return make_owner(signals_db, "ana")


def settings(**overrides: Any) -> NotifySettings:
    """Fast retries and short paces (a test is not a production rate limit); the Discord and
    Slack bases and Telegram's API are the local stand-in's."""
    values: dict[str, Any] = {
        "retry_first_s": 0.2,
        "retry_most_s": 2.0,
        "pace_discord_s": 0.2,
        "pace_slack_s": 0.2,
        "pace_telegram_s": 0.2,
        "pace_email_s": 0.2,
        "timeout_s": 5.0,
    }
    values.update(overrides)
    return NotifySettings(**values)


def add_channel(owner: Owner, new: channels.NewChannel, s: NotifySettings, *,
                subscribe: bool = True) -> None:  # fmt: skip
    with psycopg.connect(owner.url, autocommit=True) as conn:
        channels.add(conn, owner.user_id, new, s)
        if subscribe:
            channels.subscribe(conn, owner.user_id, owner.trader.name, new.name)


def webhook(name: str, receiver: WebhookReceiver) -> channels.NewChannel:
    return channels.NewChannel(name, "webhook", url=receiver.url + "/hook",
                               signing_key=SIGNING_KEY)  # fmt: skip


def chat_channels(stand_in: ChatStandIn, token: str = BOT_TOKEN) -> list[channels.NewChannel]:
    """Discord, Slack and Telegram channels on the stand-in (with `token` as credential)."""
    return [
        channels.NewChannel("discord", "discord", url=f"{stand_in.url}/api/webhooks/42/{token}"),
        channels.NewChannel("slack", "slack", url=f"{stand_in.url}/services/T1/B1/{token}"),
        channels.NewChannel("telegram", "telegram", token=token, chat_id="-100123"),
    ]


def chat_settings(stand_in: ChatStandIn, mail: MailServer | None = None,
                  **overrides: Any) -> NotifySettings:  # fmt: skip
    values: dict[str, Any] = {
        "discord_base": f"{stand_in.url}/api/webhooks/",
        "slack_base": f"{stand_in.url}/services/",
        "telegram_api": stand_in.url,
    }
    if mail is not None:
        values |= {"smtp_url": f"smtp://127.0.0.1:{mail.port}", "smtp_ca_file": str(mail.cert)}
    return settings(**values | overrides)


def fires(owner: Owner, count: int, start: int = 0, symbol: str = "BTCUSDT") -> list[Fire]:
    """`count` signals of the owner's trader on consecutive 1m klines from `start`."""
    out = []
    for i in range(start, start + count):
        open_ms = BASE_OPEN_MS + i * 60_000
        out.append(Fire(f"{owner.trader.id}-{symbol}-1m-{open_ms}", owner.trader.id, 1, symbol,
                        "1m", open_ms, open_ms + 59_999, open_ms, f"{100 + i}.50000000",
                        {"close": 100.5 + i, "rsi_14": 27.25}, -1))  # fmt: skip
    return out


def write(url: str, batch: Sequence[Fire]) -> None:
    """Written as the flow writes them: one transaction for the batch."""
    writer = SignalWriter(url, record_latency=False)
    try:
        assert writer.write(batch)
    finally:
        writer.close()


def signal_ids(url: str, trader_id: int) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT id FROM signals WHERE trader_id = %s ORDER BY id",
                            (trader_id,)).fetchall()  # fmt: skip
    return [str(r[0]) for r in rows]


def delivery_states(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT state, count(*) FROM notification_deliveries GROUP BY state"
        ).fetchall()
    return {str(r[0]): int(r[1]) for r in rows}


def eventually(check: Callable[[], bool], timeout: float = 60.0) -> bool:
    """Whether `check()` comes to hold within `timeout` (asked every 50 ms): a wait for a
    state, bounded so that a broken notifier fails the test instead of hanging it."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@contextlib.contextmanager
def notifier_running(url: str, s: NotifySettings) -> Iterator[Notifier]:
    notifier = Notifier(url, s)
    stop = threading.Event()
    thread = threading.Thread(target=notifier.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert notifier.ready.wait(30), "the notifier did not start"
        yield notifier
    finally:
        stop.set()
        thread.join(60)
        assert not thread.is_alive(), "the notifier did not stop"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver(SIGNING_KEY)
    yield server
    server.close()


@pytest.fixture
def stand_in() -> Iterator[ChatStandIn]:
    server = ChatStandIn(BOT_TOKEN)
    yield server
    server.close()


@pytest.fixture
def mail(tmp_path: Path) -> Iterator[MailServer]:
    server = MailServer(tmp_path)
    yield server
    server.close()
