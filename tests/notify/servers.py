"""Real local servers the notifier talks to in tests: a webhook receiver that checks the
HMAC signature and keeps the idempotency keys, stand-ins for Discord's and Slack's incoming
webhooks and Telegram's Bot API answering with those services' response shapes (429 with
`retry_after` included), and an SMTP server with STARTTLS (aiosmtpd, a self-signed
certificate the client is pointed at).

Each server listens on a port of its own on 127.0.0.1; `down()` closes the listening socket
(connections are refused, as from a host that is down) and `up()` opens it again on the
same port.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SIGNAL_LINK = re.compile(r"market\?signal=([^\s&]+)")


@dataclass
class Received:
    """What one service received."""

    requests: int = 0  # every request, also those answered 429 or 401
    bodies: list[Any] = field(default_factory=list)  # accepted messages (parsed), in order
    keys: list[str] = field(default_factory=list)  # idempotency keys of accepted messages
    bad_signatures: int = 0
    arrivals: dict[str, float] = field(default_factory=dict)  # signal id -> first perf_counter
    lock: threading.RLock = field(default_factory=threading.RLock)
    changed: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)


class _Server:
    """An HTTP server on a fixed port that can go down and come back."""

    def __init__(self, handle: Callable[[BaseHTTPRequestHandler, bytes], None]) -> None:
        self.handle = handle
        self.received = Received()
        self.rate_limit_next = 0  # answer the next N requests with 429
        self.retry_after_s = 0.2
        self._server: ThreadingHTTPServer | None = None
        self.port = 0
        self.up()

    def up(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with outer.received.lock:
                    outer.received.requests += 1
                    limited = outer.rate_limit_next > 0
                    if limited:
                        outer.rate_limit_next -= 1
                if limited:
                    outer.too_many(self)
                    return
                outer.handle(self, body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def close(self) -> None:
        self.down()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def too_many(self, h: BaseHTTPRequestHandler) -> None:
        _answer(h, 429, {"message": "rate limited", "retry_after": self.retry_after_s},
                {"Retry-After": f"{self.retry_after_s}"})  # fmt: skip

    def accept(self, body: Any, key: str = "") -> None:
        now = time.perf_counter()
        with self.received.changed:
            for s in body.get("signals", []) if isinstance(body, dict) else []:
                self.received.arrivals.setdefault(s["id"], now)
            self.received.bodies.append(body)
            if key:
                self.received.keys.append(key)
            self.received.changed.notify_all()

    def wait_until(self, done: Callable[[Received], bool], timeout: float = 60.0) -> bool:
        """Blocks until `done(received)` holds (checked at every accepted message)."""
        with self.received.changed:
            return self.received.changed.wait_for(lambda: done(self.received), timeout)


def _answer(
    h: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str] | None = None
) -> None:
    data = b"" if body is None else json.dumps(body).encode()
    h.send_response(status)
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    if data:
        h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(data)))
    h.end_headers()
    h.wfile.write(data)


class WebhookReceiver(_Server):
    """The generic webhook's receiver: refuses (401) a bad signature, keeps each accepted
    message's idempotency key."""

    def __init__(self, signing_key: str) -> None:
        self.signing_key = signing_key
        super().__init__(self._handle)

    def _handle(self, h: BaseHTTPRequestHandler, body: bytes) -> None:
        ts = h.headers.get("X-Klineflow-Timestamp", "")
        mac = hmac.new(self.signing_key.encode(), ts.encode() + b"." + body, hashlib.sha256)
        if not hmac.compare_digest("sha256=" + mac.hexdigest(),
                                   h.headers.get("X-Klineflow-Signature", "")):  # fmt: skip
            with self.received.lock:
                self.received.bad_signatures += 1
            _answer(h, 401, {"error": "bad signature"})
            return
        parsed = json.loads(body)
        key = h.headers.get("Idempotency-Key", "")
        assert key == parsed["idempotency_key"]
        _answer(h, 200, {"received": True})
        self.accept(parsed, key)

    def signal_ids(self) -> list[str]:
        """Every signal id in the accepted messages, one entry per distinct key."""
        seen: dict[str, list[str]] = {}
        with self.received.lock:
            for body in self.received.bodies:
                seen[body["idempotency_key"]] = [s["id"] for s in body["signals"]]
        return [sid for ids in seen.values() for sid in ids]


class ChatStandIn(_Server):
    """Discord incoming webhooks (`/api/webhooks/<id>/<token>`: 204, or 401 "Invalid Webhook
    Token"), Slack's (`/services/...`: 200 "ok", or 403 "invalid_token") and Telegram's Bot
    API (`/bot<token>/sendMessage`: {"ok": true, ...}, or 401 {"ok": false, "error_code":
    401, "description": "Unauthorized"}), each with its own 429 answer. `good_token` is the
    one credential accepted."""

    def __init__(self, good_token: str) -> None:
        self.good_token = good_token
        super().__init__(self._handle)

    def _handle(self, h: BaseHTTPRequestHandler, body: bytes) -> None:
        parsed = json.loads(body)
        path = h.path
        if path.startswith("/api/webhooks/"):
            if not path.endswith("/" + self.good_token):
                _answer(h, 401, {"message": "Invalid Webhook Token", "code": 50027})
                return
            _answer(h, 204, None)
            self.accept({"service": "discord", "text": parsed["content"], **parsed})
        elif path.startswith("/services/"):
            if not path.endswith("/" + self.good_token):
                h.send_response(403)
                h.send_header("Content-Length", "13")
                h.end_headers()
                h.wfile.write(b"invalid_token")
                return
            h.send_response(200)
            h.send_header("Content-Length", "2")
            h.end_headers()
            h.wfile.write(b"ok")
            self.accept({"service": "slack", **parsed})
        elif path.startswith("/bot"):
            if path != f"/bot{self.good_token}/sendMessage":
                _answer(h, 401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
                return
            _answer(h, 200, {"ok": True, "result": {"message_id": self.received.requests,
                                                     "text": parsed["text"]}})  # fmt: skip
            self.accept({"service": "telegram", **parsed})
        else:
            _answer(h, 404, {"message": "404: Not Found"})

    def too_many(self, h: BaseHTTPRequestHandler) -> None:
        if h.path.startswith("/bot"):
            wait = max(1, round(self.retry_after_s))
            _answer(h, 429, {"ok": False, "error_code": 429,
                             "description": f"Too Many Requests: retry after {wait}",
                             "parameters": {"retry_after": wait}})  # fmt: skip
        elif h.path.startswith("/services/"):
            h.send_response(429)
            h.send_header("Retry-After", str(max(1, round(self.retry_after_s))))
            h.send_header("Content-Length", "0")
            h.end_headers()
        else:
            _answer(h, 429, {"message": "You are being rate limited.",
                             "retry_after": self.retry_after_s, "global": False},
                    {"Retry-After": str(max(1, round(self.retry_after_s)))})  # fmt: skip

    def texts(self, service: str) -> list[str]:
        with self.received.lock:
            return [b["text"] for b in self.received.bodies if b["service"] == service]


def linked_signals(texts: list[str]) -> list[str]:
    """The signal ids a person's messages link to."""
    return [m for t in texts for m in SIGNAL_LINK.findall(t)]


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (and its key), the CA file a client trusts."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = directory / "smtp.crt", directory / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return cert_path, key_path


class MailServer:
    """An SMTP server that requires STARTTLS and keeps every message."""

    def __init__(self, directory: Path) -> None:
        self.cert, key = self_signed(directory)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, key)
        self.messages: list[dict[str, str]] = []
        self.changed = threading.Condition()
        outer = self

        class Handler:
            async def handle_DATA(  # noqa: N802
                self, server: SMTP, session: Session, envelope: Envelope
            ) -> str:
                data = envelope.content
                text = data.decode() if isinstance(data, bytes) else str(data)
                with outer.changed:
                    outer.messages.append({"to": ",".join(envelope.rcpt_tos), "data": text})
                    outer.changed.notify_all()
                return "250 OK"

        with socket.socket() as probe:  # a free port
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port,
                                     require_starttls=True, tls_context=context)  # fmt: skip
        self.controller.start()

    def wait_until(
        self, done: Callable[[list[dict[str, str]]], bool], timeout: float = 60.0
    ) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: done(self.messages), timeout)

    def close(self) -> None:
        self.controller.stop()
