"""Log lines: JSON with the message's key=value context as fields off a terminal."""

from __future__ import annotations

import io
import json
import logging

from flows.logs import setup


def test_json_lines_off_a_terminal_with_key_value_fields() -> None:
    stream = io.StringIO()
    setup(logging.INFO, stream)
    try:
        logging.getLogger("flows.signals.engine").warning(
            "trader id=%d switched off for symbol=%s: %s", 7, "BTCUSDT", "ZeroDivisionError: x"
        )
        logging.getLogger("flows.x").info("plain message, no pairs")
    finally:
        logging.getLogger().handlers.clear()
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["level"] == "warning" and first["logger"] == "flows.signals.engine"
    assert first["id"] == "7" and first["symbol"] == "BTCUSDT"
    assert first["message"].startswith("trader id=7 switched off")
    assert second["message"] == "plain message, no pairs" and "id" not in second


def test_readable_lines_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    setup(logging.INFO, stream)
    try:
        logging.getLogger("flows.y").warning("symbol=%s late", "ETHUSDT")
    finally:
        logging.getLogger().handlers.clear()
    assert stream.getvalue() == "WARNING flows.y symbol=ETHUSDT late\n"
