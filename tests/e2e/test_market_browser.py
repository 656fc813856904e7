"""The Market page in Debian's chromium (Playwright), against one dashboard process for the
module, as `klineflow up` starts it, on real Redis (klines of XRPETH and of BTC, ETH and DOT
from replays of real recordings, and AAAUSDT: XRPETH's klines again with a thousandth of
their quote volume) and PostgreSQL (signals the replay's trader wrote).

What an analyst found broken there: every second Symbol / Interval pick undone, tooltip
times shown as "NaN", the overlay legend printed once per overlay over the candles, settings
lost on reload; then a chart that did not read like a trading terminal: no crosshair or
readout, prices fitted to the whole table after a zoom, no last price, ticks between candle
opens, price labels over the candles, a fixed width elsewhere, the first symbol by name
opened rather than the most traded. Screenshots go to test-output/dashboard-e2e/ (or
$KLINEFLOW_TEST_OUTPUT).

The chart's own state (scales, data, drawn marks) is read from its Vega view: the page's
React tree holds it (`VIEW_JS`), whichever renderer (SVG or canvas) Streamlit picked.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
from playwright.sync_api import BrowserContext, Locator, Page, expect

from dashboard.data.users import add_user
from dashboard.ui.chart_terminal import DOWN, UP
from flows.dashboard_server import DashboardProcess
from flows.domain.clock import SYSTEM_CLOCK
from flows.domain.keys import KeySpace
from flows.domain.kline import kline_of_row
from flows.signals.book import TraderRow
from flows.signals.store import TraderStore
from flows.storage.migrations import apply_migrations
from flows.storage.redis_klines import KlineWriter
from tests.conftest import NewDatabase
from tests.e2e.fill import XRPETH, drop_namespace, replay_into
from tests.e2e.test_dashboard_browser import (
    PASSWORD,
    running_dashboard,
    shot,
)
from tests.e2e.vega_view import (
    MARKS,
    ask,
    domain,
    group_box,
    in_view,
    items,
    marks,
    wait_for_view,
    x_pixel,
)


class Market:
    """The module's dashboard and the Redis it reads."""

    def __init__(self, proc: DashboardProcess, redis_url: str, keys: KeySpace) -> None:
        self.proc = proc
        self.url = proc.url
        self.redis_url = redis_url
        self.keys = keys

    def rows(self, symbol: str, interval: str) -> list[list[Any]]:
        """The stored klines, oldest first, as Binance prints them."""
        client = redis.Redis.from_url(self.redis_url)
        try:
            members = client.zrange(self.keys.klines(symbol, interval), 0, -1)
        finally:
            client.close()
        return [json.loads(m) for m in members]

    def symbols(self) -> list[str]:
        client = redis.Redis.from_url(self.redis_url)
        try:
            return sorted(s.decode() for s in client.smembers(self.keys.symbols))
        finally:
            client.close()


def copy_with_quote_scaled(redis_url: str, keys: KeySpace, source: str, name: str) -> None:
    client = redis.Redis.from_url(redis_url)
    writer = KlineWriter(client, keys=keys)
    try:
        for interval in ("1m", "5m"):
            rows = [json.loads(m) for m in client.zrange(keys.klines(source, interval), 0, -1)]
            klines = [kline_of_row(r) for r in rows]
            writer.add_many(
                name,
                [(interval, k._replace(quote_volume=k.quote_volume // 1000)) for k in klines],
                closed=True,
            )
        writer.flush()
    finally:
        client.close()


@pytest.fixture(scope="module")
def market(
    shared_data: Path,
    redis_url: str,
    new_database: NewDatabase,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Market]:
    keys = KeySpace(f"e2emarket{SYSTEM_CLOCK.now_ms()}")
    signals_db = new_database()
    apply_migrations(signals_db)
    add_user(signals_db, "ana", PASSWORD)
    TraderStore(signals_db).add(
        TraderRow(0, "Browser watch", "close > open", "1m", cooldown_bars=20), owner="ana"
    )
    paths = [shared_data / XRPETH, shared_data / "ws-capture-2021-04-04-btc-eth-dot.txt"]
    replay_into(paths, redis_url, keys, signals_db)
    copy_with_quote_scaled(redis_url, keys, "XRPETH", "AAAUSDT")
    tmp = tmp_path_factory.mktemp("market-dashboard")
    with running_dashboard(redis_url, signals_db, keys, tmp) as proc:
        yield Market(proc, redis_url, keys)
    drop_namespace(redis_url, keys)


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
    market: Market, context: BrowserContext
) -> None:
    page = context.new_page()
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


def test_signal_marker_tooltip_signed_in(market: Market, context: BrowserContext) -> None:
    page = context.new_page()
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


def chart_shot(page: Page, name: str) -> None:
    """A screenshot with the chart scrolled into sight."""
    page.locator(".vega-embed").first.scroll_into_view_if_needed()
    shot(page, name)


SIZES = """() => { const e = document.querySelector('.vega-embed');
    const drawn = (e.querySelector('canvas') || e.querySelector('svg')).getBoundingClientRect();
    return {page: document.documentElement.scrollWidth, inner: innerWidth,
            chart: e.scrollWidth, shown: e.clientWidth, right: drawn.right}; }"""


def fits(sizes: dict[str, float]) -> bool:
    return (
        sizes["page"] <= sizes["inner"]
        and sizes["chart"] <= sizes["shown"]
        and sizes["right"] <= sizes["inner"]
    )


def test_the_chart_fits_a_phone_screen(market: Market, context: BrowserContext) -> None:
    """At 390 px the chart is as wide as the page's column: no sideways scroll, neither of
    the page nor of the chart."""
    page = context.new_page()
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{market.url}/market?symbol=XRPETH&interval=1m&overlays=ema,bb&panels=rsi,macd")
    expect(chart_title(page, "XRPETH 1m")).to_be_visible()
    expect(page.locator(".vega-embed g.role-legend")).to_have_count(3)  # overlays, RSI, MACD
    sizes = page.evaluate(SIZES)
    assert fits(sizes), sizes
    pick(page, "Interval", "5m")
    expect(chart_title(page, "XRPETH 5m")).to_be_visible()
    chart_shot(page, "market-5-phone")


def test_a_traders_preview_chart_fits_a_phone_screen(
    market: Market, context: BrowserContext
) -> None:
    """Traders' preview draws with `chart_spec` and Streamlit's default width: as wide as
    its column too (it was 860 px at any screen width), at 390 px once the page shrinks."""
    page = context.new_page()
    page.goto(f"{market.url}/traders")
    page.get_by_label("User name").fill("ana")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Signed in as ana")).to_be_visible()
    box = page.frame_locator('iframe[title*="rule_box"]').get_by_label("Rule")
    box.click()
    box.press_sequentially("close > open", delay=20)
    title = page.locator(".vega-embed svg text", has_text=re.compile(r": preview$"))
    expect(title).to_be_visible()
    wide = page.evaluate(SIZES)
    assert fits(wide) and wide["shown"] == page.evaluate(
        "() => document.querySelector('.vega-embed').parentElement.clientWidth"
    ), wide
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_function(f"() => ({SIZES})().right <= innerWidth")
    expect(title).to_be_visible()
    sizes = page.evaluate(SIZES)
    assert fits(sizes) and sizes["shown"] < wide["shown"], (wide, sizes)
    chart_shot(page, "market-9-traders-preview-phone")


READOUT = re.compile(
    r"^(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d) UTC  V (?P<v>[\d,.]+)\n"
    r"O (?P<o>[\d,.]+)  H (?P<h>[\d,.]+)\nL (?P<l>[\d,.]+)  C (?P<c>[\d,.]+)$"
)


def utc_minute(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")


def number(text: str) -> Decimal:
    return Decimal(text.replace(",", ""))


def readout(page: Page) -> str:
    (item,) = items(page, "readout_0")
    return str(item["text"])


def wait_for_readout(page: Page, starts: str) -> dict[str, str]:
    page.wait_for_function(
        in_view(f"const r = ({MARKS})(view, {{prefix: 'readout_0'}});"
                "return r.length > 0 && r[0].items.length === 1"
                " && r[0].items[0].text.startsWith(arg);"),
        arg=starts,
    )  # fmt: skip
    found = READOUT.match(readout(page))
    assert found, readout(page)
    return found.groupdict()


def time_label(ms: int) -> str:
    """What the time axis prints at a tick: the time, or the day at midnight, the month on
    its first day, the year on January 1st."""
    at = datetime.fromtimestamp(ms / 1000, tz=UTC)
    if (at.hour, at.minute, at.second) != (0, 0, 0):
        return at.strftime("%H:%M")
    if at.day != 1:
        return at.strftime("%d %b")
    return at.strftime("%b") if at.month != 1 else at.strftime("%Y")


def check_ticks_on_opens(page: Page, interval_ms: int) -> int:
    """Every time label shown stands on a drawn kline's open (its wick), and names it."""
    wicks = {int(i["t"]): i["x"] for i in items(page, "wicks_0")}
    labels = [
        i
        for m in marks(page, role="axis-label")
        for i in m["items"]
        if i["value"] is not None and i["value"] > 1e12 and i["opacity"] > 0
    ]
    assert labels, "no time label shown"
    for label in labels:
        at = int(label["value"])
        assert at % interval_ms == 0 and at in wicks, (label, sorted(wicks)[:3])
        assert abs(label["x"] - wicks[at]) < 0.5, (label, wicks[at])
        assert label["text"] == time_label(at)
    return len(labels)


def most_traded(market: Market) -> str:
    """The symbol with the highest quote volume over its newest day of 1m klines."""
    volume = {s: sum(float(r[7]) for r in market.rows(s, "1m")[-1440:]) for s in market.symbols()}
    return min(volume, key=lambda s: (-volume[s], s))


def test_a_trading_terminal_chart(market: Market, context: BrowserContext) -> None:
    page = context.new_page()
    # no symbol asked for: the most traded one, not the first by name (AAAUSDT)
    busiest = most_traded(market)
    assert busiest != market.symbols()[0]
    page.goto(f"{market.url}/market")
    expect(chart_title(page, f"{busiest} 1m")).to_be_visible()
    expect(page).to_have_url(re.compile(rf"symbol={busiest}"))

    page.goto(f"{market.url}/market?symbol=XRPETH&interval=5m&limit=100&panels=rsi")
    expect(chart_title(page, "XRPETH 5m")).to_be_visible()
    wait_for_view(page)
    stored = market.rows("XRPETH", "5m")[-100:]
    assert ask(page, "view.data('klines').map(r => r.t)") == [r[0] for r in stored]
    price = group_box(page, "price_group")

    # the crosshair: pointing at a kline prints its time and prices, a rule in every view
    kline = stored[60]
    at = x_pixel(page, kline[0])
    page.mouse.move(price["left"] + at, price["top"] + price["height"] * 0.6)
    got = wait_for_readout(page, utc_minute(kline[0]))
    assert [number(got[k]) for k in "ohlc"] == [Decimal(str(v)) for v in kline[1:5]]
    assert abs(float(number(got["v"])) - float(kline[5])) < 0.005
    rules = marks(page, "crosshair_time")
    assert sorted(m["view"] for m in rules) == ["panel_RSI_group", "price_group", "volume_group"]
    for rule in rules:
        (item,) = rule["items"]
        assert abs(item["x"] - at) < 0.5
    (tag,) = items(page, "crosshair_price_tag_0")
    assert number(str(tag["text"])) == Decimal(str(kline[4]))
    chart_shot(page, "market-6-crosshair")
    # pointing at the volume view picks its kline too
    volume = group_box(page, "volume_group")
    other = stored[30]
    page.mouse.move(volume["left"] + x_pixel(page, other[0]), volume["top"] + 4)
    wait_for_readout(page, utc_minute(other[0]))
    # away from the chart: the newest kline
    page.mouse.move(2, 2)
    got = wait_for_readout(page, utc_minute(stored[-1][0]))
    assert number(got["c"]) == Decimal(str(stored[-1][4]))

    # the last price: a tag at the right edge, in the colour of the newest kline's direction
    last = stored[-1]
    (label,) = items(page, "last_price_0")
    assert number(str(label["text"])) == Decimal(str(last[4]))
    (box,) = items(page, "last_price_box")
    assert box["fill"] == (UP if Decimal(str(last[4])) >= Decimal(str(last[1])) else DOWN)
    assert abs(label["x"] - price["width"]) < 0.5 and abs(box["x2"] - price["width"]) < 0.5

    # time ticks on kline opens; price labels right of the candles, none over them
    check_ticks_on_opens(page, 300_000)
    plot_end = float(ask(page, "view.scale('x').range()[1]"))
    assert plot_end < price["width"]
    prices = [
        i
        for m in marks(page, role="axis-label")
        if m["view"] == "price_group"
        for i in m["items"]
        if i["value"] is not None and i["value"] < 1e12 and i["opacity"] > 0
    ]
    assert prices and all(i["x"] >= plot_end for i in prices)
    assert all(i["x"] + i["width"] <= plot_end + 0.5 for i in items(page, "candles_0"))
    chart_shot(page, "market-7-last-price")

    # zoom in where prices moved least: the price axis spans the klines in sight only
    def spread(rows: list[list[Any]]) -> float:
        return max(float(r[2]) for r in rows) - min(float(r[3]) for r in rows)

    middle = min(range(20, 80), key=lambda i: spread(stored[i - 8 : i + 8]))
    full = domain(page, "price_y")
    span = domain(page, "x")
    price = group_box(page, "price_group")  # where it is now (the screenshot scrolled)
    page.mouse.move(price["left"] + x_pixel(page, stored[middle][0]), price["top"] + 100)
    while span[1] - span[0] > 20 * 300_000:
        page.mouse.wheel(0, -240)
        page.wait_for_function(
            in_view("return view.scale('x').domain()[1] - view.scale('x').domain()[0] < arg;"),
            arg=span[1] - span[0],
        )
        span = domain(page, "x")
    page.mouse.move(2, 2)
    sight = [r for r in stored if span[0] <= r[0] <= span[1]]
    low, high = min(float(r[3]) for r in sight), max(float(r[2]) for r in sight)
    assert spread(sight) < 0.8 * spread(stored)  # the zoom left the extremes out
    page.wait_for_function(
        in_view("const d = view.scale('price_y').domain(); return d[1] - d[0] < arg;"),
        arg=(full[1] - full[0]) * 0.9,
    )
    fitted = domain(page, "price_y")
    assert fitted[0] <= low and fitted[1] >= high, (fitted, low, high)
    assert fitted[1] - fitted[0] <= 1.5 * (high - low), (fitted, low, high)
    assert {int(i["t"]) for i in items(page, "candles_0")} == {r[0] for r in sight}
    # the newest kline out of sight: its price waits on its tag at the view's edge
    (label,) = items(page, "last_price_0")
    assert number(str(label["text"])) == Decimal(str(last[4]))
    assert 0 < label["y"] < price["height"]
    check_ticks_on_opens(page, 300_000)
    chart_shot(page, "market-8-zoomed")
