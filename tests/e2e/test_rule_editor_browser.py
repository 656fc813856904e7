"""The Traders page's rule editor in Debian's chromium (Playwright), against one dashboard
process as `klineflow up` starts it, on real Redis (a replay of real XRPETH trades) and
PostgreSQL (the replay's trader wrote signals).

What an analyst found broken there: the rule was checked only when the box lost focus, a
missing ')' read as "expected ','" and was shown under Description, the form kept its values
after Create (a second click: a duplicate name), and a trader could not be deleted. Here a
rule is typed key by key and its error shows up next to it while the box keeps the focus,
goes once fixed; a trader is created and the form is empty; a trader is deleted and its
signals are still listed. Screenshots go to test-output/dashboard-e2e/ (or
$KLINEFLOW_TEST_OUTPUT).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from playwright.sync_api import FrameLocator, Page, expect, sync_playwright

from dashboard.data.users import add_user
from flows.dashboard_server import DashboardProcess
from flows.domain.keys import KeySpace
from flows.signals.book import TraderRow
from flows.signals.store import TraderStore
from tests.e2e.fill import XRPETH, replay_into
from tests.e2e.test_dashboard_browser import (
    CHROMIUM_FLAGS,
    PASSWORD,
    chromium_path,
    running_dashboard,
    shot,
)

BAD = "rsi(14 > 30"
MESSAGE = "missing ')' to close '(' at column 4 (the call of rsi)"


@pytest.fixture
def traders(
    shared_data: Path, redis_url: str, keys: KeySpace, signals_db: str, tmp_path: Path
) -> Iterator[tuple[DashboardProcess, TraderRow, str]]:
    add_user(signals_db, "ana", PASSWORD)
    watch = TraderStore(signals_db).add(
        TraderRow(0, "Browser watch", "close > open", "1m", cooldown_bars=20), owner="ana"
    )
    replay_into([shared_data / XRPETH], redis_url, keys, signals_db)
    with running_dashboard(redis_url, signals_db, keys, tmp_path) as proc:
        yield proc, watch, signals_db


def settled(page: Page, name: str) -> None:
    """A screenshot once the page's run has ended (no faded element of the run before)."""
    expect(page.locator('[data-stale="true"]')).to_have_count(0)
    shot(page, name)


def rule_frame(page: Page) -> FrameLocator:
    return page.frame_locator('iframe[title*="rule_box"]')


def signal_count(url: str, trader_id: int) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM signals WHERE trader_id = %s", (trader_id,))
        found = row.fetchone()
    assert found is not None
    return int(found[0])


def test_type_a_rule_create_and_delete_a_trader(
    traders: tuple[DashboardProcess, TraderRow, str],
) -> None:
    proc, watch, db = traders
    kept = signal_count(db, watch.id)
    assert kept > 0  # the replay's trader fired
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        try:
            page.goto(f"{proc.url}/traders")
            page.get_by_label("User name").fill("ana")
            page.get_by_label("Password", exact=True).fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_text("Signed in as ana")).to_be_visible()
            expect(page.get_by_role("heading", name="Create or edit")).to_be_visible()

            # type a rule key by key: the error shows next to it while the box has the focus
            box = rule_frame(page).get_by_label("Rule")
            box.click()
            box.press_sequentially(BAD, delay=40)
            error = page.get_by_text(f"Rule error at column 12: {MESSAGE}")
            expect(error).to_be_visible()
            expect(box).to_be_focused()
            expect(box).to_have_value(BAD)
            expect(page.locator("pre, code").filter(has_text="           ^").first).to_be_visible()
            frame_box = page.locator('iframe[title*="rule_box"]').bounding_box()
            error_box = error.bounding_box()
            description = page.get_by_label("Description").bounding_box()
            assert frame_box and error_box and description
            below = error_box["y"] - (frame_box["y"] + frame_box["height"])
            assert 0 <= below < 60, (frame_box, error_box)  # right under the rule
            assert description["y"] > error_box["y"] + error_box["height"]
            settled(page, "rule-editor-1-error-while-typing")

            # fix it where it is wrong: after "14"; the error goes, the text stays as typed
            box.press("Home")
            for _ in range(len("rsi(14")):
                box.press("ArrowRight")
            box.press_sequentially(")", delay=40)
            expect(page.get_by_text("The rule compiles.")).to_be_visible()
            expect(error).to_have_count(0)
            expect(box).to_be_focused()
            expect(box).to_have_value("rsi(14) > 30")
            expect(rule_frame(page).locator("#state")).to_have_text("")
            settled(page, "rule-editor-2-fixed")
            # its preview, drawn (with the rule's RSI in a panel: see the screenshot)
            chart = page.locator(".vega-embed").first
            chart.scroll_into_view_if_needed()
            expect(chart).to_be_visible()
            settled(page, "rule-editor-2b-preview")

            # create: the trader is saved, the form is empty for the next one
            name = page.get_by_label("Name", exact=True)
            name.fill("Browser dips")
            name.press("Enter")
            create = page.get_by_role("button", name="Create trader")
            expect(create).to_be_enabled()
            create.click()
            expect(page.get_by_text("Created Browser dips")).to_be_visible()
            # the old form's widgets go once the page's run ends; until then the old Name box
            # (still holding the name) and the new empty one can both be on the page
            filled = page.locator('input[aria-label="Name"][value="Browser dips"]')
            expect(filled).to_have_count(0)
            expect(page.locator('[data-stale="true"]')).to_have_count(0)
            expect(page.get_by_label("Name", exact=True)).to_have_count(1)
            expect(page.get_by_label("Name", exact=True)).to_have_value("")
            expect(rule_frame(page).get_by_label("Rule")).to_have_value("")
            expect(page.get_by_role("button", name="Create trader")).to_be_disabled()
            expect(page.get_by_text("Browser dips · 1m", exact=False)).to_be_visible()
            settled(page, "rule-editor-3-created")

            # delete the replay's trader, confirmed: it goes, its signals stay
            page.locator(f".st-key-trader_remove_{watch.id} button").click()
            expect(page.get_by_text("Delete Browser watch for good?")).to_be_visible()
            settled(page, "rule-editor-4-confirm-delete")
            page.get_by_role("button", name="Yes, delete it").click()
            expect(page.get_by_text("Deleted Browser watch")).to_be_visible()
            expect(page.get_by_text("Browser watch · 1m", exact=False)).to_have_count(0)
            settled(page, "rule-editor-5-deleted")
            assert signal_count(db, watch.id) == kept

            page.get_by_role("link", name="Signals").click()
            expect(page.get_by_text("Latest: Browser watch · XRPETH · 1m")).to_be_visible()
            table = page.get_by_test_id("stDataFrame")
            expect(table).to_be_visible()
            expect(table.get_by_text("Browser watch").first).to_be_attached()
            settled(page, "rule-editor-6-signals-kept")
        finally:
            browser.close()
