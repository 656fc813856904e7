"""Traders: the signed-in user's rules; enable or disable them, create and edit them with
the rule checked as it is typed, and a preview of where a draft would have fired.

Every write runs as the dashboard role for this user: row-level security (USING and WITH
CHECK) makes sure a user only ever changes, and only ever creates, her own traders.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pandas as pd  # type: ignore[import-untyped]
import redis
import streamlit as st

from dashboard.data import sources
from dashboard.data.config import DashboardConfig
from dashboard.data.db import Session, WriteRefused
from dashboard.ui.charts import Marker, build_frame, chart_spec
from dashboard.ui.common import banner, current_user, md_escape, utc_text
from flows.app.errors import BadInput, BadRule
from flows.app.traders import validate
from flows.rules.errors import RuleError
from flows.signals.book import SYMBOL_MODES, TRIGGER_MODES, TraderRow

NEW = "New trader"
PREVIEW_CANDLES = 500  # drawn; the preview itself reads up to PREVIEW_BARS


def render() -> None:
    st.header("Traders")
    user = current_user()
    if user is None:
        st.info("Sign in to manage your traders")
        return
    cfg = sources.config()
    db = sources.database(cfg)
    answer = db.traders(user)
    banner(answer)
    traders = answer.value
    st.subheader("Your traders")
    if not traders:
        st.caption("No traders yet: create one below.")
    for t in traders:
        c1, c2 = st.columns([5, 1])
        c1.text(f"{t.name} · {t.interval} · {t.trigger_mode} · v{t.version}\n{t.expression}")
        on = c2.toggle("Enabled", value=t.enabled, key=f"trader_enabled_{t.id}_{t.enabled}")
        if on != t.enabled:
            try:
                db.update_trader(user, t.id, enabled=on)
            except WriteRefused as exc:
                st.error(md_escape(str(exc)))
            else:
                st.rerun()
    errors = db.rule_errors(user)
    if errors.value:
        st.subheader("Rule errors the flow recorded")
        st.dataframe(
            pd.DataFrame(
                [
                    {"trader": e.trader, "version": e.trader_version, "symbol": e.symbol,
                     "error": e.error,
                     "kline (UTC)": utc_text(e.kline_open_ms) if e.kline_open_ms else "when loaded"}
                    for e in errors.value
                ]
            ),
            hide_index=True,
        )  # fmt: skip
    st.divider()
    editor(user, traders, cfg)


def editor(who: Session, traders: list[TraderRow], cfg: DashboardConfig) -> None:
    st.subheader("Create or edit")
    labels = [NEW] + [f"{t.name} (id {t.id})" for t in traders]
    pick = st.selectbox("Trader", labels, key="trader_pick")
    editing = None if pick == NEW else traders[labels.index(pick) - 1]
    base = editing or TraderRow(0, "", "", cfg.intervals[0] if cfg.intervals else "1m")
    k = f"t{editing.id}" if editing else "new"  # widgets per trader, so each keeps its draft
    intervals = list(dict.fromkeys([*cfg.intervals, base.interval]))
    name = st.text_input("Name", value=base.name, key=f"{k}_name")
    expression = st.text_area(
        "Rule", value=base.expression, key=f"{k}_rule", placeholder="rsi(14) < 30"
    )
    c1, c2, c3 = st.columns(3)
    interval = c1.selectbox(
        "Interval", intervals, index=intervals.index(base.interval), key=f"{k}_interval"
    )
    trigger = c2.radio(
        "Trigger", TRIGGER_MODES, index=TRIGGER_MODES.index(base.trigger_mode),
        key=f"{k}_trigger", horizontal=True,
    )  # fmt: skip
    cooldown = c3.number_input(
        "Cooldown (bars)", 0, 100_000, base.cooldown_bars, key=f"{k}_cooldown"
    )
    mode = st.radio(
        "Symbols", SYMBOL_MODES, index=SYMBOL_MODES.index(base.symbols_mode),
        key=f"{k}_mode", horizontal=True,
    )  # fmt: skip
    symbols: tuple[str, ...] = ()
    pattern: str | None = None
    if mode == "list":
        text = st.text_input("Symbols (comma separated)", ",".join(base.symbols), key=f"{k}_list")
        symbols = tuple(dict.fromkeys(s.strip().upper() for s in text.split(",") if s.strip()))
    elif mode == "pattern":
        pattern = st.text_input(
            "Pattern (a glob over the whole symbol: * any characters, ? one, e.g. *USDT)",
            base.symbols_pattern or "",
            key=f"{k}_pattern",
        )
    description = st.text_input("Description", base.description, key=f"{k}_description")
    draft = replace(
        base,
        name=name.strip(),
        expression=expression,
        interval=str(interval),
        trigger_mode=str(trigger),
        cooldown_bars=int(cooldown),
        symbols_mode=str(mode),
        symbols=symbols,
        symbols_pattern=pattern.strip().upper() if pattern else pattern,
        description=description,
    )
    problem = check(draft, cfg)
    if problem is None and expression.strip():
        st.success("The rule compiles.")
        preview_section(draft, k)
    save_label = "Save changes" if editing else "Create trader"
    if st.button(save_label, disabled=problem is not None or not draft.name, type="primary"):
        save(who, editing, draft)


def check(draft: TraderRow, cfg: DashboardConfig) -> str | None:
    """Show what is wrong with the draft; None when it can be saved."""
    if not draft.expression.strip():
        st.caption("Type a rule, e.g. `rsi(14) < 30 and close > ema(50)`.")
        return "empty"
    if draft.symbols_mode == "list" and not draft.symbols:
        st.warning("Name at least one symbol, or watch all of them.")
        return "no symbols"
    if draft.symbols_mode == "pattern" and not draft.symbols_pattern:
        st.warning("Give a pattern, e.g. *USDT")
        return "no pattern"
    try:  # the application's own check, as the command line makes it
        validate(draft, cfg.intervals)
    except BadRule as exc:
        err = exc.error
        st.error(f"Rule error at character {err.position + 1}: {md_escape(err.message)}")
        st.code(exc.detail, language=None)
        return err.message
    except BadInput as exc:
        st.error(md_escape(exc.message))
        return exc.message
    return None


def preview_section(draft: TraderRow, k: str) -> None:
    market = sources.market()
    symbols = market.symbols()
    if not symbols.value:
        st.caption("No klines stored: nothing to preview on.")
        return
    symbol = st.selectbox("Preview on", symbols.value, key=f"{k}_preview_symbol")
    try:
        result, klines = market.preview(
            draft.expression, draft.interval, str(symbol), draft.trigger_mode
        )
    except RuleError as exc:
        st.error(f"Rule error at character {exc.position + 1}: {md_escape(exc.message)}")
        return
    except redis.RedisError as exc:
        st.warning(f"No preview: Redis is unreachable ({md_escape(type(exc).__name__)})")
        return
    st.session_state["klineflow_preview"] = {
        "fires": len(result.fires),
        "evaluated": result.evaluated,
        "not_ready": result.not_ready,
        "klines": result.klines,
        "symbol": symbol,
    }
    c1, c2, c3 = st.columns(3)
    c1.metric("Would have fired", len(result.fires))
    c2.metric("Klines read", result.klines)
    c3.metric("Not ready (warm-up)", result.not_ready)
    for failure in result.failures:
        st.error(f"The rule raised at {utc_text(failure.open_ms)} UTC: {md_escape(failure.error)}")
    if not klines:
        st.caption(f"No closed {draft.interval} klines of {symbol} are stored.")
        return
    shown = klines[-PREVIEW_CANDLES:]
    first = shown[0].open_ms
    marks = [
        Marker(f.open_ms, "would fire", _values_text(f.values))
        for f in result.fires
        if f.open_ms >= first
    ]
    frame = build_frame(shown, draft.interval, {})
    st.vega_lite_chart(
        spec=chart_spec(frame, preview=marks, title=f"{symbol} {draft.interval}: preview")
    )
    st.caption(
        f"The newest {len(shown)} of {len(klines)} klines read; the markers show where the "
        "rule held (every close where it held, or where it started to hold for on_change), "
        "before any cooldown grouping."
    )


def _values_text(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.8g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in values.items())  # fmt: skip


def save(who: Session, editing: TraderRow | None, draft: TraderRow) -> None:
    db = sources.database()
    try:
        if editing is None:
            saved = db.add_trader(who, draft)
        else:
            changes = {
                f: getattr(draft, f)
                for f in ("name", "description", "expression", "interval", "symbols_mode",
                          "symbols", "symbols_pattern", "trigger_mode", "cooldown_bars")
                if getattr(draft, f) != getattr(editing, f)
            }  # fmt: skip
            saved = db.update_trader(who, editing.id, **changes)
    except WriteRefused as exc:
        st.error(md_escape(str(exc)))
        return
    st.session_state["klineflow_saved_trader"] = saved.id
    st.toast(f"Saved {md_escape(saved.name)} (version {saved.version})", icon="✅")
    st.rerun()


if __name__ == "__main__":
    render()
