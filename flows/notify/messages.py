"""What a notification says, and how each service is told it.

A message is built once, from the signals it carries, and stored with its delivery
(``notification_deliveries.message``); every attempt renders the stored message again, so
a resend after a crash says exactly what the first attempt said. Rendering is pure.

The generic webhook's body is JSON::

    {"type": "signals", "idempotency_key": "...", "count": 1, "signals": [{
        "id": "...", "trader": "RSI dip", "trader_id": 7, "symbol": "BTCUSDT",
        "interval": "1m", "price": "43210.50000000", "kline_open_ms": 1764900000000,
        "kline_close_ms": 1764900059999, "kline_close": "2025-12-05T02:00:59.999Z",
        "values": {"rsi_14": 27.4}, "link": "http://localhost:8501/market?signal=..."}]}

Text for people (Discord, Slack, Telegram, e-mail) names the trader, symbol, interval,
price, the kline's close (UTC, the signal's one time as the dashboard shows it), the
indicator values and the link; a digest lists as many signals as the service's message
length allows and says how many more there were.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

# the services' longest message, in characters (Slack's is larger; a few screens is plenty)
TEXT_LIMITS = {"discord": 2000, "telegram": 4096, "slack": 8000, "email": 100_000}


@dataclass(frozen=True)
class SignalNote:
    """One signal as a message tells it."""

    id: str
    trader: str
    trader_id: int
    symbol: str
    interval: str
    price: Decimal
    kline_open_ms: int
    kline_close_ms: int
    values: Mapping[str, Any]

    def as_json(self, dashboard_url: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "trader": self.trader,
            "trader_id": self.trader_id,
            "symbol": self.symbol,
            "interval": self.interval,
            "price": f"{self.price:.8f}",
            "kline_open_ms": self.kline_open_ms,
            "kline_close_ms": self.kline_close_ms,
            "kline_close": iso_utc(self.kline_close_ms),
            "values": dict(self.values),
            "link": signal_link(dashboard_url, self.id),
        }


def iso_utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def signal_link(dashboard_url: str, signal_id: str) -> str:
    """The dashboard's chart at the signal (Market opens on its symbol and interval)."""
    return f"{dashboard_url.rstrip('/')}/market?signal={quote(signal_id, safe='')}"


def idempotency_key(signal_ids: Sequence[str]) -> str:
    """The signal's id for one signal; for a digest, a key derived from all its signals."""
    if len(signal_ids) == 1:
        return signal_ids[0]
    digest = hashlib.sha256("\n".join(sorted(signal_ids)).encode()).hexdigest()[:32]
    return f"digest-{len(signal_ids)}-{digest}"


def build(notes: Sequence[SignalNote], dashboard_url: str) -> dict[str, Any]:
    """The stored message of a delivery: its signals, oldest kline first."""
    ordered = sorted(notes, key=lambda n: (n.kline_close_ms, n.trader, n.symbol, n.id))
    return {
        "signals": [n.as_json(dashboard_url) for n in ordered],
        "signals_link": f"{dashboard_url.rstrip('/')}/signals",
    }


def webhook_body(message: Mapping[str, Any], key: str) -> bytes:
    """The generic webhook's JSON body (compact, keys in a fixed order)."""
    signals = message["signals"]
    body = {"type": "signals", "idempotency_key": key, "count": len(signals), "signals": signals}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def _number(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _values(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} = {_number(v)}" for k, v in values.items())


def _close_text(s: Mapping[str, Any]) -> str:
    close = datetime.fromtimestamp(s["kline_close_ms"] / 1000, UTC)
    return close.strftime("%Y-%m-%d %H:%M:%S UTC")


def _one_line(s: Mapping[str, Any]) -> str:
    return (f"{s['trader']}: {s['symbol']} {s['interval']} at {s['price']}, "
            f"kline closed {_close_text(s)}")  # fmt: skip


def title(message: Mapping[str, Any]) -> str:
    signals = message["signals"]
    if len(signals) == 1:
        s = signals[0]
        return f"klineflow: {s['trader']} on {s['symbol']} {s['interval']}"
    return f"klineflow: {len(signals)} signals"


def text(message: Mapping[str, Any], kind: str) -> str:
    """The message for people, within the service's length."""
    signals = message["signals"]
    limit = TEXT_LIMITS[kind]
    if len(signals) == 1:
        s = signals[0]
        lines = [title(message), _one_line(s)]
        if s["values"]:
            lines.append(_values(s["values"]))
        lines.append(s["link"])
        return _cut("\n".join(lines), limit)
    head = f"{title(message)} (cooldown repeats are not sent)"
    lines = [head]
    used = len(head)
    for i, s in enumerate(signals):
        line = f"- {_one_line(s)} {s['link']}"
        rest = len(signals) - i
        tail = f"... and {rest} more: {message['signals_link']}"
        if used + len(line) + len(tail) + 2 > limit:
            lines.append(tail)
            break
        lines.append(line)
        used += len(line) + 1
    return _cut("\n".join(lines), limit)


def _cut(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 3] + "..."


def slack_escape(value: str) -> str:
    """Slack reads &, < and > as markup: user text (a trader's name) is escaped."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
