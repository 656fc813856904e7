"""Signing in, in the sidebar: a user name and password checked by PostgreSQL against the
argon2 hash (dashboard.data.users.sign_in: the hash never leaves the database), or single
sign-on through Streamlit's `st.login` when `[auth]` is configured in
`.streamlit/secrets.toml` and the owner has switched it on (`klineflow users sso on`).

Signing in gives a session token, kept in `st.session_state` (this browser session) and in
a cookie (the browser: a reload, a new tab or a shared link resumes the session through
dashboard.data.users.resume), checked at every run of the page: an expired or ended session
signs the browser out. Sign-out ends the session in PostgreSQL and clears the cookie.

The cookie (`klineflow_session`: Path=/, SameSite=Strict, Secure when served over https,
expiring with the session) is written by a line of JavaScript in the page, because a
Streamlit script answers no HTTP request of its own: `streamlit run` offers no way to send a
Set-Cookie header, so the cookie cannot be HttpOnly (serving the app as an `st.App` with a
route of ours could). Other sites can neither read it nor make the browser send it
(SameSite=Strict); a script of this page could read it, so nothing on the page is rendered
with unsafe HTML or JavaScript except this writer. The token is the credential PostgreSQL
checks anyway (stored there as a SHA-256, expiring, revocable by sign-out), and it is read
from the cookie by the server from `st.context.cookies` (the browser's request that opened
the session).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from datetime import UTC
from typing import Any

import psycopg
import streamlit as st

from dashboard.data import sources
from dashboard.data.db import Session
from dashboard.data.users import SignInUnavailable, UserError, resume, sso_sign_in
from dashboard.data.users import sign_in as check_password
from dashboard.data.users import sign_out as end_session

from .common import current_user, md_escape, sign_in, sign_out

log = logging.getLogger(__name__)
FAILED = "klineflow_sign_in_failed"
ENDED = "klineflow_session_ended"
WRONG = "Wrong user name or password"
COOKIE = "klineflow_session"
TRIED = "klineflow_cookie_tried"  # the cookie's token, once resumed or found dead
WRITTEN = "klineflow_cookie_written"  # what this browser session last wrote to the cookie
_TOKEN = re.compile(r"^[0-9a-f]{64}$")  # as klineflow_open_session makes them


def sso_configured() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file at all
        return False


def _sso_identity() -> str | None:
    """The e-mail (else the subject) of the single sign-on user, when signed in that way."""
    user: Any = st.user
    if not user.get("is_logged_in", False):
        return None
    email = user.get("email")
    subject = user.get("sub")
    return str(email or subject or "") or None


def cookie_token() -> str | None:
    """The session token the browser sent in its cookie when this session opened, if any."""
    try:
        value = st.context.cookies.get(COOKIE)
    except Exception:  # no browser (bare mode)
        return None
    return value if isinstance(value, str) and _TOKEN.match(value) else None


def cookie_script(session: Session | None) -> str:
    """The page's script that writes the session's token into the cookie (None: clears it)."""
    if session is None:
        cookie = f"{COOKIE}=; Path=/; SameSite=Strict; Max-Age=0"
    else:
        if not _TOKEN.match(session.token):
            raise ValueError("a session token is 64 lower-case hex digits")
        expires = session.expires_at.astimezone(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
        cookie = f"{COOKIE}={session.token}; Path=/; SameSite=Strict; Expires={expires}"
    return (
        f"<script>document.cookie = {json.dumps(cookie)} + "
        "(location.protocol === 'https:' ? '; Secure' : '');</script>"
    )


def _resume_from_cookie() -> None:
    """Sign this browser session in with the cookie's token, once, when it names a live
    session; a dead one is cleared (and said so)."""
    token = cookie_token()
    if token is None or current_user() is not None or st.session_state.get(TRIED) == token:
        return
    try:
        session = resume(sources.config().database_url, token)
    except psycopg.Error as exc:  # try again at the next run
        log.warning("resuming a session could not reach PostgreSQL: %s", exc)
        return
    st.session_state[TRIED] = token
    if session is None:
        st.session_state[ENDED] = True
        return
    sign_in(session)
    st.session_state[WRITTEN] = token


def _sync_cookie() -> None:
    """Write the signed-in session's token to the cookie, or clear a cookie that names no
    session here (signed out, ended, or dead when read)."""
    user = current_user()
    if user is not None:  # at every run: a run cut short by st.rerun may not have shown it
        st.html(cookie_script(user), unsafe_allow_javascript=True, width="content")
        st.session_state[WRITTEN] = user.token
    elif st.session_state.get(WRITTEN) or cookie_token() is not None:
        st.html(cookie_script(None), unsafe_allow_javascript=True, width="content")


def sidebar() -> None:
    with st.sidebar:
        _sidebar()
        _sync_cookie()


def _sidebar() -> None:
    user = current_user()
    if user is not None and not sources.database().session_live(user):
        sign_out()
        st.session_state[ENDED] = True
    _resume_from_cookie()
    if sso_configured() and current_user() is None:
        identity = _sso_identity()
        if identity is not None:
            try:
                sign_in(sso_sign_in(sources.config().database_url, identity))
                st.session_state.pop(ENDED, None)
            except (psycopg.Error, UserError) as exc:
                st.error(f"Single sign-on failed: {md_escape(str(exc))}")
    user = current_user()
    if user is not None:
        st.caption(f"Signed in as {md_escape(user.name)}")
        if st.button("Sign out"):
            _end(sign_out())
            st.session_state.pop(FAILED, None)
            st.session_state[WRITTEN] = "signed out"  # the next run clears the cookie
            if sso_configured() and _sso_identity() is not None:
                st.logout()
            st.rerun()
        return
    if st.session_state.get(ENDED):
        st.info("Your session ended: sign in again")
    name = st.text_input("User name")
    password = st.text_input("Password", type="password")
    if st.button("Sign in"):
        checked = _check(name, password)
        st.session_state.pop(ENDED, None)
        if isinstance(checked, Session):
            st.session_state.pop(FAILED, None)
            sign_in(checked)
            st.rerun()
        elif checked is None:
            st.session_state.pop(FAILED, None)  # said why already
        else:
            st.session_state[FAILED] = checked
    if st.session_state.get(FAILED):
        st.error(str(st.session_state[FAILED]))
    if sso_configured() and st.button("Sign in with single sign-on"):
        st.login()


def _check(name: str, password: str) -> Session | str | None:
    """A session; else why not (shown under the form); None when PostgreSQL is away (said
    so here)."""
    if not name.strip() or not password:
        return WRONG
    try:
        session = check_password(sources.config().database_url, name, password)
    except SignInUnavailable as exc:
        return str(exc)
    except psycopg.Error as exc:
        log.warning("sign-in could not reach PostgreSQL: %s", exc)
        st.error("PostgreSQL is unreachable: try again in a moment")
        return None
    return session if session is not None else WRONG


def _end(session: Session | None) -> None:
    """End the session in PostgreSQL too (if it is away, the session expires by itself)."""
    if session is not None:
        with contextlib.suppress(psycopg.Error):
            end_session(sources.config().database_url, session)
