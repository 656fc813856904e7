"""The session kept by the browser (dashboard.ui.auth): the cookie the page writes, a new
browser session resumed from the token the browser sent, a dead token cleared. AppTest has
no browser, so the token the browser would send is put in `auth.cookie_token`'s place; the
browser itself is tests/e2e/test_dashboard_session.py."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import psycopg
import pytest

from dashboard.data.db import Session
from dashboard.ui import auth
from dashboard.ui.common import USER_ID
from tests.dashboard.conftest import Filled, make_app, no_exceptions, session_for

TOKEN = "0123456789abcdef" * 4


def scripts(at: object) -> list[str]:
    return [e.proto.body for e in at.sidebar.get("html")]  # type: ignore[attr-defined]


def test_the_cookie_script_sets_and_clears_a_strict_cookie() -> None:
    session = Session(1, "ana", TOKEN, datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC))
    written = auth.cookie_script(session)
    assert f'"klineflow_session={TOKEN}; Path=/; SameSite=Strict; ' in written
    assert "Expires=Wed, 02 Jan 2030 03:04:05 GMT" in written
    assert "location.protocol === 'https:' ? '; Secure'" in written
    assert "klineflow_session=; Path=/; SameSite=Strict; Max-Age=0" in auth.cookie_script(None)
    with pytest.raises(ValueError):  # nothing but a token's hex digits gets into the script
        auth.cookie_script(Session(1, "ana", '"; alert(1); "', session.expires_at))


def test_a_browser_that_kept_the_token_is_signed_in(
    filled: Filled, app_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = session_for(os.environ["KLINEFLOW_DATABASE_URL"], filled.ana)
    monkeypatch.setattr(auth, "cookie_token", lambda: session.token)
    at = make_app().run()
    no_exceptions(at)
    assert "Signed in as ana" in [c.value for c in at.sidebar.caption]
    assert at.session_state[USER_ID] == filled.ana
    assert any(f"klineflow_session={session.token}" in s for s in scripts(at))
    # signing out ends the session in PostgreSQL and clears the cookie; the token the browser
    # sent when this session opened is not tried again
    at.sidebar.button[0].click().run()
    no_exceptions(at)
    assert USER_ID not in at.session_state
    assert any("Max-Age=0" in s for s in scripts(at))
    with psycopg.connect(filled.database_url) as conn:
        row = conn.execute("SELECT count(*) FROM sessions").fetchone()
    assert row == (0,)
    assert [b.label for b in at.sidebar.button] == ["Sign in"]


@pytest.mark.parametrize(
    "end",
    [
        "UPDATE sessions SET expires_at = now() - interval '1 second'",
        "DELETE FROM sessions",
    ],
    ids=["expired", "revoked"],
)
def test_an_ended_token_signs_nobody_in_and_is_cleared(
    filled: Filled, app_env: None, monkeypatch: pytest.MonkeyPatch, end: str
) -> None:
    session = session_for(os.environ["KLINEFLOW_DATABASE_URL"], filled.ana)
    with psycopg.connect(filled.database_url) as conn:
        conn.execute(end)
    monkeypatch.setattr(auth, "cookie_token", lambda: session.token)
    at = make_app().run()
    no_exceptions(at)
    assert USER_ID not in at.session_state
    assert "Your session ended: sign in again" in [i.value for i in at.sidebar.info]
    assert any("Max-Age=0" in s for s in scripts(at))


def test_no_cookie_no_script(filled: Filled, app_env: None) -> None:
    at = make_app().run()
    no_exceptions(at)
    assert scripts(at) == []
