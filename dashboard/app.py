"""The klineflow dashboard: `streamlit run dashboard/app.py`.

Configured like every klineflow command, by KLINEFLOW_REDIS_URL, KLINEFLOW_DATABASE_URL and
KLINEFLOW_NAMESPACE (unset URLs: the embedded servers, started or reused). Pages: Market and
Screener (public), Signals, Traders, Notifications and Backtest (signed-in users), Status
(public).
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # `streamlit run dashboard/app.py` from a checkout
    sys.path.insert(0, str(HERE.parent))

from dashboard.ui import alerts, auth  # noqa: E402

VIEWS = HERE / "views"
MARKET = st.Page(VIEWS / "market.py", title="Market", url_path="market")
LISTED = [
    MARKET,
    st.Page(VIEWS / "signals.py", title="Signals", url_path="signals"),
    st.Page(VIEWS / "traders.py", title="Traders", url_path="traders"),
    st.Page(VIEWS / "notifications.py", title="Notifications", url_path="notifications"),
    st.Page(VIEWS / "backtest.py", title="Backtest", url_path="backtest"),
    st.Page(VIEWS / "screener.py", title="Screener", url_path="screener"),
    st.Page(VIEWS / "status.py", title="Status", url_path="status"),
]


def home() -> None:
    """The app's root opens Market (so that Market keeps its own /market address)."""
    st.switch_page(MARKET, query_params=st.query_params.to_dict())


# the icon is a file of ours: an emoji needs an emoji font (Debian's chromium has none), a
# Material icon as favicon is fetched from Google's servers
st.set_page_config(page_title="klineflow", page_icon=str(HERE / "favicon.svg"), layout="wide")
# the default page is always served at the root, whatever its url_path: a small redirect
# keeps every listed page at its own address; the sidebar lists them instead
page = st.navigation([st.Page(home, title="klineflow", default=True), *LISTED], position="hidden")
with st.sidebar:
    for listed in LISTED:
        st.page_link(listed)
    st.divider()
auth.sidebar()
alerts.watch()  # new-signal toasts on every page
page.run()
