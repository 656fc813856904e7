"""How a service's answer is read: delivered, wait as told, try again, or failed for good."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.notify.outbox import retry_wait_s
from flows.notify.senders import Outcome, _judge
from tests.notify.conftest import settings


@pytest.mark.parametrize(
    ("status", "body", "header", "delivered", "permanent", "after"),
    [
        (204, b"", None, True, False, None),  # Discord
        (200, b"ok", None, True, False, None),  # Slack
        (200, json.dumps({"ok": True, "result": {}}).encode(), None, True, False, None),
        (
            200,
            json.dumps({"ok": False, "description": "Bad Request"}).encode(),
            None,
            False,
            True,
            None,
        ),
        (429, json.dumps({"retry_after": 1.5, "global": False}).encode(), "2", False, False, 1.5),
        (
            429,
            json.dumps({"ok": False, "error_code": 429, "parameters": {"retry_after": 7}}).encode(),
            None,
            False,
            False,
            7.0,
        ),
        (429, b"", "3", False, False, 3.0),  # Slack: the header only
        (503, b"down", None, False, False, None),
        (500, b"", None, False, False, None),
        (
            401,
            json.dumps({"message": "Invalid Webhook Token"}).encode(),
            None,
            False,
            True,
            None,
        ),
        (403, b"invalid_token", None, False, True, None),
        (404, b"no_service", None, False, True, None),
        (429, json.dumps({"retry_after": -5}).encode(), None, False, False, None),  # nonsense
    ],
)
def test_answers(
    status: int, body: bytes, header: str | None, delivered: bool, permanent: bool,
    after: float | None,
) -> None:  # fmt: skip
    outcome = _judge(status, body, header, "host")
    assert (outcome.delivered, outcome.permanent, outcome.retry_after_s) == (
        delivered, permanent, after)  # fmt: skip


def test_waits_double_up_to_the_most_and_follow_the_service() -> None:
    s = settings(retry_first_s=1.0, retry_most_s=10.0)
    plain = Outcome(False, "x")
    assert [retry_wait_s(n, plain, s) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    assert retry_wait_s(3, Outcome(False, "x", retry_after_s=42.0), s) == 42.0


def test_the_notifier_settings_read_secret_files_and_are_known(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from flows.notify.settings import NotifySettings
    from flows.settings import unknown_env_vars

    secret = tmp_path / "smtp"
    secret.write_text("smtp://relay:pw@mail.example.org:587\n")
    monkeypatch.setenv("KLINEFLOW_NOTIFY_SMTP_URL_FILE", str(secret))
    monkeypatch.setenv("KLINEFLOW_NOTIFY_PACE_SLACK_S", "3")
    monkeypatch.setenv("KLINEFLOW_NOTIFY_PACE_SLAK_S", "3")  # a typo is still warned about
    s = NotifySettings()
    assert s.smtp_url is not None
    assert s.smtp_url.get_secret_value() == "smtp://relay:pw@mail.example.org:587"
    assert s.pace_s("slack") == 3.0
    assert unknown_env_vars() == ["KLINEFLOW_NOTIFY_PACE_SLAK_S"]
