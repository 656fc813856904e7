"""Notifications: where the signed-in user's signals are sent.

- Channels: a generic webhook (signed), Discord, Slack, Telegram, e-mail; added here, each
  with a "send a test message" that goes through the notifier and shows what the service
  answered. URLs and tokens are typed into password fields and never shown again (the
  dashboard cannot read them back); a webhook's signing key is shown once, when made.
- Which trader sends to which channel.
- The delivery log: every message (one signal or a digest), its state, attempts and the
  service's last error; a failed message can be tried again.
The log refreshes by itself, so a test message's outcome appears without a click.
"""

from __future__ import annotations

from typing import Any

import pandas as pd  # type: ignore[import-untyped]
import streamlit as st

from dashboard.data import sources
from dashboard.data.db import Session, WriteRefused
from dashboard.data.notifications import Notifications
from dashboard.ui.common import banner, current_user, md_escape
from flows.notify.channels import KINDS, ChannelInfo, NewChannel

FLASH = "notifications_flash"
FORM = "notifications_form_generation"
KIND_NAMES = {"webhook": "Webhook (JSON, signed)", "discord": "Discord", "slack": "Slack",
              "telegram": "Telegram", "email": "E-mail"}  # fmt: skip


def _service() -> Notifications:
    return Notifications(sources.database(sources.config()))


def render() -> None:
    st.header("Notifications")
    user = current_user()
    if user is None:
        st.info("Sign in to send your signals to a webhook, Discord, Slack, Telegram or e-mail")
        return
    service = _service()
    flash = st.session_state.pop(FLASH, None)
    if flash is not None:
        kind, text = flash
        (st.success if kind == "success" else st.error)(text)
    answer = service.channels(user)
    banner(answer)
    channel_list(service, user, answer.value)
    subscriptions(service, user, answer.value)
    add_form(service, user)
    delivery_log(user)


def channel_list(service: Notifications, user: Session, found: list[ChannelInfo]) -> None:
    st.subheader("Channels")
    if not found:
        st.caption("No channels yet: add one below, then choose which traders send to it.")
        return
    frame = pd.DataFrame(
        [{"channel": c.name, "kind": KIND_NAMES[c.kind], "address": c.address,
          "traders": ", ".join(c.traders), "sent": c.sent, "failed": c.failed,
          "waiting": c.waiting, "last error": c.last_error or ""} for c in found]
    )  # fmt: skip
    st.dataframe(frame, hide_index=True, width="stretch")
    c1, c2, c3 = st.columns([2, 1, 1], vertical_alignment="bottom")
    name = c1.selectbox("Channel", [c.name for c in found], key="notifications_pick")
    if c2.button("Send a test message", key="notifications_test"):
        try:
            delivery_id = service.test(user, name)
        except WriteRefused as e:
            st.error(str(e))
        else:
            st.session_state[FLASH] = ("success", f"Test message queued for {name!r}: its "
                                       "outcome shows in the delivery log below.")  # fmt: skip
            st.session_state["notifications_test_id"] = delivery_id
            st.rerun()
    if c3.button("Remove", key="notifications_remove"):
        try:
            service.remove(user, name)
        except WriteRefused as e:
            st.error(str(e))
        else:
            st.session_state[FLASH] = ("success", f"Removed {name!r} (signals are kept).")
            st.rerun()


def subscriptions(service: Notifications, user: Session, found: list[ChannelInfo]) -> None:
    traders = sources.database().traders(user).value
    if not found or not traders:
        return
    st.subheader("Which traders send to which channels")
    st.caption("A trader's new signals go to its channels; cooldown repeats are not sent.")
    names = [c.name for c in found]
    for t in traders:
        current = [c.name for c in found if t.name in c.traders]
        chosen = st.multiselect(md_escape(t.name), names, default=current,
                                key=f"notifications_subs_{t.id}")  # fmt: skip
        if set(chosen) == set(current):
            continue
        try:
            for name in set(chosen) - set(current):
                service.subscribe(user, t.name, name, on=True)
            for name in set(current) - set(chosen):
                service.subscribe(user, t.name, name, on=False)
        except WriteRefused as e:
            st.error(str(e))
        else:
            st.rerun()


def _fields(kind: str, gen: int) -> dict[str, Any]:
    k = f"notifications_{gen}_"
    if kind in ("webhook", "discord", "slack"):
        hint = {"webhook": "https://example.org/hooks/klineflow",
                "discord": "https://discord.com/api/webhooks/...",
                "slack": "https://hooks.slack.com/services/..."}[kind]  # fmt: skip
        fields: dict[str, Any] = {"url": st.text_input("URL", type="password", key=k + "url",
                                                       placeholder=hint)}  # fmt: skip
        if kind == "webhook":
            fields["signing_key"] = st.text_input(
                "Signing key (empty: one is made and shown once)", type="password",
                key=k + "key")  # fmt: skip
        return fields
    if kind == "telegram":
        return {
            "token": st.text_input("Bot token (from @BotFather)", type="password", key=k + "t"),
            "chat_id": st.text_input("Chat id", key=k + "chat", placeholder="-1001234567890"),
        }
    return {"to": st.text_input("E-mail address", key=k + "to")}


def add_form(service: Notifications, user: Session) -> None:
    st.subheader("Add a channel")
    gen = int(st.session_state.get(FORM, 0))
    kind = st.selectbox("Kind", KINDS, format_func=lambda v: KIND_NAMES[v], key=f"nk_{gen}")
    name = st.text_input("Name", key=f"notifications_{gen}_name", placeholder="e.g. desk")
    fields = _fields(kind, gen)
    if st.button("Add channel", key=f"notifications_add_{gen}", type="primary"):
        try:
            shown = service.add(user, NewChannel(name, kind, **fields))
        except WriteRefused as e:
            st.error(str(e))
            return
        st.session_state[FORM] = gen + 1  # a fresh, empty form
        text = f"Added {name.strip()!r}."
        if "signing_key" in shown and not fields.get("signing_key"):
            text += (f" Its signing key, shown this once: `{shown['signing_key']}` (receivers "
                     "check the X-Klineflow-Signature header with it).")  # fmt: skip
        st.session_state[FLASH] = ("success", text)
        st.rerun()


@st.fragment(run_every=3)
def delivery_log(user: Session) -> None:
    st.subheader("Delivery log")
    service = _service()
    answer = service.log(user)
    banner(answer)
    rows = answer.value
    if not rows:
        st.caption("No messages yet.")
        return
    frame = pd.DataFrame(
        [{"message": d.id, "channel": d.channel, "state": d.state, "signals": d.signals,
          "first signal": d.first, "attempts": d.attempts,
          "made (UTC)": f"{d.created_at:%Y-%m-%d %H:%M:%S}",
          "error": d.last_error or ""} for d in rows]
    )  # fmt: skip
    st.dataframe(frame, hide_index=True, width="stretch")
    failed = [d.id for d in rows if d.state == "failed"]
    if failed:
        c1, c2 = st.columns([2, 1], vertical_alignment="bottom")
        pick = c1.selectbox("Failed message", failed, key="notifications_failed")
        if c2.button("Try again", key="notifications_retry"):
            try:
                done = service.retry(user, int(pick))
            except WriteRefused as e:
                st.error(str(e))
            else:
                if done:
                    st.success(f"Message {pick} will be tried again.")
    st.caption("Messages are kept with their state; a signal alone is sent at once, signals "
               "that wait for a busy or paced channel go out together as one digest.")  # fmt: skip


if __name__ == "__main__":
    render()
