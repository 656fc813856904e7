"""The Backtest page in Debian's chromium (Playwright), against the dashboard process as
`klineflow up` starts it, on real Redis (klines of a replay of real XRPETH trades) and
PostgreSQL.

What an analyst found: no way to backtest the stored klines, runs listed as "typed rule"
only, statistics under raw column names in a table that scrolled sideways, and no chart for
a run opened again from the list. Here a run over the stored klines is started from the
page, found in the list by its rule, interval and span, opened again in a new session and
drawn, and the page with its statistics is looked at on a phone's screen (390 x 844): no
sideways scroll. Screenshots go to test-output/dashboard-e2e/ (or $KLINEFLOW_TEST_OUTPUT).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from playwright.sync_api import Locator, Page, expect, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from dashboard.data.users import add_user
from flows.dashboard_server import DashboardProcess
from flows.domain.keys import KeySpace
from tests.e2e.fill import XRPETH, replay_into
from tests.e2e.test_dashboard_browser import (
    CHROMIUM_FLAGS,
    PASSWORD,
    chromium_path,
    running_dashboard,
    shot,
)

RULE = "rsi(14) < 35"
INTERVAL = "5m"
WAIT = 60_000  # ms: a rerun on a loaded 2-core machine can take seconds


@pytest.fixture
def backtest_board(
    shared_data: Path,
    redis_url: str,
    keys: KeySpace,
    signals_db: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[DashboardProcess]:
    replay_into([shared_data / XRPETH], redis_url, keys)
    add_user(signals_db, "ana", PASSWORD)
    monkeypatch.setenv("KLINEFLOW_RECORDINGS_DIR", str(tmp_path / "recordings"))
    with running_dashboard(redis_url, signals_db, keys, tmp_path) as proc:
        yield proc


def pick(page: Page, label: str, option: str) -> None:
    page.get_by_test_id("stSelectbox").filter(has_text=label).click()
    page.get_by_role("option", name=option, exact=True).click()


def choose(page: Page, label: str, starting: str) -> Locator:
    """Open the select box `label` and give its option whose text starts with `starting`.
    A rerun of the page (the session's sign-in restored after a load) closes an open box:
    it is opened again until the option shows (bounded)."""
    box = page.get_by_test_id("stSelectbox").filter(has_text=label)
    option = page.get_by_role("option").filter(has_text=re.compile("^" + re.escape(starting)))
    for _ in range(10):
        box.click()
        try:
            option.wait_for(timeout=5_000)
            return option
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
    raise AssertionError(f"no option {starting!r} in {label!r}")


def utc_minute(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def span_of_stored(redis_url: str, keys: KeySpace) -> str:
    """The span the page should list: first stored 5m kline's open, last closed one's close."""
    client = redis.Redis.from_url(redis_url)
    try:
        ((_, first),) = client.zrange(keys.klines("XRPETH", INTERVAL), 0, 0, withscores=True)
        last = int(client.get(keys.last_closed("XRPETH", INTERVAL)))  # type: ignore[arg-type]
    finally:
        client.close()
    return f"{utc_minute(int(first))} → {utc_minute(last + 300_000)}"


def no_sideways_scroll(page: Page) -> dict[str, int]:
    """Neither the page nor its main column scrolls sideways, and the statistics (metrics
    and their table) lie within the screen without a scroll of their own."""
    sizes: dict[str, int] = page.evaluate(
        """() => {
            const main = document.querySelector('[data-testid="stMain"]');
            const boxes = [...document.querySelectorAll(
                '[data-testid="stMetric"], [data-testid="stTable"]')];
            return {page: document.documentElement.scrollWidth, inner: innerWidth,
                    main: main.scrollWidth, mainShown: main.clientWidth,
                    right: Math.max(...boxes.map(b => b.getBoundingClientRect().right)),
                    overflow: boxes.filter(b => b.scrollWidth > b.clientWidth).length,
                    boxes: boxes.length}; }"""
    )
    assert sizes["boxes"] >= 8, sizes  # seven metrics and the table
    assert sizes["page"] <= sizes["inner"] and sizes["main"] <= sizes["mainShown"], sizes
    assert sizes["right"] <= sizes["inner"] and sizes["overflow"] == 0, sizes
    return sizes


@pytest.mark.timeout(600)
def test_a_stored_klines_run_listed_reopened_and_on_a_phone(
    backtest_board: DashboardProcess, redis_url: str, keys: KeySpace
) -> None:
    span = span_of_stored(redis_url, keys)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(60_000)
            page.goto(f"{backtest_board.url}/backtest")
            page.get_by_label("User name").fill("ana")
            page.get_by_label("Password", exact=True).fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_text("Signed in as ana")).to_be_visible(timeout=WAIT)
            expect(page.get_by_text("New run")).to_be_visible(timeout=WAIT)

            # a run over the stored klines, started from the page
            page.get_by_test_id("stRadio").filter(has_text="Data").get_by_text(
                "Stored klines"
            ).click()
            symbols = page.get_by_test_id("stMultiSelect").filter(has_text="Symbols")
            symbols.click()
            page.get_by_role("option", name="XRPETH", exact=True).click()
            page.keyboard.press("Escape")
            expect(symbols).to_contain_text("XRPETH", timeout=WAIT)
            pick(page, "Interval", INTERVAL)
            rule = page.get_by_role("textbox", name="Rule")
            rule.fill(RULE)
            rule.press("Control+Enter")
            start = page.get_by_role("button", name="Start backtest")
            expect(start).to_be_enabled(timeout=WAIT)
            start.click()
            expect(page.get_by_text("This run")).to_be_visible(timeout=WAIT)
            metric = page.get_by_test_id("stMetric").filter(has_text="mean return after 15 bars")
            expect(metric.first).to_be_visible(timeout=WAIT)
            expect(page.get_by_text(re.compile(r"^Run \d+: [\d,]+ stored klines"))).to_be_visible(
                timeout=WAIT
            )
            run_id = int(
                re.search(  # type: ignore[union-attr]
                    r"Run (\d+):", page.get_by_text(re.compile(r"^Run \d+: ")).inner_text()
                )[1]
            )
            page.get_by_text("This run").scroll_into_view_if_needed()
            shot(page, "backtest-1-stored-klines-run")

            # a new session (a reload): the run is listed with its rule, interval and span
            page.reload()
            expect(page.get_by_text("Your runs")).to_be_visible(timeout=WAIT)
            expect(page.get_by_text("This run")).to_have_count(0, timeout=WAIT)
            runs = page.get_by_test_id("stDataFrame")
            expect(runs).to_be_visible(timeout=WAIT)
            listed = f"run {run_id} · {RULE} · {INTERVAL} · {span} UTC"
            option = choose(page, "Open a run", f"run {run_id} ·")
            expect(option).to_have_text(listed, timeout=WAIT)  # the rule, the interval, the span
            option.click()

            # opened again: its statistics and its chart, the klines read from Redis
            expect(page.get_by_text(f"Run {run_id} (done):")).to_be_visible(timeout=WAIT)
            expect(
                page.get_by_text(f"{INTERVAL} · XRPETH · {span} UTC · stored klines")
            ).to_be_visible(timeout=WAIT)
            title = page.locator(
                ".vega-embed svg text", has_text=f"XRPETH {INTERVAL}: backtest signals"
            )
            expect(title).to_be_visible(timeout=WAIT)
            expect(page.locator(".vega-embed g.signals_0_marks path").first).to_be_attached(
                timeout=WAIT
            )
            title.scroll_into_view_if_needed()
            shot(page, "backtest-2-reopened")

            # on a phone: the statistics and the chart fit, the page does not scroll sideways
            page.set_viewport_size({"width": 390, "height": 844})
            expect(metric.first).to_be_visible(timeout=WAIT)
            expect(title).to_be_visible(timeout=WAIT)
            page.get_by_text("Every statistic of this group").click()
            expect(page.get_by_test_id("stTable")).to_be_visible(timeout=WAIT)
            no_sideways_scroll(page)
            page.get_by_text(f"Run {run_id} (done):").scroll_into_view_if_needed()
            shot(page, "backtest-3-phone-statistics")
            page.get_by_test_id("stTable").scroll_into_view_if_needed()
            shot(page, "backtest-4-phone-table")
            title.scroll_into_view_if_needed()
            shot(page, "backtest-5-phone-chart")
        finally:
            browser.close()
