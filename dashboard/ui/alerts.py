"""New-signal toasts on every page: a fragment in the app's frame (dashboard/app.py) that
asks PostgreSQL for the signed-in user's newest signals whenever the process's listener saw
one (its `seq` moved), every 15 s anyway (every 5 s while the listener is down), and shows a
toast for each signal still 'new' that this browser session had not seen before. The first
check of a browser session only notes what is there: old signals are the Signals page's.

Opt-in, a browser notification as well (the sidebar's "Browser notifications"; the browser
asks for permission the first time).
"""

from __future__ import annotations

import json
from typing import Any

import streamlit as st

from dashboard.data import sources
from dashboard.data.db import Session, SignalFilter, SignalRow
from flows.domain.clock import SYSTEM_CLOCK

from .common import current_user, md_escape, signal_time_text

CHECK_S = 1.0
RECHECK_S = 15.0
FALLBACK_POLL_S = 5.0
NEWEST = 20
STATE = "klineflow_alerts"  # {"user", "seq", "at", "known": set of ids}
TOASTS = "klineflow_notify"  # the sidebar toggles' keys
BROWSER = "klineflow_notify_browser"


def toast_text(row: SignalRow) -> str:
    return (
        f"New signal: {md_escape(row.trader)} · {row.symbol} · {row.interval} · "
        f"kline closed {signal_time_text(row.kline_close_ms)}"
    )


def fresh(user: Session, now_s: float) -> list[SignalRow]:
    """The user's 'new' signals this browser session has not been told of (none at the
    first check, which only notes them)."""
    lis = sources.listener()
    state: dict[str, Any] | None = st.session_state.get(STATE)
    if state is not None and state["user"] == user.user_id:
        wait = RECHECK_S if lis.connected.is_set() else FALLBACK_POLL_S
        if state["seq"] == lis.seq and now_s - state["at"] < wait:
            return []
    seq = lis.seq  # read before the query: a signal arriving meanwhile triggers another
    answer = sources.database().signals(user, SignalFilter(statuses=("new",), limit=NEWEST))
    if answer.stale:
        return []
    ids = {r.id for r in answer.value}
    first = state is None or state["user"] != user.user_id
    known: set[str] = set() if first else state["known"]  # type: ignore[index]
    st.session_state[STATE] = {"user": user.user_id, "seq": seq, "at": now_s,
                               "known": (known | ids)}  # fmt: skip
    return [] if first else [r for r in answer.value if r.id not in known]


def _browser_notification(rows: list[SignalRow]) -> None:
    texts = [f"{r.trader} · {r.symbol} · {r.interval}" for r in rows]
    st.html(
        "<script>(() => { const texts = " + json.dumps(texts).replace("<", "\\u003c") + ";"
        " const show = () => texts.forEach(t => new Notification('klineflow: new signal',"
        " {body: t}));"
        " if (!('Notification' in window)) return;"
        " if (Notification.permission === 'granted') show();"
        " else if (Notification.permission !== 'denied')"
        " Notification.requestPermission().then(p => { if (p === 'granted') show(); }); })();"
        "</script>",
        unsafe_allow_javascript=True,
        width="content",
    )


def watch() -> None:
    """The sidebar's notification switches and the fragment that checks for new signals."""
    if current_user() is None:
        return
    with st.sidebar:
        toasts = st.toggle("Notify me of new signals", value=True, key=TOASTS)
        browser = st.toggle("Browser notifications", value=False, key=BROWSER, disabled=not toasts)

    @st.fragment(run_every=CHECK_S)
    def check() -> None:
        user = current_user()
        if user is None:
            return
        rows = fresh(user, SYSTEM_CLOCK.monotonic_s())
        if not rows or not toasts:
            return
        for r in rows[:3]:
            st.toast(toast_text(r), icon=":material/notifications:")
        if browser:
            _browser_notification(rows[:3])

    with st.sidebar:
        check()
