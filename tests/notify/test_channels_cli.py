"""`klineflow channels` and `klineflow traders notify`, run as a user runs them, against a real
database, a notifier and a webhook receiver."""

from __future__ import annotations

from pathlib import Path

import psycopg
from typer.testing import CliRunner, Result

from flows.cli import app
from tests.notify.conftest import (
    Owner,
    delivery_states,
    fires,
    notifier_running,
    settings,
    write,
)
from tests.notify.servers import WebhookReceiver


def _run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def test_a_channel_from_the_command_line_receives_its_traders_signals(
    ana: Owner, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    url_file = tmp_path / "hook-url"
    url_file.write_text(receiver.url + "/hook\n")
    db = ("--database-url", ana.url, "--owner", "ana")
    added = _run("channels", "add", "desk", "--kind", "webhook", "--url-file", str(url_file), *db)
    assert added.exit_code == 0, added.output
    key = added.output.split("signing key", 1)[1].rsplit(":", 1)[1].split()[0]
    assert len(key) == 64 and "/hook" not in added.output  # the path (its token) never shown
    receiver.signing_key = key
    notified = _run("traders", "notify", "Watch", "--channel", "desk", *db)
    assert notified.exit_code == 0, notified.output
    with notifier_running(ana.url, settings()):
        tested = _run("channels", "test", "desk", "--wait", "60", *db)
        assert tested.exit_code == 0, tested.output
        assert "acknowledged" in tested.output
        write(ana.url, fires(ana, 3))
        assert receiver.wait_until(lambda r: sum(len(b["signals"]) for b in r.bodies) == 4)
    assert receiver.received.bad_signatures == 0
    listed = _run("channels", "list", *db)
    assert listed.exit_code == 0 and "desk" in listed.output and "Watch" in listed.output
    log = _run("channels", "log", *db)
    assert log.exit_code == 0 and log.output.count("sent") >= 2
    removed = _run("channels", "remove", "desk", *db)
    assert removed.exit_code == 0
    with psycopg.connect(ana.url) as conn:
        assert conn.execute("SELECT count(*) FROM signals").fetchone() == (3,)  # kept
    assert delivery_states(ana.url) == {}


def test_command_line_mistakes_are_one_line_with_their_exit_code(
    ana: Owner, tmp_path: Path
) -> None:
    db = ("--database-url", ana.url, "--owner", "ana")
    bad_kind = _run("channels", "add", "x", "--kind", "pager", *db)
    assert bad_kind.exit_code == 2 and "unknown --kind" in bad_kind.output
    no_address = _run("channels", "add", "x", "--kind", "email", "--to", "nobody", *db)
    assert no_address.exit_code == 2 and "not an e-mail address" in no_address.output
    unknown = _run("traders", "notify", "Watch", "--channel", "nowhere", *db)
    assert unknown.exit_code == 1 and "no channel named 'nowhere'" in unknown.output
    mail = _run("channels", "add", "m", "--kind", "email", "--to", "ana@example.org", *db)
    assert mail.exit_code == 0
    again = _run("channels", "add", "m", "--kind", "email", "--to", "ana@example.org", *db)
    assert again.exit_code == 2 and "already a channel named 'm'" in again.output
    no_notifier = _run("channels", "test", "m", "--wait", "0.5", *db)
    assert no_notifier.exit_code == 1 and "no notifier tried it" in no_notifier.output
    retry = _run("channels", "retry", "12345", *db)
    assert retry.exit_code == 1 and "no failed message 12345" in retry.output
