"""Fixtures of the dashboard tests: Redis filled by a replay of real XRPETH trades, with
signals written by traders of two users, and the app pointed at them by environment
variables (as `klineflow dashboard` does)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from dashboard.data import sources
from dashboard.data.db import Session
from dashboard.data.users import add_user
from dashboard.ui.common import SESSION, USER_ID, USER_NAME
from flows.dataflows.replay import ReplayJob, run_replay
from flows.domain.keys import KeySpace
from flows.signals.book import TraderRow
from flows.signals.store import TraderStore

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "dashboard" / "app.py"
XRPETH = "XRPETH-aggTrades-20191011-20191013.csv"
PASSWORD = "correct horse battery staple"
BOB_PASSWORD = "bob's long password"


@dataclass(frozen=True)
class Filled:
    redis_url: str
    database_url: str
    keys: KeySpace
    ana: int
    bob: int
    ana_trader: TraderRow
    bob_trader: TraderRow


@pytest.fixture
def filled(shared_data: Path, redis_url: str, keys: KeySpace, signals_db: str) -> Filled:
    ana = add_user(signals_db, "ana", PASSWORD)
    bob = add_user(signals_db, "bob", BOB_PASSWORD)
    store = TraderStore(signals_db)
    ana_trader = store.add(
        TraderRow(0, "Ana up bars", "close > open", "1m", cooldown_bars=20), owner="ana"
    )
    bob_trader = store.add(
        TraderRow(0, "Bob dips", "rsi(14) < 40", "5m", cooldown_bars=3), owner="bob"
    )
    run_replay(
        ReplayJob(
            paths=[shared_data / XRPETH],
            redis_url=redis_url,
            intervals=("1m", "5m"),
            keys=keys,
            database_url=signals_db,
        )
    )
    return Filled(redis_url, signals_db, keys, ana, bob, ana_trader, bob_trader)


@pytest.fixture
def app_env(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, keys: KeySpace, signals_db: str
) -> Iterator[None]:
    monkeypatch.setenv("KLINEFLOW_REDIS_URL", redis_url)
    monkeypatch.setenv("KLINEFLOW_DATABASE_URL", signals_db)
    monkeypatch.setenv("KLINEFLOW_NAMESPACE", keys.namespace)
    monkeypatch.setenv("KLINEFLOW_INTERVALS", "1m,5m")
    sources.reset()
    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    sources.reset()
    st.cache_data.clear()
    st.cache_resource.clear()


def make_app(**query: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update(query)
    return at


def session_for(owner_url: str, user_id: int) -> Session:
    """A live session of the user, opened as the owner (klineflow_open_session is the owner's
    alone; the sign-in tests sign in as the dashboard does)."""
    with psycopg.connect(owner_url) as conn:
        row = conn.execute(
            "SELECT o.token, o.expires_at, u.name FROM users u, "
            "klineflow_open_session(u.id, 'password') o WHERE u.id = %s",
            (user_id,),
        ).fetchone()
    assert row is not None, f"no user {user_id}"
    return Session(user_id, str(row[2]), str(row[0]), row[1])


def as_user(at: AppTest, user_id: int, name: str) -> AppTest:
    """Sign a browser session in without the form (the sign-in tests use the form): a real
    session in the database the app is pointed at."""
    session = session_for(os.environ["KLINEFLOW_DATABASE_URL"], user_id)
    assert session.name == name
    at.session_state[SESSION] = session
    at.session_state[USER_ID] = user_id
    at.session_state[USER_NAME] = name
    return at


def no_exceptions(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def open_page(path: str, user_id: int | None = None, name: str = "") -> AppTest:
    """The app on one page (signed in as `user_id` if given), run without an exception."""
    at = make_app()
    if user_id is not None:
        as_user(at, user_id, name)
    at.run()
    at.switch_page(path).run()
    no_exceptions(at)
    return at


def charts(at: AppTest) -> list[Any]:
    """The Vega-Lite (Altair) charts on the page, in order."""
    found: list[Any] = []

    def walk(node: Any) -> None:
        for child in getattr(node, "children", {}).values():
            if getattr(child, "type", None) == "vega_lite_chart":
                found.append(child)
            walk(child)

    walk(at._tree)
    return found


def chart_spec(element: Any) -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(element.proto.spec)
    return spec


def chart_datasets(element: Any) -> dict[str, pa.Table]:
    """The chart's named datasets (Streamlit sends them as Arrow IPC)."""
    out = {}
    for ds in element.proto.datasets:
        out[ds.name] = pa.ipc.open_stream(ds.data.data).read_all()
    if element.proto.HasField("data") and element.proto.data.data:
        out[""] = pa.ipc.open_stream(element.proto.data.data).read_all()
    return out


def view_names(spec: Any) -> list[str]:
    """Every `name` of a view anywhere in a Vega-Lite spec."""
    names: list[str] = []
    if isinstance(spec, dict):
        if isinstance(spec.get("name"), str) and ("mark" in spec or "layer" in spec):
            names.append(spec["name"])
        for v in spec.values():
            names.extend(view_names(v))
    elif isinstance(spec, list):
        for v in spec:
            names.extend(view_names(v))
    return names


def write_signal(filled: Filled, minute: int) -> str:
    """A signal of ana's trader on the kline `minute` minutes into the data, written as the
    flow writes it, once the dashboard's listener has seen it; its id."""
    from flows.signals.engine import Fire
    from flows.signals.store import SignalWriter

    open_ms = 1_570_752_000_000 + minute * 60_000
    trader = filled.ana_trader
    sid = f"{trader.id}-ETHBTC-1m-{open_ms}"
    fire = Fire(sid, trader.id, 1, "ETHBTC", "1m", open_ms, open_ms + 59_999, open_ms,
                "0.02100000", {"close": 0.021}, 0)  # fmt: skip
    writer = SignalWriter(filled.database_url, record_latency=False)
    assert writer.write([fire])
    writer.close()
    lis = sources.listener()
    deadline = time.monotonic() + 10  # bounded wait for the listener's state, not a sleep
    while lis.seen(sid) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lis.seen(sid) is not None
    return sid
