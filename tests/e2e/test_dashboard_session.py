"""The session that stays, in Debian's chromium (Playwright) against the dashboard process:
the token kept in a SameSite=Strict cookie signs a reload, a new tab and a shared `?signal=`
link in; signing out clears it and ends the session, so another tab is signed out at its next
load; an expired or revoked token signs nobody in. And a new signal raises a toast on a page
that is not Signals. Every step waits for a state, never for a time."""

from __future__ import annotations

import psycopg
import redis
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright

from flows.dashboard_server import DashboardProcess
from flows.signals.engine import Fire
from flows.signals.store import SignalWriter
from tests.e2e.test_dashboard_browser import CHROMIUM_FLAGS, PASSWORD, chromium_path, dashboard

__all__ = ["dashboard"]  # the fixture, shared with the first browser test
COOKIE = "klineflow_session"
HAS_COOKIE = f"document.cookie.includes('{COOKIE}=')"


def write_signal(db: str, trader_id: int, minute: int) -> str:
    open_ms = 1_570_752_000_000 + minute * 60_000
    sid = f"{trader_id}-XRPETH-1m-{open_ms}"
    fire = Fire(sid, trader_id, 1, "XRPETH", "1m", open_ms, open_ms + 59_999, open_ms,
                "0.00141500", {"close": 0.001415}, 0)  # fmt: skip
    writer = SignalWriter(db, record_latency=False)
    try:
        assert writer.write([fire])
    finally:
        writer.close()
    return sid


def sign_in(page: Page) -> None:
    page.get_by_label("User name").fill("ana")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Signed in as ana")).to_be_visible()
    page.wait_for_function(HAS_COOKIE)


def signed_out(page: Page) -> None:
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    expect(page.get_by_text("Signed in as ana")).to_have_count(0)


def session_cookie(context: BrowserContext) -> dict[str, object] | None:
    found = [c for c in context.cookies() if c["name"] == COOKIE]
    return dict(found[0]) if found else None


def test_the_session_stays_until_sign_out_or_its_end(
    dashboard: tuple[DashboardProcess, int], signals_db: str, redis_client: redis.Redis
) -> None:
    proc, trader_id = dashboard
    sid = write_signal(signals_db, trader_id, 3)
    market = f"{proc.url}/market?symbol=XRPETH&interval=1m"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        context.set_default_timeout(30_000)
        try:
            page = context.new_page()
            page.goto(market)
            signed_out(page)
            sign_in(page)
            cookie = session_cookie(context)
            assert cookie is not None
            assert cookie["sameSite"] == "Strict" and cookie["path"] == "/"
            assert cookie["expires"] > 0  # not a browser-session cookie: it ends with the session

            page.reload()  # a reload
            expect(page.get_by_text("Signed in as ana")).to_be_visible()

            other = context.new_page()  # a new tab, opened on a shared link to a signal
            other.goto(f"{market}&open_ms={1_570_752_000_000 + 3 * 60_000}&signal={sid}")
            expect(other.get_by_text("Signed in as ana")).to_be_visible()
            expect(other.get_by_text("Sign in to see this signal")).to_have_count(0)
            other.goto(f"{proc.url}/signals")
            expect(other.get_by_text("Latest: Browser watch · XRPETH · 1m")).to_be_visible()

            # a new signal: a toast on Market (not the Signals page)
            expect(page.locator(".vega-embed").first).to_be_visible()
            write_signal(signals_db, trader_id, 9)
            toast = page.get_by_text("New signal: Browser watch · XRPETH · 1m", exact=False)
            expect(toast.first).to_be_visible(timeout=20_000)

            # signing out in one tab clears the cookie; the other is signed out at its reload
            page.get_by_role("button", name="Sign out").click()
            signed_out(page)
            page.wait_for_function(f"!{HAS_COOKIE}")
            assert session_cookie(context) is None
            other.reload()
            signed_out(other)
            with psycopg.connect(signals_db) as conn:
                row = conn.execute("SELECT count(*) FROM sessions").fetchone()
            assert row == (0,)  # ended in PostgreSQL too

            # an expired token, then a revoked one, sign nobody in
            for end in (
                "UPDATE sessions SET expires_at = now() - interval '1 second'",
                "DELETE FROM sessions",
            ):
                sign_in(page)
                with psycopg.connect(signals_db) as conn:
                    conn.execute(end)
                page.reload()
                signed_out(page)
                expect(page.get_by_text("Your session ended: sign in again")).to_be_visible()
                page.wait_for_function(f"!{HAS_COOKIE}")
        finally:
            browser.close()
