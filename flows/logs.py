"""Logging set-up: readable lines on a terminal, JSON lines everywhere else.

Messages carry their context as key=value pairs (`trader id=7 switched off for
symbol=BTCUSDT: ...`); the JSON form also lifts those pairs into fields, so a log pipeline can
filter on `symbol` or `id` without parsing text.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import TextIO

_PAIR = re.compile(r"(?<![\w.])([a-z_][a-z0-9_]*)=([^\s,;:()]+)")
_RESERVED = {"ts", "level", "logger", "message"}


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        out: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": message,
        }
        for key, value in _PAIR.findall(message):
            if key not in _RESERVED:
                out.setdefault(key, value)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def setup(level: int = logging.WARNING, stream: TextIO | None = None) -> None:
    """JSON lines unless `stream` (default stderr) is a terminal."""
    target = stream if stream is not None else sys.stderr
    handler = logging.StreamHandler(target)
    if target.isatty():
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    else:
        handler.setFormatter(JsonLines())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
