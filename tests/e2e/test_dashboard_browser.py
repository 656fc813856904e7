"""The dashboard in a real headless browser: Debian's chromium driven by Playwright (the system
browser, never a downloaded one), against the dashboard process `klineflow up` starts, on
real Redis (klines from a replay of real trades) and PostgreSQL.

It signs in, opens Market and Signals, inserts a signal into PostgreSQL the way the flow
does, and waits for it to appear on the page. Screenshots of each step, and the measured
NOTIFY-to-visible time, go to the test's output directory (test-output/dashboard-e2e/ or
$KLINEFLOW_TEST_OUTPUT). The time is a measurement for bench/ and the README, not asserted.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from playwright.sync_api import Page, expect, sync_playwright

from dashboard.data.users import add_user
from flows.dashboard_server import DashboardProcess, start_dashboard
from flows.domain.keys import KeySpace
from flows.signals.book import TraderRow
from flows.signals.engine import Fire
from flows.signals.store import SignalWriter, TraderStore
from tests.e2e.fill import XRPETH, replay_into

REPO = Path(__file__).resolve().parents[2]
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "correct horse battery staple"


def chromium_path() -> str:
    found = os.environ.get("KLINEFLOW_CHROMIUM") or shutil.which("chromium")
    assert found, "the browser test needs Chromium: `make browser` installs Debian's chromium"
    return found


def output_dir() -> Path:
    out = Path(os.environ.get("KLINEFLOW_TEST_OUTPUT", REPO / "test-output")) / "dashboard-e2e"
    out.mkdir(parents=True, exist_ok=True)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def dashboard(
    shared_data: Path, redis_url: str, keys: KeySpace, signals_db: str, tmp_path: Path
) -> Iterator[tuple[DashboardProcess, int]]:
    replay_into([shared_data / XRPETH], redis_url, keys)
    add_user(signals_db, "ana", PASSWORD)
    trader = TraderStore(signals_db).add(
        TraderRow(0, "Browser watch", "close > open", "1m", cooldown_bars=0), owner="ana"
    )
    with running_dashboard(redis_url, signals_db, keys, tmp_path) as proc:
        yield proc, trader.id


@contextlib.contextmanager
def running_dashboard(
    redis_url: str, database_url: str, keys: KeySpace, tmp_path: Path
) -> Iterator[DashboardProcess]:
    """The dashboard on a free port, once it serves (its log in `tmp_path`); stopped after."""
    log = tmp_path / "dashboard.log"
    proc = start_dashboard(redis_url, database_url, keys.namespace, port=free_port(), log=log)
    try:
        for _ in range(600):
            if proc.ready() or proc.process.poll() is not None:
                break
            time.sleep(0.1)  # the server's start, polled (Playwright is not up yet)
        assert proc.ready(), log.read_text()[-3000:]
        yield proc
    finally:
        proc.stop()


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(output_dir() / f"{name}.png"), full_page=True)


def test_sign_in_market_signals_and_a_new_signal_appears(
    dashboard: tuple[DashboardProcess, int], signals_db: str, redis_client: redis.Redis
) -> None:
    proc, trader_id = dashboard
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(30_000)
        try:
            page.goto(f"{proc.url}/market?symbol=XRPETH&interval=1m")
            expect(page.get_by_text("Sign in", exact=True).first).to_be_visible()
            # a wrong password first
            page.get_by_label("User name").fill("ana")
            page.get_by_label("Password", exact=True).fill("wrong")
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_text("Wrong user name or password")).to_be_visible()
            page.get_by_label("Password", exact=True).fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_text("Signed in as ana")).to_be_visible()

            # Market: the candlestick chart of the replayed klines is drawn
            expect(page.locator(".vega-embed").first).to_be_visible()
            shot(page, "1-market")

            # Signals, reached through the app's navigation (the session stays signed in)
            page.get_by_role("link", name="Signals").click()
            expect(page.get_by_text("Latest:", exact=False).first).to_be_visible()
            shot(page, "2-signals-before")

            open_ms = 1_570_752_000_000 + 3 * 60_000
            fire = Fire(
                f"{trader_id}-XRPETH-1m-{open_ms}", trader_id, 1, "XRPETH", "1m", open_ms,
                open_ms + 59_999, open_ms, "0.00141500", {"close": 0.001415}, 0,
            )  # fmt: skip
            writer = SignalWriter(signals_db, record_latency=False)
            started = time.perf_counter()
            assert writer.write([fire])
            writer.close()
            latest = page.get_by_text("Latest: Browser watch · XRPETH · 1m")
            expect(latest).to_be_visible(timeout=20_000)
            seen_after = time.perf_counter() - started
            shot(page, "3-signals-after")
        finally:
            browser.close()
    (output_dir() / "latency.json").write_text(
        json.dumps({"notify_to_visible_s": round(seen_after, 3)})
    )
    print(f"signal visible {seen_after:.2f} s after its commit")
