"""Traders: the signed-in user's rules; enable, disable or delete them, create and edit them
with the rule checked as it is typed (the error right under the rule, with its column and a
caret), a reference of every helper, and a preview of where a draft would have fired over
every stored symbol it watches, with the indicators it reads drawn on the chart.

Every write runs as the dashboard role for this user: row-level security (USING and WITH
CHECK) makes sure a user only ever changes, and only ever creates, her own traders. Deleting
a trader removes it the way `klineflow traders remove` does: the flow stops evaluating it,
its signals stay (on the Signals page, with its name).

The page keeps the elements above the rule box the same from one run to the next (messages
go into containers that are always there), so a check never rebuilds the box being typed in.
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd  # type: ignore[import-untyped]
import streamlit as st

from dashboard.data import sources
from dashboard.data.config import DashboardConfig
from dashboard.data.db import Session, WriteRefused
from dashboard.data.flow_status import signal_counts
from dashboard.ui.common import banner, current_user, md_escape, utc_text
from dashboard.ui.rule_input import rule_editor
from dashboard.ui.rule_preview import preview_section
from dashboard.ui.rule_reference import render_reference
from flows.domain.clock import SYSTEM_CLOCK
from flows.signals.book import SYMBOL_MODES, TRIGGER_MODES, TraderRow
from flows.signals.patterns import PatternError, check_glob

NEW = "New trader"
PICK = "trader_pick"
GENERATION = "traders_form_generation"  # a new one gives the "new trader" form fresh widgets
FLASH = "traders_flash"  # (kind, text) shown once, at the top of the page
CONFIRM = "traders_confirm_remove"  # the id of the trader whose deletion is being confirmed
PLAIN = "traders_plain_rule_box"
SAVED = "klineflow_saved_trader"


def render() -> None:
    st.header("Traders")
    user = current_user()
    if user is None:
        st.info("Sign in to manage your traders")
        return
    cfg = sources.config()
    db = sources.database(cfg)
    answer = db.traders(user)
    traders = answer.value
    with st.container():  # always there: what it holds never moves the form below
        banner(answer)
        flash = st.session_state.pop(FLASH, None)
        if flash is not None:
            kind, text = flash
            (st.success if kind == "success" else st.error)(text)
        trader_list(user, traders)
    st.divider()
    editor(user, traders, cfg)


def trader_list(who: Session, traders: list[TraderRow]) -> None:
    db = sources.database()
    st.subheader("Your traders")
    if not traders:
        st.caption("No traders yet: create one below.")
    counted = signal_counts(db, who, SYSTEM_CLOCK.now_ms()).value
    totals = {c.trader_id: c.total for c in counted}
    for t in traders:
        c1, c2, c3 = st.columns([5, 1, 1], vertical_alignment="center")
        n = totals.get(t.id, 0)
        c1.text(f"{t.name} · {t.interval} · {t.trigger_mode} · v{t.version} · "
                f"{n} signal{'s' * (n != 1)}\n{t.expression}")  # fmt: skip
        on = c2.toggle("Enabled", value=t.enabled, key=f"trader_enabled_{t.id}_{t.enabled}")
        if on != t.enabled:
            try:
                db.update_trader(who, t.id, enabled=on)
            except WriteRefused as exc:
                st.error(md_escape(str(exc)))
            else:
                st.rerun()
        c3.button("Delete", key=f"trader_remove_{t.id}", on_click=_ask_removal, args=(t.id,),
                  icon=":material/delete:")  # fmt: skip
        if st.session_state.get(CONFIRM) == t.id:
            confirm_removal(who, t, n)
    errors = db.rule_errors(who)
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


def confirm_removal(who: Session, t: TraderRow, signals: int) -> None:
    with st.container(border=True):
        st.warning(
            f"Delete **{md_escape(t.name)}** for good? The flow stops evaluating it at once; "
            f"its {signals} signal{'s' * (signals != 1)} stay on the Signals page, under its "
            "name."
        )
        c1, c2 = st.columns(2)
        c1.button("Yes, delete it", key=f"trader_remove_yes_{t.id}", type="primary",
                  on_click=_remove, args=(who, t))  # fmt: skip
        c2.button("Cancel", key=f"trader_remove_no_{t.id}", on_click=_ask_removal, args=(None,))


def _ask_removal(trader_id: int | None) -> None:
    st.session_state[CONFIRM] = trader_id


def _remove(who: Session, t: TraderRow) -> None:
    """(A button's callback: it runs before the page, so it may reset the trader picker.)"""
    st.session_state[CONFIRM] = None
    try:
        sources.database().remove_trader(who, t.id)
    except WriteRefused as exc:
        st.session_state[FLASH] = ("error", md_escape(str(exc)))
        return
    if st.session_state.get(PICK) == _label(t):
        st.session_state[PICK] = NEW
    st.session_state[FLASH] = (
        "success",
        f"Deleted {md_escape(t.name)}: the flow no longer evaluates it; its signals stay on "
        "the Signals page.",
    )


def _label(t: TraderRow) -> str:
    return f"{t.name} (id {t.id})"


def editor(who: Session, traders: list[TraderRow], cfg: DashboardConfig) -> None:
    st.subheader("Create or edit")
    labels = [NEW] + [_label(t) for t in traders]
    if st.session_state.get(PICK) not in labels:  # its trader was deleted elsewhere
        st.session_state[PICK] = NEW
    pick = st.selectbox("Trader", labels, key=PICK)
    editing = None if pick == NEW else traders[labels.index(pick) - 1]
    base = editing or TraderRow(0, "", "", cfg.intervals[0] if cfg.intervals else "1m")
    # widgets per trader, so each keeps its draft; a new form after each trader created
    k = f"t{editing.id}" if editing else f"new{st.session_state.get(GENERATION, 0)}"
    intervals = list(dict.fromkeys([*cfg.intervals, base.interval]))
    name = st.text_input("Name", value=base.name, key=f"{k}_name")
    # the rule is checked for the interval picked (its widget, below, keeps its state)
    interval = str(st.session_state.get(f"{k}_interval", base.interval))
    # the draft so far (kept apart from the widgets: it follows a switch of box)
    draft_key = f"{k}_rule_text"
    expression, problem = rule_editor(
        "Rule", key=f"{k}_rule", start=st.session_state.get(draft_key, base.expression),
        interval=interval, intervals=cfg.intervals,
        plain=bool(st.session_state.get(PLAIN, False)),
    )  # fmt: skip
    st.session_state[draft_key] = expression
    st.toggle("Plain text box (checked when it loses focus)", key=PLAIN)
    render_reference()
    c1, c2, c3 = st.columns(3)
    interval = str(
        c1.selectbox(
            "Interval", intervals, index=intervals.index(base.interval), key=f"{k}_interval"
        )
    )
    trigger = c2.radio(
        "Trigger", TRIGGER_MODES, index=TRIGGER_MODES.index(base.trigger_mode),
        key=f"{k}_trigger", horizontal=True,
    )  # fmt: skip
    cooldown = c3.number_input(
        "Cooldown (bars)", 0, 100_000, base.cooldown_bars, key=f"{k}_cooldown"
    )
    draft = replace(
        base,
        name=name.strip(),
        expression=expression,
        interval=interval,
        trigger_mode=str(trigger),
        cooldown_bars=int(cooldown),
        description="",
    )
    draft, symbols_problem = symbols_part(draft, k, base)
    draft = replace(
        draft, description=st.text_input("Description", base.description, key=f"{k}_description")
    )
    ready = problem is None and bool(expression.strip()) and symbols_problem is None
    if ready:
        preview_section(draft, k)
    save_label = "Save changes" if editing else "Create trader"
    if st.button(save_label, disabled=not ready or not draft.name, type="primary"):
        save(who, editing, draft, k)


def symbols_part(draft: TraderRow, k: str, base: TraderRow) -> tuple[TraderRow, str | None]:
    """The symbols the trader watches, and what is wrong with them (shown right there)."""
    mode = str(
        st.radio(
            "Symbols", SYMBOL_MODES, index=SYMBOL_MODES.index(base.symbols_mode),
            key=f"{k}_mode", horizontal=True,
        )
    )  # fmt: skip
    if mode == "list":
        text = st.text_input("Symbols (comma separated)", ",".join(base.symbols), key=f"{k}_list")
        symbols = tuple(dict.fromkeys(s.strip().upper() for s in text.split(",") if s.strip()))
        draft = replace(draft, symbols_mode=mode, symbols=symbols, symbols_pattern=None)
        if not symbols:
            st.warning("Name at least one symbol, or watch all of them.")
            return draft, "no symbols"
        return draft, None
    if mode == "pattern":
        typed = st.text_input(
            "Pattern (a glob over the whole symbol: * any characters, ? one, e.g. *USDT)",
            base.symbols_pattern or "",
            key=f"{k}_pattern",
        )
        draft = replace(draft, symbols_mode=mode, symbols=(), symbols_pattern=typed.strip())
        try:
            glob = check_glob(typed)
        except PatternError as exc:
            st.warning(md_escape(str(exc)))
            return draft, str(exc)
        return replace(draft, symbols_pattern=glob), None
    return replace(draft, symbols_mode=mode, symbols=(), symbols_pattern=None), None


def save(who: Session, editing: TraderRow | None, draft: TraderRow, k: str) -> None:
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
    st.session_state[SAVED] = saved.id
    if editing is None:  # an empty form for the next one
        st.session_state[GENERATION] = st.session_state.get(GENERATION, 0) + 1
        st.session_state.pop(f"{k}_rule_text", None)
        text = (f"Created {md_escape(saved.name)} (id {saved.id}): the flow evaluates it from "
                "its next closed kline. The form is empty for another one.")  # fmt: skip
    else:
        text = f"Saved {md_escape(saved.name)} (version {saved.version})."
    st.session_state[FLASH] = ("success", text)
    st.rerun()


if __name__ == "__main__":
    render()
