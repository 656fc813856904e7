"""Server URLs in messages: the password hidden, whatever the URL's form.

>>> redacted("redis://:secret@127.0.0.1:1/0")
'redis://:***@127.0.0.1:1/0'
>>> redacted("host=/tmp user=a password='p q'")
'host=/tmp user=a password=***'
>>> scrubbed("FATAL:  no such secret", "redis://:secret@h/0")
'FATAL: no such ***'
"""

from __future__ import annotations

import contextlib
import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


def password_of(url: str) -> str | None:
    if "://" in url:
        with contextlib.suppress(ValueError):
            parts = urlsplit(url)
            if parts.password:
                return parts.password
            for key, value in parse_qsl(parts.query):
                if key == "password" and value:
                    return value
        return None
    found = re.search(r"(?:^|\s)password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", url)
    return found.group(1).strip("'") if found else None


def redacted(url: str) -> str:
    """The URL (or key=value conninfo) without its password, for messages."""
    if "://" in url:
        try:
            parts = urlsplit(url)
            netloc = parts.netloc
            if parts.password is not None:
                userinfo, _, hostport = netloc.rpartition("@")
                netloc = f"{userinfo.split(':', 1)[0]}:***@{hostport}"
            query = urlencode(
                [(k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query)]
            )
            return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
        except ValueError:
            return "the configured URL"
    return re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", url)


def scrubbed(text: str, url: str) -> str:
    """A server's or driver's message, on one line and without the URL's password."""
    password = password_of(url)
    if password:
        text = text.replace(password, "***")
    return " ".join(text.split())
