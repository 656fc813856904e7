"""One attempt to hand a message to a service, and what its answer means.

Every sender answers an `Outcome`: delivered; try again (after the service's own
`retry_after` when it gave one: HTTP 429 or 503, Telegram's ``parameters.retry_after``,
Discord's ``retry_after``, a ``Retry-After`` header); or failed for good (the service refused
the message or the credentials: a wrong token, an unknown chat, a bad address). Unreachable
hosts, timeouts and 5xx answers are worth another try.

Errors name the host only: webhook URLs and Telegram's bot path carry the credentials, so no
URL path, token or password is ever part of an error (they end up in the delivery log and
in the notifier's log).

HTTP goes through `http.client` without following redirects (a receiver cannot bounce the
notifier to another host).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import smtplib
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

from flows.notify import messages
from flows.notify.settings import NotifySettings

SIGNATURE_HEADER = "X-Klineflow-Signature"
TIMESTAMP_HEADER = "X-Klineflow-Timestamp"
KEY_HEADER = "Idempotency-Key"
USER_AGENT = "klineflow-notifier/1"


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    error: str = ""
    permanent: bool = False  # True: trying again cannot help
    retry_after_s: float | None = None  # the service said when to try again

    @staticmethod
    def ok() -> Outcome:
        return Outcome(True)


@dataclass(frozen=True)
class Channel:
    """What a sender needs of a channel: its kind, its public settings and its secret."""

    id: int
    owner_id: int
    name: str
    kind: str
    config: Mapping[str, Any]
    secret: Mapping[str, Any]


def signature(signing_key: str, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 over ``<timestamp>.<body>``, as the webhook's signature header carries it
    (``sha256=<hex>``)."""
    mac = hmac.new(signing_key.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def send(
    channel: Channel, message: Mapping[str, Any], key: str, settings: NotifySettings, now_s: int
) -> Outcome:
    """One attempt; never raises for what a service or the network does."""
    try:
        if channel.kind == "webhook":
            body = messages.webhook_body(message, key)
            ts = str(now_s)
            headers = {
                KEY_HEADER: key,
                TIMESTAMP_HEADER: ts,
                SIGNATURE_HEADER: signature(channel.secret["signing_key"], ts, body),
            }
            return _post(channel.secret["url"], body, headers, settings, key)
        if channel.kind == "discord":
            text = messages.text(message, "discord")
            payload: dict[str, Any] = {
                "content": text,
                "username": "klineflow",
                "allowed_mentions": {"parse": []},
            }
            return _post(channel.secret["url"], _json(payload), {}, settings, key)
        if channel.kind == "slack":
            payload = {"text": messages.slack_escape(messages.text(message, "slack"))}
            return _post(channel.secret["url"], _json(payload), {}, settings, key)
        if channel.kind == "telegram":
            url = f"{settings.telegram_api.rstrip('/')}/bot{channel.secret['token']}/sendMessage"
            payload = {
                "chat_id": channel.config["chat_id"],
                "text": messages.text(message, "telegram"),
                "disable_web_page_preview": True,
            }
            return _post(url, _json(payload), {}, settings, key)
        if channel.kind == "email":
            return _mail(channel.config["to"], message, key, settings)
    except KeyError as e:  # a channel row without what its kind needs (edited by hand)
        return Outcome(False, f"the channel lacks its {e.args[0]!r}", permanent=True)
    return Outcome(False, f"unknown channel kind {channel.kind!r}", permanent=True)


def _json(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def _post(
    url: str, body: bytes, headers: Mapping[str, str], settings: NotifySettings, key: str
) -> Outcome:
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return Outcome(False, "not an http(s) address", permanent=True)
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.hostname, parts.port, timeout=settings.timeout_s)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    all_headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        KEY_HEADER: key,
        **headers,
    }
    try:
        conn.request("POST", path, body=body, headers=all_headers)
        response = conn.getresponse()
        status = response.status
        answer = response.read(65_536)
        retry_header = response.getheader("Retry-After")
    except (OSError, http.client.HTTPException) as e:
        return Outcome(False, f"cannot reach {host}: {_reason(e)}")
    finally:
        conn.close()
    return _judge(status, answer, retry_header, host)


def _reason(e: BaseException) -> str:
    if isinstance(e, socket.timeout | TimeoutError):
        return "no answer in time"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, socket.gaierror):
        return "unknown host"
    if isinstance(e, ssl.SSLError):
        return f"TLS error ({e.reason})"
    return type(e).__name__


def _judge(status: int, answer: bytes, retry_header: str | None, host: str) -> Outcome:
    parsed: Any = None
    try:
        parsed = json.loads(answer) if answer else None
    except ValueError:
        parsed = None
    if 200 <= status < 300:
        if isinstance(parsed, dict) and parsed.get("ok") is False:  # Telegram's refusals
            return Outcome(False, f"{host} refused: {_said(parsed, answer)}", permanent=True)
        return Outcome.ok()
    said = _said(parsed, answer)
    if status in (429, 503) or status >= 500:
        return Outcome(False, f"{host} answered {status}: {said}",
                       retry_after_s=_retry_after(parsed, retry_header))  # fmt: skip
    return Outcome(False, f"{host} refused ({status}): {said}", permanent=True)


def _said(parsed: Any, answer: bytes) -> str:
    if isinstance(parsed, dict):
        for field in ("description", "message", "error"):
            if isinstance(parsed.get(field), str):
                return str(parsed[field])[:200]
    return " ".join(answer.decode("utf-8", "replace").split())[:200] or "(empty answer)"


def _retry_after(parsed: Any, header: str | None) -> float | None:
    """Seconds: Telegram's parameters.retry_after, Discord's retry_after, the header."""
    found: Any = None
    if isinstance(parsed, dict):
        params = parsed.get("parameters")
        if isinstance(params, dict) and "retry_after" in params:
            found = params["retry_after"]
        elif "retry_after" in parsed:
            found = parsed["retry_after"]
    if found is None:
        found = header
    try:
        seconds = float(found) if found is not None else None
    except (TypeError, ValueError):
        return None
    if seconds is None or not 0 <= seconds <= 86_400:
        return None
    return seconds


def _mail(to: str, message: Mapping[str, Any], key: str, settings: NotifySettings) -> Outcome:
    if settings.smtp_url is None:
        return Outcome(False, "no mail relay is configured (KLINEFLOW_NOTIFY_SMTP_URL)",
                       permanent=True)  # fmt: skip
    relay = urlsplit(settings.smtp_url.get_secret_value())
    host = relay.hostname or "localhost"
    mail = EmailMessage()
    mail["From"] = settings.smtp_from
    mail["To"] = to
    mail["Subject"] = messages.title(message)
    mail["Message-ID"] = f"<{key}@klineflow>"
    mail["X-Klineflow-Idempotency-Key"] = key
    mail.set_content(messages.text(message, "email"))
    try:
        with smtplib.SMTP(host, relay.port or 587, timeout=settings.timeout_s) as smtp:
            if settings.smtp_starttls:
                context = ssl.create_default_context(cafile=settings.smtp_ca_file)
                smtp.starttls(context=context)
            if relay.username:
                smtp.login(relay.username, relay.password or "")
            smtp.send_message(mail)
    except smtplib.SMTPNotSupportedError:
        return Outcome(False, f"{host} offers no STARTTLS", permanent=True)
    except smtplib.SMTPAuthenticationError:
        return Outcome(False, f"{host} refused the relay's user and password", permanent=True)
    except smtplib.SMTPRecipientsRefused:
        return Outcome(False, f"{host} refused the address {to}", permanent=True)
    except smtplib.SMTPResponseException as e:
        permanent = 500 <= e.smtp_code < 600
        return Outcome(False, f"{host} answered {e.smtp_code}", permanent=permanent)
    except (OSError, smtplib.SMTPException) as e:
        return Outcome(False, f"cannot reach {host}: {_reason(e)}")
    return Outcome.ok()
