"""Signing in, in the sidebar: a user name and password checked against the argon2 hash in
PostgreSQL, or single sign-on through Streamlit's `st.login` when `[auth]` is configured in
`.streamlit/secrets.toml`.

The signed-in user's id lives in `st.session_state` only (one browser session).
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
import streamlit as st

from dashboard.data import sources
from dashboard.data.users import UserError, oidc_user, verify

from .common import current_user, md_escape, sign_in, sign_out

log = logging.getLogger(__name__)
FAILED = "klineflow_sign_in_failed"


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
        if sso_configured() and current_user() is None:
            identity = _sso_identity()
            if identity is not None:
                try:
                    user_id, name = oidc_user(sources.config().database_url, identity)
                    sign_in(user_id, name)
                except (psycopg.Error, UserError) as exc:
                    st.error(f"Single sign-on failed: {md_escape(str(exc))}")
        user = current_user()
        if user is not None:
            st.caption(f"Signed in as {md_escape(user[1])}")
            if st.button("Sign out"):
                sign_out()
                st.session_state.pop(FAILED, None)
                if sso_configured() and _sso_identity() is not None:
                    st.logout()
                st.rerun()
            return
        name = st.text_input("User name")
        password = st.text_input("Password", type="password")
        if st.button("Sign in"):
            checked = _check(name, password)
            if checked is None:
                st.session_state[FAILED] = True
            elif checked < 0:  # PostgreSQL unreachable: said so already
                st.session_state.pop(FAILED, None)
            else:
                st.session_state.pop(FAILED, None)
                sign_in(checked, name.strip())
                st.rerun()
        if st.session_state.get(FAILED):
            st.error("Wrong user name or password")
        if sso_configured() and st.button("Sign in with single sign-on"):
            st.login()


def _check(name: str, password: str) -> int | None:
    """The user's id, None for a wrong name or password, -1 when PostgreSQL is away."""
    if not name.strip() or not password:
        return None
    try:
        return verify(sources.config().database_url, name, password)
    except psycopg.Error as exc:
        log.warning("sign-in could not reach PostgreSQL: %s", exc)
        st.error("PostgreSQL is unreachable: try again in a moment")
        return -1
