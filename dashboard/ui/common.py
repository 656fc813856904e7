"""Small helpers every page uses."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import streamlit as st

from dashboard.data.db import Session
from dashboard.data.stale import Fetched

USER_ID = "klineflow_user_id"
USER_NAME = "klineflow_user_name"
SESSION = "klineflow_session"  # the Session (with its token): this browser session's only
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def current_user() -> Session | None:
    """The signed-in user of this browser session (id, name, token), or None."""
    found = st.session_state.get(SESSION)
    return found if isinstance(found, Session) else None


def sign_in(session: Session) -> None:
    st.session_state[SESSION] = session
    st.session_state[USER_ID] = session.user_id
    st.session_state[USER_NAME] = session.name


def sign_out() -> Session | None:
    """Forget the signed-in user here; the session that was (to end in PostgreSQL too)."""
    st.session_state.pop(USER_ID, None)
    st.session_state.pop(USER_NAME, None)
    found = st.session_state.pop(SESSION, None)
    return found if isinstance(found, Session) else None


def md_escape(text: str) -> str:
    """Text shown inside Markdown-rendering elements (st.error, st.caption, ...) as typed:
    every Markdown special character escaped. (HTML is never enabled anyway.)"""
    return _MD_SPECIAL.sub(r"\\\1", text)


def banner(*answers: Fetched[object]) -> None:
    """One warning per unreachable server among these answers."""
    shown: set[str] = set()
    for a in answers:
        if a.stale and a.server not in shown:
            shown.add(a.server)
            st.warning(a.banner, icon=":material/warning:")


def utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def utc_text(ms: int) -> str:
    return utc(ms).strftime("%Y-%m-%d %H:%M")


def signal_time(kline_close_ms: int) -> datetime:
    """A signal's one time, wherever it is shown: the moment its kline closed (the end of
    the kline's interval, kline_close_ms + 1), in UTC. (Its kline's open time only picks
    the kline on the chart.)"""
    return utc(kline_close_ms + 1)


def signal_time_text(kline_close_ms: int) -> str:
    return signal_time(kline_close_ms).strftime("%Y-%m-%d %H:%M:%S UTC")


def query_param(name: str) -> str | None:
    value = st.query_params.get(name)
    return value if value else None


def int_param(name: str) -> int | None:
    value = query_param(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None
