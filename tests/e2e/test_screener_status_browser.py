"""Status, Screener and Signals in Debian's chromium (Playwright), against one dashboard
process for the module (as `klineflow up` starts it), on real Redis and PostgreSQL: 40
symbols with a day of 1m klines each (made up, seeded), a live flow's heartbeat written by
the test, and signals of a trader of ana's.

What an analyst found there: Status a frozen snapshot (a dead flow looked alive), a
Screener that never refreshed, showed 10 of 40 rows and led nowhere, the Signals filters
filling a phone's first screen, and emoji drawn as empty boxes. Every step waits for a state
on the page, never for a time. Screenshots go to test-output/dashboard-e2e/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import redis
from playwright.sync_api import BrowserContext, FloatRect, Page, expect

from dashboard.data.users import add_user
from flows.app.health import FeedState, FlowHeartbeat
from flows.dashboard_server import DashboardProcess
from flows.domain.clock import SYSTEM_CLOCK
from flows.domain.keys import KeySpace
from flows.signals.book import TraderRow
from flows.signals.engine import Fire
from flows.signals.store import SignalWriter, TraderStore
from flows.storage.migrations import apply_migrations
from tests.conftest import NewDatabase
from tests.dashboard.synthetic_klines import write_symbols
from tests.e2e.fill import drop_namespace
from tests.e2e.test_dashboard_browser import (
    PASSWORD,
    output_dir,
    running_dashboard,
    shot,
)
from tests.e2e.test_dashboard_session import HAS_COOKIE

SYMBOLS = [f"C{i:02d}USDT" for i in range(40)]
ROW_PX = 35  # Streamlit's default row height in a dataframe


class Setup:
    """The module's servers and what the tests write into them."""

    def __init__(
        self, proc: DashboardProcess, redis_url: str, keys: KeySpace, least_traded: str
    ) -> None:
        self.proc = proc
        self.least_traded = least_traded
        self.url = proc.url
        self.redis = redis.Redis.from_url(redis_url)
        self.redis_url = redis_url
        self.keys = keys

    def heartbeat(self, age_ms: int) -> None:
        """The live flow's heartbeat, as written `age_ms` ago."""
        ts = SYSTEM_CLOCK.now_ms() - age_ms
        beat = FlowHeartbeat(ts_ms=ts, started_ms=ts - 60_000, state="running",
                             feeds=(FeedState("0", "connected", 40, 0.3),))  # fmt: skip
        self.redis.hset(self.keys.heartbeat, mapping=beat.encode())  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def setup(
    redis_url: str, new_database: NewDatabase, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Setup]:
    keys = KeySpace(f"e2escreener{SYSTEM_CLOCK.now_ms()}")
    database_url = new_database()
    apply_migrations(database_url)
    days = write_symbols(redis_url, keys, SYMBOLS, SYSTEM_CLOCK.now_ms() // 60_000 * 60_000)
    least_traded = min(SYMBOLS, key=lambda s: (sum(k.quote_volume for k in days[s]), s))
    add_user(database_url, "ana", PASSWORD)
    trader = TraderStore(database_url).add(
        TraderRow(0, "Phone watch", "close > open", "1m", cooldown_bars=0), owner="ana"
    )
    writer = SignalWriter(database_url, record_latency=False)
    base = SYSTEM_CLOCK.now_ms() // 60_000 * 60_000 - 30 * 60_000
    fires = [
        Fire(f"{trader.id}-C00USDT-1m-{base + i * 60_000}", trader.id, 1, "C00USDT", "1m",
             base + i * 60_000, base + i * 60_000 + 59_999, base + i * 60_000, "1.00000000",
             {"close": 1.0}, 0)
        for i in range(12)
    ]  # fmt: skip
    assert writer.write(fires)
    writer.close()
    tmp = tmp_path_factory.mktemp("dashboard")
    with running_dashboard(redis_url, database_url, keys, tmp) as proc:
        found = Setup(proc, redis_url, keys, least_traded)
        yield found
        found.redis.close()
    drop_namespace(redis_url, keys)


def grid_box(page: Page, index: int = 0) -> FloatRect:
    """Where the page's index-th dataframe is drawn (its canvas), in the viewport."""
    canvas = page.get_by_test_id("data-grid-canvas").nth(index)
    expect(canvas).to_be_visible()
    box = canvas.bounding_box()
    assert box is not None
    return box


def row_middle(box: FloatRect, row: int) -> float:
    """The vertical middle of a data row (0: the first) of a grid drawn at `box`."""
    return box["y"] + ROW_PX * (row + 1) + ROW_PX / 2


def test_status_follows_the_heartbeat_without_a_reload(
    setup: Setup, context: BrowserContext
) -> None:
    setup.heartbeat(age_ms=0)
    page = context.new_page()
    page.goto(f"{setup.url}/status")
    expect(page.get_by_text("Healthy.", exact=True)).to_be_visible()
    page.evaluate("() => { window.klineflowLoaded = 'once'; }")  # gone if the page reloads
    age = page.get_by_test_id("stMetricDelta").filter(has_text=re.compile(r"^heartbeat "))
    first = age.inner_text()
    # nothing rewrites the heartbeat: its age grows on the page by itself
    expect(age).not_to_have_text(first, timeout=20_000)
    shot(page, "status-1-healthy")

    # the flow died a minute ago: the page says so by itself
    setup.heartbeat(age_ms=60_000)
    expect(page.get_by_text(re.compile(r"^Not healthy: no heartbeat for \d+ s"))).to_be_visible()
    expect(page.get_by_text("Healthy.", exact=True)).to_have_count(0)
    expect(age).to_have_text(re.compile(r"heartbeat (6\d|[7-9]\d|1\d\d) s ago"))
    shot(page, "status-2-dead-flow")

    setup.heartbeat(age_ms=0)  # and back
    expect(page.get_by_text("Healthy.", exact=True)).to_be_visible()
    assert page.evaluate("() => window.klineflowLoaded") == "once"
    icon = page.evaluate("() => document.querySelector('link[rel~=icon]').href")
    assert icon.startswith("data:image/svg+xml"), icon[:80]  # our SVG, no emoji


def test_screener_every_row_a_link_refreshing_with_its_filter(
    setup: Setup, context: BrowserContext
) -> None:
    page = context.new_page()
    page.goto(f"{setup.url}/screener")
    caption = page.get_by_text(re.compile(r"^\d+ of \d+ symbols"))
    expect(caption).to_contain_text("40 of 40 symbols")

    # every row is on the page: the table has no scroll of its own, the page scrolls to it
    scroller = page.locator("[data-testid=stDataFrame] .dvn-scroller").first
    inner = scroller.evaluate("e => ({scroll: e.scrollHeight, shown: e.clientHeight})")
    assert inner["scroll"] <= inner["shown"], inner
    box = grid_box(page)
    assert box["height"] >= ROW_PX * (len(SYMBOLS) + 1), box
    caption.scroll_into_view_if_needed()  # the caption is under the table
    box = grid_box(page)
    last = row_middle(box, len(SYMBOLS) - 1)
    assert 0 < last < page.viewport_size["height"], (box, last)  # type: ignore[index]
    shot(page, "screener-1-last-rows")

    # the last (least traded) symbol's link opens Market on it
    with context.expect_page() as opened:
        page.mouse.move(box["x"] + 30, last)
        page.mouse.click(box["x"] + 30, last)
    market = opened.value
    market.wait_for_load_state()
    expect(market).to_have_url(f"{setup.url}/market?symbol={setup.least_traded}&interval=1m")
    picked = market.get_by_role("combobox", name="Symbol")
    expect(picked).to_have_value(setup.least_traded)  # Market took the symbol
    shot(market, "screener-2-market-opened")
    market.close()

    # a filter, then a new symbol: the table refreshes by itself and keeps the filter
    page.get_by_label("Filter symbols").fill("C1")
    page.get_by_label("Filter symbols").press("Enter")
    expect(caption).to_contain_text("10 of 40 symbols")
    write_symbols(
        setup.redis_url, setup.keys, ["C1XUSDT"], SYSTEM_CLOCK.now_ms() // 60_000 * 60_000
    )
    expect(caption).to_contain_text("11 of 41 symbols", timeout=30_000)
    expect(page.get_by_label("Filter symbols")).to_have_value("C1")
    shot(page, "screener-3-refreshed")


def test_signals_on_a_phone_show_a_signal_on_the_first_screen(
    setup: Setup, context: BrowserContext
) -> None:
    page = context.new_page()
    page.goto(f"{setup.url}/signals")
    page.get_by_label("User name").fill("ana")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Signed in as ana")).to_be_visible()
    page.wait_for_function(HAS_COOKIE)
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{setup.url}/signals")  # the session cookie keeps ana signed in
    expect(page.get_by_text("Latest: Phone watch · C00USDT · 1m")).to_be_visible()
    filters = page.get_by_test_id("stExpander").filter(has_text="Filters")
    expect(filters).to_be_visible()
    expect(page.get_by_text("Trader", exact=True)).not_to_be_visible()  # collapsed
    box = grid_box(page)
    assert row_middle(box, 0) + ROW_PX / 2 <= 844, box  # the first signal's row is on screen
    page.screenshot(path=str(output_dir() / "signals-1-phone.png"))
    filters.get_by_text("Filters").click()  # the filters are one tap away
    expect(page.get_by_text("Trader", exact=True)).to_be_visible()
    page.screenshot(path=str(output_dir() / "signals-2-phone-filters.png"))
