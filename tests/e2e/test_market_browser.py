"""The Market page in Debian's chromium (Playwright), against the dashboard process as
`klineflow up` starts it, on real Redis (klines of XRPETH and of BTC, ETH and DOT from
replays of real recordings) and PostgreSQL (signals the replay's trader wrote).

What an analyst found broken there: every second Symbol / Interval pick undone, tooltip
times shown as "NaN", the overlay legend printed once per overlay over the candles, settings
lost on reload. Screenshots go to test-output/dashboard-e2e/ (or $KLINEFLOW_TEST_OUTPUT).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from dashboard.data.users import add_user
from flows.dashboard_server import DashboardProcess
from flows.dataflows.replay import ReplayJob, run_replay
from flows.domain.keys import KeySpace
from flows.signals.book import TraderRow
from flows.signals.store import TraderStore
from tests.e2e.test_dashboard_browser import (
    CHROMIUM_FLAGS,
    PASSWORD,
    chromium_path,
    running_dashboard,
    shot,
)


@pytest.fixture
def market(
    shared_data: Path, redis_url: str, keys: KeySpace, signals_db: str, tmp_path: Path
) -> Iterator[DashboardProcess]:
    add_user(signals_db, "ana", PASSWORD)
    TraderStore(signals_db).add(
        TraderRow(0, "Browser watch", "close > open", "1m", cooldown_bars=20), owner="ana"
    )
    run_replay(
        ReplayJob(
            paths=[
                shared_data / "XRPETH-aggTrades-20191011-20191013.csv",
                shared_data / "ws-capture-2021-04-04-btc-eth-dot.txt",
            ],
            redis_url=redis_url,
            intervals=("1m", "5m"),
            keys=keys,
            database_url=signals_db,
        )
    )
    with running_dashboard(redis_url, signals_db, keys, tmp_path) as proc:
        yield proc


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        found = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        try:
            yield found
        finally:
            found.close()


def chart_title(page: Page, title: str) -> Locator:
    """The chart's title as Vega drew it (the chart of that symbol and interval is shown)."""
    return page.locator(".vega-embed svg text", has_text=re.compile(rf"^{re.escape(title)}$"))


def pick(page: Page, label: str, option: str) -> None:
    page.get_by_test_id("stSelectbox").filter(has_text=label).click()
    page.get_by_role("option", name=option, exact=True).click()


def add_option(page: Page, label: str, option: str) -> None:
    box = page.get_by_test_id("stMultiSelect").filter(has_text=label)
    box.click()
    page.get_by_role("option", name=option, exact=True).click()
    page.keyboard.press("Escape")
    expect(box).to_contain_text(option)


def tooltip_after_hovering(page: Page, marks: str) -> str:
    """Hover the first mark of the Vega mark group `marks` that has an area, and read the
    tooltip Vega shows for it."""
    index = page.evaluate(
        """(marks) => [...document.querySelectorAll(`g.${marks} path`)]
            .findIndex(p => p.getBBox().height > 3 && p.getBBox().width >= 1.5)""",
        marks,
    )
    assert index >= 0, f"no {marks} mark large enough to hover"
    page.locator(f"g.{marks} path").nth(index).hover()
    tip = page.locator("#vg-tooltip-element")
    expect(tip).to_be_visible()
    return tip.inner_text()


def test_picks_in_a_row_tooltips_one_legend_and_a_reload(
    market: DashboardProcess, browser: Browser
) -> None:
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.set_default_timeout(30_000)
    page.goto(f"{market.url}/market?symbol=XRPETH&interval=1m")
    expect(chart_title(page, "XRPETH 1m")).to_be_visible()

    # three picks in a row of each box, each one drawn (the bug undid every second one)
    symbol, interval = "XRPETH", "1m"
    for box, value in [
        ("Symbol", "BTCUSDT"),
        ("Symbol", "ETHUSDT"),
        ("Symbol", "DOTUSDT"),
        ("Interval", "5m"),
        ("Interval", "1m"),
        ("Interval", "5m"),
    ]:
        pick(page, box, value)
        symbol, interval = (value, interval) if box == "Symbol" else (symbol, value)
        expect(chart_title(page, f"{symbol} {interval}")).to_be_visible()
        expect(page).to_have_url(re.compile(rf"symbol={symbol}&interval={interval}"))
    shot(page, "market-1-picks")

    # three overlays: one legend, above the plot (none drawn over the candles)
    pick(page, "Symbol", "XRPETH")
    expect(chart_title(page, "XRPETH 5m")).to_be_visible()
    for overlay in ("EMA", "Bollinger bands", "VWAP"):
        add_option(page, "Overlays", overlay)
    expect(page).to_have_url(re.compile(r"overlays=ema(,|%2C)bb(,|%2C)vwap"))
    legends = page.locator(".vega-embed g.role-legend")
    expect(legends).to_have_count(1)
    expect(legends).to_contain_text("VWAP")
    plot_top = page.locator(".vega-embed g.candles_0_marks").bounding_box()
    legend_box = legends.bounding_box()
    assert plot_top is not None and legend_box is not None
    assert legend_box["y"] + legend_box["height"] <= plot_top["y"]
    shot(page, "market-2-overlays")

    # a candle's tooltip prints its open time in UTC
    text = tooltip_after_hovering(page, "candles_0_marks")
    assert "NaN" not in text
    assert re.search(r"open \(UTC\)\s+20\d\d-\d\d-\d\d \d\d:\d\d:00", text), text

    # a reload keeps every setting (they are in the URL)
    address = page.url
    page.reload()
    expect(chart_title(page, "XRPETH 5m")).to_be_visible()
    assert page.url == address
    expect(page.get_by_test_id("stMultiSelect").filter(has_text="Overlays")).to_contain_text(
        "Bollinger bands"
    )
    expect(page.locator(".vega-embed g.role-legend")).to_have_count(1)
    shot(page, "market-3-reloaded")


def test_signal_marker_tooltip_signed_in(market: DashboardProcess, browser: Browser) -> None:
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.set_default_timeout(30_000)
    page.goto(f"{market.url}/market?symbol=XRPETH&interval=1m&limit=100")
    page.get_by_label("User name").fill("ana")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Signed in as ana")).to_be_visible()
    expect(page.locator(".vega-embed g.signals_0_marks path").first).to_be_attached()
    text = tooltip_after_hovering(page, "signals_0_marks")
    assert "NaN" not in text
    assert re.search(r"kline \(UTC\)\s+20\d\d-\d\d-\d\d \d\d:\d\d", text), text
    assert "Browser watch" in text
    shot(page, "market-4-signal-tooltip")


def test_the_chart_fits_a_phone_screen(market: DashboardProcess, browser: Browser) -> None:
    """At 390 px the chart is as wide as the page's column: no sideways scroll, neither of
    the page nor of the chart."""
    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.set_default_timeout(30_000)
    page.goto(f"{market.url}/market?symbol=XRPETH&interval=1m&overlays=ema,bb&panels=rsi,macd")
    expect(chart_title(page, "XRPETH 1m")).to_be_visible()
    expect(page.locator(".vega-embed g.role-legend")).to_have_count(3)  # overlays, RSI, MACD
    sizes = page.evaluate(
        """() => { const e = document.querySelector('.vega-embed');
            const svg = e.querySelector('svg').getBoundingClientRect();
            return {page: document.documentElement.scrollWidth, inner: innerWidth,
                    chart: e.scrollWidth, shown: e.clientWidth, right: svg.right}; }"""
    )
    assert sizes["page"] <= sizes["inner"], sizes
    assert sizes["chart"] <= sizes["shown"] and sizes["right"] <= sizes["inner"], sizes
    pick(page, "Interval", "5m")
    expect(chart_title(page, "XRPETH 5m")).to_be_visible()
    shot(page, "market-5-phone")
