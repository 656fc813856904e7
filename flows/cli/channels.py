"""`klineflow channels` (where a user's signals are sent), `klineflow traders notify` (which
channels a trader's signals go to) and `klineflow notify` (the notifier on its own; `up` and
`demo` start one themselves).

Secrets are read from files or the terminal's hidden prompt, never from the command line
(where other users of the machine could see them in the process list).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from flows.app.errors import BadInput
from flows.cli.boundary import GuardedGroup, console, out
from flows.cli.common import DatabaseUrl, _settings, app, stopping_on_signals
from flows.cli.traders import traders_app
from flows.settings import read_secret_file

channels_app = typer.Typer(
    cls=GuardedGroup,
    no_args_is_help=True,
    help="Where signals are sent: webhooks, Discord, Slack, Telegram, e-mail.",
)
app.add_typer(channels_app, name="channels")

Owner = Annotated[str, typer.Option(help="the user the channel belongs to")]
Name = Annotated[str, typer.Argument(help="the channel's name")]


def _secret(path: Path | None, prompt: str, what: str) -> str:
    if path is not None:
        return read_secret_file(path, what)
    if not prompt:
        return ""
    return str(typer.prompt(prompt, hide_input=True))


@channels_app.command("add")
def add(
    name: Name,
    kind: Annotated[str, typer.Option("--kind", help="webhook, discord, slack, telegram or email")],
    url_file: Annotated[
        Path | None, typer.Option(help="file holding the webhook URL (it carries a token)")
    ] = None,
    signing_key_file: Annotated[
        Path | None, typer.Option(help="webhook: the HMAC key (default: one is made and shown)")
    ] = None,
    token_file: Annotated[Path | None, typer.Option(help="telegram: the bot token")] = None,
    chat_id: Annotated[str, typer.Option(help="telegram: the chat id")] = "",
    to: Annotated[str, typer.Option(help="email: the address")] = "",
    owner: Owner = "local",
    database_url: DatabaseUrl = None,
) -> None:
    """Add a channel. Webhook, Discord and Slack URLs and Telegram tokens are read from a
    file, or asked for without echo."""
    from flows.app.notifications import as_owner, notify_settings
    from flows.notify.channels import KINDS, NewChannel
    from flows.notify.channels import add as add_channel

    if kind not in KINDS:
        raise BadInput(f"unknown --kind {kind!r}; one of {', '.join(KINDS)}")
    url = ""
    if kind in ("webhook", "discord", "slack"):
        url = _secret(url_file, f"{kind} URL", "--url-file")
    key = _secret(signing_key_file, "", "--signing-key-file") if kind == "webhook" else ""
    token = _secret(token_file, "Telegram bot token", "--token-file") if kind == "telegram" else ""
    new = NewChannel(name, kind, url=url, signing_key=key, token=token, chat_id=chat_id, to=to)
    with as_owner(_settings(database_url=database_url), owner) as db:
        shown = add_channel(db.conn, db.owner_id, new, notify_settings())
    out.print(f"added channel {escape(name)!r} ({kind}, {escape(str(shown.get('address')))})",
              highlight=False)  # fmt: skip
    if "signing_key" in shown and signing_key_file is None:
        out.print("signing key (shown this once; receivers check X-Klineflow-Signature with "
                  f"it): {shown['signing_key']}", highlight=False)  # fmt: skip


@channels_app.command("list")
def list_channels(owner: Owner = "local", database_url: DatabaseUrl = None) -> None:
    """The user's channels: the traders that use each, messages sent, failed, waiting, and
    the last error."""
    from flows.app.notifications import as_owner
    from flows.notify.channels import listed

    with as_owner(_settings(database_url=database_url), owner) as db:
        found = listed(db.conn, db.owner_id)
    if not found:
        out.print("no channels: add one with `klineflow channels add`")
        return
    table = Table("name", "kind", "address", "traders", "sent", "failed", "waiting", "last error")
    for c in found:
        table.add_row(escape(c.name), c.kind, escape(c.address), escape(", ".join(c.traders)),
                      str(c.sent), str(c.failed), str(c.waiting),
                      escape(c.last_error or ""))  # fmt: skip
    out.print(table)


@channels_app.command("remove")
def remove(name: Name, owner: Owner = "local", database_url: DatabaseUrl = None) -> None:
    """Delete a channel and its delivery log (the signals stay)."""
    from flows.app.notifications import as_owner
    from flows.notify.channels import remove as remove_channel

    with as_owner(_settings(database_url=database_url), owner) as db:
        remove_channel(db.conn, db.owner_id, name)
    out.print(f"removed channel {escape(name)!r}", highlight=False)


@channels_app.command("test")
def test(
    name: Name,
    wait: Annotated[float, typer.Option(help="seconds to wait for the notifier's attempt")] = 30,
    owner: Owner = "local",
    database_url: DatabaseUrl = None,
) -> None:
    """Send a test message through the notifier and say what the service answered."""
    from flows.app.notifications import as_owner, notify_settings, wait_for_delivery
    from flows.domain.clock import SystemClock
    from flows.notify.channels import test_message

    stop = threading.Event()
    with as_owner(_settings(database_url=database_url), owner) as db, stopping_on_signals(stop):
        delivery_id = test_message(db.conn, db.owner_id, name, notify_settings(),
                                   SystemClock().now_ms())  # fmt: skip
        found = wait_for_delivery(db, delivery_id, stop, wait)
    if found is None:
        console.print(f"[yellow]queued[/yellow] (message {delivery_id}), but no notifier "
                      f"tried it within {wait:g} s: is `klineflow up`, `demo` or `notify` "
                      "running?")  # fmt: skip
        raise typer.Exit(1)
    if found.state == "sent":
        out.print(f"sent: the {escape(name)!r} channel's service acknowledged the test message",
                  highlight=False)  # fmt: skip
        return
    console.print(f"[red]not delivered[/red] ({found.state}): {escape(found.last_error or '')}")
    raise typer.Exit(1)


@channels_app.command("log")
def log(
    limit: Annotated[int, typer.Option(min=1, help="newest messages shown")] = 20,
    owner: Owner = "local",
    database_url: DatabaseUrl = None,
) -> None:
    """The delivery log: each message, its state, attempts and error."""
    from flows.app.notifications import as_owner
    from flows.notify.channels import deliveries

    with as_owner(_settings(database_url=database_url), owner) as db:
        found = deliveries(db.conn, db.owner_id, limit)
    table = Table("id", "channel", "state", "signals", "first", "attempts", "made", "error")
    for d in found:
        table.add_row(str(d.id), escape(d.channel), d.state, str(d.signals), escape(d.first),
                      str(d.attempts), f"{d.created_at:%Y-%m-%d %H:%M:%S}",
                      escape(d.last_error or ""))  # fmt: skip
    out.print(table)


@channels_app.command("retry")
def retry(
    message: Annotated[int, typer.Argument(help="the failed message's id (see `log`)")],
    owner: Owner = "local",
    database_url: DatabaseUrl = None,
) -> None:
    """Try a failed message again."""
    from flows.app.notifications import as_owner
    from flows.notify.channels import retry as retry_delivery

    with as_owner(_settings(database_url=database_url), owner) as db:
        done = retry_delivery(db.conn, db.owner_id, message)
    if not done:
        console.print(f"[red]error:[/red] no failed message {message} of yours")
        raise typer.Exit(1)
    out.print(f"message {message} will be tried again")


@traders_app.command("notify")
def trader_notify(
    trader: Annotated[str, typer.Argument(help="the trader's id or name")],
    channel: Annotated[list[str], typer.Option("--channel", help="a channel (repeatable)")],
    off: Annotated[bool, typer.Option("--off", help="stop sending to these channels")] = False,
    owner: Owner = "local",
    database_url: DatabaseUrl = None,
) -> None:
    """Send a trader's new signals to channels (cooldown repeats are not sent)."""
    from flows.app.notifications import as_owner
    from flows.notify.channels import subscribe

    with as_owner(_settings(database_url=database_url), owner) as db:
        for name in channel:
            subscribe(db.conn, db.owner_id, trader, name, on=not off)
    verb = "no longer sends" if off else "sends"
    out.print(f"{escape(trader)!r} {verb} its signals to {escape(', '.join(channel))}",
              highlight=False)  # fmt: skip


@app.command("notify")
def notify(database_url: DatabaseUrl = None) -> None:
    """Deliver queued signals to their channels until Ctrl-C (`up` and `demo` run one)."""
    from flows.app.notifications import run_notifier

    stop = threading.Event()
    settings = _settings(database_url=database_url)
    with stopping_on_signals(stop):
        console.print("notifier: delivering signals (Ctrl-C to stop)")
        run_notifier(settings, stop)
    console.print("notifier: stopped")
