"""Signing in, in the sidebar: a user name and password checked by PostgreSQL against the
argon2 hash (dashboard.data.users.sign_in: the hash never leaves the database), or single
sign-on through Streamlit's `st.login` when `[auth]` is configured in
`.streamlit/secrets.toml` and the owner has switched it on (`klineflow users sso on`).

Signing in gives a session token, kept in `st.session_state` only (one browser session) and
checked at every run of the page: an expired or ended session signs the browser out.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import psycopg
import streamlit as st

from dashboard.data import sources
from dashboard.data.db import Session
from dashboard.data.users import SignInUnavailable, UserError, sso_sign_in
from dashboard.data.users import sign_in as check_password
from dashboard.data.users import sign_out as end_session

from .common import current_user, md_escape, sign_in, sign_out

log = logging.getLogger(__name__)
FAILED = "klineflow_sign_in_failed"
ENDED = "klineflow_session_ended"
WRONG = "Wrong user name or password"


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


def sidebar() -> None:
    with st.sidebar:
        user = current_user()
        if user is not None and not sources.database().session_live(user):
            sign_out()
            st.session_state[ENDED] = True
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
